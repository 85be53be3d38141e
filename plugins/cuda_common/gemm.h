// cuBLAS GEMMs of the sequence path (T > 1 tokens).
#pragma once

#include <cublas_v2.h>

#include "kernels.h"

namespace corvid::cuda {

// y[T][out] (row stride ldy) = x[T][in] (row stride ldx) . W^T, where W is the
// (out, ldw) row-major weight matrix: a "TN" cuBLAS GEMM, tensor cores for
// fp16/bf16 with fp32 accumulation (CUBLAS_COMPUTE_32F, no reduced-precision
// split-K); fp32 inputs use plain fp32 (no TF32). y is fp32 when y_f32, else atype.
void gemm_rows(cublasHandle_t h, k::AT at, int T, int in, int out, const void* x, int ldx, const void* W, int ldw,
               void* y, bool y_f32, int ldy, int device);

// Creates a handle bound to `stream` with the math mode above. Throws Error.
cublasHandle_t make_cublas(cudaStream_t stream, int device);

}  // namespace corvid::cuda
