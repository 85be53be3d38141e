// RWKV-7 on the CPU, written next to its equations (rwkv-reference §1.3, §2.8,
// §4.5, §4.6). Same machinery as RWKV-4/5/6: decode = GEMVs of kernels.h
// batched per step, prefill = oneDNN sgemm through GemmContext (the recurrence
// still runs token by token), everything else element-wise on scratch sized
// once for chunk_len rows (no allocation per token, no name lookups after
// construction).
//
// Precision: the reference's v7 class casts every tensor to the model dtype
// and keeps only S in fp32. In a bf16 stage `A(...)` rounds to bf16 at each
// point the class holds a bf16 tensor (tests/reference/README item 10, v7).
// int8 (Corvid extension): att receptance/key/value/output, ffn key/value and
// the head are quantised with the §2.6 scheme; LoRA matrices and vectors stay
// in the activation type.
//
// Prepared layout (what prepare_stage_v7 writes, create reads back), per block:
//   ln1/ln2 weight, bias; att.x_r/x_w/x_k/x_v/x_a/x_g, att.w0, a0, k_k, k_a,
//   att.r_k (flattened to C), att.ln_x.weight/bias, ffn.x_k; att.v0 for
//   blocks > 0                                   fp32 holding atype values
//   att.receptance/key/value/output, ffn.key/value: (out, in) matrices (layout.h)
//   LoRA (stored (in, out) in the checkpoint, written (out, in) in the atype):
//   att.w1 [Dw][C], att.w2 [C][Dw], a1/a2 (Da), g1/g2 (Dg), blocks > 0: v1/v2 (Dv)
#include "rwkv7_stage.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
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
#include "rwkv5_stage.h"  // v5::group_norm (ln_x is the same per-head GroupNorm)
#include "thread_pool.h"

namespace corvid::cpu {

namespace {
template <bool BF16>
inline float A(float v) {
  return BF16 ? bf16_to_f32(f32_to_bf16(v)) : v;
}
inline float rb(float v) { return bf16_to_f32(f32_to_bf16(v)); }
inline float sigmoidf(float x) { return 1.0f / (1.0f + std::exp(-x)); }
}  // namespace

// ---------------------------------------------------------------------------
// The new element-wise pieces (rwkv7_stage.h)

namespace v7 {

// Compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time (the
// element-wise loops vectorise; reductions keep their order, so the bits are
// the same on every clone: no -ffast-math, no FMA contraction).
__attribute__((target_clones("avx512f", "avx2", "default"))) void wkv7_head_step(const float* __restrict r, const float* __restrict w, const float* __restrict k,
                    const float* __restrict v, const float* __restrict kappa, const float* __restrict a,
                    float* __restrict S, float* __restrict y, int N, bool bf16, float* __restrict ab,
                    float* __restrict sa) {
  if (!bf16) {
    // Both sums below run over l (or j) in order for each row, so each is one
    // chain of dependent adds; eight rows are summed side by side so that
    // eight chains are in flight (one chain at a time left the loop waiting
    // on the add latency: ≈ 2 ms of a 0.4B token). Same order, same bits.
    constexpr int R = 8;
    // sa_i = Σ_l S[i,l]·(−κ_l)   (old S)
    int i0 = 0;
    for (; i0 + R <= N; i0 += R) {
      float acc[R] = {};
      for (int l = 0; l < N; ++l) {
        const float nk = -kappa[l];
        for (int q = 0; q < R; ++q) acc[q] += S[size_t(i0 + q) * N + l] * nk;
      }
      for (int q = 0; q < R; ++q) sa[i0 + q] = acc[q];
    }
    for (int i = i0; i < N; ++i) {
      const float* row = S + size_t(i) * N;
      float acc = 0.f;
      for (int l = 0; l < N; ++l) acc += row[l] * -kappa[l];
      sa[i] = acc;
    }
    // S[i,j] ← S[i,j]·ω_j + sa_i·(κ_j·a_j) + v_i·k_j;   y_i = Σ_j S[i,j]·r_j
    float* b = ab;  // b_j = κ_j·a_j
    for (int j = 0; j < N; ++j) b[j] = kappa[j] * a[j];
    for (int i = 0; i < N; ++i) {  // the update is element-wise: vectorised over j
      float* row = S + size_t(i) * N;
      const float si = sa[i], vi = v[i];
      for (int j = 0; j < N; ++j) row[j] = (row[j] * w[j] + si * b[j]) + vi * k[j];
    }
    for (i0 = 0; i0 + R <= N; i0 += R) {
      float acc[R] = {};
      for (int j = 0; j < N; ++j)
        for (int q = 0; q < R; ++q) acc[q] += S[size_t(i0 + q) * N + j] * r[j];
      for (int q = 0; q < R; ++q) y[i0 + q] = acc[q];
    }
    for (int i = i0; i < N; ++i) {
      const float* row = S + size_t(i) * N;
      float acc = 0.f;
      for (int j = 0; j < N; ++j) acc += row[j] * r[j];
      y[i] = acc;
    }
    return;
  }
  // bf16: ab[l,j] = bf16(−κ_l·bf16(κ_j·a_j)) is rounded element by element, so
  // S·ab does not factor; it is an N×N·N×N product per head (README item 7).
  for (int j = 0; j < N; ++j) sa[j] = rb(kappa[j] * a[j]);
  for (int l = 0; l < N; ++l)
    for (int j = 0; j < N; ++j) ab[size_t(l) * N + j] = rb(-kappa[l] * sa[j]);
  for (int i = 0; i < N; ++i) {
    float* row = S + size_t(i) * N;
    // (S·ab)[i,j] over the old row i, accumulated in y scratch-free order
    float sab[1024];  // N ≤ 1024 checked at construction
    for (int j = 0; j < N; ++j) sab[j] = 0.f;
    for (int l = 0; l < N; ++l) {
      const float s = row[l];
      const float* abl = ab + size_t(l) * N;
      for (int j = 0; j < N; ++j) sab[j] += s * abl[j];
    }
    const float vi = v[i];
    float acc = 0.f;
    for (int j = 0; j < N; ++j) {
      row[j] = (row[j] * w[j] + sab[j]) + rb(vi * k[j]);
      acc += rb(row[j]) * r[j];
    }
    y[i] = rb(acc);
  }
}

namespace {
// rb() on sixteen lanes: RNE to bf16 kept in fp32, NaN stays a quiet NaN.
__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline)) inline __m512 rb16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i hi = _mm512_set1_epi32(int(0xffff0000u));
  // maskz form: the plain intrinsic trips a GCC 12 -Wuninitialized false positive
  const __m512i lsb = _mm512_and_si512(_mm512_maskz_srli_epi32(__mmask16(0xffff), u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_and_si512(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), hi);
  const __m512i nan = _mm512_and_si512(_mm512_or_si512(u, _mm512_set1_epi32(0x00400000)), hi);
  const __mmask16 is_nan =
      _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  return _mm512_castsi512_ps(_mm512_mask_blend_epi32(is_nan, rounded, nan));
}
}  // namespace

// S[i,:] ← ((S⊙ω) + sab) + bf16(v_i·k);  tr = bf16(S[i,:])·r  (B vectors of 16).
__attribute__((target("avx512f,avx512bw,avx512vl"), always_inline)) inline void wkv7_bf16_finish_row(
    const float* r, const float* w, const float* k, float v_i, float* row, const __m512* sab, float* tr, int B) {
  const __m512 vi = _mm512_set1_ps(v_i);
  for (int b = 0; b < B; ++b) {
    const int j = 16 * b;
    const __m512 nr = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(row + j), _mm512_loadu_ps(w + j)), sab[b]),
                                    rb16(_mm512_mul_ps(vi, _mm512_loadu_ps(k + j))));
    _mm512_storeu_ps(row + j, nr);
    _mm512_store_ps(tr + j, _mm512_mul_ps(rb16(nr), _mm512_loadu_ps(r + j)));
  }
}

// S·ab and the update for rows [0, N), BB vectors of 16 per row (BB = N / 16
// when it is a compile-time constant, so the 2·BB accumulators stay in
// registers; 0 = read B at run time).
template <int BB>
__attribute__((target("avx512f,avx512bw,avx512vl"))) void wkv7_bf16_rows(const float* __restrict r, const float* __restrict w,
                                                                         const float* __restrict k, const float* __restrict v,
                                                                         const float* __restrict ab, float* __restrict S,
                                                                         float* __restrict y, int N) {
  const int B = BB ? BB : N / 16;
  constexpr int kMaxB = BB ? BB : 64;  // N ≤ 1024
  alignas(64) float t[2][1024];        // bf16(S_new[i,j])·r_j
  __m512 s0[kMaxB], s1[kMaxB];
  int i = 0;
  // Two rows at a time: 2·B independent accumulator chains.
  for (; i + 2 <= N; i += 2) {
    const float* row0 = S + size_t(i) * N;
    const float* row1 = row0 + N;
    for (int b = 0; b < B; ++b) s0[b] = s1[b] = _mm512_setzero_ps();
    for (int l = 0; l < N; ++l) {
      const __m512 x0 = _mm512_set1_ps(row0[l]), x1 = _mm512_set1_ps(row1[l]);
      const float* abl = ab + size_t(l) * N;
      for (int b = 0; b < B; ++b) {
        const __m512 m = _mm512_loadu_ps(abl + 16 * b);
        s0[b] = _mm512_add_ps(s0[b], _mm512_mul_ps(x0, m));
        s1[b] = _mm512_add_ps(s1[b], _mm512_mul_ps(x1, m));
      }
    }
    wkv7_bf16_finish_row(r, w, k, v[i], S + size_t(i) * N, s0, t[0], B);
    wkv7_bf16_finish_row(r, w, k, v[i + 1], S + size_t(i + 1) * N, s1, t[1], B);
    // y_i = bf16(Σ_j t[j]) summed in j order (two independent chains).
    float acc0 = 0.f, acc1 = 0.f;
    for (int j = 0; j < N; ++j) {
      acc0 += t[0][j];
      acc1 += t[1][j];
    }
    y[i] = rb(acc0);
    y[i + 1] = rb(acc1);
  }
  for (; i < N; ++i) {
    const float* row = S + size_t(i) * N;
    for (int b = 0; b < B; ++b) s0[b] = _mm512_setzero_ps();
    for (int l = 0; l < N; ++l) {
      const __m512 x0 = _mm512_set1_ps(row[l]);
      for (int b = 0; b < B; ++b) s0[b] = _mm512_add_ps(s0[b], _mm512_mul_ps(x0, _mm512_loadu_ps(ab + size_t(l) * N + 16 * b)));
    }
    wkv7_bf16_finish_row(r, w, k, v[i], S + size_t(i) * N, s0, t[0], B);
    float acc = 0.f;
    for (int j = 0; j < N; ++j) acc += t[0][j];
    y[i] = rb(acc);
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl"))) void wkv7_head_step_bf16_avx512(
    const float* __restrict r, const float* __restrict w, const float* __restrict k, const float* __restrict v,
    const float* __restrict kappa, const float* __restrict a, float* __restrict S, float* __restrict y, int N,
    float* __restrict ab, float* __restrict sa) {
  // N % 16 == 0, N ≤ 1024 (checked by the caller and at construction).
  for (int j = 0; j < N; j += 16)
    _mm512_storeu_ps(sa + j, rb16(_mm512_mul_ps(_mm512_loadu_ps(kappa + j), _mm512_loadu_ps(a + j))));
  for (int l = 0; l < N; ++l) {
    const __m512 nk = _mm512_set1_ps(-kappa[l]);
    for (int j = 0; j < N; j += 16) _mm512_storeu_ps(ab + size_t(l) * N + j, rb16(_mm512_mul_ps(nk, _mm512_loadu_ps(sa + j))));
  }
  switch (N) {
    case 64: return wkv7_bf16_rows<4>(r, w, k, v, ab, S, y, N);  // every RWKV-7 release so far
    case 128: return wkv7_bf16_rows<8>(r, w, k, v, ab, S, y, N);
    default: return wkv7_bf16_rows<0>(r, w, k, v, ab, S, y, N);
  }
}

void l2_normalize_heads(const float* x, float* out, int H, int N, bool bf16) {
  for (int h = 0; h < H; ++h) {
    const float* g = x + size_t(h) * N;
    double ss = 0;
    for (int i = 0; i < N; ++i) ss += double(g[i]) * double(g[i]);
    float n = float(std::sqrt(ss));
    if (bf16) n = rb(n);
    const float d = std::max(n, 1e-12f);
    for (int i = 0; i < N; ++i) {
      const float q = g[i] / d;
      out[size_t(h) * N + i] = bf16 ? rb(q) : q;
    }
  }
}

}  // namespace v7

namespace {

constexpr float kGroupNormEps = 64e-5f;   // §4.5: ln_x eps
constexpr float kDecayScale = 0.606531f;  // e^{−0.5}, the reference's literal

// The four LoRA pairs of a v7 block, in checkpoint names.
struct LoraName {
  const char *down, *up;
};
constexpr LoraName kLoraW{"att.w1", "att.w2"}, kLoraA{"att.a1", "att.a2"}, kLoraV{"att.v1", "att.v2"},
    kLoraG{"att.g1", "att.g2"};

void refuse_deep_embed(const WeightSource& raw, int block) {
  for (const char* n : {"ffn.s_emb.weight", "ffn.s_emb_x.weight", "ffn.s0", "ffn.s1", "ffn.s2"})
    if (raw.find(tensor_name(block, n)))
      throw Error(raw.origin() + ": tensor '" + tensor_name(block, n) +
                  "' belongs to RWKV-7 DeepEmbed (RWKV_DE_VERSION), which Corvid does not support");
}

// A LoRA matrix stored (in, out) written (out, in) in the activation type.
// Returns its width D (the out dim of `down`, the in dim of `up`).
int64_t prepare_lora(const WeightSource& raw, WeightSink& out, const std::string& name, int64_t in, int64_t outd,
                     bool in_known, DType atype) {
  const TensorView& t = raw.require(name);
  if (t.ndim != 2 || (in_known ? t.shape[0] != in : t.shape[1] != outd))
    throw Error(raw.origin() + ": tensor '" + name + "' has shape " + shape_string(t) + ", expected (" +
                (in_known ? std::to_string(in) : std::string("D")) + ", " +
                (in_known ? std::string("D") : std::to_string(outd)) + ")");
  const int64_t I = t.shape[0], O = t.shape[1];
  if (atype == DType::BF16) {
    uint16_t* d = out.begin_as<uint16_t>(name, DType::BF16, {O, I});
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < I; ++i)
        d[o * I + i] = f32_to_bf16(wutil::load_scalar(t.data, t.dtype, i * t.strides[0] + o * t.strides[1]));
  } else {
    float* d = out.begin_as<float>(name, DType::F32, {O, I});
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < I; ++i)
        d[o * I + i] = wutil::round_to(atype, wutil::load_scalar(t.data, t.dtype, i * t.strides[0] + o * t.strides[1]));
  }
  return in_known ? O : I;
}

}  // namespace

// ---------------------------------------------------------------------------
// Preparing

uint64_t prepared_bytes_v7(const StageSpec& spec, const ModelHParams& hp) {
  const uint64_t C = hp.n_embd, F = hp.n_ffn, V = hp.n_vocab;
  const uint64_t wb = dtype_size(spec.precision.wtype), ab = dtype_size(spec.precision.atype);
  auto mat = [&](uint64_t r, uint64_t c) { return r * c * wb + (spec.precision.quantized() ? (r + c) * 8 : 0); };
  const uint64_t D = C >= 4096 ? 128 : 64;  // [GK] LoRA width estimate
  const uint64_t block = mat(C, C) * 4 + mat(F, C) + mat(C, F) + 8 * D * C * ab + 19 * C * 4;
  uint64_t n = block * uint64_t(spec.n_blocks());
  if (spec.has_head) n += mat(V, C) + 2 * C * 4;
  return n;
}

void prepare_stage_v7(const StageSpec& spec, const ModelHParams& hp, const WeightSource& raw, WeightSink& out,
                      const ProgressFn& progress) {
  const int64_t C = hp.n_embd, F = hp.n_ffn;
  const Precision p = spec.precision;
  const uint64_t total = prepared_bytes_v7(spec, hp);
  uint64_t done = 0;
  for (int l = spec.first_block; l < spec.end_block; ++l) {
    refuse_deep_embed(raw, l);
    for (const char* v : {"ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "att.x_r", "att.x_w", "att.x_k",
                          "att.x_v", "att.x_a", "att.x_g", "att.w0", "att.a0", "att.k_k", "att.k_a", "att.r_k",
                          "att.ln_x.weight", "att.ln_x.bias", "ffn.x_k"})
      prepare_vector(raw, out, tensor_name(l, v), C, p.atype);
    if (l > 0) prepare_vector(raw, out, tensor_name(l, "att.v0"), C, p.atype);  // layer 0's v0/v1/v2 are unused
    for (const char* m : {"att.receptance.weight", "att.key.weight", "att.value.weight", "att.output.weight"})
      prepare_matrix(raw, out, hp, tensor_name(l, m), C, C, p);
    prepare_matrix(raw, out, hp, tensor_name(l, "ffn.key.weight"), F, C, p);
    prepare_matrix(raw, out, hp, tensor_name(l, "ffn.value.weight"), C, F, p);
    for (const LoraName& ln : {kLoraW, kLoraA, kLoraV, kLoraG}) {
      if (&ln == &kLoraV && l == 0) continue;
      const int64_t D = prepare_lora(raw, out, tensor_name(l, ln.down), C, 0, true, p.atype);
      const TensorView& up = raw.require(tensor_name(l, ln.up));
      if (up.ndim != 2 || up.shape[0] != D || up.shape[1] != C)
        throw Error(raw.origin() + ": tensor '" + tensor_name(l, ln.up) + "' has shape " + shape_string(up) +
                    ", expected (" + std::to_string(D) + ", " + std::to_string(C) + ")");
      prepare_lora(raw, out, tensor_name(l, ln.up), 0, C, false, p.atype);
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
// State: per block att_shift[C], S[H][N value][N key], ffn_shift[C] (§4.6),
// also the canonical serialisation (backend.h StageState). Starts at zeros.

namespace {

class Rwkv7State : public StageState {
 public:
  Rwkv7State(int n_blocks, int C, int N) : per_block_(size_t(2 * C) + size_t(C) * size_t(N)), data_(per_block_ * size_t(n_blocks), 0.f) {}
  std::unique_ptr<StageState> clone() const override { return std::make_unique<Rwkv7State>(*this); }
  void copy_from(const StageState& o) override {
    const auto* s = dynamic_cast<const Rwkv7State*>(&o);
    if (!s || s->data_.size() != data_.size()) throw Error("cpu_onednn: state belongs to another stage");
    std::memcpy(data_.data(), s->data_.data(), data_.size() * sizeof(float));
  }
  void reset() override { std::fill(data_.begin(), data_.end(), 0.f); }
  size_t serialized_floats() const override { return data_.size(); }
  void serialize(float* dst) const override { std::memcpy(dst, data_.data(), data_.size() * sizeof(float)); }
  void deserialize(const float* src) override { std::memcpy(data_.data(), src, data_.size() * sizeof(float)); }
  float* block(int i) { return data_.data() + size_t(i) * per_block_; }

 private:
  size_t per_block_;
  std::vector<float> data_;
};

// A LoRA matrix (out, in) in the atype: F32 or BF16, never int8.
Matrix lora(const WeightSource& w, const std::string& name, int cols, DType atype) {
  const TensorView& t = w.require(name);
  if (t.ndim != 2 || t.shape[1] != cols) throw Error(w.origin() + ": prepared tensor '" + name + "' has the wrong shape");
  return prepared_float_matrix(w, name, int(t.shape[0]), cols, atype);
}


struct Rwkv7Block {
  const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
  const float *mu_r, *mu_w, *mu_k, *mu_v, *mu_a, *mu_g;  // att.x_c
  const float *w0, *a0, *v0 = nullptr, *k_k, *k_a, *r_k, *lnx_w, *lnx_b, *ffn_mu_k;
  Matrix att_r, att_k, att_v, att_o, ffn_k, ffn_v;
  Matrix w1, w2, a1, a2, v1, v2, g1, g2;  // LoRA (out, in), atype
};

class Rwkv7Stage : public Stage {
 public:
  Rwkv7Stage(const StageSpec& spec, const ModelHParams& hp, const WeightSource& w);
  std::unique_ptr<StageState> new_state() const override {
    return std::make_unique<Rwkv7State>(spec_.n_blocks(), hp_.n_embd, hp_.head_size);
  }
  void forward(float* x, int T, StageState& state, const ForwardOptions& opts) override {
    auto* st = dynamic_cast<Rwkv7State*>(&state);
    if (!st) throw Error("cpu_onednn: state belongs to another backend");
    if (T < 1 || T > std::max(1, spec_.chunk_len))
      throw Error("cpu_onednn: chunk of " + std::to_string(T) + " rows exceeds chunk_len");
    float* vf = opts.v_first;
    if (!vf) {
      // A stage holding every block may run without the hand-off buffer.
      if (spec_.first_block != 0) throw Error("cpu_onednn: RWKV-7 stage needs ForwardOptions::v_first");
      vf = vfirst_.data();
    }
    if (bf16_act_) run<true>(x, T, *st, opts, vf);
    else run<false>(x, T, *st, opts, vf);
  }
  uint64_t resident_weight_bytes() const override;
  std::string describe() const override;

 private:
  template <bool BF16>
  void run(float* x, int T, Rwkv7State& st, const ForwardOptions& opts, float* v_first);
  template <bool BF16>
  void time_mix(const Rwkv7Block& b, bool layer0, int T, float* s_att, float* S, float* v_first);
  template <bool BF16>
  void channel_mix(const Rwkv7Block& b, int T, float* s_ffn);

  using Product = StageProducts::Product;
  // Y[T][rows] = X[T][cols] W^T: one pool job of GEMVs per token, one oneDNN GEMM each per chunk.
  void matmuls(std::initializer_list<Product> ps, int T) { products_.run(isa_, ps, T, pool_); }
  // LoRA products summed in double and rounded once (the same bits on every
  // ISA and in step and chunk mode, as the v6 stage does; the decay LoRA
  // feeds exp(−0.6·σ(·)) where one bf16 flip is visible downstream).
  void lora_products(std::initializer_list<Product> ps, int T) { products_.run_f64(isa_, ps, T, pool_); }

  StageSpec spec_;
  ModelHParams hp_;
  Isa isa_;
  int threads_;
  bool bf16_act_;
  std::vector<Rwkv7Block> blocks_;
  const float *lnout_w_ = nullptr, *lnout_b_ = nullptr;
  Matrix head_;
  // Scratch for chunk_len rows, sized once.
  std::vector<float> xx_, dx_, xr_, xw_, xk_, xv_, xa_, xg_, r_, k_, v_, w_, a_, g_, kap_, y_, o_, tmp_, ffk_, vfirst_;
  std::vector<float> hw_, ha_, hv_, hg_, vm_;  // LoRA hidden rows, v mix
  std::vector<float> ab_, sa_;                 // wkv7 scratch, one set per pool thread
  ThreadPool pool_;
  StageProducts products_;  // GEMV scratch and GEMM tiles
};

Rwkv7Stage::Rwkv7Stage(const StageSpec& spec, const ModelHParams& hp, const WeightSource& w)
    : spec_(spec),
      hp_(hp),
      isa_(select_isa(std::getenv("CORVID_CPU_ISA"))),
      threads_(spec.threads > 0 ? spec.threads : physical_cores()),
      bf16_act_(spec.precision.atype == DType::BF16),
      pool_(threads_) {
  const int C = hp.n_embd, F = hp.n_ffn, H = hp.n_head, N = hp.head_size;
  if (H <= 0 || N <= 0 || N > 1024 || H * N != C) throw Error("cpu_onednn: RWKV-7 needs H·N = n_embd (N ≤ 1024)");
  const Precision p = spec.precision;
  const DType at = p.atype;
  for (int l = spec.first_block; l < spec.end_block; ++l) {
    Rwkv7Block b;
    auto V = [&](const char* n) { return prepared_vector(w, tensor_name(l, n), C); };
    b.ln1_w = V("ln1.weight");
    b.ln1_b = V("ln1.bias");
    b.ln2_w = V("ln2.weight");
    b.ln2_b = V("ln2.bias");
    b.mu_r = V("att.x_r");
    b.mu_w = V("att.x_w");
    b.mu_k = V("att.x_k");
    b.mu_v = V("att.x_v");
    b.mu_a = V("att.x_a");
    b.mu_g = V("att.x_g");
    b.w0 = V("att.w0");
    b.a0 = V("att.a0");
    b.k_k = V("att.k_k");
    b.k_a = V("att.k_a");
    b.r_k = V("att.r_k");
    b.lnx_w = V("att.ln_x.weight");
    b.lnx_b = V("att.ln_x.bias");
    b.ffn_mu_k = V("ffn.x_k");
    b.att_r = prepared_matrix(w, tensor_name(l, "att.receptance.weight"), C, C, p);
    b.att_k = prepared_matrix(w, tensor_name(l, "att.key.weight"), C, C, p);
    b.att_v = prepared_matrix(w, tensor_name(l, "att.value.weight"), C, C, p);
    b.att_o = prepared_matrix(w, tensor_name(l, "att.output.weight"), C, C, p);
    b.ffn_k = prepared_matrix(w, tensor_name(l, "ffn.key.weight"), F, C, p);
    b.ffn_v = prepared_matrix(w, tensor_name(l, "ffn.value.weight"), C, F, p);
    auto pair = [&](const LoraName& n, Matrix& down, Matrix& up) {
      down = lora(w, tensor_name(l, n.down), C, at);
      up = lora(w, tensor_name(l, n.up), down.rows, at);
      if (up.rows != C) throw Error(w.origin() + ": prepared tensor '" + tensor_name(l, n.up) + "' has the wrong shape");
    };
    pair(kLoraW, b.w1, b.w2);
    pair(kLoraA, b.a1, b.a2);
    pair(kLoraG, b.g1, b.g2);
    if (l > 0) {
      b.v0 = V("att.v0");
      pair(kLoraV, b.v1, b.v2);
    }
    blocks_.push_back(std::move(b));
  }
  if (spec.has_head) {
    lnout_w_ = prepared_vector(w, "ln_out.weight", C);
    lnout_b_ = prepared_vector(w, "ln_out.bias", C);
    head_ = prepared_matrix(w, "head.weight", hp.n_vocab, C, p);
  }
  int D = 1;
  for (const Rwkv7Block& b : blocks_) D = std::max({D, b.w1.rows, b.a1.rows, b.g1.rows, b.v1.rows});
  const size_t Tm = size_t(std::max(1, spec.chunk_len));
  const size_t Wd = size_t(std::max(C, F));
  for (auto* v : {&xx_, &dx_, &xr_, &xw_, &xk_, &xv_, &xa_, &xg_, &r_, &k_, &v_, &w_, &a_, &g_, &kap_, &y_, &o_, &tmp_,
                  &vm_, &vfirst_})
    v->assign(Tm * size_t(C), 0.f);
  ffk_.assign(Tm * size_t(F), 0.f);
  for (auto* v : {&hw_, &ha_, &hv_, &hg_}) v->assign(Tm * size_t(D), 0.f);
  ab_.assign(size_t(pool_.size()) * N * N, 0.f);  // one set per pool thread
  sa_.assign(size_t(pool_.size()) * N, 0.f);
  products_.reserve(int(Wd), threads_);
}

uint64_t Rwkv7Stage::resident_weight_bytes() const {
  uint64_t n = 0;
  for (const auto& b : blocks_)
    for (const Matrix* m : {&b.att_r, &b.att_k, &b.att_v, &b.att_o, &b.ffn_k, &b.ffn_v, &b.w1, &b.w2, &b.a1, &b.a2,
                            &b.v1, &b.v2, &b.g1, &b.g2})
      if (m->rows) n += m->weight_bytes();
  if (spec_.has_head) n += head_.weight_bytes();
  return n;
}

std::string Rwkv7Stage::describe() const {
  return std::string("cpu_onednn RWKV ") + arch_name(hp_.arch) + " " + precision_name(spec_.precision) + ", " +
         isa_name(isa_) + " kernels, " + std::to_string(threads_) + " thread(s), blocks " +
         std::to_string(spec_.first_block) + "-" + std::to_string(spec_.end_block - 1) + (spec_.has_head ? " + head" : "");
}



// ---- TimeMix (§4.5) ----------------------------------------------------------
template <bool BF16>
void Rwkv7Stage::time_mix(const Rwkv7Block& b, bool layer0, int T, float* s_att, float* S, float* v_first) {
  const int C = hp_.n_embd, H = hp_.n_head, N = hp_.head_size;
  const size_t TC = size_t(T) * C;
  const float* xx = xx_.data();

  // δ = ŝ − x̂;  x_c = x̂ + δ⊙μ_c   for c ∈ {r, w, k, v, a, g}
  {
    const float* mus[6] = {b.mu_r, b.mu_w, b.mu_k, b.mu_v, b.mu_a, b.mu_g};
    float* outs[6] = {xr_.data(), xw_.data(), xk_.data(), xv_.data(), xa_.data(), xg_.data()};
    for (int t = 0; t < T; ++t) {
      const size_t o = size_t(t) * C;
      const float* pv = t == 0 ? s_att : xx + o - C;  // row t shifts from row t−1
      for (int c = 0; c < C; ++c) dx_[o + c] = A<BF16>(pv[c] - xx[o + c]);
      for (int s = 0; s < 6; ++s)
        for (int c = 0; c < C; ++c) outs[s][o + c] = A<BF16>(xx[o + c] + A<BF16>(dx_[o + c] * mus[s][c]));
    }
  }
  std::memcpy(s_att, xx + size_t(T - 1) * C, sizeof(float) * C);  // ŝ ← x̂

  // r = x_r W_r;  k = x_k W_k;  v = x_v W_v
  matmuls({{&b.att_r, xr_.data(), r_.data()}, {&b.att_k, xk_.data(), k_.data()}, {&b.att_v, xv_.data(), v_.data()}}, T);
  if (BF16) {
    ew::round_bf16(r_.data(), TC);
    ew::round_bf16(k_.data(), TC);
    ew::round_bf16(v_.data(), TC);
  }

  // LoRA down-projections: x_w W1, x_a A1, x_g G1 (and x_v V1 for layers > 0)
  if (layer0)
    lora_products({{&b.w1, xw_.data(), hw_.data()}, {&b.a1, xa_.data(), ha_.data()}, {&b.g1, xg_.data(), hg_.data()}}, T);
  else
    lora_products({{&b.w1, xw_.data(), hw_.data()},
                   {&b.a1, xa_.data(), ha_.data()},
                   {&b.g1, xg_.data(), hg_.data()},
                   {&b.v1, xv_.data(), hv_.data()}},
                  T);
  const size_t nw = size_t(T) * size_t(b.w1.rows), na = size_t(T) * size_t(b.a1.rows),
               ng = size_t(T) * size_t(b.g1.rows);
  for (size_t i = 0; i < nw; ++i) hw_[i] = A<BF16>(std::tanh(A<BF16>(hw_[i])));  // tanh(x_w W1)
  for (size_t i = 0; i < na; ++i) ha_[i] = A<BF16>(ha_[i]);                      // x_a A1
  for (size_t i = 0; i < ng; ++i) hg_[i] = A<BF16>(sigmoidf(A<BF16>(hg_[i])));    // σ(x_g G1)
  if (!layer0) {
    const size_t nv = size_t(T) * size_t(b.v1.rows);
    for (size_t i = 0; i < nv; ++i) hv_[i] = A<BF16>(hv_[i]);  // x_v V1
  }
  // Up-projections: ·W2, ·A2, ·G2 (·V2)
  if (layer0)
    lora_products({{&b.w2, hw_.data(), w_.data()}, {&b.a2, ha_.data(), a_.data()}, {&b.g2, hg_.data(), g_.data()}}, T);
  else
    lora_products({{&b.w2, hw_.data(), w_.data()},
                   {&b.a2, ha_.data(), a_.data()},
                   {&b.g2, hg_.data(), g_.data()},
                   {&b.v2, hv_.data(), vm_.data()}},
                  T);

  for (int t = 0; t < T; ++t) {
    const size_t o = size_t(t) * C;
    float *w = w_.data() + o, *a = a_.data() + o, *g = g_.data() + o, *k = k_.data() + o, *v = v_.data() + o;
    float* kap = kap_.data() + o;
    float* vf = v_first + o;
    for (int c = 0; c < C; ++c) {
      // d = w0 + tanh(x_w W1)·W2;   ω = exp(−e^{−0.5}·σ(d))  (fp32)
      const float d = A<BF16>(b.w0[c] + A<BF16>(w[c]));
      w[c] = std::exp(-kDecayScale * sigmoidf(d));
      // a = σ(a0 + (x_a A1)·A2);   g = σ(x_g G1)·G2
      a[c] = A<BF16>(sigmoidf(A<BF16>(b.a0[c] + A<BF16>(a[c]))));
      g[c] = A<BF16>(g[c]);
      // κ input: k ⊙ k_k
      kap[c] = A<BF16>(k[c] * b.k_k[c]);
    }
    // κ = per-head L2-normalize(k ⊙ k_k)
    v7::l2_normalize_heads(kap, kap, H, N, BF16);
    for (int c = 0; c < C; ++c) {
      // k ← k ⊙ (1 + (a − 1) ⊙ k_a)
      k[c] = A<BF16>(k[c] * A<BF16>(1.0f + A<BF16>(A<BF16>(a[c] - 1.0f) * b.k_a[c])));
    }
    if (layer0) {
      std::memcpy(vf, v, sizeof(float) * C);  // layer 0: v_first ← v
    } else {
      // v ← v + (v_first − v) ⊙ σ(v0 + (x_v V1)·V2)
      const float* vmr = vm_.data() + o;
      for (int c = 0; c < C; ++c) {
        const float m = A<BF16>(sigmoidf(A<BF16>(b.v0[c] + A<BF16>(vmr[c]))));
        v[c] = A<BF16>(v[c] + A<BF16>(A<BF16>(vf[c] - v[c]) * m));
      }
    }
    // Per head: S[i,j] ← S[i,j]·ω_j + (Σ_l S[i,l]·(−κ_l))·κ_j·a_j + v_i·k_j;  y = S·r
    float* y = y_.data() + o;
    const float* r = r_.data() + o;
    // Heads are independent: split across the pool, per-thread scratch.
    const bool fast_bf16 = BF16 && isa_ >= Isa::Avx512 && N % 16 == 0;
    pool_.for_chunks(H, [&](int h, int thread) {
      const size_t c = size_t(h) * N;
      float* ab = ab_.data() + size_t(thread) * N * N;
      float* sa = sa_.data() + size_t(thread) * N;
      if (fast_bf16)
        v7::wkv7_head_step_bf16_avx512(r + c, w + c, k + c, v + c, kap + c, a + c, S + size_t(h) * N * N, y + c, N, ab, sa);
      else
        v7::wkv7_head_step(r + c, w + c, k + c, v + c, kap + c, a + c, S + size_t(h) * N * N, y + c, N, BF16, ab, sa);
    });
    // y ← GroupNorm_H(y; ln_x, eps 64e-5) + per head (Σ_j r_j·k_j·r_k_j)·v
    float* out = o_.data() + o;
    v5::group_norm(y, b.lnx_w, b.lnx_b, out, H, N, kGroupNormEps);
    for (int h = 0; h < H; ++h) {
      const size_t c0 = size_t(h) * N;
      float bonus = 0.f;
      for (int j = 0; j < N; ++j) bonus += A<BF16>(A<BF16>(r[c0 + j] * k[c0 + j]) * b.r_k[c0 + j]);
      bonus = A<BF16>(bonus);
      for (int j = 0; j < N; ++j) {
        const size_t c = c0 + j;
        // out = (y ⊙ g), fed to W_o
        out[c] = A<BF16>(A<BF16>(A<BF16>(out[c]) + A<BF16>(bonus * v[c])) * g[c]);
      }
    }
  }
}

// ---- ChannelMix (§4.5): x_k = x̂ + (ŝ_ffn − x̂)⊙μ_k;  out = max(x_k W_k, 0)²·W_v
template <bool BF16>
void Rwkv7Stage::channel_mix(const Rwkv7Block& b, int T, float* s_ffn) {
  const int C = hp_.n_embd, F = hp_.n_ffn;
  const float* xx = xx_.data();
  for (int t = 0; t < T; ++t) {
    const size_t o = size_t(t) * C;
    const float* pv = t == 0 ? s_ffn : xx + o - C;
    for (int c = 0; c < C; ++c) {
      const float d = A<BF16>(pv[c] - xx[o + c]);
      xk_[o + c] = A<BF16>(xx[o + c] + A<BF16>(d * b.ffn_mu_k[c]));
    }
  }
  std::memcpy(s_ffn, xx + size_t(T - 1) * C, sizeof(float) * C);  // ŝ_ffn ← x̂
  matmuls({{&b.ffn_k, xk_.data(), ffk_.data()}}, T);
  ew::relu_square(ffk_.data(), size_t(T) * F, BF16);
  matmuls({{&b.ffn_v, ffk_.data(), tmp_.data()}}, T);
}

template <bool BF16>
void Rwkv7Stage::run(float* x, int T, Rwkv7State& st, const ForwardOptions& opts, float* v_first) {
  const int C = hp_.n_embd, N = hp_.head_size;
  const size_t TC = size_t(T) * C;
  if (BF16) ew::round_bf16(x, TC);  // x in the model dtype entering the stage

  for (size_t bi = 0; bi < blocks_.size(); ++bi) {
    const Rwkv7Block& b = blocks_[bi];
    const int layer = spec_.first_block + int(bi);
    float* s = st.block(int(bi));
    float* s_att = s;
    float* S = s + C;
    float* s_ffn = s + C + size_t(C) * N;

    // x ← x + TMix(LN1(x)) = x + (y ⊙ g)·W_o
    for (int t = 0; t < T; ++t) ew::layer_norm(x + size_t(t) * C, b.ln1_w, b.ln1_b, xx_.data() + size_t(t) * C, C, BF16);
    time_mix<BF16>(b, layer == 0, T, s_att, S, v_first);
    matmuls({{&b.att_o, o_.data(), tmp_.data()}}, T);
    if (BF16) ew::round_bf16(tmp_.data(), TC);
    ew::add_residual(x, tmp_.data(), TC, BF16);

    // x ← x + CMix(LN2(x))
    for (int t = 0; t < T; ++t) ew::layer_norm(x + size_t(t) * C, b.ln2_w, b.ln2_b, xx_.data() + size_t(t) * C, C, BF16);
    channel_mix<BF16>(b, T, s_ffn);
    if (BF16) ew::round_bf16(tmp_.data(), TC);
    ew::add_residual(x, tmp_.data(), TC, BF16);
  }

  // Head: logits = LN_out(x)·W_head (in the model dtype), only when asked for.
  if (spec_.has_head && opts.logits)
    products_.run_head(isa_, head_, x, T, opts.all_logits, lnout_w_, lnout_b_, xx_.data(), BF16, opts.logits, pool_);
}

}  // namespace

std::unique_ptr<Stage> make_rwkv7_stage(const StageSpec& spec, const ModelHParams& hp, const WeightSource& prepared) {
  return std::make_unique<Rwkv7Stage>(spec, hp, prepared);
}

}  // namespace corvid::cpu
