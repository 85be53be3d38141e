// RWKV-5.0/5.1/5.2 and RWKV-6.0 on the CPU, written next to their equations
// (rwkv-reference §4.0, §4.2-4.4, §4.6, §4.7). Same machinery as RWKV-4
// (rwkv4_stage.cpp): decode = GEMVs of kernels.h batched per step, prefill =
// oneDNN sgemm through GemmContext, everything else element-wise on scratch
// sized once for chunk_len rows (no allocation per token). In a bf16 stage
// every value the reference holds in bf16 is rounded at the same point
// (`A(...)` = round to the activation type); r, k, v, the WKV state S, the
// decay/bonus, GroupNorm (ln_x) and the v6 decay are fp32 (§4.7).
//
// Prepared layout (what prepare_stage_v5 writes, create reads back), per block:
//   ln1/ln2 weight, bias; v5: att.time_mix_k/v/r[/g], ffn.time_mix_k/r;
//   v6: att.time_maa_x/w/k/v/r/g, ffn.time_maa_k/r       fp32 holding atype values
//   att.time_decay [A] fp32: v5.x w = exp(−exp(d)) (already from the raw loader),
//       expanded per channel for v5.0/5.1; v6 the raw d
//   att.time_first [A] fp32 u (expanded per channel for v5.0/5.1)
//   att.ln_x.weight/bias [A] fp32 (ln_x is fp32 even in bf16 stages, §2.4)
//   att.key/value/receptance/output[/gate], ffn.key/value/receptance: (out, in)
//       matrices as layout.h (fp32 / bf16 / int8 codes + side vectors)
//   v6 LoRA (atype, never quantised §2.5; stored (in, out) in the checkpoint,
//       transposed here to (out, in) for the GEMV kernels):
//       att.time_maa_w1 [5][Dm][C] (one (Dm, C) matrix per slot w,k,v,r,g),
//       att.time_maa_w2 [5][C][Dm], att.time_decay_w1 [Dd][C], att.time_decay_w2 [C][Dd]
//   att.time_state (optional) [H][N key][N value] fp32 holding atype values
//       (the checkpoint's [h][value][key] transposed, §4.6)
#include "rwkv5_stage.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "arch_dispatch.h"
#include "corvid/sdk/error.h"
#include "corvid/sdk/weights_util.h"
#include "elementwise.h"
#include "kernels.h"
#include "layout.h"
#include "thread_pool.h"

namespace corvid::cpu {

// ---------------------------------------------------------------------------
// The two new element-wise pieces (rwkv5_stage.h)

namespace v5 {

// Cloned for AVX-512 / AVX2 / baseline (resolved once at load): the inner loop
// is element-wise over i, so every clone gives the same bits.
__attribute__((target_clones("avx512f", "avx2", "default"))) void wkv5_head_step(const float* __restrict r, const float* __restrict k, const float* __restrict v,
                    const float* __restrict u, const float* __restrict w, float* __restrict S, float* __restrict y,
                    int N) {
  for (int i = 0; i < N; ++i) y[i] = 0.f;
  for (int j = 0; j < N; ++j) {
    const float kj = k[j], rj = r[j], uj = u[j], wj = w[j];
    float* __restrict row = S + size_t(j) * N;
    for (int i = 0; i < N; ++i) {
      const float kv = kj * v[i];               // k_j·v_i
      y[i] += rj * (uj * kv + row[i]);          // y_i += r_j·(u_j·k_j·v_i + S[j,i])
      row[i] = kv + wj * row[i];                // S[j,i] ← k_j·v_i + w_j·S[j,i]
    }
  }
}

void group_norm(const float* y, const float* gamma, const float* beta, float* out, int H, int N, float eps) {
  for (int h = 0; h < H; ++h) {
    const float* g = y + size_t(h) * N;
    double mean = 0, var = 0;
    for (int i = 0; i < N; ++i) mean += g[i];
    mean /= N;
    for (int i = 0; i < N; ++i) var += (g[i] - mean) * (g[i] - mean);
    var /= N;
    const double rstd = 1.0 / std::sqrt(var + double(eps));
    for (int i = 0; i < N; ++i) {
      const int c = h * N + i;
      out[c] = float((g[i] - mean) * rstd * gamma[c] + beta[c]);
    }
  }
}

}  // namespace v5

namespace {

constexpr float kGroupNormEps = 64e-5f;  // §4.3: ln_x eps

constexpr int kMaaSlots = 5;             // v6 data-dependent mixes: w, k, v, r, g (in M1/M2 order)

bool is_v6(const ModelHParams& hp) { return hp.arch >= Arch::V6_0; }
bool has_gate(const ModelHParams& hp) { return hp.arch >= Arch::V5_1; }

// Round to the activation type (bf16 stages) or keep (fp32 stages).
template <bool BF16>
inline float A(float v) {
  return BF16 ? bf16_to_f32(f32_to_bf16(v)) : v;
}

// v6 LoRA widths from the raw checkpoint; [GK] defaults when only an estimate is needed.
struct LoraDims {
  int Dm = 0, Dd = 0;
};
LoraDims lora_dims_raw(const WeightSource& raw, int block, int C) {
  LoraDims d;
  const TensorView& m1 = raw.require(tensor_name(block, "att.time_maa_w1"));
  const TensorView& d1 = raw.require(tensor_name(block, "att.time_decay_w1"));
  if (m1.ndim != 2 || m1.shape[0] != C || m1.shape[1] % kMaaSlots != 0)
    throw Error(raw.origin() + ": tensor '" + tensor_name(block, "att.time_maa_w1") + "' has shape " + shape_string(m1) +
                ", expected (" + std::to_string(C) + ", 5*Dm)");
  if (d1.ndim != 2 || d1.shape[0] != C)
    throw Error(raw.origin() + ": tensor '" + tensor_name(block, "att.time_decay_w1") + "' has shape " +
                shape_string(d1) + ", expected (" + std::to_string(C) + ", Dd)");
  d.Dm = int(m1.shape[1] / kMaaSlots);
  d.Dd = int(d1.shape[1]);
  return d;
}

// Decay/bonus as one fp32 value per channel: v5.0/5.1 hold one per head (H),
// broadcast over the head's N channels; v5.2/v6 hold (H, N) = A values.
void per_channel(const WeightSource& raw, const std::string& name, const ModelHParams& hp, float* dst) {
  const TensorView& t = raw.require(name);
  const int64_t Aa = hp.n_att, H = hp.n_head, N = hp.head_size;
  if (t.numel() == Aa) {
    wutil::to_f32(t, dst);
  } else if (t.numel() == H) {
    std::vector<float> h(static_cast<size_t>(H));
    wutil::to_f32(t, h.data());
    for (int64_t c = 0; c < Aa; ++c) dst[c] = h[size_t(c / N)];
  } else {
    throw Error(raw.origin() + ": tensor '" + name + "' has " + std::to_string(t.numel()) + " values, expected " +
                std::to_string(H) + " or " + std::to_string(Aa));
  }
}

// A LoRA matrix stored (in, out) in the checkpoint (slice `slot` of a 3-D one)
// written (out, in) in the activation type: fp32 or bf16 elements.
void prepare_lora(const TensorView& t, int64_t in, int64_t out_cols, int64_t col0, int64_t n_out, DType atype,
                  float* f32_dst, uint16_t* bf16_dst, int64_t slot = -1) {
  // Element (i, c) of the (in, out) matrix (of slot `slot` for 3-D).
  const int d0 = slot >= 0 ? 1 : 0;
  for (int64_t o = 0; o < n_out; ++o)
    for (int64_t i = 0; i < in; ++i) {
      int64_t off = i * t.strides[d0] + (col0 + o) * t.strides[d0 + 1];
      if (slot >= 0) off += slot * t.strides[0];
      const float v = wutil::load_scalar(t.data, t.dtype, off);
      if (atype == DType::BF16) bf16_dst[o * in + i] = f32_to_bf16(v);
      else f32_dst[o * in + i] = wutil::round_to(atype, v);
    }
  (void)out_cols;
}

void lora_out(WeightSink& out, const std::string& name, const TensorView& t, std::vector<int64_t> shape, int64_t in,
              int64_t out_cols, int slices, bool split_cols, DType atype) {
  // split_cols: the (in, slices*n) matrix becomes `slices` (n, in) matrices;
  // otherwise t is (slices, in, n) (or 2-D with slices = 1).
  const int64_t n = split_cols ? out_cols / slices : out_cols;
  const int64_t per = n * in;
  float* f = nullptr;
  uint16_t* b = nullptr;
  if (atype == DType::BF16) b = out.begin_as<uint16_t>(name, DType::BF16, shape);
  else f = out.begin_as<float>(name, DType::F32, shape);
  for (int s = 0; s < slices; ++s) {
    float* fs = f ? f + s * per : nullptr;
    uint16_t* bs = b ? b + s * per : nullptr;
    if (split_cols) prepare_lora(t, in, out_cols, s * n, n, atype, fs, bs);
    else prepare_lora(t, in, out_cols, 0, n, atype, fs, bs, t.ndim == 3 ? s : -1);
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Preparing

uint64_t prepared_bytes_v5(const StageSpec& spec, const ModelHParams& hp) {
  const uint64_t C = hp.n_embd, Aa = hp.n_att, F = hp.n_ffn, V = hp.n_vocab;
  const uint64_t wb = dtype_size(spec.precision.wtype), ab = dtype_size(spec.precision.atype);
  auto mat = [&](uint64_t r, uint64_t c) { return r * c * wb + (spec.precision.quantized() ? (r + c) * 8 : 0); };
  uint64_t block = mat(Aa, C) * 3 + mat(C, Aa) + mat(F, C) + mat(C, F) + mat(C, C) + (12 * C + 4 * Aa) * 4;
  if (has_gate(hp)) block += mat(Aa, C);
  if (is_v6(hp)) {
    const uint64_t Dm = C >= 4096 ? 64 : 32, Dd = C >= 4096 ? 128 : 64;  // [GK] estimate
    block += (2 * kMaaSlots * Dm * C + 2 * Dd * C) * ab;
  }
  uint64_t n = block * uint64_t(spec.n_blocks());
  if (spec.has_head) n += mat(V, C) + 2 * C * 4;
  return n;
}

void prepare_stage_v5(const StageSpec& spec, const ModelHParams& hp, const WeightSource& raw, WeightSink& out,
                      const ProgressFn& progress) {
  const int64_t C = hp.n_embd, Aa = hp.n_att, F = hp.n_ffn, H = hp.n_head, N = hp.head_size;
  const Precision p = spec.precision;
  const uint64_t total = prepared_bytes_v5(spec, hp);
  uint64_t done = 0;
  for (int l = spec.first_block; l < spec.end_block; ++l) {
    for (const char* v : {"ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias"})
      prepare_vector(raw, out, tensor_name(l, v), C, p.atype);
    if (is_v6(hp)) {
      for (const char* v : {"att.time_maa_x", "att.time_maa_w", "att.time_maa_k", "att.time_maa_v", "att.time_maa_r",
                            "att.time_maa_g", "ffn.time_maa_k", "ffn.time_maa_r"})
        prepare_vector(raw, out, tensor_name(l, v), C, p.atype);
    } else {
      for (const char* v : {"att.time_mix_k", "att.time_mix_v", "att.time_mix_r", "ffn.time_mix_k", "ffn.time_mix_r"})
        prepare_vector(raw, out, tensor_name(l, v), C, p.atype);
      if (has_gate(hp)) prepare_vector(raw, out, tensor_name(l, "att.time_mix_g"), C, p.atype);
    }
    for (const char* v : {"att.time_decay", "att.time_first"}) {  // fp32 always (§2.4)
      const std::string n = tensor_name(l, v);
      per_channel(raw, n, hp, out.begin_as<float>(n, DType::F32, {Aa}));
    }
    for (const char* v : {"att.ln_x.weight", "att.ln_x.bias"}) {  // fp32 (§2.4)
      const std::string n = tensor_name(l, v);
      const TensorView& t = raw.require(n);
      if (t.numel() != Aa) throw Error(raw.origin() + ": tensor '" + n + "' has the wrong size");
      wutil::to_f32(t, out.begin_as<float>(n, DType::F32, {Aa}));
    }
    prepare_matrix(raw, out, hp, tensor_name(l, "att.key.weight"), Aa, C, p);
    prepare_matrix(raw, out, hp, tensor_name(l, "att.value.weight"), Aa, C, p);
    prepare_matrix(raw, out, hp, tensor_name(l, "att.receptance.weight"), Aa, C, p);
    prepare_matrix(raw, out, hp, tensor_name(l, "att.output.weight"), C, Aa, p);
    if (has_gate(hp)) prepare_matrix(raw, out, hp, tensor_name(l, "att.gate.weight"), Aa, C, p);
    prepare_matrix(raw, out, hp, tensor_name(l, "ffn.key.weight"), F, C, p);
    prepare_matrix(raw, out, hp, tensor_name(l, "ffn.value.weight"), C, F, p);
    prepare_matrix(raw, out, hp, tensor_name(l, "ffn.receptance.weight"), C, C, p);
    if (is_v6(hp)) {
      const LoraDims d = lora_dims_raw(raw, l, int(C));
      const std::string m2n = tensor_name(l, "att.time_maa_w2"), d2n = tensor_name(l, "att.time_decay_w2");
      const TensorView& m2 = raw.require(m2n);
      const TensorView& d2 = raw.require(d2n);
      if (m2.ndim != 3 || m2.shape[0] != kMaaSlots || m2.shape[1] != d.Dm || m2.shape[2] != C)
        throw Error(raw.origin() + ": tensor '" + m2n + "' has shape " + shape_string(m2) + ", expected (5, " +
                    std::to_string(d.Dm) + ", " + std::to_string(C) + ")");
      if (d2.ndim != 2 || d2.shape[0] != d.Dd || d2.shape[1] != C)
        throw Error(raw.origin() + ": tensor '" + d2n + "' has shape " + shape_string(d2) + ", expected (" +
                    std::to_string(d.Dd) + ", " + std::to_string(C) + ")");
      // M1 (C, 5·Dm): slot s = columns s·Dm … s·Dm+Dm−1 → five (Dm, C) matrices.
      lora_out(out, tensor_name(l, "att.time_maa_w1"), raw.require(tensor_name(l, "att.time_maa_w1")),
               {kMaaSlots, d.Dm, C}, C, kMaaSlots * d.Dm, kMaaSlots, true, p.atype);
      // M2 (5, Dm, C) → five (C, Dm) matrices.
      lora_out(out, m2n, m2, {kMaaSlots, C, d.Dm}, d.Dm, C, kMaaSlots, false, p.atype);
      lora_out(out, tensor_name(l, "att.time_decay_w1"), raw.require(tensor_name(l, "att.time_decay_w1")), {d.Dd, C}, C,
               d.Dd, 1, false, p.atype);
      lora_out(out, d2n, d2, {C, d.Dd}, d.Dd, C, 1, false, p.atype);
    }
    // Optional trained initial state: [h][value][key] in the file, cast to the
    // atype (§2.5, so rounded under bf16), transposed to [h][key][value].
    const std::string tsn = tensor_name(l, "att.time_state");
    if (const TensorView* ts = raw.find(tsn)) {
      if (ts->numel() != H * N * N || ts->ndim != 3)
        throw Error(raw.origin() + ": tensor '" + tsn + "' has shape " + shape_string(*ts) + ", expected (" +
                    std::to_string(H) + ", " + std::to_string(N) + ", " + std::to_string(N) + ")");
      float* dst = out.begin_as<float>(tsn, DType::F32, {H, N, N});
      for (int64_t h = 0; h < H; ++h)
        for (int64_t vi = 0; vi < N; ++vi)
          for (int64_t kj = 0; kj < N; ++kj) {
            const float x = wutil::load_scalar(ts->data, ts->dtype,
                                               h * ts->strides[0] + vi * ts->strides[1] + kj * ts->strides[2]);
            dst[(h * N + kj) * N + vi] = wutil::round_to(p.atype, x);
          }
    }
    done += total / uint64_t(std::max(1, spec.n_blocks() + (spec.has_head ? 1 : 0)));
    if (progress) progress(std::min(done, total), total);
  }
  if (spec.has_head) {
    prepare_vector(raw, out, "ln_out.weight", C, p.atype);
    prepare_vector(raw, out, "ln_out.bias", C, p.atype);
    prepare_matrix(raw, out, hp, "head.weight", hp.n_vocab, C, p);
    if (progress) progress(total, total);
  }
}

// ---------------------------------------------------------------------------
// State: per block att_shift[C], S[H][N key][N value], ffn_shift[C] (§4.6),
// which is also the canonical serialisation (backend.h StageState).

namespace {

class Rwkv5State : public StageState {
 public:
  // initial: the trained state in this layout (nullptr: zeros), owned by the stage.
  Rwkv5State(int n_blocks, int C_, int A_, int N, const std::vector<float>* initial)
      : C(C_), Aw(A_), per_block_(size_t(2 * C_) + size_t(A_) * size_t(N)), initial_(initial),
        data_(per_block_ * size_t(n_blocks)) {
    reset();
  }
  std::unique_ptr<StageState> clone() const override { return std::make_unique<Rwkv5State>(*this); }
  void copy_from(const StageState& o) override {
    const auto* s = dynamic_cast<const Rwkv5State*>(&o);
    if (!s || s->data_.size() != data_.size()) throw Error("cpu_onednn: state belongs to another stage");
    std::memcpy(data_.data(), s->data_.data(), data_.size() * sizeof(float));
  }
  // Zeros, or S = time_state where the checkpoint has one (§4.6).
  void reset() override {
    if (initial_ && initial_->size() == data_.size()) std::memcpy(data_.data(), initial_->data(), data_.size() * 4);
    else std::fill(data_.begin(), data_.end(), 0.f);
  }
  size_t serialized_floats() const override { return data_.size(); }
  void serialize(float* dst) const override { std::memcpy(dst, data_.data(), data_.size() * sizeof(float)); }
  void deserialize(const float* src) override { std::memcpy(data_.data(), src, data_.size() * sizeof(float)); }

  float* block(int i) { return data_.data() + size_t(i) * per_block_; }
  int C, Aw;

 private:
  size_t per_block_;
  const std::vector<float>* initial_;  // owned by the stage, which outlives its states' use
  std::vector<float> data_;
};

// An atype LoRA matrix (slice `slot` of a stacked tensor): F32 or BF16, never int8.
Matrix lora(const WeightSource& w, const std::string& name, int rows, int cols, int slot, DType atype) {
  return prepared_float_matrix(w, name, rows, cols, atype, size_t(slot) * size_t(rows) * size_t(cols));
}


struct Rwkv5Block {
  const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
  // v5: μ and (1 − μ) in the atype. v6: maa vectors (maa plays 1 − μ, §4.4).
  std::vector<float> att_mk, att_mv, att_mr, att_mg, att_1mk, att_1mv, att_1mr, att_1mg;
  std::vector<float> ffn_mk, ffn_mr, ffn_1mk, ffn_1mr;
  const float *maa_x = nullptr, *maa[kMaaSlots] = {}, *ffn_maa_k = nullptr, *ffn_maa_r = nullptr;
  const float *decay, *first;  // v5: w = exp(−exp(d)); v6: raw d. u per channel. fp32.
  const float *lnx_w, *lnx_b;
  Matrix att_k, att_v, att_r, att_o, att_g, ffn_k, ffn_v, ffn_r;
  Matrix maa_w1[kMaaSlots], maa_w2[kMaaSlots], decay_w1, decay_w2;  // v6 LoRA, atype
};

class Rwkv5Stage : public Stage {
 public:
  Rwkv5Stage(const StageSpec& spec, const ModelHParams& hp, const WeightSource& w);
  std::unique_ptr<StageState> new_state() const override {
    return std::make_unique<Rwkv5State>(spec_.n_blocks(), hp_.n_embd, hp_.n_att, hp_.head_size,
                                        initial_.empty() ? nullptr : &initial_);
  }
  void forward(float* x, int T, StageState& state, const ForwardOptions& opts) override {
    auto* st = dynamic_cast<Rwkv5State*>(&state);
    if (!st) throw Error("cpu_onednn: state belongs to another backend");
    if (T < 1 || T > std::max(1, spec_.chunk_len))
      throw Error("cpu_onednn: chunk of " + std::to_string(T) + " rows exceeds chunk_len");
    if (bf16_act_) run<true>(x, T, *st, opts);
    else run<false>(x, T, *st, opts);
  }
  uint64_t resident_weight_bytes() const override;
  std::string describe() const override;

 private:
  template <bool BF16>
  void run(float* x, int T, Rwkv5State& st, const ForwardOptions& opts);
  template <bool BF16>
  void time_mix(const Rwkv5Block& b, int T, float* s_att, float* S);
  template <bool BF16>
  void channel_mix(const Rwkv5Block& b, int T, float* s_ffn);

  using Product = StageProducts::Product;
  // Y[T][rows] = X[T][cols] W^T for each product: one pool job of GEMVs for a
  // token, one oneDNN GEMM each for a chunk.
  void matmuls(std::initializer_list<Product> ps, int T) { products_.run(isa_, ps, T, pool_); }
  // The v6 decay LoRA products: Y[T][rows] = X[T][cols] W^T summed in double
  // and rounded once, like the reference's matmul. Why not the GEMV/GEMM
  // kernels: this LoRA feeds exp(−exp(·)), so one bf16 rounding flip of its
  // output (a near-tie that fp32 summation order decides) moves w enough to
  // shift logits by 0.035 a few tokens later; it happened on the rwkv6 bf16
  // fixture with the AVX2/AVX-512 kernels and with the sgemm order. Summing in
  // double gives the same bits on every ISA and in step and chunk mode. It is
  // 2·Dd·C multiply-adds per block (0.4 % of a block at C = 2048). The mix
  // LoRA (time_maa_w1/w2, 4x larger) stays on the kernels: a flip there is not
  // amplified (the fixtures pass bit-exactly on every ISA).
  void lora_products(std::initializer_list<Product> ps, int T) { products_.run_f64(isa_, ps, T, pool_); }

  StageSpec spec_;
  ModelHParams hp_;
  Isa isa_;
  int threads_;
  bool bf16_act_;
  int Dm_ = 0, Dd_ = 0;
  std::vector<Rwkv5Block> blocks_;
  std::vector<float> initial_;  // time_state per block in state layout (empty: zeros)
  const float *lnout_w_ = nullptr, *lnout_b_ = nullptr;
  Matrix head_;
  // Scratch for chunk_len rows, sized once.
  std::vector<float> xx_, dx_, kx_, vx_, rx_, gx_, wx_, r_, k_, v_, g_, y_, o_, tmp_, ffk_, w_;
  std::vector<float> lora_h_[kMaaSlots], lora_m_[kMaaSlots], dec_h_;
  ThreadPool pool_;
  StageProducts products_;  // GEMV scratch and GEMM tiles
};

Rwkv5Stage::Rwkv5Stage(const StageSpec& spec, const ModelHParams& hp, const WeightSource& w)
    : spec_(spec),
      hp_(hp),
      isa_(select_isa(std::getenv("CORVID_CPU_ISA"))),
      threads_(spec.threads > 0 ? spec.threads : physical_cores()),
      bf16_act_(spec.precision.atype == DType::BF16),
      pool_(threads_) {
  const int C = hp.n_embd, Aa = hp.n_att, F = hp.n_ffn, H = hp.n_head, N = hp.head_size;
  if (H <= 0 || N <= 0 || H * N != Aa) throw Error("cpu_onednn: RWKV-5/6 needs H·N = n_att");
  const Precision p = spec.precision;
  const DType at = p.atype;
  auto mix = [&](const std::string& n, std::vector<float>& mu, std::vector<float>& one_minus) {
    const float* m = prepared_vector(w, n, C);
    mu.assign(m, m + C);
    one_minus.resize(size_t(C));
    for (int i = 0; i < C; ++i) one_minus[size_t(i)] = wutil::round_to(at, 1.f - mu[size_t(i)]);  // (1 − μ) in the atype
  };
  const size_t per_state_block = size_t(2 * C) + size_t(Aa) * size_t(N);
  bool any_state = false;
  for (int l = spec.first_block; l < spec.end_block; ++l) {
    Rwkv5Block b;
    b.ln1_w = prepared_vector(w, tensor_name(l, "ln1.weight"), C);
    b.ln1_b = prepared_vector(w, tensor_name(l, "ln1.bias"), C);
    b.ln2_w = prepared_vector(w, tensor_name(l, "ln2.weight"), C);
    b.ln2_b = prepared_vector(w, tensor_name(l, "ln2.bias"), C);
    if (is_v6(hp)) {
      b.maa_x = prepared_vector(w, tensor_name(l, "att.time_maa_x"), C);
      const char* slots[kMaaSlots] = {"att.time_maa_w", "att.time_maa_k", "att.time_maa_v", "att.time_maa_r",
                                      "att.time_maa_g"};
      for (int s = 0; s < kMaaSlots; ++s) b.maa[s] = prepared_vector(w, tensor_name(l, slots[s]), C);
      b.ffn_maa_k = prepared_vector(w, tensor_name(l, "ffn.time_maa_k"), C);
      b.ffn_maa_r = prepared_vector(w, tensor_name(l, "ffn.time_maa_r"), C);
      const TensorView& m1 = w.require(tensor_name(l, "att.time_maa_w1"));
      const TensorView& d1 = w.require(tensor_name(l, "att.time_decay_w1"));
      if (m1.ndim != 3 || d1.ndim != 2) throw Error(w.origin() + ": prepared v6 LoRA has the wrong shape");
      Dm_ = int(m1.shape[1]);
      Dd_ = int(d1.shape[0]);
      for (int s = 0; s < kMaaSlots; ++s) {
        b.maa_w1[s] = lora(w, tensor_name(l, "att.time_maa_w1"), Dm_, C, s, at);
        b.maa_w2[s] = lora(w, tensor_name(l, "att.time_maa_w2"), C, Dm_, s, at);
      }
      b.decay_w1 = lora(w, tensor_name(l, "att.time_decay_w1"), Dd_, C, 0, at);
      b.decay_w2 = lora(w, tensor_name(l, "att.time_decay_w2"), C, Dd_, 0, at);
    } else {
      mix(tensor_name(l, "att.time_mix_k"), b.att_mk, b.att_1mk);
      mix(tensor_name(l, "att.time_mix_v"), b.att_mv, b.att_1mv);
      mix(tensor_name(l, "att.time_mix_r"), b.att_mr, b.att_1mr);
      if (has_gate(hp)) mix(tensor_name(l, "att.time_mix_g"), b.att_mg, b.att_1mg);
      mix(tensor_name(l, "ffn.time_mix_k"), b.ffn_mk, b.ffn_1mk);
      mix(tensor_name(l, "ffn.time_mix_r"), b.ffn_mr, b.ffn_1mr);
    }
    b.decay = prepared_vector(w, tensor_name(l, "att.time_decay"), Aa);
    b.first = prepared_vector(w, tensor_name(l, "att.time_first"), Aa);
    b.lnx_w = prepared_vector(w, tensor_name(l, "att.ln_x.weight"), Aa);
    b.lnx_b = prepared_vector(w, tensor_name(l, "att.ln_x.bias"), Aa);
    b.att_k = prepared_matrix(w, tensor_name(l, "att.key.weight"), Aa, C, p);
    b.att_v = prepared_matrix(w, tensor_name(l, "att.value.weight"), Aa, C, p);
    b.att_r = prepared_matrix(w, tensor_name(l, "att.receptance.weight"), Aa, C, p);
    b.att_o = prepared_matrix(w, tensor_name(l, "att.output.weight"), C, Aa, p);
    if (has_gate(hp)) b.att_g = prepared_matrix(w, tensor_name(l, "att.gate.weight"), Aa, C, p);
    b.ffn_k = prepared_matrix(w, tensor_name(l, "ffn.key.weight"), F, C, p);
    b.ffn_v = prepared_matrix(w, tensor_name(l, "ffn.value.weight"), C, F, p);
    b.ffn_r = prepared_matrix(w, tensor_name(l, "ffn.receptance.weight"), C, C, p);
    blocks_.push_back(std::move(b));
    // The trained initial state, placed where the state keeps S.
    if (const TensorView* ts = w.find(tensor_name(l, "att.time_state"))) {
      if (!any_state) initial_.assign(per_state_block * size_t(spec.n_blocks()), 0.f);
      any_state = true;
      if (ts->dtype != DType::F32 || ts->numel() != int64_t(Aa) * N)
        throw Error(w.origin() + ": prepared tensor '" + tensor_name(l, "att.time_state") + "' has the wrong size");
      std::memcpy(initial_.data() + size_t(l - spec.first_block) * per_state_block + size_t(C), ts->as<float>(),
                  size_t(Aa) * size_t(N) * sizeof(float));
    }
  }
  if (spec.has_head) {
    lnout_w_ = prepared_vector(w, "ln_out.weight", C);
    lnout_b_ = prepared_vector(w, "ln_out.bias", C);
    head_ = prepared_matrix(w, "head.weight", hp.n_vocab, C, p);
  }
  const size_t Tm = size_t(std::max(1, spec.chunk_len));
  const size_t Wd = size_t(std::max({C, Aa, F}));
  for (auto* v : {&xx_, &dx_, &kx_, &vx_, &rx_, &gx_, &wx_, &r_, &k_, &v_, &g_, &y_, &o_, &tmp_, &w_})
    v->assign(Tm * Wd, 0.f);
  ffk_.assign(Tm * size_t(F), 0.f);
  for (int s = 0; s < kMaaSlots; ++s) {
    lora_h_[s].assign(Tm * size_t(std::max(1, Dm_)), 0.f);
    lora_m_[s].assign(is_v6(hp) ? Tm * size_t(C) : 0, 0.f);
  }
  dec_h_.assign(Tm * size_t(std::max(1, Dd_)), 0.f);
  products_.reserve(int(Wd), threads_);
}

uint64_t Rwkv5Stage::resident_weight_bytes() const {
  uint64_t n = 0;
  for (const auto& b : blocks_) {
    for (const Matrix* m : {&b.att_k, &b.att_v, &b.att_r, &b.att_o, &b.att_g, &b.ffn_k, &b.ffn_v, &b.ffn_r,
                            &b.decay_w1, &b.decay_w2})
      if (m->rows) n += m->weight_bytes();
    for (int s = 0; s < kMaaSlots; ++s)
      if (b.maa_w1[s].rows) n += b.maa_w1[s].weight_bytes() + b.maa_w2[s].weight_bytes();
  }
  if (spec_.has_head) n += head_.weight_bytes();
  return n;
}

std::string Rwkv5Stage::describe() const {
  return std::string("cpu_onednn RWKV ") + arch_name(hp_.arch) + " " + precision_name(spec_.precision) + ", " +
         isa_name(isa_) + " kernels, " + std::to_string(threads_) + " thread(s), blocks " +
         std::to_string(spec_.first_block) + "-" + std::to_string(spec_.end_block - 1) + (spec_.has_head ? " + head" : "");
}



// ---- TimeMix (§4.3 v5.x, §4.4 v6) -------------------------------------------
template <bool BF16>
void Rwkv5Stage::time_mix(const Rwkv5Block& b, int T, float* s_att, float* S) {
  const int C = hp_.n_embd, Aa = hp_.n_att, H = hp_.n_head, N = hp_.head_size;
  const size_t TC = size_t(T) * C, TA = size_t(T) * Aa;
  const float* xx = xx_.data();
  auto prev = [&](int t) { return t == 0 ? s_att : xx + size_t(t - 1) * C; };  // row t shifts from row t−1

  if (!is_v6(hp_)) {
    // v5: x_k = x̂⊙μ_k + ŝ⊙(1−μ_k)  (x_v, x_r, v5.1+ x_g likewise)
    for (int t = 0; t < T; ++t) {
      const size_t o = size_t(t) * C;
      ew::token_shift_mix(xx + o, prev(t), b.att_mk.data(), b.att_1mk.data(), kx_.data() + o, C, BF16);
      ew::token_shift_mix(xx + o, prev(t), b.att_mv.data(), b.att_1mv.data(), vx_.data() + o, C, BF16);
      ew::token_shift_mix(xx + o, prev(t), b.att_mr.data(), b.att_1mr.data(), rx_.data() + o, C, BF16);
      if (has_gate(hp_))
        ew::token_shift_mix(xx + o, prev(t), b.att_mg.data(), b.att_1mg.data(), gx_.data() + o, C, BF16);
    }
  } else {
    // v6: δ = ŝ − x̂;  z = x̂ + δ⊙maa_x
    for (int t = 0; t < T; ++t) {
      const float* cur = xx + size_t(t) * C;
      const float* pv = prev(t);
      float* d = dx_.data() + size_t(t) * C;
      float* z = wx_.data() + size_t(t) * C;
      for (int c = 0; c < C; ++c) {
        d[c] = A<BF16>(pv[c] - cur[c]);
        z[c] = A<BF16>(cur[c] + A<BF16>(d[c] * b.maa_x[c]));
      }
    }
    // m_s = tanh(z·M1)[slot s]·M2[s]   for s = w, k, v, r, g
    matmuls({{&b.maa_w1[0], wx_.data(), lora_h_[0].data()},
             {&b.maa_w1[1], wx_.data(), lora_h_[1].data()},
             {&b.maa_w1[2], wx_.data(), lora_h_[2].data()},
             {&b.maa_w1[3], wx_.data(), lora_h_[3].data()},
             {&b.maa_w1[4], wx_.data(), lora_h_[4].data()}},
            T);
    for (int s = 0; s < kMaaSlots; ++s)
      for (size_t i = 0; i < size_t(T) * size_t(Dm_); ++i) lora_h_[s][i] = A<BF16>(std::tanh(A<BF16>(lora_h_[s][i])));
    matmuls({{&b.maa_w2[0], lora_h_[0].data(), lora_m_[0].data()},
             {&b.maa_w2[1], lora_h_[1].data(), lora_m_[1].data()},
             {&b.maa_w2[2], lora_h_[2].data(), lora_m_[2].data()},
             {&b.maa_w2[3], lora_h_[3].data(), lora_m_[3].data()},
             {&b.maa_w2[4], lora_h_[4].data(), lora_m_[4].data()}},
            T);
    // x_s = x̂ + δ⊙(maa_s + m_s)
    float* outs[kMaaSlots] = {wx_.data(), kx_.data(), vx_.data(), rx_.data(), gx_.data()};
    for (int s = 0; s < kMaaSlots; ++s)
      for (int t = 0; t < T; ++t) {
        const size_t o = size_t(t) * C;
        const float* m = lora_m_[s].data() + o;
        for (int c = 0; c < C; ++c)
          outs[s][o + c] = A<BF16>(xx[o + c] + A<BF16>(dx_[o + c] * A<BF16>(b.maa[s][c] + A<BF16>(m[c]))));
      }
  }
  std::memcpy(s_att, xx + size_t(T - 1) * C, sizeof(float) * C);  // ŝ ← x̂

  // r, k, v = x_r W_r, x_k W_k, x_v W_v in fp32 (a bf16 stage's matmul returns
  // bf16 first, then .float());  g = silu(x_g W_g) in the atype
  if (has_gate(hp_))
    matmuls({{&b.att_r, rx_.data(), r_.data()}, {&b.att_k, kx_.data(), k_.data()}, {&b.att_v, vx_.data(), v_.data()},
             {&b.att_g, gx_.data(), g_.data()}},
            T);
  else
    matmuls({{&b.att_r, rx_.data(), r_.data()}, {&b.att_k, kx_.data(), k_.data()}, {&b.att_v, vx_.data(), v_.data()}}, T);
  if (BF16) {
    ew::round_bf16(r_.data(), TA);
    ew::round_bf16(k_.data(), TA);
    ew::round_bf16(v_.data(), TA);
  }
  if (has_gate(hp_))
    for (size_t i = 0; i < TA; ++i) {
      const float gv = A<BF16>(g_[i]);
      g_[i] = A<BF16>(gv / (1.0f + std::exp(-gv)));  // silu(x) = x·σ(x)
    }

  // v6 decay per token and channel: w = exp(−exp(time_decay + tanh(x_w D1)·D2)), fp32
  const float* wrow = b.decay;
  if (is_v6(hp_)) {
    lora_products({{&b.decay_w1, wx_.data(), dec_h_.data()}}, T);
    for (size_t i = 0; i < size_t(T) * size_t(Dd_); ++i) dec_h_[i] = A<BF16>(std::tanh(A<BF16>(dec_h_[i])));
    lora_products({{&b.decay_w2, dec_h_.data(), w_.data()}}, T);
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < C; ++c) {
        const size_t i = size_t(t) * C + c;
        const float d = b.decay[c] + A<BF16>(w_[i]);  // the LoRA output leaves in the atype, added in fp32
        w_[i] = std::exp(-std::exp(d));
      }
  }

  // WKV per token and head (fp32 state):
  //   y_i = Σ_j r_j·(u_j·k_j·v_i + S[j,i]);   S[j,i] ← k_j·v_i + w_j·S[j,i]
  for (int t = 0; t < T; ++t) {
    const size_t o = size_t(t) * Aa;
    const float* wt = is_v6(hp_) ? w_.data() + o : wrow;
    // Heads are independent (each its own N×N state): split across the pool.
    pool_.for_chunks(H, [&](int h, int) {
      const size_t c = size_t(h) * N;
      v5::wkv5_head_step(r_.data() + o + c, k_.data() + o + c, v_.data() + o + c, b.first + c, wt + c,
                         S + size_t(h) * N * N, y_.data() + o + c, N);
    });
    // o = GroupNorm_H(y; ln_x, eps 64e-5) → atype;   v5.1+: o ← o ⊙ silu(x_g W_g)
    v5::group_norm(y_.data() + o, b.lnx_w, b.lnx_b, o_.data() + o, H, N, kGroupNormEps);
  }
  if (BF16) ew::round_bf16(o_.data(), TA);
  if (has_gate(hp_))
    for (size_t i = 0; i < TA; ++i) o_[i] = A<BF16>(o_[i] * g_[i]);
  (void)TC;
}

// ---- ChannelMix (§4.2 v5.x, §4.4 v6) ---------------------------------------
template <bool BF16>
void Rwkv5Stage::channel_mix(const Rwkv5Block& b, int T, float* s_ffn) {
  const int C = hp_.n_embd, F = hp_.n_ffn;
  const float* xx = xx_.data();
  for (int t = 0; t < T; ++t) {
    const size_t o = size_t(t) * C;
    const float* pv = t == 0 ? s_ffn : xx + o - C;
    if (!is_v6(hp_)) {
      // x_k = x̂⊙μ_k + ŝ_ffn⊙(1−μ_k);  x_r likewise
      ew::token_shift_mix(xx + o, pv, b.ffn_mk.data(), b.ffn_1mk.data(), kx_.data() + o, C, BF16);
      ew::token_shift_mix(xx + o, pv, b.ffn_mr.data(), b.ffn_1mr.data(), rx_.data() + o, C, BF16);
    } else {
      // δ = ŝ_ffn − x̂;  x_k = x̂ + δ⊙maa_k;  x_r = x̂ + δ⊙maa_r
      for (int c = 0; c < C; ++c) {
        const float d = A<BF16>(pv[c] - xx[o + c]);
        kx_[o + c] = A<BF16>(xx[o + c] + A<BF16>(d * b.ffn_maa_k[c]));
        rx_[o + c] = A<BF16>(xx[o + c] + A<BF16>(d * b.ffn_maa_r[c]));
      }
    }
  }
  std::memcpy(s_ffn, xx + size_t(T - 1) * C, sizeof(float) * C);  // ŝ_ffn ← x̂
  // out = σ(x_r W_r) ⊙ (max(x_k W_k, 0)² · W_v)
  matmuls({{&b.ffn_r, rx_.data(), r_.data()}, {&b.ffn_k, kx_.data(), ffk_.data()}}, T);
  ew::sigmoid(r_.data(), size_t(T) * C, BF16);
  ew::relu_square(ffk_.data(), size_t(T) * F, BF16);
  matmuls({{&b.ffn_v, ffk_.data(), tmp_.data()}}, T);
}

template <bool BF16>
void Rwkv5Stage::run(float* x, int T, Rwkv5State& st, const ForwardOptions& opts) {
  const int C = hp_.n_embd, Aa = hp_.n_att, N = hp_.head_size;
  const int R = hp_.rescale_layer;
  const size_t TC = size_t(T) * C;
  if (BF16) ew::round_bf16(x, TC);  // x.to(atype) entering the stage

  for (size_t bi = 0; bi < blocks_.size(); ++bi) {
    const Rwkv5Block& b = blocks_[bi];
    const int layer = spec_.first_block + int(bi);
    float* s = st.block(int(bi));
    float* s_att = s;
    float* S = s + C;
    float* s_ffn = s + C + size_t(Aa) * N;

    // x ← x + TimeMix(LN1(x)) = x + o·W_o
    for (int t = 0; t < T; ++t) ew::layer_norm(x + size_t(t) * C, b.ln1_w, b.ln1_b, xx_.data() + size_t(t) * C, C, BF16);
    time_mix<BF16>(b, T, s_att, S);
    matmuls({{&b.att_o, o_.data(), tmp_.data()}}, T);
    ew::add_residual(x, tmp_.data(), TC, BF16);

    // x ← x + ChannelMix(LN2(x))
    for (int t = 0; t < T; ++t) ew::layer_norm(x + size_t(t) * C, b.ln2_w, b.ln2_b, xx_.data() + size_t(t) * C, C, BF16);
    channel_mix<BF16>(b, T, s_ffn);
    ew::add_gated_residual(x, r_.data(), tmp_.data(), TC, BF16);

    // RESCALE_LAYER (§2.2): the weights of later blocks were pre-divided.
    if (R > 0 && (layer + 1) % R == 0) ew::halve(x, TC, BF16);
  }

  // Head: logits = LN_out(x) W_head, only when asked for.
  if (spec_.has_head && opts.logits)
    products_.run_head(isa_, head_, x, T, opts.all_logits, lnout_w_, lnout_b_, xx_.data(), BF16, opts.logits, pool_);
}

}  // namespace

std::unique_ptr<Stage> make_rwkv5_stage(const StageSpec& spec, const ModelHParams& hp, const WeightSource& prepared) {
  return std::make_unique<Rwkv5Stage>(spec, hp, prepared);
}

}  // namespace corvid::cpu
