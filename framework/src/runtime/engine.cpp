// The pipeline runner (rwkv-reference §4.0):
//
//   x <- E'[tokens]                 folded embedding, gathered on the CPU
//   for each stage: x <- stage(x)   blocks of the stage's slot range, state updated in place
//   logits <- LN_out(x) W_head      by the stage holding slot L, only when asked for
//
// Prompts are fed in chunks of chunk_len tokens (sequence mode); the state is
// carried between chunks, so any chunking gives the same result as stepping.
#include "corvid/runtime/engine.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "corvid/convert/converted.h"
#include "corvid/model/model_info.h"
#include "corvid/runtime/memory_weight_store.h"
#include "corvid/sdk/error.h"

namespace corvid {

struct Engine::StageSlot {
  PlanStage plan;
  StageSpec spec;
  BackendHandle backend;
  std::unique_ptr<MemoryWeightStore> prepared;  // null when weights come from a converted file
  std::unique_ptr<WeightSource> mapped;         // converted file: views into the checkpoint mapping
  std::unique_ptr<Stage> stage;                 // destroyed before `prepared` and `backend`
  ~StageSlot() { stage.reset(); }
};

EngineOptions engine_default_options() { return EngineOptions{}; }

StageSpec make_stage_spec(const PlanStage& ps, int n_layer, int threads, int chunk_len) {
  StageSpec s;
  s.device = ps.device;
  s.device_index = ps.device_index;
  s.precision = ps.precision;
  s.first_block = std::min(ps.first_slot, n_layer);
  s.end_block = std::min(ps.last_slot + 1, n_layer);
  s.has_head = ps.last_slot >= n_layer;
  // Streaming applies to blocks only: the head stays resident ([quirk] of the
  // reference, kept: it is small next to the blocks and needed every token).
  s.stream_first = (ps.stream_first >= 0 && ps.stream_first < n_layer) ? ps.stream_first : -1;
  s.threads = threads;
  s.chunk_len = chunk_len;
  return s;
}

// ---------------------------------------------------------------------------
// State

State::State(const State& o) {
  parts_.reserve(o.parts_.size());
  for (const auto& p : o.parts_) parts_.push_back(p->clone());
}

State& State::operator=(const State& o) {
  if (this == &o) return *this;
  if (parts_.size() == o.parts_.size()) {
    for (size_t i = 0; i < parts_.size(); ++i) parts_[i]->copy_from(*o.parts_[i]);  // no reallocation
  } else {
    parts_.clear();
    for (const auto& p : o.parts_) parts_.push_back(p->clone());
  }
  return *this;
}

void State::reset() {
  for (auto& p : parts_) p->reset();
}

size_t State::serialized_floats() const {
  size_t n = 0;
  for (const auto& p : parts_) n += p->serialized_floats();
  return n;
}

std::vector<float> State::serialize() const {
  std::vector<float> out(serialized_floats());
  size_t off = 0;
  for (const auto& p : parts_) {
    p->serialize(out.data() + off);
    off += p->serialized_floats();
  }
  return out;
}

void State::deserialize(std::span<const float> data) {
  if (data.size() != serialized_floats())
    throw Error("state has " + std::to_string(data.size()) + " values, expected " + std::to_string(serialized_floats()));
  size_t off = 0;
  for (auto& p : parts_) {
    p->deserialize(data.data() + off);
    off += p->serialized_floats();
  }
}

// ---------------------------------------------------------------------------
// Loading

Engine::~Engine() {
  stages_.clear();  // stages before their weights and libraries
}

// Creates each stage's backend and checks its device, before any heavy work.
void Engine::open_stages(const StrategySpec& spec, int threads) {
  for (size_t i = 0; i < plan_.stages.size(); ++i) {
    const PlanStage& ps = plan_.stages[i];
    auto slot = std::make_unique<StageSlot>();
    slot->plan = ps;
    slot->spec = make_stage_spec(ps, hp_.n_layer, threads, chunk_len_);
    try {
      slot->backend = registry_->create_backend(registry_->find_backend(ps.device_kind, precision_name(ps.precision), ps.backend));
      slot->backend.backend->check_device(slot->spec);
    } catch (const std::exception& ex) {
      // Point at the stage in the strategy string (column) or config (file:line).
      throw Error(stage_message(spec, i, ex.what()));
    }
    stages_.push_back(std::move(slot));
  }
}

std::unique_ptr<Engine> Engine::load(const EngineOptions& opts) {
  auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<Engine> e(new Engine());
  auto log = [&](const std::string& s) { if (opts.log) opts.log(s); };

  e->registry_ = std::make_unique<PluginRegistry>(opts.plugin_dirs);
  e->ckpt_ = Checkpoint::open(opts.model_path);
  const Checkpoint& ck = *e->ckpt_;
  const auto& meta = ck.metadata();
  if (meta.count("_strategy"))
    throw Error(ck.path() + ": a ChatRWKV-converted file (strategy \"" + meta.at("_strategy") +
                "\"); run the original .pth, or convert it with corvid-convert");
  if (is_converted(ck)) {
    // A Corvid-converted file (docs/convert.md): each stage's prepared tensors
    // are used in place from the mapping; only checks and create_stage() run.
    const ConvertedInfo info = read_converted_info(ck);
    e->hp_ = info.hp;
    log("Model: " + ck.path() + " (Corvid-converted for \"" + info.strategy + "\"), " + describe_hparams(e->hp_));
    StrategySpec parsed;
    const StrategySpec* spec = opts.spec;
    if (!spec) {  // no strategy asked for: the one the file was converted for
      parsed = parse_strategy(opts.strategy.empty() ? info.strategy : opts.strategy);
      spec = &parsed;
    }
    e->plan_ = assign_slots(*spec, e->hp_.n_layer, opts.rescale_override);
    e->hp_.rescale_layer = e->plan_.rescale_layer;
    resolve_backends(e->plan_, *spec, *e->registry_, e->hp_);
    check_converted_plan(info, e->plan_, ck.path());
    e->chunk_len_ = std::max(1, opts.chunk_len);
    e->emb_ = load_converted_embedding(ck, info);
    e->open_stages(*spec, std::max(0, opts.threads));
    for (size_t i = 0; i < e->stages_.size(); ++i) {
      StageSlot* slot = e->stages_[i].get();
      const PlanStage& ps = slot->plan;
      check_converted_layout(info, i, slot->backend.backend->layout_id(slot->spec, e->hp_), ck.path());
      slot->mapped = std::make_unique<ConvertedStageWeights>(ck, i);
      slot->stage = slot->backend.backend->create_stage(slot->spec, e->hp_, *slot->mapped);
      log("Stage " + ps.device + " " + precision_name(ps.precision) + " slots " + std::to_string(ps.first_slot) + "-" +
          std::to_string(ps.last_slot) + ": " + slot->stage->describe() + " (mapped)");
    }
    e->x_.assign(size_t(e->chunk_len_) * size_t(e->hp_.n_embd), 0.f);
  if (e->hp_.arch >= Arch::V7_0) e->v_first_.assign(e->x_.size(), 0.f);
    e->load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return e;
  }

  e->hp_ = detect_hparams(ck);
  log("Model: " + ck.path() + " (" + format_name(ck.format()) + "), " + describe_hparams(e->hp_));

  StrategySpec parsed;
  const StrategySpec* spec = opts.spec;
  if (!spec) {
    parsed = parse_strategy(opts.strategy.empty() ? "cpu fp32" : opts.strategy);
    spec = &parsed;
  }
  e->plan_ = assign_slots(*spec, e->hp_.n_layer, opts.rescale_override);
  e->hp_.rescale_layer = e->plan_.rescale_layer;
  resolve_backends(e->plan_, *spec, *e->registry_, e->hp_);

  e->chunk_len_ = std::max(1, opts.chunk_len);
  const int threads = opts.threads > 0 ? opts.threads : 0;

  e->open_stages(*spec, threads);

  e->emb_ = fold_embedding(ck, e->hp_, e->plan_.stages.front().precision.atype);
  RawWeights raw(ck, e->hp_);

  uint64_t total_est = 0, done = 0;
  for (auto& s : e->stages_) total_est += s->backend.backend->estimate_weight_bytes(s->spec, e->hp_);
  for (auto& s : e->stages_) {
    s->prepared = std::make_unique<MemoryWeightStore>(ck.path());
    uint64_t base = done;
    ProgressFn prog;
    if (opts.progress) prog = [&, base](uint64_t d, uint64_t) { opts.progress(base + d, total_est); };
    s->backend.backend->prepare(s->spec, e->hp_, raw, *s->prepared, prog);
    s->stage = s->backend.backend->create_stage(s->spec, e->hp_, *s->prepared);
    done += s->backend.backend->estimate_weight_bytes(s->spec, e->hp_);
    if (opts.progress) opts.progress(done, total_est);
    log("Stage " + s->plan.device + " " + precision_name(s->plan.precision) + " slots " + std::to_string(s->plan.first_slot) +
        "-" + std::to_string(s->plan.last_slot) + ": " + s->stage->describe());
  }
  e->x_.assign(size_t(e->chunk_len_) * size_t(e->hp_.n_embd), 0.f);
  if (e->hp_.arch >= Arch::V7_0) e->v_first_.assign(e->x_.size(), 0.f);
  e->load_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return e;
}

// ---------------------------------------------------------------------------
// Running

State Engine::new_state() const {
  State st;
  for (const auto& s : stages_) st.parts_.push_back(s->stage->new_state());
  return st;
}

void Engine::run_chunk(const int32_t* tok, int T, State& st, float* logits, bool all_logits) {
  const int C = hp_.n_embd;
  for (int t = 0; t < T; ++t) {
    const int32_t id = tok[t];
    if (id < 0 || id >= hp_.n_vocab)
      throw Error("token id " + std::to_string(id) + " is out of range (vocabulary has " + std::to_string(hp_.n_vocab) + " ids)");
    std::memcpy(x_.data() + size_t(t) * C, emb_.data() + size_t(id) * C, sizeof(float) * C);
  }
  for (size_t i = 0; i < stages_.size(); ++i) {
    ForwardOptions fo;
    fo.v_first = v_first_.empty() ? nullptr : v_first_.data();
    if (i + 1 == stages_.size()) {
      fo.logits = logits;
      fo.all_logits = all_logits;
    }
    try {
      stages_[i]->stage->forward(x_.data(), T, *st.parts_[i], fo);
    } catch (const std::exception& e) {
      // Re-thrown as libcorvid's own Error: the caller never holds an exception
      // object whose code lives in a plugin.
      throw Error(e.what());
    }
  }
}

void Engine::forward(std::span<const int32_t> tokens, State& st, float* logits) {
  if (st.parts_.size() != stages_.size()) throw Error("state does not belong to this engine");
  const size_t n = tokens.size();
  for (size_t off = 0; off < n; off += size_t(chunk_len_)) {
    const int T = int(std::min(n - off, size_t(chunk_len_)));
    const bool last = off + size_t(T) == n;
    run_chunk(tokens.data() + off, T, st, last ? logits : nullptr, false);
  }
}

void Engine::forward_all(std::span<const int32_t> tokens, State& st, float* out) {
  if (st.parts_.size() != stages_.size()) throw Error("state does not belong to this engine");
  const size_t n = tokens.size();
  for (size_t off = 0; off < n; off += size_t(chunk_len_)) {
    const int T = int(std::min(n - off, size_t(chunk_len_)));
    run_chunk(tokens.data() + off, T, st, out + off * size_t(hp_.n_vocab), true);
  }
}

void Engine::forward_stepwise(std::span<const int32_t> tokens, State& st, float* out_all) {
  if (st.parts_.size() != stages_.size()) throw Error("state does not belong to this engine");
  for (size_t i = 0; i < tokens.size(); ++i)
    run_chunk(tokens.data() + i, 1, st, out_all ? out_all + i * size_t(hp_.n_vocab) : nullptr, false);
}

uint64_t Engine::weight_bytes_per_token() const {
  uint64_t n = 0;
  for (const auto& s : stages_) n += s->stage->resident_weight_bytes() + s->stage->streamed_weight_bytes();
  return n;
}

uint64_t Engine::streamed_bytes_total() const {
  uint64_t n = 0;
  for (const auto& s : stages_) n += s->stage->streamed_bytes_total();
  return n;
}

std::vector<std::string> Engine::describe_stages() const {
  std::vector<std::string> out;
  for (const auto& s : stages_) out.push_back(s->stage->describe());
  return out;
}

}  // namespace corvid
