// cpu_onednn: the CPU backend plugin (cpu fp32, cpu bf16, cpu fp32i8, cpu bf16i8).
// The prepared layout is described in layout.h; the forward passes are in rwkv4_stage.cpp,
// rwkv5_stage.cpp (v5.x and v6) and rwkv7_stage.cpp (arch_dispatch.h picks one).
#include "arch_dispatch.h"
#include "corvid/sdk/plugin.h"
#include "layout.h"
#include "rwkv4_stage.h"

namespace corvid::cpu {
namespace {

// The layout and forward pass of each generation (arch_dispatch.h).
enum class Gen { V4, V5, V7 };  // V5 covers v5.0, v5.1, v5.2 and v6.0
Gen generation(const ModelHParams& hp) {
  if (hp.arch == Arch::V4) return Gen::V4;
  if (hp.arch >= Arch::V7_0) return Gen::V7;
  return Gen::V5;
}
const char* gen_tag(const ModelHParams& hp) {
  switch (generation(hp)) {
    case Gen::V4: return "rwkv4";
    case Gen::V5: return hp.arch >= Arch::V6_0 ? "rwkv6" : "rwkv5";
    case Gen::V7: return "rwkv7";
  }
  return "?";
}

class CpuBackend : public Backend {
 public:
  void check_device(const StageSpec& spec) const override {
    if (spec.device != "cpu") throw Error("cpu_onednn serves device 'cpu', not '" + spec.device + "'");
    if (spec.stream_first >= 0) throw Error("cpu_onednn: '+' streaming is for GPU stages (a CPU stage's weights are in RAM already)");
  }

  std::string layout_id(const StageSpec& spec, const ModelHParams& hp) const override {
    return std::string("cpu_onednn/") + gen_tag(hp) + "/" + precision_name(spec.precision) + "/out-in-rowmajor/v" +
           kLayoutVersion;
  }

  uint64_t estimate_weight_bytes(const StageSpec& spec, const ModelHParams& hp) const override {
    switch (generation(hp)) {
      case Gen::V4: return prepared_bytes(spec, hp);
      case Gen::V5: return prepared_bytes_v5(spec, hp);
      case Gen::V7: return prepared_bytes_v7(spec, hp);
    }
    return 0;
  }

  void prepare(const StageSpec& spec, const ModelHParams& hp, const WeightSource& raw, WeightSink& out,
               const ProgressFn& progress) const override {
    switch (generation(hp)) {
      case Gen::V4: return prepare_stage(spec, hp, raw, out, progress);
      case Gen::V5: return prepare_stage_v5(spec, hp, raw, out, progress);
      case Gen::V7: return prepare_stage_v7(spec, hp, raw, out, progress);
    }
  }

  std::unique_ptr<Stage> create_stage(const StageSpec& spec, const ModelHParams& hp, const WeightSource& prepared) const override {
    check_device(spec);
    switch (generation(hp)) {
      case Gen::V4: return std::make_unique<Rwkv4Stage>(spec, hp, prepared);
      case Gen::V5: return make_rwkv5_stage(spec, hp, prepared);
      case Gen::V7: return make_rwkv7_stage(spec, hp, prepared);
    }
    return nullptr;
  }
};

Backend* create_backend() { return new CpuBackend(); }

const ServedPair kServed[] = {{"cpu", "fp32"}, {"cpu", "bf16"}, {"cpu", "fp32i8"}, {"cpu", "bf16i8"}};

const PluginEntry kEntry = {CORVID_ABI_VERSION,
                            sizeof(PluginEntry),
                            PluginKind::Backend,
                            "cpu_onednn",
                            "0.1.0",
                            "RWKV-4, 5.x, 6 and 7 on the CPU: fp32, bf16, int8 weights; AVX-512/AVX2 GEMV decode, oneDNN GEMM prefill",
                            kServed,
                            sizeof(kServed) / sizeof(kServed[0]),
                            &create_backend,
                            nullptr,
                            nullptr};

}  // namespace
}  // namespace corvid::cpu

CORVID_DEFINE_PLUGIN(corvid::cpu::kEntry)
