// PLACEHOLDER (being written this session): RWKV-5 generation of cpu_onednn.
#include "arch_dispatch.h"

namespace corvid::cpu {

namespace {
[[noreturn]] void unsupported(const ModelHParams& hp) {
  throw Error(std::string("cpu_onednn: RWKV ") + arch_name(hp.arch) + " is not supported yet");
}
}  // namespace

uint64_t prepared_bytes_v5(const StageSpec&, const ModelHParams& hp) { unsupported(hp); }
void prepare_stage_v5(const StageSpec&, const ModelHParams& hp, const WeightSource&, WeightSink&, const ProgressFn&) {
  unsupported(hp);
}
std::unique_ptr<Stage> make_rwkv5_stage(const StageSpec&, const ModelHParams& hp, const WeightSource&) { unsupported(hp); }

}  // namespace corvid::cpu
