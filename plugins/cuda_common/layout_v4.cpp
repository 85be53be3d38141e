// Host-side weight preparation for the CUDA backends (see layout_v4.h).
#include "layout_v4.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "corvid/sdk/weights_util.h"

namespace corvid::cuda {

const char* const kBlockAtypeVectors[9] = {
    "ln1.weight",        "ln1.bias",          "ln2.weight",        "ln2.bias",         "att.time_mix_k",
    "att.time_mix_v",    "att.time_mix_r",    "ffn.time_mix_k",    "ffn.time_mix_r"};
const char* const kBlockF32Vectors[2] = {"att.time_decay", "att.time_first"};

const char* mat_suffix(Mat m) {
  switch (m) {
    case Mat::AttK: return "att.key.weight";
    case Mat::AttV: return "att.value.weight";
    case Mat::AttR: return "att.receptance.weight";
    case Mat::AttO: return "att.output.weight";
    case Mat::FfnK: return "ffn.key.weight";
    case Mat::FfnV: return "ffn.value.weight";
    case Mat::FfnR: return "ffn.receptance.weight";
  }
  return "?";
}

MatShape mat_shape(Mat m, const ModelHParams& hp) {
  const int64_t C = hp.n_embd, A = hp.n_att, F = hp.n_ffn;
  switch (m) {
    case Mat::AttK:
    case Mat::AttV:
    case Mat::AttR: return {C, A};
    case Mat::AttO: return {A, C};
    case Mat::FfnK: return {C, F};
    case Mat::FfnV: return {F, C};
    case Mat::FfnR: return {C, C};
  }
  return {};
}

MatShape head_shape(const ModelHParams& hp) { return {hp.n_embd, hp.n_vocab}; }

std::string block_name(int layer, const char* suffix) { return "blocks." + std::to_string(layer) + "." + suffix; }

uint64_t matrix_bytes(MatShape s, Precision p) {
  const uint64_t n = uint64_t(s.in) * uint64_t(s.out);
  if (p.quantized()) return n + 2 * (uint64_t(s.in) + uint64_t(s.out)) * dtype_size(p.atype);
  return n * dtype_size(p.wtype);
}

uint64_t block_bytes(const ModelHParams& hp, Precision p) {
  uint64_t b = 9ull * uint64_t(hp.n_embd) * dtype_size(p.atype) + 2ull * uint64_t(hp.n_att) * 4;
  for (int m = 0; m < kMatsPerBlock; ++m) b += matrix_bytes(mat_shape(Mat(m), hp), p);
  return b;
}

uint64_t head_bytes(const ModelHParams& hp, Precision p) {
  return 2ull * uint64_t(hp.n_embd) * dtype_size(p.atype) + matrix_bytes(head_shape(hp), p);
}

uint64_t streamed_block_bytes(const ModelHParams& hp, Precision p) {
  uint64_t b = 0;
  for (int m = 0; m < kMatsPerBlock; ++m) {
    MatShape s = mat_shape(Mat(m), hp);
    b += uint64_t(s.in) * uint64_t(s.out) * (p.quantized() ? 1 : dtype_size(p.wtype));
  }
  return b;
}

uint64_t estimate_stage_bytes(const StageSpec& spec, const ModelHParams& hp) {
  uint64_t b = uint64_t(std::max(0, spec.n_blocks())) * block_bytes(hp, spec.precision);
  if (spec.has_head) b += head_bytes(hp, spec.precision);
  return b;
}

std::string layout_id(const std::string& plugin, const StageSpec& spec, const ModelHParams& hp) {
  // Everything that changes the prepared bytes: plugin, layout version, precision,
  // the RESCALE_LAYER division, and the (out, in) matrix orientation.
  return plugin + "/v4-layout" + std::to_string(kLayoutVersion) + "/" + precision_name(spec.precision) +
         "/out-in/R" + std::to_string(hp.rescale_layer);
}

void check_supported(const std::string& plugin, const StageSpec& spec, const ModelHParams& hp) {
  if (hp.arch != Arch::V4)
    throw Error(plugin + ": RWKV " + std::string(arch_name(hp.arch)) + " models are not supported (this backend runs RWKV-4)");
  if (hp.n_att != hp.n_embd)
    throw Error(plugin + ": n_att (" + std::to_string(hp.n_att) + ") != n_embd (" + std::to_string(hp.n_embd) +
                ") is not supported");
  if (hp.n_embd <= 0 || hp.n_ffn <= 0 || hp.n_vocab <= 0 || hp.n_layer <= 0)
    throw Error(plugin + ": model has an empty dimension");
  if (spec.first_block < 0 || spec.end_block > hp.n_layer || spec.end_block < spec.first_block)
    throw Error(plugin + ": stage blocks " + std::to_string(spec.first_block) + "-" + std::to_string(spec.end_block) +
                " are outside the model's " + std::to_string(hp.n_layer) + " layers");
}

void store_as(DType dt, const float* src, void* dst, size_t n) {
  switch (dt) {
    case DType::F32: std::memcpy(dst, src, n * 4); return;
    case DType::F16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]);
      return;
    }
    case DType::BF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]);
      return;
    }
    default: throw Error(std::string("store_as: unsupported dtype ") + dtype_name(dt));
  }
}

const TensorView& require_prepared(const WeightSource& src, const std::string& name, DType dt,
                                   const std::vector<int64_t>& shape) {
  const TensorView& t = src.require(name);
  bool ok = t.dtype == dt && t.ndim == int(shape.size()) && t.is_contiguous();
  for (int i = 0; ok && i < t.ndim; ++i) ok = t.shape[i] == shape[size_t(i)];
  if (!ok) {
    std::string want = "(";
    for (size_t i = 0; i < shape.size(); ++i) want += (i ? ", " : "") + std::to_string(shape[i]);
    want += ")";
    throw Error(src.origin() + ": prepared tensor '" + name + "' is " + dtype_name(t.dtype) + " " + shape_string(t) +
                (t.is_contiguous() ? "" : " (strided)") + ", expected contiguous " + dtype_name(dt) + " " + want);
  }
  return t;
}

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + ")";
}

struct Preparer {
  const StageSpec& spec;
  const ModelHParams& hp;
  const WeightSource& raw;
  WeightSink& out;
  const ProgressFn& progress;
  uint64_t done = 0, total = 0;

  void tick(uint64_t bytes) {
    done += bytes;
    if (progress) progress(done, total);
  }

  // A 1-D parameter of n elements (squeezed by the framework), stored as `dt`.
  void vector(const std::string& name, int64_t n, DType dt) {
    const TensorView& t = raw.require(name);
    if (t.numel() != n || t.ndim > 1)
      throw Error(raw.origin() + ": tensor '" + name + "' has shape " + shape_string(t) + ", expected (" +
                  std::to_string(n) + ")");
    std::vector<float> v(static_cast<size_t>(n));
    wutil::to_f32(t, v.data());
    store_as(dt, v.data(), out.begin(name, dt, {n}), size_t(n));
    tick(uint64_t(n) * dtype_size(dt));
  }

  // A matrix whose raw view is (out, in); written as (out, in) in wtype, or as
  // int8 codes (out, in) + side tensors.
  void matrix(const std::string& name, MatShape s) {
    const TensorView& t = raw.require(name);
    if (t.ndim != 2 || t.shape[0] != s.out || t.shape[1] != s.in)
      throw Error(raw.origin() + ": tensor '" + name + "' has shape " + shape_string(t) + ", expected " +
                  shape_str({s.out, s.in}));
    const Precision p = spec.precision;
    const size_t n = size_t(s.in) * size_t(s.out);
    if (!p.quantized()) {
      std::vector<float> w(n);
      wutil::to_f32(t, w.data(), /*transpose=*/false);  // (out, in) as stored
      const int sh = wutil::rescale_shift(hp, name);
      if (sh > 0) {
        const float f = std::ldexp(1.0f, -sh);
        for (float& v : w) v *= f;
      }
      store_as(p.wtype, w.data(), out.begin(name, p.wtype, {s.out, s.in}), n);
      tick(n * dtype_size(p.wtype));
      return;
    }
    // int8: quantise the (in, out) matrix exactly as the reference, then store the
    // codes transposed to (out, in).
    std::vector<float> w = wutil::matrix_in_out_f32(t, hp, name);  // (in, out), rescaled
    std::vector<uint8_t> q(n);
    std::vector<float> mx(size_t(s.out)), rx(size_t(s.out)), my(size_t(s.in)), ry(size_t(s.in));
    wutil::quantize_u8(w.data(), s.in, s.out, q.data(), mx.data(), rx.data(), my.data(), ry.data());
    w.clear();
    w.shrink_to_fit();
    auto* codes = out.begin_as<uint8_t>(name, DType::U8, {s.out, s.in});
    constexpr int64_t B = 64;
    for (int64_t r0 = 0; r0 < s.in; r0 += B)
      for (int64_t c0 = 0; c0 < s.out; c0 += B)
        for (int64_t r = r0; r < std::min(s.in, r0 + B); ++r)
          for (int64_t c = c0; c < std::min(s.out, c0 + B); ++c) codes[c * s.in + r] = q[size_t(r * s.out + c)];
    const DType at = p.atype;
    store_as(at, mx.data(), out.begin(name + "_mx", at, {s.out}), size_t(s.out));
    store_as(at, rx.data(), out.begin(name + "_rx", at, {s.out}), size_t(s.out));
    store_as(at, my.data(), out.begin(name + "_my", at, {s.in}), size_t(s.in));
    store_as(at, ry.data(), out.begin(name + "_ry", at, {s.in}), size_t(s.in));
    tick(matrix_bytes(s, p));
  }

  void run() {
    const DType at = spec.precision.atype;
    total = estimate_stage_bytes(spec, hp);
    for (int l = spec.first_block; l < spec.end_block; ++l) {
      for (const char* v : kBlockAtypeVectors) vector(block_name(l, v), hp.n_embd, at);
      for (const char* v : kBlockF32Vectors) vector(block_name(l, v), hp.n_att, DType::F32);
      for (int m = 0; m < kMatsPerBlock; ++m) matrix(block_name(l, mat_suffix(Mat(m))), mat_shape(Mat(m), hp));
    }
    if (spec.has_head) {
      vector("ln_out.weight", hp.n_embd, at);
      vector("ln_out.bias", hp.n_embd, at);
      matrix("head.weight", head_shape(hp));
    }
  }
};

}  // namespace

void prepare_v4(const StageSpec& spec, const ModelHParams& hp, const WeightSource& raw, WeightSink& out,
                const ProgressFn& progress) {
  Preparer{spec, hp, raw, out, progress}.run();
}

}  // namespace corvid::cuda
