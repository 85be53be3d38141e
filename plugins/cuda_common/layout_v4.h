// The prepared-weight layout of the CUDA backends for RWKV-4 (host side only:
// no CUDA headers, so prepare() runs and is tested on machines without a GPU).
//
// Prepared tensors keep the checkpoint's names. Per block l (prefix "blocks.l."):
//   ln1/ln2 .weight/.bias, att.time_mix_k/_v/_r, ffn.time_mix_k/_r   atype [C]
//   att.time_decay (w = -exp(d)), att.time_first (u)                 F32   [A]
//   matrices  att.key/value/receptance (A x C), att.output (C x A),
//             ffn.key (F x C), ffn.value (C x F), ffn.receptance (C x C)
// and for the head stage: ln_out.weight/.bias atype [C], head.weight (V x C).
//
// Matrices are stored (out, in) row-major: each output is one contiguous row,
// which is what the decode GEMV streams (one warp per output row) and what cuBLAS
// reads as the transposed operand of a "TN" GEMM. RESCALE_LAYER is already applied.
//   float precisions: dtype = atype, values rounded to atype.
//   *i8 precisions:   dtype = U8 codes q[out][in] of the reference scheme
//                     (rwkv-reference 2.6, quantised on the (in, out) matrix),
//                     plus <name>_mx [out], _rx [out] (= max/16), _my [in],
//                     _ry [in] (= max/16), all rounded to atype and stored as atype.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "corvid/sdk/backend.h"
#include "corvid/sdk/model.h"
#include "corvid/sdk/weights.h"

namespace corvid::cuda {

// Bump when the bytes written by prepare() change for the same inputs.
inline constexpr int kLayoutVersion = 1;

// The seven matrices of a v4 block, in the order the forward pass uses them.
enum class Mat : int { AttK = 0, AttV, AttR, AttO, FfnK, FfnV, FfnR };
inline constexpr int kMatsPerBlock = 7;

// "att.key.weight", ...
const char* mat_suffix(Mat m);

struct MatShape {
  int64_t in = 0, out = 0;
};
MatShape mat_shape(Mat m, const ModelHParams& hp);
MatShape head_shape(const ModelHParams& hp);

std::string block_name(int layer, const char* suffix);  // "blocks.<l>.<suffix>"

// Vector parameters of a block stored in atype, and the two fp32 ones.
extern const char* const kBlockAtypeVectors[9];  // ln1.weight ... ffn.time_mix_r
extern const char* const kBlockF32Vectors[2];    // att.time_decay, att.time_first

// Bytes of one prepared matrix (codes + side tensors for int8).
uint64_t matrix_bytes(MatShape s, Precision p);
// Bytes of one prepared block / of the head (ln_out + head), as prepare() writes them.
uint64_t block_bytes(const ModelHParams& hp, Precision p);
uint64_t head_bytes(const ModelHParams& hp, Precision p);
// Bytes of the matrices of one block that "*N+" streaming moves per token (the
// int8 side tensors stay resident, as in the reference).
uint64_t streamed_block_bytes(const ModelHParams& hp, Precision p);
uint64_t estimate_stage_bytes(const StageSpec& spec, const ModelHParams& hp);

std::string layout_id(const std::string& plugin, const StageSpec& spec, const ModelHParams& hp);

// Throws Error unless the model/precision is one this layout supports.
void check_supported(const std::string& plugin, const StageSpec& spec, const ModelHParams& hp);

// Step 1 of the load contract (weights.h): raw checkpoint views -> prepared layout.
void prepare_v4(const StageSpec& spec, const ModelHParams& hp, const WeightSource& raw, WeightSink& out,
                const ProgressFn& progress);

// Helpers shared with the stage (validation of prepared tensors, e.g. from a
// converted file): the tensor must exist with this dtype and shape.
const TensorView& require_prepared(const WeightSource& src, const std::string& name, DType dt,
                                   const std::vector<int64_t>& shape);

// Packs fp32 values into an atype buffer (round to nearest even).
void store_as(DType dt, const float* src, void* dst, size_t n);

}  // namespace corvid::cuda
