// LayerNorm, token-shift mixes, WKV and the elementwise kernels of the RWKV-4
// forward pass (rwkv-reference 4.0-4.2). Equations are written next to the code.
#include "device_math.cuh"

namespace corvid::cuda::k {

namespace {

struct MixBatch {
  MixOut m[kMaxMix];
  int n = 0;
};

MixBatch make_batch(const MixOut* mixes, int nmix) {
  MixBatch b;
  b.n = nmix;
  for (int i = 0; i < nmix && i < kMaxMix; ++i) b.m[i] = mixes[i];
  return b;
}

template <typename T>
__global__ void convert_in_k(const float* src, T* dst, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    dst[i] = fromf<T>(src[i]);
}

template <typename T>
__global__ void convert_out_k(const T* src, float* dst, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    dst[i] = tof(src[i]);
}

__global__ void fill_k(float* p, float v, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) p[i] = v;
}

// FFN: vx = relu(k)^2 (k already rounded to atype by the GEMM)
template <typename T>
__global__ void relu_sq_k(T* x, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float v = fmaxf(tof(x[i]), 0.f);
    x[i] = fromf<T>(v * v);
  }
}

// FFN output: x = x + sigmoid(r)*y; then x/2 after a RESCALE_LAYER boundary.
template <typename T>
__global__ void gate_add_k(T* x, const T* r_raw, const T* y, size_t n, int halve) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float r = rnd<T>(sigmoid_f(tof(r_raw[i])));
    float nx = rnd<T>(tof(x[i]) + rnd<T>(r * tof(y[i])));
    if (halve) nx = rnd<T>(nx * 0.5f);
    x[i] = fromf<T>(nx);
  }
}

template <typename T>
__global__ void round_f32_k(float* x, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    x[i] = rnd<T>(x[i]);
}

// LayerNorm statistics of one row in fp32 (biased variance, eps 1e-5), two passes.
template <typename T>
__device__ void ln_stats(const T* x, int C, float& mean, float& rstd, float* sh) {
  float s = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) s += tof(x[c]);
  mean = block_sum(s, sh) / float(C);
  float q = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float d = tof(x[c]) - mean;
    q += d * d;
  }
  rstd = 1.f / sqrtf(block_sum(q, sh) / float(C) + 1e-5f);
}

// mix: xx*mu + prev*(1-mu), each op rounded to T as torch does in fp16
template <typename T>
__device__ __forceinline__ float mix_one(float xx, float prev, float mu) {
  return rnd<T>(rnd<T>(xx * mu) + rnd<T>(prev * rnd<T>(1.f - mu)));
}

// The int8 prep of one vector held in global memory, by one block: the values
// read back are those this same thread wrote (same index pattern), so no fence.
template <typename T>
__device__ void prep_block(const T* x, int n, const Int8Prep& p, float* sh) {
  const T* ry = static_cast<const T*>(p.ry);
  const T* my = static_cast<const T*>(p.my);
  float s_my = 0.f, s_x = 0.f;
  for (int r = threadIdx.x; r < n; r += blockDim.x) {
    const float v = tof(x[r]);
    p.xs[r] = v * tof(ry[r]);
    s_my += v * tof(my[r]);
    s_x += v;
  }
  s_my = block_sum(s_my, sh);
  s_x = block_sum(s_x, sh);
  if (threadIdx.x == 0) {
    p.sums[0] = s_my;
    p.sums[1] = s_x;
  }
}

// One token: xx = LN(x); out_j = mix(xx, shift, mu_j); shift <- xx.
// Each thread reads shift[c] before writing it, so the update is in place.
template <typename T>
__global__ void __launch_bounds__(1024) ln_mix_step_k(const T* x, const T* w, const T* b, T* shift, int C, MixBatch mb,
                                                      T* ln_out) {
  __shared__ float sh[32];
  float mean, rstd;
  ln_stats(x, C, mean, rstd, sh);
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float xx = rnd<T>((tof(x[c]) - mean) * rstd * tof(w[c]) + tof(b[c]));
    const float prev = tof(shift[c]);
    for (int j = 0; j < mb.n; ++j) {
      const float mu = tof(static_cast<const T*>(mb.m[j].mu)[c]);
      static_cast<T*>(mb.m[j].out)[c] = fromf<T>(mix_one<T>(xx, prev, mu));
    }
    if (ln_out) ln_out[c] = fromf<T>(xx);
    shift[c] = fromf<T>(xx);
  }
  for (int j = 0; j < mb.n; ++j)
    if (mb.m[j].prep.xs) prep_block(static_cast<const T*>(mb.m[j].out), C, mb.m[j].prep, sh);
}

// Rows: optional residual add, then LayerNorm; one block per row.
template <typename T>
__global__ void __launch_bounds__(256) layer_norm_rows_k(T* x, const T* add, const T* w, const T* b, T* out, int C) {
  __shared__ float sh[32];
  T* xr = x + size_t(blockIdx.x) * C;
  if (add) {
    const T* ar = add + size_t(blockIdx.x) * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) xr[c] = fromf<T>(tof(xr[c]) + tof(ar[c]));
  }
  float mean, rstd;
  ln_stats(xr, C, mean, rstd, sh);
  T* o = out + size_t(blockIdx.x) * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) o[c] = fromf<T>((tof(xr[c]) - mean) * rstd * tof(w[c]) + tof(b[c]));
}

// Rows: out_j[t] = mix(buf[t+1], buf[t], mu_j); shift <- buf[T].
template <typename T>
__global__ void mix_rows_k(const T* buf, int T_, int C, MixBatch mb, T* shift) {
  const size_t n = size_t(T_) * C;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const int c = int(i % size_t(C));
    const float xx = tof(buf[i + C]);
    const float prev = tof(buf[i]);
    for (int j = 0; j < mb.n; ++j) {
      const float mu = tof(static_cast<const T*>(mb.m[j].mu)[c]);
      static_cast<T*>(mb.m[j].out)[i] = fromf<T>(mix_one<T>(xx, prev, mu));
    }
    if (i >= n - size_t(C)) shift[c] = buf[i + C];
  }
}

// RWKV-4 WKV, one thread per channel, sequential over the chunk (fp32):
//   q  = max(p, u+k);   e1 = exp(p-q);    e2 = exp(u+k-q);   wkv = (e1*a + e2*v)/(e1*b + e2)
//   q' = max(p+w, k);   e1' = exp(p+w-q'); e2' = exp(k-q')
//   a <- e1'*a + e2'*v;  b <- e1'*b + e2';  p <- q'
// and rw = sigmoid(r) * wkv in atype (the input of the output projection).
template <typename T>
__global__ void wkv_k(int T_, int C, const float* __restrict__ w, const float* __restrict__ u,
                      const float* __restrict__ k, const float* __restrict__ v, const T* __restrict__ r_raw,
                      T* __restrict__ rw, float* aa, float* bb, float* pp, int round_kv) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const float ww = w[c], uu = u[c];
  float a = aa[c], b = bb[c], p = pp[c];
  for (int t = 0; t < T_; ++t) {
    const size_t i = size_t(t) * C + c;
    float kk = k[i], vv = v[i];
    if (round_kv) {
      kk = rnd<T>(kk);
      vv = rnd<T>(vv);
    }
    const float uk = uu + kk;
    float q = fmaxf(p, uk);
    float e1 = expf(p - q), e2 = expf(uk - q);
    const float wkv = rnd<T>((e1 * a + e2 * vv) / (e1 * b + e2));
    const float r = rnd<T>(sigmoid_f(tof(r_raw[i])));
    rw[i] = fromf<T>(r * wkv);
    const float pw = p + ww;
    q = fmaxf(pw, kk);
    e1 = expf(pw - q);
    e2 = expf(kk - q);
    a = e1 * a + e2 * vv;
    b = e1 * b + e2;
    p = q;
  }
  aa[c] = a;
  bb[c] = b;
  pp[c] = p;
}

struct PrepBatch {
  PrepJob j[kMaxGemvJobs];
  int n = 0;
};

template <typename T>
__global__ void __launch_bounds__(1024) int8_prep_k(PrepBatch pb) {
  __shared__ float sh[32];
  const PrepJob& j = pb.j[blockIdx.x];
  prep_block(static_cast<const T*>(j.x), j.n, j.p, sh);
}

// W[c][r] = (q + 0.5)*ry'[r]*rx'[c] + my[r] + mx[c]   (fp32, then rounded to atype)
template <typename T>
__global__ void dequant_rows_k(const uint8_t* __restrict__ q, int ld, int in, int c0, int rows, const T* mx,
                               const T* rx, const T* my, const T* ry, T* tile) {
  const size_t n = size_t(rows) * in;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const int rr = int(i / size_t(in)), r = int(i % size_t(in));
    const int c = c0 + rr;
    const float code = float(q[size_t(c) * ld + r]);
    tile[size_t(rr) * ld + r] = fromf<T>((code + 0.5f) * tof(ry[r]) * tof(rx[c]) + tof(my[r]) + tof(mx[c]));
  }
}

constexpr unsigned kEw = 256;

}  // namespace

void convert_in(AT at, const float* src, void* dst, size_t n, cudaStream_t s) {
  CORVID_DISPATCH_AT(at, convert_in_k<T><<<grid_for(n, kEw), kEw, 0, s>>>(src, static_cast<T*>(dst), n));
}

void convert_out(AT at, const void* src, float* dst, size_t n, cudaStream_t s) {
  CORVID_DISPATCH_AT(at, convert_out_k<T><<<grid_for(n, kEw), kEw, 0, s>>>(static_cast<const T*>(src), dst, n));
}

void fill_f32(float* p, float v, size_t n, cudaStream_t s) { fill_k<<<grid_for(n, kEw), kEw, 0, s>>>(p, v, n); }

void relu_sq(AT at, void* x, size_t n, cudaStream_t s) {
  CORVID_DISPATCH_AT(at, relu_sq_k<T><<<grid_for(n, kEw), kEw, 0, s>>>(static_cast<T*>(x), n));
}

void gate_add(AT at, void* x, const void* r_raw, const void* y, size_t n, bool halve, cudaStream_t s) {
  CORVID_DISPATCH_AT(at, gate_add_k<T><<<grid_for(n, kEw), kEw, 0, s>>>(
                             static_cast<T*>(x), static_cast<const T*>(r_raw), static_cast<const T*>(y), n, halve ? 1 : 0));
}

void round_f32(AT at, float* x, size_t n, cudaStream_t s) {
  CORVID_DISPATCH_AT(at, round_f32_k<T><<<grid_for(n, kEw), kEw, 0, s>>>(x, n));
}

void ln_mix_step(AT at, const void* x, const void* lnw, const void* lnb, void* shift, int C, const MixOut* mixes,
                 int nmix, void* ln_out, cudaStream_t s) {
  const MixBatch mb = make_batch(mixes, nmix);
  const unsigned block = C >= 1024 ? 1024u : unsigned((C + 31) / 32 * 32);
  CORVID_DISPATCH_AT(at, ln_mix_step_k<T><<<1, block, 0, s>>>(static_cast<const T*>(x), static_cast<const T*>(lnw),
                                                               static_cast<const T*>(lnb), static_cast<T*>(shift), C, mb,
                                                               static_cast<T*>(ln_out)));
}

void layer_norm_rows(AT at, void* x, const void* add, const void* lnw, const void* lnb, void* out, int n_tok, int C,
                     cudaStream_t s) {
  CORVID_DISPATCH_AT(at, layer_norm_rows_k<T><<<unsigned(n_tok), 256, 0, s>>>(
                             static_cast<T*>(x), static_cast<const T*>(add), static_cast<const T*>(lnw),
                             static_cast<const T*>(lnb), static_cast<T*>(out), C));
}

void mix_rows(AT at, const void* buf, int n_tok, int C, const MixOut* mixes, int nmix, void* shift, cudaStream_t s) {
  const MixBatch mb = make_batch(mixes, nmix);
  const size_t n = size_t(n_tok) * C;
  CORVID_DISPATCH_AT(at, mix_rows_k<T><<<grid_for(n, kEw), kEw, 0, s>>>(static_cast<const T*>(buf), n_tok, C, mb,
                                                                         static_cast<T*>(shift)));
}

void wkv(AT at, int n_tok, int C, const float* w, const float* u, const float* k, const float* v, const void* r_raw,
         void* rw, float* aa, float* bb, float* pp, bool round_kv, cudaStream_t s) {
  const unsigned block = 64;
  const unsigned grid = unsigned((C + block - 1) / block);
  CORVID_DISPATCH_AT(at, wkv_k<T><<<grid, block, 0, s>>>(n_tok, C, w, u, k, v, static_cast<const T*>(r_raw),
                                                          static_cast<T*>(rw), aa, bb, pp, round_kv ? 1 : 0));
}

void int8_prep(AT at, const PrepJob* jobs, int njobs, cudaStream_t s) {
  PrepBatch pb;
  pb.n = njobs;
  for (int i = 0; i < njobs && i < kMaxGemvJobs; ++i) pb.j[i] = jobs[i];
  CORVID_DISPATCH_AT(at, int8_prep_k<T><<<unsigned(njobs), 1024, 0, s>>>(pb));
}

void dequant_rows(AT at, const uint8_t* q, int ld, int in, int c0, int c1, const void* mx, const void* rx,
                  const void* my, const void* ry, void* tile, cudaStream_t s) {
  const size_t n = size_t(c1 - c0) * in;
  CORVID_DISPATCH_AT(at, dequant_rows_k<T><<<grid_for(n, kEw), kEw, 0, s>>>(
                             q, ld, in, c0, c1 - c0, static_cast<const T*>(mx), static_cast<const T*>(rx),
                             static_cast<const T*>(my), static_cast<const T*>(ry), static_cast<T*>(tile)));
}

}  // namespace corvid::cuda::k
