#include "layout.h"

#include <cmath>
#include <vector>

#include "corvid/sdk/weights_util.h"
#include "quantize_fast.h"

namespace corvid::cpu {

std::string tensor_name(int block, const char* what) { return "blocks." + std::to_string(block) + "." + what; }

void prepare_vector(const WeightSource& raw, WeightSink& out, const std::string& name, int64_t n, DType atype) {
  const TensorView& t = raw.require(name);
  if (t.numel() != n)
    throw Error(raw.origin() + ": tensor '" + name + "' has " + std::to_string(t.numel()) + " values, expected " +
                std::to_string(n));
  float* dst = out.begin_as<float>(name, DType::F32, {n});
  wutil::to_f32(t, dst);
  for (int64_t i = 0; i < n; ++i) dst[i] = wutil::round_to(atype, dst[i]);
}

void prepare_matrix(const WeightSource& raw, WeightSink& out, const ModelHParams& hp, const std::string& name,
                    int64_t rows, int64_t cols, Precision p) {
  prepare_matrix(raw, out, hp, name, rows, cols, p, 0);
}

void prepare_matrix(const WeightSource& raw, WeightSink& out, const ModelHParams& hp, const std::string& name,
                    int64_t rows, int64_t cols, Precision p, int threads) {
  const TensorView& t = raw.require(name);
  if (t.ndim != 2 || t.shape[0] != rows || t.shape[1] != cols)
    throw Error(raw.origin() + ": tensor '" + name + "' has shape " + shape_string(t) + ", expected (" +
                std::to_string(rows) + ", " + std::to_string(cols) + ")");
  // Read the raw (out, in) order as fp32 (exact for fp16/bf16 files) and divide
  // by 2^s (exact), which is the value the reference gets by dividing in the
  // file dtype; the reference's transposes are not needed for the bytes.
  const int s = wutil::rescale_shift(hp, name);
  const float scale = s > 0 ? std::ldexp(1.0f, -s) : 1.f;
  if (!p.quantized() && p.wtype == DType::F32) {  // fp32 stages: straight into the sink
    matrix_to_f32_scaled(t, out.begin_as<float>(name, DType::F32, {rows, cols}), scale, threads);
    return;
  }
  std::vector<float> w(size_t(rows * cols));
  matrix_to_f32_scaled(t, w.data(), scale, threads);
  if (p.quantized()) {
    // The reference quantises the (in, out) matrix (n = in, m = out);
    // quantize_u8_out_in gives the same bytes from the (out, in) one.
    uint8_t* dst = out.begin_as<uint8_t>(name, DType::U8, {rows, cols});
    std::vector<float> mx(static_cast<size_t>(rows)), rx(static_cast<size_t>(rows)), my(static_cast<size_t>(cols)),
        ry(static_cast<size_t>(cols));
    quantize_u8_out_in(w.data(), rows, cols, dst, mx.data(), rx.data(), my.data(), ry.data(), threads);
    auto side = [&](const char* suffix, const std::vector<float>& v) {
      float* d = out.begin_as<float>(name + suffix, DType::F32, {int64_t(v.size())});
      for (size_t i = 0; i < v.size(); ++i) d[i] = wutil::round_to(p.atype, v[i]);
    };
    side(".mx", mx);
    side(".rx", rx);
    side(".my", my);
    side(".ry", ry);
    return;
  }
  if (p.wtype == DType::BF16) {
    uint16_t* dst = out.begin_as<uint16_t>(name, DType::BF16, {rows, cols});
    cast_f32_to_bf16(w.data(), dst, int64_t(w.size()), threads);
    return;
  }
  float* dst = out.begin_as<float>(name, DType::F32, {rows, cols});
  for (size_t i = 0; i < w.size(); ++i) dst[i] = wutil::round_to(p.wtype, w[i]);
}

uint64_t prepared_bytes(const StageSpec& spec, const ModelHParams& hp) {
  const uint64_t C = hp.n_embd, Aa = hp.n_att, F = hp.n_ffn, V = hp.n_vocab;
  const uint64_t wb = dtype_size(spec.precision.wtype);
  auto mat = [&](uint64_t r, uint64_t c) { return r * c * wb + (spec.precision.quantized() ? (r + c) * 8 : 0); };
  const uint64_t block = mat(Aa, C) * 3 + mat(C, Aa) + mat(F, C) + mat(C, F) + mat(C, C) + (9 * C + 2 * Aa) * 4;
  uint64_t n = block * uint64_t(spec.n_blocks());
  if (spec.has_head) n += mat(V, C) + 2 * C * 4;
  return n;
}

void prepare_stage(const StageSpec& spec, const ModelHParams& hp, const WeightSource& raw, WeightSink& out,
                   const ProgressFn& progress) {
  const int64_t C = hp.n_embd, Aa = hp.n_att, F = hp.n_ffn;
  const Precision p = spec.precision;
  const uint64_t total = prepared_bytes(spec, hp);
  StageSpec one_block = spec;
  one_block.end_block = one_block.first_block + 1;
  one_block.has_head = false;
  const uint64_t per_block = prepared_bytes(one_block, hp);
  uint64_t done = 0;
  for (int l = spec.first_block; l < spec.end_block; ++l) {
    for (const char* v : {"ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "att.time_mix_k", "att.time_mix_v",
                          "att.time_mix_r", "ffn.time_mix_k", "ffn.time_mix_r"})
      prepare_vector(raw, out, tensor_name(l, v), C, p.atype);
    for (const char* v : {"att.time_decay", "att.time_first"}) {  // fp32 always (§2.4)
      const std::string n = tensor_name(l, v);
      const TensorView& t = raw.require(n);
      if (t.numel() != Aa) throw Error(raw.origin() + ": tensor '" + n + "' has the wrong size");
      wutil::to_f32(t, out.begin_as<float>(n, DType::F32, {Aa}));
    }
    prepare_matrix(raw, out, hp, tensor_name(l, "att.key.weight"), Aa, C, p, spec.threads);
    prepare_matrix(raw, out, hp, tensor_name(l, "att.value.weight"), Aa, C, p, spec.threads);
    prepare_matrix(raw, out, hp, tensor_name(l, "att.receptance.weight"), Aa, C, p, spec.threads);
    prepare_matrix(raw, out, hp, tensor_name(l, "att.output.weight"), C, Aa, p, spec.threads);
    prepare_matrix(raw, out, hp, tensor_name(l, "ffn.key.weight"), F, C, p, spec.threads);
    prepare_matrix(raw, out, hp, tensor_name(l, "ffn.value.weight"), C, F, p, spec.threads);
    prepare_matrix(raw, out, hp, tensor_name(l, "ffn.receptance.weight"), C, C, p, spec.threads);
    done += per_block;
    if (progress) progress(done, total);
  }
  if (spec.has_head) {
    prepare_vector(raw, out, "ln_out.weight", C, p.atype);
    prepare_vector(raw, out, "ln_out.bias", C, p.atype);
    prepare_matrix(raw, out, hp, "head.weight", hp.n_vocab, C, p, spec.threads);
    if (progress) progress(total, total);
  }
}

const float* prepared_vector(const WeightSource& w, const std::string& name, int64_t n) {
  const TensorView& t = w.require(name);
  if (t.dtype != DType::F32 || t.numel() != n)
    throw Error(w.origin() + ": prepared tensor '" + name + "' has the wrong type or size");
  return t.as<float>();
}

Matrix prepared_matrix(const WeightSource& w, const std::string& name, int rows, int cols, Precision p) {
  Matrix m;
  m.rows = rows;
  m.cols = cols;
  const TensorView& t = w.require(name);
  if (t.numel() != int64_t(rows) * cols) throw Error(w.origin() + ": prepared tensor '" + name + "' has the wrong size");
  if (p.quantized()) {
    if (t.dtype != DType::U8) throw Error(w.origin() + ": prepared tensor '" + name + "' is not U8");
    m.kind = Matrix::Kind::U8;
    m.q = t.as<uint8_t>();
    m.mx = prepared_vector(w, name + ".mx", rows);
    m.rx = prepared_vector(w, name + ".rx", rows);
    m.my = prepared_vector(w, name + ".my", cols);
    m.ry = prepared_vector(w, name + ".ry", cols);
    return m;
  }
  return prepared_float_matrix(w, name, rows, cols, p.wtype);
}

Matrix prepared_float_matrix(const WeightSource& w, const std::string& name, int rows, int cols, DType type, size_t offset) {
  const TensorView& t = w.require(name);
  Matrix m;
  m.rows = rows;
  m.cols = cols;
  if (type == DType::BF16) {
    if (t.dtype != DType::BF16) throw Error(w.origin() + ": prepared tensor '" + name + "' is not BF16");
    m.kind = Matrix::Kind::BF16;
    m.bf16 = t.as<uint16_t>() + offset;
  } else {
    if (t.dtype != DType::F32) throw Error(w.origin() + ": prepared tensor '" + name + "' is not F32");
    m.kind = Matrix::Kind::F32;
    m.f32 = t.as<float>() + offset;
  }
  return m;
}

}  // namespace corvid::cpu
