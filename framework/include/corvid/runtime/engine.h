// The pipeline runner: embedding -> stages -> ln_out + head.
//
//   EngineOptions o = engine_default_options();
//   o.model_path = "model.pth"; o.strategy = "cpu fp32";
//   auto eng = Engine::load(o);
//   State st = eng->new_state();
//   std::vector<float> logits(eng->hparams().n_vocab);
//   eng->forward(tokens, st, logits.data());     // sequence mode, chunked
//
// The caller owns the State (rwkv.cpp style); it is a deep-copyable value, so a
// chat snapshot is `State snap = st;`.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "corvid/io/checkpoint.h"
#include "corvid/plugins/registry.h"
#include "corvid/sdk/backend.h"
#include "corvid/strategy/plan.h"

namespace corvid {

struct EngineOptions {
  std::string model_path;
  // DSL string; ignored when `spec` is set. Empty: the strategy a converted
  // file was made for, or "cpu fp32" for a raw checkpoint.
  std::string strategy;
  const StrategySpec* spec = nullptr;    // e.g. from an XML config (takes precedence)
  int rescale_override = -1;             // >= 0 overrides the RESCALE_LAYER rule
  int threads = 0;                       // 0 = number of physical cores
  int chunk_len = 256;                   // sequence-mode chunk (ChatRWKV CHUNK_LEN)
  std::vector<std::string> plugin_dirs;  // searched before the default path
  // Load log lines (plan, per-stage info); nullptr = silent.
  std::function<void(const std::string&)> log;
  // Loading progress in bytes of prepared weights; nullptr = none.
  ProgressFn progress;
};

EngineOptions engine_default_options();

class Engine;

// The recurrent state of the whole pipeline: one StageState per stage.
class State {
 public:
  State() = default;
  State(const State& o);
  State& operator=(const State& o);
  State(State&&) noexcept = default;
  State& operator=(State&&) noexcept = default;

  void reset();
  // Canonical fp32 form of all stages in slot order (see StageState::serialize).
  std::vector<float> serialize() const;
  void deserialize(std::span<const float> data);  // throws Error on size mismatch
  size_t serialized_floats() const;

 private:
  friend class Engine;
  std::vector<std::unique_ptr<StageState>> parts_;
};

// Builds a stage spec for one plan stage.
StageSpec make_stage_spec(const PlanStage& ps, int n_layer, int threads, int chunk_len);

class Engine {
 public:
  static std::unique_ptr<Engine> load(const EngineOptions& opts);
  ~Engine();

  const ModelHParams& hparams() const { return hp_; }
  const Plan& plan() const { return plan_; }
  const Checkpoint& checkpoint() const { return *ckpt_; }
  const PluginRegistry& registry() const { return *registry_; }
  int chunk_len() const { return chunk_len_; }
  double load_seconds() const { return load_seconds_; }

  State new_state() const;

  // Feeds tokens in chunks of chunk_len (sequence mode; one token = step mode)
  // and writes the logits after the last token to `logits` (n_vocab floats) if
  // non-null. With logits == nullptr the head is not computed at all.
  void forward(std::span<const int32_t> tokens, State& st, float* logits);
  // Same, logits after every token: out[T][n_vocab].
  void forward_all(std::span<const int32_t> tokens, State& st, float* out);
  // Feeds tokens one at a time in step mode (for tests and --prefill step).
  void forward_stepwise(std::span<const int32_t> tokens, State& st, float* out_all);

  // Weight bytes read per decoded token (all stages, head included).
  uint64_t weight_bytes_per_token() const;
  // Bytes streamed host->device so far ("*N+" stages).
  uint64_t streamed_bytes_total() const;
  std::vector<std::string> describe_stages() const;

 private:
  Engine() = default;
  void run_chunk(const int32_t* tok, int T, State& st, float* logits, bool all_logits);
  void open_stages(const StrategySpec& spec, int threads);

  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<PluginRegistry> registry_;
  ModelHParams hp_{};
  Plan plan_;
  int chunk_len_ = 256;
  double load_seconds_ = 0;
  std::vector<float> emb_;  // folded embedding [V][C], values of layer 0's atype
  struct StageSlot;
  std::vector<std::unique_ptr<StageSlot>> stages_;
  std::vector<float> x_;    // [chunk_len][C] hidden state buffer (no allocation per token)
  std::vector<float> v_first_;  // RWKV-7: [chunk_len][C] block 0's v, handed to later stages
};

}  // namespace corvid
