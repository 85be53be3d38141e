// Device helpers shared by the kernel files: conversions between the
// activation types and fp32, per-op rounding, and a deterministic block sum.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels.h"

namespace corvid::cuda::k {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float tof(float v) { return v; }
__device__ __forceinline__ float tof(__half v) { return __half2float(v); }
__device__ __forceinline__ float tof(bf16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T fromf(float v);
template <>
__device__ __forceinline__ float fromf<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half fromf<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ bf16 fromf<bf16>(float v) { return __float2bfloat16_rn(v); }

// The value an fp32 result has once stored in T (torch rounds after every op).
template <typename T>
__device__ __forceinline__ float rnd(float v) { return tof(fromf<T>(v)); }

// Accurate sigmoid (expf, not __expf: the build does not use fast math).
__device__ __forceinline__ float sigmoid_f(float x) { return 1.f / (1.f + expf(-x)); }

// Sum over the block in a fixed order (deterministic). blockDim.x must be a
// multiple of 32; `sh` is __shared__ float[32]. Every thread gets the result.
__device__ __forceinline__ float block_sum(float v, float* sh) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int w = threadIdx.x >> 5, l = threadIdx.x & 31, nw = blockDim.x >> 5;
  __syncthreads();  // sh may still be read by a previous call
  if (l == 0) sh[w] = v;
  __syncthreads();
  v = (l < nw) ? sh[l] : 0.f;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Runs the statement(s) with `T` bound to the runtime activation type.
#define CORVID_DISPATCH_AT(at, ...)                            \
  switch (at) {                                                \
    case ::corvid::cuda::k::AT::F32: {                         \
      using T = float;                                         \
      __VA_ARGS__;                                             \
    } break;                                                   \
    case ::corvid::cuda::k::AT::F16: {                         \
      using T = __half;                                        \
      __VA_ARGS__;                                             \
    } break;                                                   \
    case ::corvid::cuda::k::AT::BF16: {                        \
      using T = ::corvid::cuda::k::bf16;                       \
      __VA_ARGS__;                                             \
    } break;                                                   \
  }

inline unsigned grid_for(size_t n, unsigned block) {
  size_t g = (n + block - 1) / block;
  return unsigned(g < 65535u * 16u ? (g ? g : 1) : 65535u * 16u);
}

}  // namespace corvid::cuda::k
