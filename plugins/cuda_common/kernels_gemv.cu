// Decode matrix-vector products: y = x W with W stored (out, in) row-major.
//
// Memory-bound: one warp per output row streams the row with 128-bit loads
// (8 fp16 / 16 int8 codes per lane per load, evict-first), the input vector is
// read through L1 (it is shared by every warp), fp32 accumulation, then a fixed
// shuffle reduction (deterministic). Up to three independent products (k, v, r
// of the attention) share one launch.
//
// int8 uses the algebra of rwkv-reference 2.6:
//   y[c] = rx'[c] * sum_r xs[r]*(q[c][r] + 0.5) + sum_r x[r]*my[r] + mx[c]*sum_r x[r]
// with xs = x*ry' and the two sums precomputed once per input (Int8Prep), so the
// inner loop reads 1 byte per weight.
#include "device_math.cuh"

namespace corvid::cuda::k {

namespace {

constexpr int kWarpsPerBlock = 8;

struct GemvBatch {
  GemvJob j[kMaxGemvJobs];
  int end[kMaxGemvJobs];  // cumulative row counts
  int n = 0;
};

// Dot product of 16 bytes of weights with 16 bytes of inputs (same type).
__device__ __forceinline__ float dot16(const uint4& w, const uint4& x, float acc, __half) {
  const uint32_t wa[4] = {w.x, w.y, w.z, w.w}, xa[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    __half2 wh, xh;
    memcpy(&wh, &wa[i], 4);
    memcpy(&xh, &xa[i], 4);
    const float2 wf = __half22float2(wh), xf = __half22float2(xh);
    acc = fmaf(wf.x, xf.x, acc);
    acc = fmaf(wf.y, xf.y, acc);
  }
  return acc;
}

__device__ __forceinline__ float dot16(const uint4& w, const uint4& x, float acc, bf16) {
  const uint32_t wa[4] = {w.x, w.y, w.z, w.w}, xa[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    __nv_bfloat162 wh, xh;
    memcpy(&wh, &wa[i], 4);
    memcpy(&xh, &xa[i], 4);
    const float2 wf = __bfloat1622float2(wh), xf = __bfloat1622float2(xh);
    acc = fmaf(wf.x, xf.x, acc);
    acc = fmaf(wf.y, xf.y, acc);
  }
  return acc;
}

__device__ __forceinline__ float dot16(const uint4& w, const uint4& x, float acc, float) {
  acc = fmaf(__uint_as_float(w.x), __uint_as_float(x.x), acc);
  acc = fmaf(__uint_as_float(w.y), __uint_as_float(x.y), acc);
  acc = fmaf(__uint_as_float(w.z), __uint_as_float(x.z), acc);
  acc = fmaf(__uint_as_float(w.w), __uint_as_float(x.w), acc);
  return acc;
}

// 16 int8 codes (one uint4) against 16 prepared fp32 inputs.
__device__ __forceinline__ float dot_codes(const uint4& w, const float4* xs, float acc) {
  const uint32_t wa[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float4 xv = xs[i];
    const uint32_t b = wa[i];
    acc = fmaf(float(b & 0xffu) + 0.5f, xv.x, acc);
    acc = fmaf(float((b >> 8) & 0xffu) + 0.5f, xv.y, acc);
    acc = fmaf(float((b >> 16) & 0xffu) + 0.5f, xv.z, acc);
    acc = fmaf(float(b >> 24) + 0.5f, xv.w, acc);
  }
  return acc;
}

template <typename T>
__device__ __forceinline__ void epilogue(const GemvJob& jb, int row, float acc) {
  switch (jb.epi) {
    case EpiF32: static_cast<float*>(jb.y)[row] = acc; break;
    case EpiAT: static_cast<T*>(jb.y)[row] = fromf<T>(acc); break;
    case EpiReluSq: {
      const float v = fmaxf(rnd<T>(acc), 0.f);
      static_cast<T*>(jb.y)[row] = fromf<T>(v * v);
    } break;
    case EpiAdd: {  // attention output: x = x + out
      T* x = static_cast<T*>(jb.y);
      x[row] = fromf<T>(tof(x[row]) + rnd<T>(acc));
    } break;
    case EpiGateAdd: {  // FFN output: x = x + sigmoid(r) * (vx W_v), then /2 at a rescale boundary
      T* x = static_cast<T*>(jb.y);
      const float r = rnd<T>(sigmoid_f(tof(static_cast<const T*>(jb.aux)[row])));
      float nx = rnd<T>(tof(x[row]) + rnd<T>(r * rnd<T>(acc)));
      if (jb.halve) nx = rnd<T>(nx * 0.5f);
      x[row] = fromf<T>(nx);
    } break;
    case EpiHead: static_cast<float*>(jb.y)[row] = rnd<T>(acc); break;
  }
}

template <typename T, bool Q>
__global__ void __launch_bounds__(kWarpsPerBlock * 32) gemv_k(GemvBatch b) {
  const int warp = int((blockIdx.x * blockDim.x + threadIdx.x) >> 5);
  const int lane = threadIdx.x & 31;
  int j = 0;
  while (j < b.n && warp >= b.end[j]) ++j;
  if (j >= b.n) return;
  const GemvJob jb = j == 0 ? b.j[0] : (j == 1 ? b.j[1] : b.j[2]);
  const int row = warp - (j ? b.end[j - 1] : 0);
  float acc = 0.f;
  if constexpr (!Q) {
    constexpr int V = 16 / int(sizeof(T));
    const T* W = static_cast<const T*>(jb.w) + size_t(row) * jb.ld;
    const T* x = static_cast<const T*>(jb.x);
    const int nv = jb.in / V;
    const uint4* W4 = reinterpret_cast<const uint4*>(W);
    const uint4* X4 = reinterpret_cast<const uint4*>(x);
#pragma unroll 4
    for (int i = lane; i < nv; i += 32) acc = dot16(__ldcs(W4 + i), __ldg(X4 + i), acc, T());
    for (int i = nv * V + lane; i < jb.in; i += 32) acc = fmaf(tof(W[i]), tof(x[i]), acc);
  } else {
    const uint8_t* W = static_cast<const uint8_t*>(jb.w) + size_t(row) * jb.ld;
    const float* xs = jb.xs;
    const int nv = jb.in / 16;
    const uint4* W4 = reinterpret_cast<const uint4*>(W);
    const float4* X4 = reinterpret_cast<const float4*>(xs);
#pragma unroll 4
    for (int i = lane; i < nv; i += 32) acc = dot_codes(__ldcs(W4 + i), X4 + 4 * i, acc);
    for (int i = nv * 16 + lane; i < jb.in; i += 32) acc = fmaf(float(W[i]) + 0.5f, xs[i], acc);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
  if (lane != 0) return;
  if constexpr (Q) {
    acc = tof(static_cast<const T*>(jb.rx)[row]) * acc + jb.sums[0] + tof(static_cast<const T*>(jb.mx)[row]) * jb.sums[1];
  }
  epilogue<T>(jb, row, acc);
}

}  // namespace

void gemv(AT at, bool int8, const GemvJob* jobs, int njobs, cudaStream_t s) {
  GemvBatch b;
  b.n = njobs;
  int rows = 0;
  for (int i = 0; i < njobs && i < kMaxGemvJobs; ++i) {
    b.j[i] = jobs[i];
    rows += jobs[i].out;
    b.end[i] = rows;
  }
  const unsigned grid = unsigned((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  const unsigned block = kWarpsPerBlock * 32;
  if (int8) {
    CORVID_DISPATCH_AT(at, gemv_k<T, true><<<grid, block, 0, s>>>(b));
  } else {
    CORVID_DISPATCH_AT(at, gemv_k<T, false><<<grid, block, 0, s>>>(b));
  }
}

}  // namespace corvid::cuda::k
