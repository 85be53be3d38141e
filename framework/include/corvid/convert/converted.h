// Corvid-converted checkpoints: what corvid-convert writes and how the runtime
// uses them (docs/convert.md).
//
// A converted file is a safetensors file holding, for one plan, exactly the
// tensors each stage's backend keeps in memory (Backend::prepare's output),
// so loading it is: map the file, parse the header, check it fits the
// requested plan, and hand each backend views into the mapping
// (Backend::create_stage). Bit-identical to converting at load time by
// construction: both paths run the same prepare() and create_stage().
//
// Tensors:
//   emb.folded          F32 [V][C]: the embedding with blocks.0.ln0 folded in,
//                       values already rounded to layer 0's activation type
//                       (exactly what fold_embedding() returns)
//   stage<i>/<name>     tensor <name> that stage i's backend wrote to its sink,
//                       bytes unchanged (i = 0, 1, ... in pipeline order)
// Metadata (safetensors "__metadata__", all values strings):
//   corvid.format         "1" (kConvertedFormatVersion)
//   corvid.hparams        {"arch":"v4","n_layer":L,"n_embd":C,"n_att":A,"n_ffn":F,
//                          "n_vocab":V,"n_head":H,"head_size":N}
//   corvid.strategy       the normalized strategy (Plan::strategy)
//   corvid.rescale_layer  R as a decimal integer
//   corvid.plan           plan_to_json(plan), for people and tools
//   corvid.stages         [{"backend":NAME,"layout_id":ID,"device":"cpu","dtype":"fp32i8",
//                           "slots":[first,last],"stream_first":S}] in pipeline order
//   corvid.source         {"name":FILE,"bytes":N,"xxh64":HEX}: the source checkpoint
//                          (XXH64, seed 0, of the whole file's bytes)
//   corvid.tensor_index   XXH64 (hex) of the tensor directory (tensor_index_hash)
//   corvid.created_by     "corvid-convert VERSION"
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "corvid/io/checkpoint.h"
#include "corvid/sdk/model.h"
#include "corvid/sdk/weights.h"
#include "corvid/strategy/plan.h"

namespace corvid {

inline constexpr const char* kConvertedFormatKey = "corvid.format";
inline constexpr const char* kConvertedFormatVersion = "1";
inline constexpr const char* kFoldedEmbeddingName = "emb.folded";

// "stage3/" — the prefix of stage i's tensors.
std::string converted_stage_prefix(size_t stage_index);

// True when the checkpoint carries corvid.format metadata (whatever its value).
bool is_converted(const Checkpoint& ck);

struct ConvertedStage {
  std::string backend;
  std::string layout_id;
  std::string device;        // "cpu", "cuda:0"
  std::string device_kind;   // "cpu", "cuda"
  Precision precision;
  int first_slot = 0;
  int last_slot = -1;
  int stream_first = -1;
};

struct ConvertedInfo {
  std::string format_version;
  ModelHParams hp;           // rescale_layer = the stored R
  std::string strategy;      // normalized
  std::string plan_json;
  std::vector<ConvertedStage> stages;
  std::string source_name;
  uint64_t source_bytes = 0;
  std::string source_xxh64;  // 16 hex digits
  std::string created_by;
};

// One entry of the tensor directory, for tensor_index_hash.
struct TensorIndexEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // bytes from the start of the first tensor's data
};

// XXH64 over the entries sorted by name (name, dtype, shape, offset each).
// Catches an edited header (renamed tensor, changed shape, dtype or offset)
// without touching tensor data, so the check costs nothing at load.
uint64_t tensor_index_hash(std::vector<TensorIndexEntry> entries);

// The entries of an opened checkpoint (offsets from its views' data pointers).
std::vector<TensorIndexEntry> tensor_index_of(const Checkpoint& ck);

// Parses and validates a converted file's metadata and tensor directory:
// format version, hparams, stages, tensor names (only emb.folded and
// stage<i>/... for existing stages), emb.folded's dtype/shape, the tensor index
// hash. Throws Error "<path>: <what>, expected <what>" (a file that was
// damaged or edited after conversion is reported as such).
ConvertedInfo read_converted_info(const Checkpoint& ck);

// The model's sizes for any checkpoint Corvid runs: the stored hparams of a
// converted file (with its RESCALE_LAYER), else detect_hparams() (rescale 0).
// For apps that need L before loading (plans, config validation).
ModelHParams checkpoint_hparams(const Checkpoint& ck);

// Checks that a run's resolved plan can use the file: same stages (slots,
// device kind, precision, backend) and the same RESCALE_LAYER. Device index
// and streaming may differ: those are placement, and whether they change the
// prepared bytes is the backend's call through its layout_id (checked per
// stage with check_converted_layout). Errors name both strategies:
//   FILE was converted for strategy "A"; requested "B" — re-convert or run with --strategy "A"
void check_converted_plan(const ConvertedInfo& info, const Plan& requested, const std::string& path);

// Throws when stage i's backend, for the requested spec, would prepare a
// different layout than the one stored.
void check_converted_layout(const ConvertedInfo& info, size_t stage_index, const std::string& layout_id,
                            const std::string& path);

// A stage's prepared tensors: views into the checkpoint's mapping (no copy).
// find("att.key") looks up "stage<i>/att.key". The checkpoint must outlive it.
// With prefault, the stage's pages are mapped now (MADV_POPULATE_READ; on
// kernels before 5.14 an asynchronous MADV_WILLNEED readahead instead): from a
// warm page cache this costs ~0.1 s per 6 GB, where faulting them in during
// the first forward pass, two threads at a time, costs about ten times more.
class ConvertedStageWeights : public WeightSource {
 public:
  ConvertedStageWeights(const Checkpoint& ck, size_t stage_index, bool prefault = true);
  const TensorView* find(std::string_view name) const override;
  std::string origin() const override;

 private:
  const Checkpoint& ck_;
  std::string prefix_;
};

// emb.folded as the runtime's fp32 [V][C] table. The mapped pages are released
// from this process's resident set once copied (they stay in the page cache),
// so the table is not counted twice.
std::vector<float> load_converted_embedding(const Checkpoint& ck, const ConvertedInfo& info);

// ModelHParams <-> the corvid.hparams JSON object.
std::string hparams_to_json(const ModelHParams& hp);
ModelHParams hparams_from_json(const std::string& json, const std::string& where);

}  // namespace corvid
