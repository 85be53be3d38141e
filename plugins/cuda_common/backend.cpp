#include "backend.h"

#include "cuda_util.h"
#include "layout_v4.h"
#include "stage_v4.h"

namespace corvid::cuda {

namespace {

class CudaBackend final : public Backend {
 public:
  CudaBackend(std::string name, bool quantized) : name_(std::move(name)), quantized_(quantized) {}

  void check_device(const StageSpec& spec) const override {
    check_precision(spec);
    check_cuda_device(spec.device_index);
  }

  std::string layout_id(const StageSpec& spec, const ModelHParams& hp) const override {
    return cuda::layout_id(name_, spec, hp);
  }

  uint64_t estimate_weight_bytes(const StageSpec& spec, const ModelHParams& hp) const override {
    return estimate_stage_bytes(spec, hp);
  }

  void prepare(const StageSpec& spec, const ModelHParams& hp, const WeightSource& raw, WeightSink& out,
               const ProgressFn& progress) const override {
    check_precision(spec);
    check_supported(name_, spec, hp);
    prepare_v4(spec, hp, raw, out, progress);
  }

  std::unique_ptr<Stage> create_stage(const StageSpec& spec, const ModelHParams& hp,
                                      const WeightSource& prepared) const override {
    check_precision(spec);
    return create_v4_stage(name_, spec, hp, prepared);
  }

 private:
  void check_precision(const StageSpec& spec) const {
    const Precision p = spec.precision;
    const bool base_ok = p.atype == DType::F32 || p.atype == DType::F16 || p.atype == DType::BF16;
    const bool ok = base_ok && (quantized_ ? p.wtype == DType::U8 : p.wtype == p.atype);
    if (!ok) throw Error(name_ + ": precision " + precision_name(p) + " is not served by this plugin");
  }

  std::string name_;
  bool quantized_;
};

}  // namespace

std::unique_ptr<Backend> make_backend(const std::string& plugin_name, bool quantized) {
  return std::make_unique<CudaBackend>(plugin_name, quantized);
}

}  // namespace corvid::cuda
