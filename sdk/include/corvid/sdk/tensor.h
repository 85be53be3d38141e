// A non-owning view of a tensor in host memory (a checkpoint mapping, a buffer).
#pragma once

#include <cstdint>
#include <string>

#include "corvid/sdk/dtype.h"

namespace corvid {

inline constexpr int kMaxDims = 4;

struct TensorView {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int ndim = 0;
  int64_t shape[kMaxDims] = {0, 0, 0, 0};
  int64_t strides[kMaxDims] = {0, 0, 0, 0};  // in elements, like torch

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
  bool is_contiguous() const {
    int64_t expect = 1;
    for (int i = ndim - 1; i >= 0; --i) {
      if (shape[i] != 1 && strides[i] != expect) return false;
      expect *= shape[i];
    }
    return true;
  }
  // Size along dim i, with Python-style negative indices; 1 past the rank.
  int64_t dim(int i) const {
    if (i < 0) i += ndim;
    return (i >= 0 && i < ndim) ? shape[i] : 1;
  }
  template <typename T>
  const T* as() const { return static_cast<const T*>(data); }

  static TensorView contiguous(const void* data, DType dt, std::initializer_list<int64_t> shape) {
    TensorView v;
    v.data = data;
    v.dtype = dt;
    v.ndim = int(shape.size());
    int i = 0;
    for (int64_t s : shape) v.shape[i++] = s;
    int64_t st = 1;
    for (int d = v.ndim - 1; d >= 0; --d) { v.strides[d] = st; st *= v.shape[d]; }
    return v;
  }
};

inline std::string shape_string(const TensorView& t) {
  std::string s = "(";
  for (int i = 0; i < t.ndim; ++i) {
    if (i) s += ", ";
    s += std::to_string(t.shape[i]);
  }
  return s + ")";
}

}  // namespace corvid
