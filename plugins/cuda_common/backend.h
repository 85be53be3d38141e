// The Backend implementation shared by the cuda_fp16 and cuda_int8 plugins:
// the same layout and stage code, each plugin serving its own precisions.
#pragma once

#include <memory>
#include <string>

#include "corvid/sdk/backend.h"

namespace corvid::cuda {

// quantized = false: fp32/fp16/bf16 weights; true: the *i8 precisions.
std::unique_ptr<Backend> make_backend(const std::string& plugin_name, bool quantized);

}  // namespace corvid::cuda
