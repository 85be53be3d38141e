// How weights reach a backend, and how a backend hands back its prepared layout.
//
// Loading a stage is two steps, so that "convert once, mmap forever" and
// "convert at load time" are the same code path and give bit-identical results:
//
//   1. Backend::prepare(spec, raw, sink)  — read the model's tensors from `raw`
//      (a WeightSource over the checkpoint) and write the tensors this backend
//      keeps in memory (its layout, dtype, quantisation scales, packing) to `sink`.
//   2. Backend::create_stage(spec, prepared) — build a runnable stage from those
//      prepared tensors. `prepared` is either the in-memory result of step 1 or a
//      memory-mapped converted file (corvid-convert) holding exactly the same bytes.
//
// What `raw` contains (the framework applies the model-level transforms of
// rwkv-reference §2 that do not depend on the backend):
//   * Names are the checkpoint's (`blocks.3.att.key.weight`, `ln_out.weight`, ...).
//     `time_faaaa` has been renamed to `time_first`.
//   * `emb.weight` and `blocks.0.ln0.*` are not offered: the embedding is gathered
//     by the framework on the CPU (the reference keeps it there too).
//   * 2-D matrices are the raw (out, in) nn.Linear layout in the file's dtype
//     (views into the checkpoint, maybe strided). Backends transpose, cast,
//     quantise and apply the RESCALE_LAYER division (use sdk/weights_util.h).
//   * `.time_*` vectors are squeezed (size-1 dims dropped).
//   * time_decay / time_first (v4-v6) are already in the fp32 form of §2.4
//     (v4: w = -exp(d), u = f; v5: w = exp(-exp(d)), ...), as F32 tensors.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "corvid/sdk/error.h"
#include "corvid/sdk/tensor.h"

namespace corvid {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // nullptr when the tensor does not exist. The view stays valid for the
  // lifetime of the source (for prepared weights: of the stage built on them).
  virtual const TensorView* find(std::string_view name) const = 0;
  // Where the tensors come from (a file path), for error messages.
  virtual std::string origin() const = 0;

  const TensorView& require(std::string_view name) const {
    const TensorView* t = find(name);
    if (!t) throw Error(origin() + ": missing tensor '" + std::string(name) + "'");
    return *t;
  }
};

class WeightSink {
 public:
  virtual ~WeightSink() = default;
  // Allocates an uninitialised, 64-byte aligned buffer for a contiguous tensor
  // that the backend fills before the next call to `begin` or `finish`.
  // Names are the backend's own; they only need to be unique within the stage
  // (the framework prefixes nothing). Shapes have at most kMaxDims dimensions.
  virtual void* begin(std::string_view name, DType dtype, const std::vector<int64_t>& shape) = 0;

  template <typename T>
  T* begin_as(std::string_view name, DType dtype, const std::vector<int64_t>& shape) {
    return static_cast<T*>(begin(name, dtype, shape));
  }
};

}  // namespace corvid
