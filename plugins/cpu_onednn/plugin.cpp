// cpu_onednn: the CPU backend plugin (cpu fp32, cpu bf16, cpu fp32i8, cpu bf16i8).
// The prepared layout is described in layout.h, the forward pass in rwkv4_stage.cpp.
#include "corvid/sdk/plugin.h"
#include "layout.h"
#include "rwkv4_stage.h"

namespace corvid::cpu {
namespace {

void require_v4(const ModelHParams& hp) {
  if (hp.arch != Arch::V4)
    throw Error(std::string("cpu_onednn: RWKV ") + arch_name(hp.arch) + " is not supported yet (RWKV-4 only)");
}

class CpuBackend : public Backend {
 public:
  void check_device(const StageSpec& spec) const override {
    if (spec.device != "cpu") throw Error("cpu_onednn serves device 'cpu', not '" + spec.device + "'");
    if (spec.stream_first >= 0) throw Error("cpu_onednn: '+' streaming is for GPU stages (a CPU stage's weights are in RAM already)");
  }

  std::string layout_id(const StageSpec& spec, const ModelHParams& hp) const override {
    return std::string("cpu_onednn/rwkv4/") + precision_name(spec.precision) + "/out-in-rowmajor/v" + kLayoutVersion;
  }

  uint64_t estimate_weight_bytes(const StageSpec& spec, const ModelHParams& hp) const override {
    return prepared_bytes(spec, hp);
  }

  void prepare(const StageSpec& spec, const ModelHParams& hp, const WeightSource& raw, WeightSink& out,
               const ProgressFn& progress) const override {
    require_v4(hp);
    prepare_stage(spec, hp, raw, out, progress);
  }

  std::unique_ptr<Stage> create_stage(const StageSpec& spec, const ModelHParams& hp, const WeightSource& prepared) const override {
    require_v4(hp);
    check_device(spec);
    return std::make_unique<Rwkv4Stage>(spec, hp, prepared);
  }
};

Backend* create_backend() { return new CpuBackend(); }

const ServedPair kServed[] = {{"cpu", "fp32"}, {"cpu", "bf16"}, {"cpu", "fp32i8"}, {"cpu", "bf16i8"}};

const PluginEntry kEntry = {CORVID_ABI_VERSION,
                            sizeof(PluginEntry),
                            PluginKind::Backend,
                            "cpu_onednn",
                            "0.1.0",
                            "RWKV-4 on the CPU: fp32, bf16, int8 weights; AVX-512/AVX2 GEMV decode, oneDNN GEMM prefill",
                            kServed,
                            sizeof(kServed) / sizeof(kServed[0]),
                            &create_backend,
                            nullptr,
                            nullptr};

}  // namespace
}  // namespace corvid::cpu

CORVID_DEFINE_PLUGIN(corvid::cpu::kEntry)
