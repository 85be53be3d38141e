// corvid-convert's engine (see convert.h and converted.h).
//
// Order of work, chosen for memory and for failing early:
//   1. open the input (mapped), refuse already-transformed files, detect the
//      model, resolve the plan exactly as Engine::load does;
//   2. start hashing the input file's bytes on a second thread (read(), not the
//      mapping, so it adds an 8 MiB buffer, not the file, to our RSS);
//   3. stream emb.folded, then each stage's prepare() output, tensor by tensor,
//      into the output's temporary file;
//   4. add the metadata (which needs the hash and every tensor's place) and
//      commit: fsync, rename.
#include "corvid/convert/convert.h"

#include <chrono>
#include <csignal>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <set>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "corvid/convert/converted.h"
#include "corvid/convert/xxhash64.h"
#include "corvid/io/checkpoint.h"
#include "corvid/io/safetensors_writer.h"
#include "corvid/model/model_info.h"
#include "corvid/plugins/registry.h"
#include "corvid/runtime/engine.h"
#include "corvid/sdk/error.h"
#include "corvid/util/version.h"

namespace corvid {
namespace {

using json = nlohmann::json;

std::string signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "signal " + std::to_string(sig);
  }
}

// Everything written goes through here: prefixes the stage's names, checks
// for cancellation before each tensor, counts bytes for progress and records
// the tensor directory for the index fingerprint.
class StageSink : public WeightSink {
 public:
  StageSink(SafetensorsWriter& out, const ConvertOptions& opts, uint64_t total, const std::string& out_path)
      : out_(out), opts_(opts), total_(total), out_path_(out_path) {}

  void set_prefix(std::string p) { prefix_ = std::move(p); }

  void* begin(std::string_view name, DType dtype, const std::vector<int64_t>& shape) override {
    check_stop();
    report();  // the previous tensor is complete once the next one begins
    std::string full = prefix_ + std::string(name);
    uint64_t n = dtype_size(dtype);
    for (int64_t s : shape) {
      if (s < 0) throw Error(out_path_ + ": backend wrote tensor '" + full + "' with a negative dimension");
      n *= uint64_t(s);
    }
    void* p = out_.begin(full, dtype, shape);  // writes the previous tensor out
    // The index fingerprint needs each tensor's place in the data section: the
    // writer starts every tensor at the next multiple of kSafetensorsAlignment.
    pos_ = (pos_ + kSafetensorsAlignment - 1) / kSafetensorsAlignment * kSafetensorsAlignment;
    index_.push_back({full, dtype, shape, pos_});
    pos_ += n;
    pending_ = n;
    return p;
  }

  void finish_stage() {
    report();
    check_stop();
  }

  void check_stop() const {
    if (opts_.stop_signal) {
      int sig = opts_.stop_signal->load();
      if (sig) throw Error(out_path_ + ": conversion interrupted by " + signal_name(sig) + "; no output written");
    }
  }

  uint64_t bytes() const { return done_ + pending_; }
  size_t count() const { return index_.size(); }
  const std::vector<TensorIndexEntry>& index() const { return index_; }

 private:
  void report() {
    done_ += pending_;
    pending_ = 0;
    if (opts_.progress) opts_.progress(std::min(done_, total_), total_);
  }

  SafetensorsWriter& out_;
  const ConvertOptions& opts_;
  uint64_t total_;
  std::string out_path_;
  std::string prefix_;
  std::vector<TensorIndexEntry> index_;
  uint64_t pos_ = 0;
  uint64_t done_ = 0, pending_ = 0;
};

}  // namespace

ConvertResult convert_checkpoint(const ConvertOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  auto log = [&](const std::string& s) { if (opts.log) opts.log(s); };
  if (opts.in_path.empty()) throw Error("no input checkpoint given");
  if (opts.out_path.empty()) throw Error("no output file given");

  // Refuse to overwrite the input through a different spelling of its path.
  {
    std::error_code ec;
    if (std::filesystem::exists(opts.out_path, ec) && std::filesystem::equivalent(opts.in_path, opts.out_path, ec))
      throw Error(opts.out_path + ": is the input file; choose another output name");
  }

  std::unique_ptr<Checkpoint> ck = Checkpoint::open(opts.in_path);
  const auto& meta = ck->metadata();
  if (meta.count("_strategy"))
    throw Error(ck->path() + ": a ChatRWKV-converted file (strategy \"" + meta.at("_strategy") +
                "\"): its weights are already transposed, cast and quantised for that strategy, so they cannot be converted "
                "again — convert the original checkpoint instead");
  if (is_converted(*ck))
    throw Error(ck->path() + ": already a Corvid-converted file (strategy \"" +
                (meta.count("corvid.strategy") ? meta.at("corvid.strategy") : std::string("?")) +
                "\") — convert the original checkpoint instead");

  ModelHParams hp = detect_hparams(*ck);
  // Every generation is converted; a backend that does not run this one says
  // so in prepare() (as Engine::load does), before anything is written.
  log("Model: " + ck->path() + " (" + format_name(ck->format()) + "), " + describe_hparams(hp));

  StrategySpec parsed;
  const StrategySpec* spec = opts.spec;
  if (!spec) {
    parsed = parse_strategy(opts.strategy);
    spec = &parsed;
  }
  PluginRegistry registry(opts.plugin_dirs);
  Plan plan = assign_slots(*spec, hp.n_layer, opts.rescale_override);
  hp.rescale_layer = plan.rescale_layer;
  resolve_backends(plan, *spec, registry, hp);
  log("Strategy: " + plan.strategy + " (RESCALE_LAYER " + std::to_string(plan.rescale_layer) + ")");

  struct StageJob {
    StageSpec spec;
    BackendHandle backend;
    std::string layout_id;
    uint64_t estimate = 0;
  };
  std::vector<StageJob> jobs;
  const uint64_t emb_bytes = uint64_t(hp.n_vocab) * uint64_t(hp.n_embd) * sizeof(float);
  uint64_t total = emb_bytes;
  for (const PlanStage& ps : plan.stages) {
    StageJob j;
    // threads/chunk_len do not change prepared bytes; the runtime's defaults are used.
    j.spec = make_stage_spec(ps, hp.n_layer, 0, 256);
    j.backend = registry.create_backend(registry.find_backend(ps.device_kind, precision_name(ps.precision), ps.backend));
    j.layout_id = j.backend.backend->layout_id(j.spec, hp);
    j.estimate = j.backend.backend->estimate_weight_bytes(j.spec, hp);
    total += j.estimate;
    jobs.push_back(std::move(j));
  }

  // Hash the source on a second thread while the stages are prepared.
  std::atomic<bool> hash_stop{false};
  uint64_t source_hash = 0;
  std::exception_ptr hash_error;
  std::thread hasher([&] {
    try {
      source_hash = xxh64_file(ck->path(), [&] { return !hash_stop.load(); });
    } catch (...) {
      hash_error = std::current_exception();
    }
  });
  struct JoinOnExit {
    std::thread& t;
    std::atomic<bool>& stop;
    ~JoinOnExit() {
      if (t.joinable()) { stop = true; t.join(); }
    }
  } join_guard{hasher, hash_stop};

  // Header space reserved up front (the header is written last): about 256
  // bytes per tensor, generously counted, so the data never has to be moved.
  const uint64_t reserve = SafetensorsWriter::kDefaultHeaderReserve + uint64_t(hp.n_layer + 1) * 64 * 256;
  // Declared before the writer so it runs after the writer has removed (or
  // renamed) its temporary file.
  struct TempReport {
    const ConvertOptions& o;
    ~TempReport() { if (o.temp_file_changed) o.temp_file_changed(""); }
  } temp_report{opts};
  SafetensorsWriter writer(opts.out_path, reserve);  // temporary file in the target folder
  if (opts.temp_file_changed) opts.temp_file_changed(writer.temp_path());
  StageSink sink(writer, opts, total, opts.out_path);

  {
    std::vector<float> emb = fold_embedding(*ck, hp, plan.stages.front().precision.atype);
    float* dst = sink.begin_as<float>(kFoldedEmbeddingName, DType::F32, {hp.n_vocab, hp.n_embd});
    std::memcpy(dst, emb.data(), emb.size() * sizeof(float));
  }
  sink.finish_stage();

  RawWeights raw(*ck, hp);
  json stages = json::array();
  for (size_t i = 0; i < jobs.size(); ++i) {
    StageJob& j = jobs[i];
    const PlanStage& ps = plan.stages[i];
    log("Stage " + std::to_string(i + 1) + ": " + ps.device + " " + precision_name(ps.precision) + " slots " +
        std::to_string(ps.first_slot) + "-" + std::to_string(ps.last_slot) + " by " + ps.backend + " (layout " + j.layout_id + ")");
    sink.set_prefix(converted_stage_prefix(i));
    j.backend.backend->prepare(j.spec, hp, raw, sink, ProgressFn{});
    sink.finish_stage();
    stages.push_back({{"backend", ps.backend},
                      {"layout_id", j.layout_id},
                      {"device", ps.device},
                      {"dtype", precision_name(ps.precision)},
                      {"slots", {ps.first_slot, ps.last_slot}},
                      {"stream_first", ps.stream_first}});
  }
  hasher.join();
  if (hash_error) std::rethrow_exception(hash_error);
  sink.check_stop();

  const std::string src_hex = Xxh64::hex(source_hash);
  std::map<std::string, std::string> md;
  md[kConvertedFormatKey] = kConvertedFormatVersion;
  md["corvid.hparams"] = hparams_to_json(hp);
  md["corvid.strategy"] = plan.strategy;
  md["corvid.rescale_layer"] = std::to_string(plan.rescale_layer);
  md["corvid.plan"] = plan_to_json(plan);
  md["corvid.stages"] = stages.dump();
  md["corvid.source"] = json{{"name", std::filesystem::path(ck->path()).filename().string()},
                             {"bytes", ck->file_size()},
                             {"xxh64", src_hex}}
                            .dump();
  md["corvid.created_by"] = std::string("corvid-convert ") + version_string();
  md["corvid.tensor_index"] = Xxh64::hex(tensor_index_hash(sink.index()));
  for (const auto& [k, v] : md) writer.set_metadata(k, v);
  writer.commit();  // header, fsync, rename over out_path, fsync the folder

  ConvertResult r;
  r.plan = plan;
  r.hp = hp;
  r.n_tensors = sink.count();
  r.tensor_bytes = sink.bytes();
  std::error_code ec;
  r.file_bytes = std::filesystem::file_size(opts.out_path, ec);
  r.source_xxh64 = src_hex;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace corvid
