// ChatModel over the runtime Engine: State boxes, forward, and the model identity
// used by session files.
#include <algorithm>
#include <cstring>

#include "corvid/chat/model.h"
#include "corvid/runtime/engine.h"
#include "corvid/sdk/error.h"

namespace corvid::chat {

namespace {

struct EngineStateBox final : ChatModel::StateBox {
  State st;
};

// FNV-1a, 64 bit: a stable, dependency-free fingerprint (not a security hash).
struct Fnv {
  uint64_t h = 0xcbf29ce484222325ull;
  void add(const void* p, size_t n) {
    auto b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  }
  void add(const std::string& s) { add(s.data(), s.size() + 1); }
  void add_u64(uint64_t v) { add(&v, sizeof v); }
};

class EngineChatModel final : public ChatModel {
 public:
  explicit EngineChatModel(Engine& e) : e_(e) {}

  int n_vocab() const override { return e_.hparams().n_vocab; }

  std::unique_ptr<StateBox> new_state() const override {
    auto b = std::make_unique<EngineStateBox>();
    b->st = e_.new_state();
    return b;
  }
  void copy_state(const StateBox& from, StateBox& to) const override { box(to).st = box(from).st; }
  void reset_state(StateBox& st) const override { box(st).st.reset(); }
  void forward(std::span<const int32_t> tokens, StateBox& st, float* logits) override {
    e_.forward(tokens, box(st).st, logits);
  }
  void forward_all(std::span<const int32_t> tokens, StateBox& st, float* out) override {
    e_.forward_all(tokens, box(st).st, out);
  }
  std::vector<float> serialize_state(const StateBox& st) const override { return box(st).st.serialize(); }
  void deserialize_state(std::span<const float> data, StateBox& st) const override { box(st).st.deserialize(data); }

  ModelIdentity identity() const override {
    ModelIdentity id;
    const ModelHParams& hp = e_.hparams();
    id.description = std::string(arch_name(hp.arch)) + " L=" + std::to_string(hp.n_layer) +
                     " C=" + std::to_string(hp.n_embd) + " V=" + std::to_string(hp.n_vocab);
    Fnv f;
    for (int v : {int(hp.arch), hp.n_layer, hp.n_embd, hp.n_att, hp.n_ffn, hp.n_vocab, hp.n_head, hp.head_size})
      f.add_u64(uint64_t(int64_t(v)));
    const Checkpoint& ck = e_.checkpoint();
    for (const std::string& name : ck.names()) {
      const TensorView* t = ck.find(name);
      f.add(name);
      if (!t) continue;
      f.add_u64(uint64_t(t->dtype));
      for (int d = 0; d < t->ndim; ++d) f.add_u64(uint64_t(t->shape[d]));
      // The leading bytes of every tensor: cheap, and different weights differ there.
      if (t->data) f.add(t->data, std::min<size_t>(t->nbytes(), 4096));
    }
    id.fingerprint = f.h;
    State probe = e_.new_state();
    id.state_floats = probe.serialized_floats();
    id.state_dtypes.assign(size_t(hp.n_layer), DType::F32);
    for (const PlanStage& ps : e_.plan().stages)
      for (int s = ps.first_slot; s <= ps.last_slot && s < hp.n_layer; ++s) id.state_dtypes[size_t(s)] = ps.precision.atype;
    return id;
  }

 private:
  static EngineStateBox& box(StateBox& b) { return static_cast<EngineStateBox&>(b); }
  static const EngineStateBox& box(const StateBox& b) { return static_cast<const EngineStateBox&>(b); }
  Engine& e_;
};

}  // namespace

std::unique_ptr<ChatModel> make_engine_chat_model(Engine& engine) { return std::make_unique<EngineChatModel>(engine); }

}  // namespace corvid::chat
