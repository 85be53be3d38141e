// The CUDA RWKV-4 stage: device weights, scratch buffers, the forward pass
// (decode: fused GEMV kernels replayed as a CUDA graph; sequence: cuBLAS GEMMs),
// "*N+" streaming with double buffering, and the device-resident state.
#pragma once

#include <memory>
#include <string>

#include "corvid/sdk/backend.h"

namespace corvid::cuda {

// Builds a stage from prepared weights (layout_v4.h). Checks the device first,
// then the free device memory against everything the stage will allocate, and
// throws Error("out of device memory: ...") before allocating anything.
std::unique_ptr<Stage> create_v4_stage(const std::string& plugin, const StageSpec& spec, const ModelHParams& hp,
                                       const WeightSource& prepared);

// Bytes of device memory a stage would allocate (weights resident on the device,
// stream slots, scratch buffers), for the out-of-memory check and for plans.
struct DeviceBudget {
  uint64_t weights = 0;   // resident weights (padded rows)
  uint64_t stream = 0;    // two stream slots ("*N+")
  uint64_t scratch = 0;   // activations for chunk_len tokens, logits, int8 tiles
  uint64_t total() const { return weights + stream + scratch; }
};
DeviceBudget device_budget(const StageSpec& spec, const ModelHParams& hp);

}  // namespace corvid::cuda
