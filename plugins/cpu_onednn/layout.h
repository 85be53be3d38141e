// The prepared layout of the cpu_onednn backend: what prepare() writes to the
// WeightSink and create_stage() reads back (from memory or a converted file).
//
// Per block, with the checkpoint's names:
//   * vectors (ln1/ln2 weight and bias, time_mix_*): fp32 holding values of the
//     activation type (bf16 stages: bf16-rounded);
//   * att.time_decay (w = -exp(d)) and att.time_first (u): fp32 always (§2.4);
//   * each matrix in (out, in) row-major order, so one output is one contiguous
//     row and a token streams every weight byte exactly once:
//       fp32 / bf16 stages: F32 / BF16 elements;
//       int8 stages: U8 codes of the reference's scheme (rwkv-reference §2.6,
//       computed on the (in, out) matrix by wutil::quantize_u8 and stored
//       transposed), plus `<name>.mx`, `.rx` per output and `.my`, `.ry` per
//       input, fp32 holding activation-type values (rx, ry already /16).
// Head stage: ln_out.weight/bias as vectors, head.weight as a matrix.
#pragma once

#include <cstdint>
#include <string>

#include "corvid/sdk/backend.h"
#include "kernels.h"

namespace corvid::cpu {

// Bump when the bytes written for the same checkpoint change.
constexpr const char* kLayoutVersion = "1";

std::string tensor_name(int block, const char* what);  // "blocks.3.att.key.weight"

// One vector, rounded to the activation type.
void prepare_vector(const WeightSource& raw, WeightSink& out, const std::string& name, int64_t n, DType atype);

// One matrix: raw (out, in) view -> RESCALE_LAYER division -> cast or quantise
// -> (out, in) row-major in the sink.
void prepare_matrix(const WeightSource& raw, WeightSink& out, const ModelHParams& hp, const std::string& name,
                    int64_t rows, int64_t cols, Precision p);
// The same with a thread budget for the load (0 = the hardware's; the bytes do
// not depend on it). The overload above uses 0.
void prepare_matrix(const WeightSource& raw, WeightSink& out, const ModelHParams& hp, const std::string& name,
                    int64_t rows, int64_t cols, Precision p, int threads);

// Reading prepared weights back (create_stage, every generation): the tensor
// as prepare_vector / prepare_matrix wrote it, checked for dtype and size, or a
// one-line Error naming the source and the tensor. An int8 matrix brings its
// `.mx/.rx/.my/.ry` vectors.
const float* prepared_vector(const WeightSource& w, const std::string& name, int64_t n);
Matrix prepared_matrix(const WeightSource& w, const std::string& name, int rows, int cols, Precision p);
// A float matrix of `rows × cols` starting `offset` elements into the prepared
// tensor `name`, which must hold `type` (BF16; anything else means F32). The
// caller checks the size; prepared_matrix and the v6/v7 LoRA readers use it.
Matrix prepared_float_matrix(const WeightSource& w, const std::string& name, int rows, int cols, DType type, size_t offset = 0);

// Bytes of prepared weights (matrices and vectors) for a stage.
uint64_t prepared_bytes(const StageSpec& spec, const ModelHParams& hp);

// Writes a whole stage (blocks and maybe the head).
void prepare_stage(const StageSpec& spec, const ModelHParams& hp, const WeightSource& raw, WeightSink& out,
                   const ProgressFn& progress);

}  // namespace corvid::cpu
