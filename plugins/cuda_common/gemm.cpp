#include "gemm.h"

#include <string>

#include "corvid/sdk/error.h"

namespace corvid::cuda {

namespace {

void check_cublas(cublasStatus_t st, const char* what, int device) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw Error("cuda:" + std::to_string(device) + ": " + what + ": " + cublasGetStatusString(st));
}

cudaDataType_t data_type(k::AT at) {
  switch (at) {
    case k::AT::F32: return CUDA_R_32F;
    case k::AT::F16: return CUDA_R_16F;
    case k::AT::BF16: return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

}  // namespace

cublasHandle_t make_cublas(cudaStream_t stream, int device) {
  cublasHandle_t h = nullptr;
  check_cublas(cublasCreate(&h), "cublasCreate", device);
  cublasStatus_t st = cublasSetStream(h, stream);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasSetMathMode(h, cublasMath_t(CUBLAS_DEFAULT_MATH | CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION));
  if (st != CUBLAS_STATUS_SUCCESS) {
    cublasDestroy(h);
    check_cublas(st, "cublasSetStream/SetMathMode", device);
  }
  return h;
}

void gemm_rows(cublasHandle_t h, k::AT at, int T, int in, int out, const void* x, int ldx, const void* W, int ldw,
               void* y, bool y_f32, int ldy, int device) {
  // Column-major view: Y^T (out x T, ld ldy) = op(A) B with A = W^T stored as an
  // (in x out) column-major matrix (ld ldw) and B = X^T (in x T, ld ldx).
  const float alpha = 1.f, beta = 0.f;
  const cudaDataType_t ab = data_type(at);
  const cudaDataType_t ct = y_f32 ? CUDA_R_32F : ab;
  check_cublas(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, out, T, in, &alpha, W, ab, ldw, x, ab, ldx, &beta, y, ct, ldy,
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx", device);
}

}  // namespace corvid::cuda
