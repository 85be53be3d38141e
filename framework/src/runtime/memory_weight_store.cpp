#include "corvid/runtime/memory_weight_store.h"

#include <cstdlib>

#include "corvid/sdk/error.h"

namespace corvid {

void MemoryWeightStore::Free::operator()(void* p) const { std::free(p); }

void* MemoryWeightStore::begin(std::string_view name, DType dtype, const std::vector<int64_t>& shape) {
  std::string key(name);
  if (views_.count(key)) throw Error(origin_ + ": prepared tensor '" + key + "' written twice");
  if (shape.size() > size_t(kMaxDims)) throw Error(origin_ + ": prepared tensor '" + key + "' has too many dimensions");
  TensorView v;
  v.dtype = dtype;
  v.ndim = int(shape.size());
  int64_t n = 1;
  for (int i = v.ndim - 1; i >= 0; --i) {
    if (shape[i] < 0) throw Error(origin_ + ": prepared tensor '" + key + "' has a negative dimension");
    v.shape[i] = shape[i];
    v.strides[i] = n;
    n *= shape[i];
  }
  size_t bytes = size_t(n) * dtype_size(dtype);
  size_t alloc = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, alloc ? alloc : 64);
  if (!p) throw Error(origin_ + ": out of memory preparing '" + key + "' (" + std::to_string(bytes) + " bytes)");
  buffers_.emplace_back(p);
  v.data = p;
  views_[key] = v;
  order_.push_back(key);
  total_ += bytes;
  return p;
}

const TensorView* MemoryWeightStore::find(std::string_view name) const {
  auto it = views_.find(std::string(name));
  return it == views_.end() ? nullptr : &it->second;
}

}  // namespace corvid
