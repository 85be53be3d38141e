// cpu_onednn: the CPU backend plugin (cpu fp32, cpu bf16, cpu fp32i8, cpu bf16i8).
//
// prepare() writes, per block, the vectors as fp32 holding activation-type
// values, time_decay/time_first as fp32, and each matrix in (out, in) row-major
// layout: fp32, bf16, or uint8 codes plus the reference's four side vectors
// (`<name>.mx/.rx` per output, `<name>.my/.ry` per input, rx/ry already /16).
#include <algorithm>
#include <cstring>
#include <vector>

#include "corvid/sdk/plugin.h"
#include "corvid/sdk/weights_util.h"
#include "rwkv4_stage.h"

namespace corvid::cpu {
namespace {

constexpr const char* kLayoutVersion = "1";

void require_v4(const ModelHParams& hp) {
  if (hp.arch != Arch::V4)
    throw Error(std::string("cpu_onednn: RWKV ") + arch_name(hp.arch) + " is not supported yet (RWKV-4 only)");
}

// A vector tensor (LN parameters, time_mix) rounded to the activation type.
void put_vector(const WeightSource& raw, WeightSink& out, const std::string& name, int64_t n, DType atype) {
  const TensorView& t = raw.require(name);
  if (t.numel() != n) throw Error(raw.origin() + ": tensor '" + name + "' has " + std::to_string(t.numel()) + " values, expected " + std::to_string(n));
  float* dst = out.begin_as<float>(name, DType::F32, {n});
  wutil::to_f32(t, dst);
  for (int64_t i = 0; i < n; ++i) dst[i] = wutil::round_to(atype, dst[i]);
}

// A matrix: raw (out, in) -> transpose to (in, out) with RESCALE applied (the
// reference's layout for quantisation), then stored (out, in) for row dots.
void put_matrix(const WeightSource& raw, WeightSink& out, const ModelHParams& hp, const std::string& name, int64_t rows,
                int64_t cols, Precision p) {
  const TensorView& t = raw.require(name);
  if (t.ndim != 2 || t.shape[0] != rows || t.shape[1] != cols)
    throw Error(raw.origin() + ": tensor '" + name + "' has shape " + shape_string(t) + ", expected (" + std::to_string(rows) +
                ", " + std::to_string(cols) + ")");
  std::vector<float> w_in_out = wutil::matrix_in_out_f32(t, hp, name);  // [cols][rows]
  if (p.quantized()) {
    // Quantise exactly as the reference, on the (in, out) matrix: n = in rows, m = out cols.
    std::vector<uint8_t> q(size_t(rows * cols));
    std::vector<float> mx(rows), rx(rows), my(cols), ry(cols);
    wutil::quantize_u8(w_in_out.data(), cols, rows, q.data(), mx.data(), rx.data(), my.data(), ry.data());
    uint8_t* dst = out.begin_as<uint8_t>(name, DType::U8, {rows, cols});
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < rows; ++j) dst[j * cols + i] = q[size_t(i * rows + j)];
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
    for (int64_t i = 0; i < cols; ++i)
      for (int64_t j = 0; j < rows; ++j) dst[j * cols + i] = f32_to_bf16(w_in_out[size_t(i * rows + j)]);
    return;
  }
  float* dst = out.begin_as<float>(name, DType::F32, {rows, cols});
  for (int64_t i = 0; i < cols; ++i)
    for (int64_t j = 0; j < rows; ++j) dst[j * cols + i] = wutil::round_to(p.wtype, w_in_out[size_t(i * rows + j)]);
}

class CpuBackend : public Backend {
 public:
  void check_device(const StageSpec& spec) const override {
    if (spec.device != "cpu") throw Error("cpu_onednn serves device 'cpu', not '" + spec.device + "'");
    if (spec.stream_first >= 0) throw Error("cpu_onednn: '+' streaming is for GPU stages (a CPU stage's weights are in RAM already)");
  }

  std::string layout_id(const StageSpec& spec, const ModelHParams& hp) const override {
    return std::string("cpu_onednn/rwkv4/") + precision_name(spec.precision) + "/out-in-rowmajor/v" + kLayoutVersion;
  }

  uint64_t estimate_weight_bytes(const StageSpec& spec, const ModelHParams& hp) const override {
    const uint64_t C = hp.n_embd, Aa = hp.n_att, F = hp.n_ffn, V = hp.n_vocab;
    const uint64_t wb = dtype_size(spec.precision.wtype);
    auto mat = [&](uint64_t r, uint64_t c) { return r * c * wb + (spec.precision.quantized() ? (r + c) * 8 : 0); };
    uint64_t block = mat(Aa, C) * 3 + mat(C, Aa) + mat(F, C) + mat(C, F) + mat(C, C) + (9 * C + 2 * Aa) * 4;
    uint64_t n = block * uint64_t(spec.n_blocks());
    if (spec.has_head) n += mat(V, C) + 2 * C * 4;
    return n;
  }

  void prepare(const StageSpec& spec, const ModelHParams& hp, const WeightSource& raw, WeightSink& out,
               const ProgressFn& progress) const override {
    require_v4(hp);
    const int64_t C = hp.n_embd, Aa = hp.n_att, F = hp.n_ffn;
    const Precision p = spec.precision;
    const uint64_t total = estimate_weight_bytes(spec, hp);
    StageSpec one_block = spec;
    one_block.end_block = one_block.first_block + 1;
    one_block.has_head = false;
    const uint64_t per_block = estimate_weight_bytes(one_block, hp);
    uint64_t done = 0;
    for (int l = spec.first_block; l < spec.end_block; ++l) {
      for (const char* v : {"ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "att.time_mix_k", "att.time_mix_v",
                            "att.time_mix_r", "ffn.time_mix_k", "ffn.time_mix_r"})
        put_vector(raw, out, tensor_name(l, v), C, p.atype);
      for (const char* v : {"att.time_decay", "att.time_first"}) {  // fp32 always (§2.4)
        const std::string n = tensor_name(l, v);
        const TensorView& t = raw.require(n);
        if (t.numel() != Aa) throw Error(raw.origin() + ": tensor '" + n + "' has the wrong size");
        wutil::to_f32(t, out.begin_as<float>(n, DType::F32, {Aa}));
      }
      put_matrix(raw, out, hp, tensor_name(l, "att.key.weight"), Aa, C, p);
      put_matrix(raw, out, hp, tensor_name(l, "att.value.weight"), Aa, C, p);
      put_matrix(raw, out, hp, tensor_name(l, "att.receptance.weight"), Aa, C, p);
      put_matrix(raw, out, hp, tensor_name(l, "att.output.weight"), C, Aa, p);
      put_matrix(raw, out, hp, tensor_name(l, "ffn.key.weight"), F, C, p);
      put_matrix(raw, out, hp, tensor_name(l, "ffn.value.weight"), C, F, p);
      put_matrix(raw, out, hp, tensor_name(l, "ffn.receptance.weight"), C, C, p);
      done += per_block;
      if (progress) progress(done, total);
    }
    if (spec.has_head) {
      put_vector(raw, out, "ln_out.weight", C, p.atype);
      put_vector(raw, out, "ln_out.bias", C, p.atype);
      put_matrix(raw, out, hp, "head.weight", hp.n_vocab, C, p);
      if (progress) progress(total, total);
    }
  }

  std::unique_ptr<Stage> create_stage(const StageSpec& spec, const ModelHParams& hp, const WeightSource& prepared) const override {
    require_v4(hp);
    check_device(spec);
    return std::make_unique<Rwkv4Stage>(spec, hp, prepared);
  }
};

Backend* create_backend() { return new CpuBackend(); }

const ServedPair kServed[] = {{"cpu", "fp32"}, {"cpu", "bf16"}, {"cpu", "fp32i8"}, {"cpu", "bf16i8"}};

const PluginEntry kEntry = {CORVID_ABI_VERSION,
                            sizeof(PluginEntry),
                            PluginKind::Backend,
                            "cpu_onednn",
                            "0.1.0",
                            "RWKV-4 on the CPU: fp32, bf16, int8 weights; AVX-512/AVX2 GEMV decode, oneDNN GEMM prefill",
                            kServed,
                            sizeof(kServed) / sizeof(kServed[0]),
                            &create_backend,
                            nullptr,
                            nullptr};

}  // namespace
}  // namespace corvid::cpu

CORVID_DEFINE_PLUGIN(corvid::cpu::kEntry)
