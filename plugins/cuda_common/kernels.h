// Launchers of the CUDA kernels of the RWKV-4 forward pass (kernels_*.cu).
//
// Host-callable, type-erased by the activation type `AT` (fp32 / fp16 / bf16):
// the stage code is plain C++ and every kernel is instantiated once per type.
// All arithmetic that the reference does in the activation type rounds through
// it after each operation (rnd<T> in the kernels), so fp16 results follow the
// reference's per-op fp16 rounding; LayerNorm statistics, WKV, int8 dequant and
// every GEMV/GEMM accumulation are fp32.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace corvid::cuda::k {

enum class AT : int { F32 = 0, F16 = 1, BF16 = 2 };

inline size_t at_size(AT a) { return a == AT::F32 ? 4 : 2; }

// int8 GEMV inputs precomputed once per input vector (rwkv-reference 2.6,
// "our algebra"): xs[r] = x[r]*ry'[r], sums[0] = sum_r x[r]*my[r], sums[1] = sum_r x[r].
struct Int8Prep {
  const void* ry = nullptr;  // [in] atype
  const void* my = nullptr;  // [in] atype
  float* xs = nullptr;       // [in] fp32; nullptr = no prep
  float* sums = nullptr;     // [2] fp32
};

// One token-shift mix: out = xx*mu + prev*(1-mu), all in atype.
struct MixOut {
  const void* mu = nullptr;
  void* out = nullptr;
  Int8Prep prep;  // optional int8 prep of `out` (step kernel only)
};
inline constexpr int kMaxMix = 3;

// ---- conversions and elementwise ----
void convert_in(AT at, const float* src, void* dst, size_t n, cudaStream_t s);   // fp32 -> atype (RNE)
void convert_out(AT at, const void* src, float* dst, size_t n, cudaStream_t s);  // atype -> fp32 (exact)
void fill_f32(float* p, float v, size_t n, cudaStream_t s);
void relu_sq(AT at, void* x, size_t n, cudaStream_t s);  // x = relu(x)^2
// x = x + sigmoid(r_raw)*y, then x = x/2 when `halve` (all in atype)
void gate_add(AT at, void* x, const void* r_raw, const void* y, size_t n, bool halve, cudaStream_t s);
void round_f32(AT at, float* x, size_t n, cudaStream_t s);  // x = float(atype(x))

// ---- LayerNorm and token shift ----
// One token (T = 1), one block: xx = LN(x); for each mix j: out_j = xx*mu_j + shift*(1-mu_j);
// shift <- xx; ln_out (optional) <- xx; optional int8 prep of each out_j.
void ln_mix_step(AT at, const void* x, const void* lnw, const void* lnb, void* shift, int C, const MixOut* mixes,
                 int nmix, void* ln_out, cudaStream_t s);
// Rows: if add != nullptr, x[t] <- x[t] + add[t] (written back); out[t] = LN(x[t]).
void layer_norm_rows(AT at, void* x, const void* add, const void* lnw, const void* lnb, void* out, int T, int C,
                     cudaStream_t s);
// Rows: buf is [(T+1)][C] with row 0 = the previous shift and rows 1..T = LN outputs.
// out_j[t] = buf[t+1]*mu_j + buf[t]*(1-mu_j); shift <- buf[T].
void mix_rows(AT at, const void* buf, int T, int C, const MixOut* mixes, int nmix, void* shift, cudaStream_t s);

// ---- WKV (rwkv-reference 4.1), one kernel per layer for the whole chunk ----
// k, v: [T][C] fp32 (rounded through atype first when round_kv, as the reference's
// int8 / bf16 matmuls return atype); r_raw: [T][C] atype pre-sigmoid;
// rw = sigmoid(r) * wkv in atype; aa, bb, pp: fp32 state, updated.
void wkv(AT at, int T, int C, const float* w, const float* u, const float* k, const float* v, const void* r_raw,
         void* rw, float* aa, float* bb, float* pp, bool round_kv, cudaStream_t s);

// ---- matrix-vector products (decode) ----
enum Epi : int {
  EpiF32 = 0,      // y_f32[c] = acc
  EpiAT = 1,       // y[c] = atype(acc)
  EpiReluSq = 2,   // y[c] = relu(atype(acc))^2
  EpiAdd = 3,      // y[c] (the residual x) += atype(acc)
  EpiGateAdd = 4,  // y[c] (residual) += sigmoid(aux[c]) * atype(acc); halved when `halve`
  EpiHead = 5,     // y_f32[c] = float(atype(acc))  (logits, as the reference's .float())
};

struct GemvJob {
  const void* w = nullptr;  // (out, ld) row-major, atype or uint8 codes
  int in = 0, out = 0, ld = 0;
  const void* x = nullptr;  // float weights: [in] atype input
  // int8 weights: prepared input and per-column scales
  const float* xs = nullptr;
  const float* sums = nullptr;
  const void* rx = nullptr;  // [out] atype
  const void* mx = nullptr;  // [out] atype
  int epi = EpiAT;
  void* y = nullptr;
  const void* aux = nullptr;  // EpiGateAdd: r_raw [out] atype
  int halve = 0;
};
inline constexpr int kMaxGemvJobs = 3;

// Up to 3 independent products in one launch (one warp per output row).
void gemv(AT at, bool int8, const GemvJob* jobs, int njobs, cudaStream_t s);

// Computes Int8Prep for up to 3 input vectors (one block each).
struct PrepJob {
  const void* x = nullptr;  // [n] atype
  int n = 0;
  Int8Prep p;
};
void int8_prep(AT at, const PrepJob* jobs, int njobs, cudaStream_t s);

// ---- int8 sequence path ----
// Dequantises rows [c0, c1) of a (out, ld) code matrix into an atype tile
// ((c1-c0) x ld, only the first `in` columns written):
// W[c][r] = (q + 0.5)*ry'[r]*rx'[c] + my[r] + mx[c], in fp32, rounded to atype.
void dequant_rows(AT at, const uint8_t* q, int ld, int in, int c0, int c1, const void* mx, const void* rx,
                  const void* my, const void* ry, void* tile, cudaStream_t s);

}  // namespace corvid::cuda::k
