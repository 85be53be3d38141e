// corvid-inspect's report (see inspect.h).
#include "corvid/convert/inspect.h"

#include <map>
#include <sstream>

#include "corvid/convert/converted.h"
#include "corvid/io/checkpoint.h"
#include "corvid/model/model_info.h"
#include "corvid/sdk/error.h"
#include "corvid/strategy/plan.h"

namespace corvid {

std::string inspect_checkpoint(const std::string& path) {
  std::unique_ptr<Checkpoint> ck = Checkpoint::open(path);
  std::ostringstream os;
  const bool converted = is_converted(*ck);
  const auto& meta = ck->metadata();

  os << "File:         " << ck->path() << " (" << format_bytes(ck->file_size()) << ", " << ck->file_size() << " bytes)\n";
  os << "Format:       " << format_name(ck->format());
  if (converted) os << ", Corvid-converted (format " << meta.at(kConvertedFormatKey) << ")";
  else if (meta.count("_strategy")) os << ", ChatRWKV-converted (weights already transformed)";
  else os << ", raw weights";
  os << "\n";

  ConvertedInfo info;
  if (converted) {
    info = read_converted_info(*ck);  // validates; throws on damage
    os << "Model:        " << describe_hparams(info.hp) << "\n";
  } else if (meta.count("_strategy")) {
    os << "Model:        (not detected: ChatRWKV-converted files store transposed matrices)\n";
  } else {
    try {
      os << "Model:        " << describe_hparams(detect_hparams(*ck)) << "\n";
    } catch (const std::exception& e) {
      os << "Model:        not recognised as RWKV (" << e.what() << ")\n";
    }
  }

  // dtype census.
  std::map<std::string, std::pair<uint64_t, uint64_t>> by_dtype;  // name -> (tensors, bytes)
  uint64_t total = 0;
  for (const auto& n : ck->names()) {
    const TensorView& t = *ck->find(n);
    auto& e = by_dtype[dtype_name(t.dtype)];
    e.first += 1;
    e.second += t.nbytes();
    total += t.nbytes();
  }
  os << "Tensors:      " << ck->names().size() << ", " << format_bytes(total) << " (" << total << " bytes)\n";
  os << "Dtypes:      ";
  for (const auto& [name, e] : by_dtype) os << " " << name << " " << e.first << " (" << format_bytes(e.second) << ")";
  os << "\n";

  if (meta.count("_strategy")) {
    os << "Stored strategy: \"" << meta.at("_strategy") << "\"";
    if (meta.count("_rescale_layer")) os << ", RESCALE_LAYER " << meta.at("_rescale_layer");
    if (meta.count("_version")) os << ", version " << meta.at("_version");
    os << "\n";
  }

  if (converted) {
    // The plan as the runtime prints it, with the bytes actually stored per stage.
    Plan plan;
    plan.n_layer = info.hp.n_layer;
    plan.strategy = info.strategy;
    plan.rescale_layer = info.hp.rescale_layer;
    for (size_t i = 0; i < info.stages.size(); ++i) {
      const ConvertedStage& s = info.stages[i];
      PlanStage ps;
      ps.backend = s.backend;
      ps.device = s.device;
      ps.device_kind = s.device_kind;
      ps.precision = s.precision;
      ps.first_slot = s.first_slot;
      ps.last_slot = s.last_slot;
      ps.stream_first = s.stream_first;
      const std::string prefix = converted_stage_prefix(i);
      for (const auto& n : ck->names())
        if (n.compare(0, prefix.size(), prefix) == 0) ps.weight_bytes += ck->find(n)->nbytes();
      plan.stages.push_back(ps);
    }
    os << "Stored strategy: \"" << info.strategy << "\", RESCALE_LAYER " << info.hp.rescale_layer << "\n";
    os << plan_to_text(plan);
    for (size_t i = 0; i < info.stages.size(); ++i)
      os << "  stage " << (i + 1) << " layout: " << info.stages[i].layout_id << "\n";
    const TensorView& emb = *ck->find(kFoldedEmbeddingName);
    os << "Embedding:    emb.folded " << dtype_name(emb.dtype) << " " << shape_string(emb) << " (ln0 folded in)\n";
    os << "Source:       " << info.source_name << ", " << info.source_bytes << " bytes, xxh64 " << info.source_xxh64 << "\n";
    if (!info.created_by.empty()) os << "Created by:   " << info.created_by << "\n";
  } else if (!meta.empty() && !meta.count("_strategy")) {
    os << "Metadata:    ";
    for (const auto& [k, v] : meta) os << " " << k << "=" << (v.size() > 60 ? v.substr(0, 57) + "..." : v);
    os << "\n";
  }
  return os.str();
}

}  // namespace corvid
