// The element-wise parts of the RWKV-4 forward pass, on contiguous arrays.
//
// With bf16 = true every value the reference holds in bf16 is rounded to bf16
// (round-to-nearest-even, NaN kept) at the same points as the reference's torch
// operations; with bf16 = false the same formulas run in fp32. Each function is
// compiled for AVX-512, AVX2 and baseline x86-64 and picked once at load time
// (GCC target_clones), so the loops vectorise without assuming the CPU.
//
// exp is a vectorisable Cephes-style polynomial (about 1 ulp; arguments below
// -87 give 0, the largest finite fp32 exponent is handled like expf).
#pragma once

#include <cstddef>

namespace corvid::cpu::ew {

// y = LN(x)·w + b over n values: eps 1e-5, biased variance, moments in double.
void layer_norm(const float* x, const float* w, const float* b, float* y, int n, bool bf16);

// out = cur⊙μ + prev⊙(1−μ): each product and the sum in the activation type.
void token_shift_mix(const float* cur, const float* prev, const float* mu, const float* one_minus_mu, float* out, int n,
                     bool bf16);

void round_bf16(float* v, size_t n);                   // v = bf16(v)
void sigmoid(float* v, size_t n, bool bf16);           // v = σ(v) (input and result in the atype)
void relu_square(float* v, size_t n, bool bf16);       // v = max(v, 0)² (input and result in the atype)
void add_residual(float* x, const float* y, size_t n, bool bf16);                  // x = x + y
void add_gated_residual(float* x, const float* r, const float* y, size_t n, bool bf16);  // x = x + r⊙y
void halve(float* x, size_t n, bool bf16);             // x = x / 2 (RESCALE_LAYER)

// One token of the RWKV-4 WKV recurrence over n channels, in fp32 (§4.1):
//   q = max(p, u+k); e1 = e^{p−q}; e2 = e^{u+k−q}; wkv = (e1·a + e2·v)/(e1·b + e2)
//   q' = max(p+w, k); a ← e^{p+w−q'}·a + e^{k−q'}·v; b ← e^{p+w−q'}·b + e^{k−q'}; p ← q'
//   out = r ⊙ wkv (wkv and the product in the atype)
void wkv_step(const float* k, const float* v, const float* r, const float* u, const float* w, float* a, float* b,
              float* p, float* out, int n, bool bf16);

// Scalar exp of the same polynomial (tests).
float exp_approx(float x);

}  // namespace corvid::cpu::ew
