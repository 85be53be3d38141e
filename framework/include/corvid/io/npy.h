// Writing and reading NumPy .npy files (float32, C order), for --dump-logits and tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace corvid {

// Writes atomically (temporary file + rename). Throws Error on failure.
void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;  // converted to fp32 from <f4 / <f8 / <f2
};
NpyArray read_npy(const std::string& path);

}  // namespace corvid
