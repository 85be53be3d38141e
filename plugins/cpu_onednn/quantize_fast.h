// Fast, bit-exact load-time weight preparation for cpu_onednn.
//
// quantize_u8_out_in() computes exactly what wutil::quantize_u8 computes on the
// transposed (in, out) matrix (rwkv-reference §2.6), but walks the raw (out, in)
// matrix directly, so neither the transpose in nor the transpose back is needed.
// Why it is bit-identical: every elementwise step (subtract, divide, *256,
// floor, clamp) is the same single IEEE operation on the same operands, and
// min/max are exact. The only order-dependence of the reference's
// `std::min(acc, x)` / `std::max(acc, x)` folds is which zero (+0 or -0) wins
// a tie: the first one in the reference's iteration order. Column reductions
// here fold rows in order (per thread over a contiguous row range, then the
// per-thread results in thread order, which is the same fold); row reductions
// run in vector lanes and then, only when the result is a zero, rescan the row
// for its first zero. So the bytes do not depend on the ISA or thread count.
#pragma once

#include <cstdint>

#include "corvid/sdk/tensor.h"

namespace corvid::cpu {

// Instruction set of the loops below (each is compiled for all three).
enum class QuantIsa { Default, Avx2, Avx512 };
// The best this CPU runs, lowered by CORVID_CPU_ISA (scalar -> Default,
// avx2 -> Avx2, avx512/avx512bf16 -> Avx512) as the kernels are.
QuantIsa quant_isa();

// w: R x C fp32, row-major (out, in); overwritten (scratch).
// Outputs as wutil::quantize_u8(W^T, n = C, m = R, ...): q[R*C] codes in (out, in)
// order, mx[R], rx[R] (max/16), my[C], ry[C] (max/16), before activation rounding.
// threads <= 0: hardware threads.
void quantize_u8_out_in(float* w, int64_t R, int64_t C, uint8_t* q, float* mx, float* rx, float* my, float* ry,
                        int threads, QuantIsa isa);
inline void quantize_u8_out_in(float* w, int64_t R, int64_t C, uint8_t* q, float* mx, float* rx, float* my, float* ry,
                               int threads) {
  quantize_u8_out_in(w, R, C, q, mx, rx, my, ry, threads, quant_isa());
}

// Reads a 2-D view as contiguous fp32 (same order) and multiplies by `scale`
// (a power of two, or 1 = no multiply), exactly as wutil::to_f32 followed by
// `v *= scale`. Contiguous F32/BF16/F16 views are converted in parallel.
void matrix_to_f32_scaled(const TensorView& t, float* dst, float scale, int threads);

// dst[i] = f32_to_bf16(src[i]) for n values, in parallel (the same bytes).
void cast_f32_to_bf16(const float* src, uint16_t* dst, int64_t n, int threads);

// Threads used for `rows` rows: threads <= 0 means the hardware's, and each
// thread gets at least a few rows (spawning costs more than tiny matrices).
int load_threads(int threads, int64_t rows);

}  // namespace corvid::cpu
