// Matrix kernels of the CPU backend.
//
// Weights are stored (out, in) row-major: output j is the dot product of row j
// with x, so one token streams every weight byte exactly once, rows split across
// threads. Three weight types: fp32, bf16 and the reference's uint8 scheme
// (rwkv-reference §2.6) with per-input (my, ry) and per-output (mx, rx) vectors.
//
// Decode (one row of x) uses the GEMV kernels below, in AVX-512, AVX2 and
// scalar variants chosen once at run time from CPUID. Prefill (T > 1 rows)
// turns each product into a GEMM on oneDNN (dnnl_sgemm); bf16 and int8
// weights are widened to fp32 one tile of rows at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "thread_pool.h"

namespace corvid::cpu {

// Kernel families, each a superset of the one before.
// Avx512Bf16 = AVX-512 F/BW/VL + BF16 + VNNI (the bf16 dot and int8 VNNI kernels).
enum class Isa { Scalar, Avx2, Avx512, Avx512Bf16 };
Isa detect_isa();  // the best this CPU runs (CPUID)
const char* isa_name(Isa isa);
bool isa_supported(Isa isa);  // isa <= detect_isa()
// The family a stage uses: detect_isa(), or the one named by `request` (the
// CORVID_CPU_ISA environment variable: scalar | avx2 | avx512 | avx512bf16),
// which tests and comparisons use to run the lower paths. Error when the name
// is unknown or this CPU lacks it (never an illegal instruction).
Isa select_isa(const char* request);

// A prepared matrix: rows = out, cols = in.
struct Matrix {
  int rows = 0, cols = 0;
  enum class Kind { F32, BF16, U8 } kind = Kind::F32;
  const float* f32 = nullptr;
  const uint16_t* bf16 = nullptr;
  const uint8_t* q = nullptr;
  // int8 side vectors (already divided by 16 where the reference does):
  const float* mx = nullptr;  // [rows] per output
  const float* rx = nullptr;  // [rows] per output
  const float* my = nullptr;  // [cols] per input
  const float* ry = nullptr;  // [cols] per input

  size_t weight_bytes() const;
};

// Scratch a product needs, owned by the caller (no allocation per token).
struct GemvScratch {
  float* xs = nullptr;     // [cols] x*ry for int8
  uint16_t* xb = nullptr;  // [cols] x as bf16 for the BF16 dot instruction
  // [vnni_digits_bytes(cols)] fixed-point digit planes of x*ry for the int8
  // VNNI kernel (Isa::Avx512Bf16); nullptr keeps int8 on the fp32 kernel.
  int8_t* digits = nullptr;
};
size_t vnni_digits_bytes(int cols);

// y[j] = sum_i x[i] * W[j][i], j in [0, rows), rows split across the pool in
// chunks of about 64 KiB of weights. A row is never split, so every output is
// the same bitwise for any thread count.
void gemv(Isa isa, const Matrix& W, const float* x, float* y, GemvScratch& s, ThreadPool& pool);

// Several independent products in one pool job (e.g. a block's r, k and v):
// y_i = W_i x_i. Same results, bit for bit, as calling gemv() for each, with
// one synchronisation of the pool instead of n. Each task needs its own
// scratch when its input differs. 1 <= n <= 8.
struct GemvTask {
  const Matrix* W;
  const float* x;
  float* y;
  GemvScratch* s;
};
void gemv_batch(Isa isa, const GemvTask* tasks, int n, ThreadPool& pool);

// Sequence-mode products: Y[t][j] = sum_i X[t][i] * W[j][i] for t < T, on
// oneDNN's sgemm. The output rows are split into blocks across the pool; each
// block is one single-threaded sgemm call (oneDNN runs with one OpenMP thread
// inside the pool), so there is one pool and no oversubscription:
//   F32:  dnnl_sgemm on the (out, in) weights as they are;
//   BF16: tiles of rows widened to fp32 (exact), then sgemm: bf16 x bf16
//         products are exact in fp32 and accumulate in fp32 either way, and
//         oneDNN 2.6's bf16 matmul on plain (out, in) weights measured slower
//         (brgemm re-packs the transposed weights on every call: 83 vs 138
//         GFLOPS at 256x1024x1024, 1 thread);
//   U8:   tiles dequantised to fp32 exactly as the reference's fallback does
//         ((q + 0.5) ry rx + my + mx), then sgemm: the reference's x @ W_deq.
// A block holds at most kTileFloats weights (8 MiB of fp32) and at least 64
// rows, so each sgemm call has a wide N and X is re-packed only a few times.
constexpr size_t kTileFloats = size_t(2) << 20;
class GemmContext {
 public:
  GemmContext();
  ~GemmContext();
  GemmContext(const GemmContext&) = delete;
  GemmContext& operator=(const GemmContext&) = delete;
  // Pre-sizes one tile per pool thread for rows of up to max_cols (no
  // allocation per call).
  void reserve(int max_cols, int threads);
  void gemm(const Matrix& W, const float* X, int T, float* Y, ThreadPool& pool);

 private:
  struct Impl;
  Impl* impl_;
};

// The products of one stage (every RWKV generation). Owns what they need
// between calls, sized once (no allocation per token): GEMV input scratch for
// up to kMaxBatch products of one step, and the GEMM tiles for chunks.
class StageProducts {
 public:
  static constexpr int kMaxBatch = 5;
  struct Product {
    const Matrix* W;
    const float* X;
    float* Y;
  };
  void reserve(int widest_cols, int threads);
  // Y[T][rows] = X[T][cols] W^T for each product. T == 1: one pool job for all
  // of them (gemv_batch: one synchronisation, same bits as one at a time);
  // T > 1: a oneDNN GEMM each.
  void run(Isa isa, std::initializer_list<Product> products, int T, ThreadPool& pool);
  // Small float matrices (the v6/v7 LoRAs): each output summed in double with
  // a fixed order and rounded once (f64_rows), so it is the same bits on every
  // ISA, for every thread count and in step and chunk mode. F32 or BF16
  // weights only; at most 8 products, run as one pool job. For T > 1 each
  // chunk's rows are widened to double once into a per-thread tile (sized by
  // reserve(); the rows must be at most reserve's widest_cols wide).
  void run_f64(Isa isa, std::initializer_list<Product> products, int T, ThreadPool& pool);
  // The head of every generation: logits[r] = LN_out(x[first + r]) W_head,
  // first = 0 with all_rows, else T - 1 (only the last row); rounded to bf16
  // under bf16 (x @ head is bf16 in the reference, then .float()).
  // xx: scratch of T · head.cols floats.
  void run_head(Isa isa, const Matrix& head, const float* x, int T, bool all_rows, const float* ln_w, const float* ln_b,
                float* xx, bool bf16, float* logits, ThreadPool& pool);

 private:
  struct Scratch {
    std::vector<float> xs;
    std::vector<uint16_t> xb;
    std::vector<int8_t> digits;  // int8 VNNI digit planes of x*ry
  };
  Scratch scratch_[kMaxBatch];
  GemmContext gemm_;
  std::vector<std::vector<double>> f64_tiles_;  // one per pool thread
  size_t f64_tile_doubles_ = 0;
};

// Kernel variants, exposed for tests and micro-benchmarks.
float dot_f32(Isa isa, const float* a, const float* b, int n);
float dot_bf16(Isa isa, const uint16_t* w, const float* x, const uint16_t* xb, int n);
float dot_u8(Isa isa, const uint8_t* q, const float* xs, int n);
// sum_i q[i] xs[i] on the int8 VNNI kernel: exact integer products of the
// codes with xs in 31-bit fixed point, rounded once (needs Isa::Avx512Bf16).
float dot_u8_vnni(const uint8_t* q, const float* xs, int n);

// The input-side terms of an int8 product (rwkv-reference §2.6): xs = x*ry and
// sum x, sum xs, sum x*my, summed in double over eight interleaved lanes
// (lane l takes i = l mod 8) and combined in one fixed order, so the AVX-512
// version (isa >= Avx512) and the portable one give the same bits. It runs on
// the calling thread before every int8 product (six times per RWKV-4 block),
// hence vectorised: the scalar chain of double adds took about 4% of a
// 2-thread 430M decode.
struct InputSums {
  double sx = 0, sxs = 0, sxmy = 0;
};
InputSums int8_input_sums(Isa isa, const float* x, const float* ry, const float* my, int n, float* xs);

// y[j] = sum_i W[j][i] x[i] for j in [j0, j1) summed in double (lane u of
// eight takes i = u mod 8 over the whole blocks of eight, the tail goes to
// lane 0, then one fixed tree) and rounded once to fp32: the same bits on
// every ISA (AVX-512 for isa >= Avx512, a portable loop otherwise).
void f64_rows(Isa isa, const Matrix& W, const float* x, float* y, int j0, int j1);

// Row j of W widened to fp32 as the reference's int8 fallback computes it:
// ((q + 0.5) * ry) * rx + my + mx, each step in fp32.
void dequant_row_u8(const Matrix& W, int j, float* out);
// bf16 row widened to fp32 (exact).
void widen_row_bf16(const uint16_t* src, float* dst, int n);

}  // namespace corvid::cpu
