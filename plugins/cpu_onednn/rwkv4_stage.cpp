// The RWKV-4 forward pass on the CPU, written next to its equations
// (rwkv-reference §4.0-4.2). Activations are fp32 arrays; in a bf16 stage
// every value the reference holds in bf16 is rounded to bf16 at the same
// points (`A(...)` below), so the two agree to bf16 rounding of accumulations.
#include "rwkv4_stage.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "corvid/sdk/error.h"
#include "elementwise.h"
#include "layout.h"

namespace corvid::cpu {

// ---------------------------------------------------------------------------
// State

Rwkv4State::Rwkv4State(int n_blocks, int C_, int A_)
    : C(C_), A(A_), per_block_(size_t(2 * C_ + 3 * A_)), data_(per_block_ * size_t(n_blocks)) {
  reset();
}

void Rwkv4State::reset() {
  const size_t n = data_.size() / (per_block_ ? per_block_ : 1);
  for (size_t i = 0; i < n; ++i) {
    float* b = data_.data() + i * per_block_;
    std::fill(b, b + per_block_, 0.f);
    std::fill(b + C + 2 * A, b + C + 3 * A, -1e30f);  // p starts at -1e30 (§4.1)
  }
}

void Rwkv4State::copy_from(const StageState& o) {
  const auto* s = dynamic_cast<const Rwkv4State*>(&o);
  if (!s || s->data_.size() != data_.size()) throw Error("cpu_onednn: state belongs to another stage");
  std::memcpy(data_.data(), s->data_.data(), data_.size() * sizeof(float));
}

void Rwkv4State::serialize(float* dst) const { std::memcpy(dst, data_.data(), data_.size() * sizeof(float)); }
void Rwkv4State::deserialize(const float* src) { std::memcpy(data_.data(), src, data_.size() * sizeof(float)); }

// ---------------------------------------------------------------------------
// Loading

namespace {

float round_act(bool bf16, float v) { return bf16 ? bf16_to_f32(f32_to_bf16(v)) : v; }


}  // namespace

Rwkv4Stage::Rwkv4Stage(const StageSpec& spec, const ModelHParams& hp, const WeightSource& w)
    : spec_(spec),
      hp_(hp),
      isa_(select_isa(std::getenv("CORVID_CPU_ISA"))),
      threads_(spec.threads > 0 ? spec.threads : physical_cores()),
      pool_(threads_) {
  bf16_act_ = spec.precision.atype == DType::BF16;
  const int C = hp.n_embd, A = hp.n_att, F = hp.n_ffn;
  const Precision p = spec.precision;
  auto mix = [&](const std::string& n, std::vector<float>& mu, std::vector<float>& one_minus) {
    const float* m = prepared_vector(w, n, C);
    mu.assign(m, m + C);
    one_minus.resize(C);
    for (int i = 0; i < C; ++i) one_minus[i] = round_act(bf16_act_, 1.f - mu[i]);  // (1 - mu) in the atype
  };
  for (int l = spec.first_block; l < spec.end_block; ++l) {
    Rwkv4Block b;
    b.ln1_w = prepared_vector(w, tensor_name(l, "ln1.weight"), C);
    b.ln1_b = prepared_vector(w, tensor_name(l, "ln1.bias"), C);
    b.ln2_w = prepared_vector(w, tensor_name(l, "ln2.weight"), C);
    b.ln2_b = prepared_vector(w, tensor_name(l, "ln2.bias"), C);
    mix(tensor_name(l, "att.time_mix_k"), b.att_mk, b.att_1mk);
    mix(tensor_name(l, "att.time_mix_v"), b.att_mv, b.att_1mv);
    mix(tensor_name(l, "att.time_mix_r"), b.att_mr, b.att_1mr);
    mix(tensor_name(l, "ffn.time_mix_k"), b.ffn_mk, b.ffn_1mk);
    mix(tensor_name(l, "ffn.time_mix_r"), b.ffn_mr, b.ffn_1mr);
    b.decay = prepared_vector(w, tensor_name(l, "att.time_decay"), A);
    b.first = prepared_vector(w, tensor_name(l, "att.time_first"), A);
    b.att_k = prepared_matrix(w, tensor_name(l, "att.key.weight"), A, C, p);
    b.att_v = prepared_matrix(w, tensor_name(l, "att.value.weight"), A, C, p);
    b.att_r = prepared_matrix(w, tensor_name(l, "att.receptance.weight"), A, C, p);
    b.att_o = prepared_matrix(w, tensor_name(l, "att.output.weight"), C, A, p);
    b.ffn_k = prepared_matrix(w, tensor_name(l, "ffn.key.weight"), F, C, p);
    b.ffn_v = prepared_matrix(w, tensor_name(l, "ffn.value.weight"), C, F, p);
    b.ffn_r = prepared_matrix(w, tensor_name(l, "ffn.receptance.weight"), C, C, p);
    blocks_.push_back(std::move(b));
  }
  if (spec.has_head) {
    lnout_w_ = prepared_vector(w, "ln_out.weight", C);
    lnout_b_ = prepared_vector(w, "ln_out.bias", C);
    head_ = prepared_matrix(w, "head.weight", hp.n_vocab, C, p);
  }
  const size_t Tm = size_t(std::max(1, spec.chunk_len));
  const size_t W = size_t(std::max({C, A, F}));
  for (auto* b : {&xx_, &kx_, &vx_, &rx_, &r_, &k_, &v_, &wkv_, &tmp_}) b->assign(Tm * W, 0.f);
  ffk_.assign(Tm * size_t(F), 0.f);
  size_t widest = size_t(std::max({C, A, F}));
  products_.reserve(int(widest), threads_);
}

std::unique_ptr<StageState> Rwkv4Stage::new_state() const {
  return std::make_unique<Rwkv4State>(spec_.n_blocks(), hp_.n_embd, hp_.n_att);
}

uint64_t Rwkv4Stage::resident_weight_bytes() const {
  uint64_t n = 0;
  for (const auto& b : blocks_)
    for (const Matrix* m : {&b.att_k, &b.att_v, &b.att_r, &b.att_o, &b.ffn_k, &b.ffn_v, &b.ffn_r}) n += m->weight_bytes();
  if (spec_.has_head) n += head_.weight_bytes();
  return n;
}

std::string Rwkv4Stage::describe() const {
  return std::string("cpu_onednn RWKV-4 ") + precision_name(spec_.precision) + ", " + isa_name(isa_) + " kernels, " +
         std::to_string(threads_) + " thread(s), blocks " + std::to_string(spec_.first_block) + "-" +
         std::to_string(spec_.end_block - 1) + (spec_.has_head ? " + head" : "");
}

void Rwkv4Stage::forward(float* x, int T, StageState& state, const ForwardOptions& opts) {
  auto* st = dynamic_cast<Rwkv4State*>(&state);
  if (!st) throw Error("cpu_onednn: state belongs to another backend");
  if (T < 1 || T > std::max(1, spec_.chunk_len)) throw Error("cpu_onednn: chunk of " + std::to_string(T) + " rows exceeds chunk_len");
  if (bf16_act_) run<true>(x, T, *st, opts);
  else run<false>(x, T, *st, opts);
}

template <bool BF16>
void Rwkv4Stage::run(float* x, int T, Rwkv4State& st, const ForwardOptions& opts) {
  const int C = hp_.n_embd, Aa = hp_.n_att, F = hp_.n_ffn;
  const int R = hp_.rescale_layer;
  const size_t TC = size_t(T) * C, TA = size_t(T) * Aa, TF = size_t(T) * F;
  if (BF16) ew::round_bf16(x, TC);  // x.to(atype) entering the stage

  // Token shift: row t mixes with row t-1, row 0 with the state ŝ; ŝ leaves
  // with the last row.
  auto shift_mix = [&](const float* xx, const float* shift, const std::vector<float>& mu,
                       const std::vector<float>& one_minus_mu, float* out) {
    for (int t = 0; t < T; ++t)
      ew::token_shift_mix(xx + size_t(t) * C, t == 0 ? shift : xx + size_t(t - 1) * C, mu.data(), one_minus_mu.data(),
                          out + size_t(t) * C, C, BF16);
  };

  for (size_t bi = 0; bi < blocks_.size(); ++bi) {
    const Rwkv4Block& b = blocks_[bi];
    const int layer = spec_.first_block + int(bi);
    float* s = st.block(int(bi));
    float* att_shift = s;
    float* aa = s + C;
    float* bb = s + C + Aa;
    float* pp = s + C + 2 * Aa;
    float* ffn_shift = s + C + 3 * Aa;

    // ---- TimeMix (§4.1) ----------------------------------------------------
    // x̂ = LN1(x);  x_k = x̂⊙μ_k + ŝ⊙(1−μ_k)  (x_v, x_r likewise);  ŝ ← x̂
    for (int t = 0; t < T; ++t) ew::layer_norm(x + size_t(t) * C, b.ln1_w, b.ln1_b, xx_.data() + size_t(t) * C, C, BF16);
    shift_mix(xx_.data(), att_shift, b.att_mk, b.att_1mk, kx_.data());
    shift_mix(xx_.data(), att_shift, b.att_mv, b.att_1mv, vx_.data());
    shift_mix(xx_.data(), att_shift, b.att_mr, b.att_1mr, rx_.data());
    std::memcpy(att_shift, xx_.data() + size_t(T - 1) * C, sizeof(float) * C);
    // r = σ(x_r W_r) [atype];  k = x_k W_k,  v = x_v W_v [fp32; a bf16
    // reference's matmul returns bf16 first, then .float()]
    matmuls({{&b.att_r, rx_.data(), r_.data()}, {&b.att_k, kx_.data(), k_.data()}, {&b.att_v, vx_.data(), v_.data()}}, T);
    ew::sigmoid(r_.data(), TA, BF16);
    if (BF16) {
      ew::round_bf16(k_.data(), TA);
      ew::round_bf16(v_.data(), TA);
    }
    // WKV with the max trick, fp32 state, token by token; out = r ⊙ wkv
    for (int t = 0; t < T; ++t) {
      const size_t o = size_t(t) * Aa;
      ew::wkv_step(k_.data() + o, v_.data() + o, r_.data() + o, b.first, b.decay, aa, bb, pp, wkv_.data() + o, Aa, BF16);
    }
    // x ← x + (r ⊙ wkv) W_o
    matmul(b.att_o, wkv_.data(), T, tmp_.data());
    ew::add_residual(x, tmp_.data(), TC, BF16);

    // ---- ChannelMix (§4.2) -------------------------------------------------
    for (int t = 0; t < T; ++t) ew::layer_norm(x + size_t(t) * C, b.ln2_w, b.ln2_b, xx_.data() + size_t(t) * C, C, BF16);
    shift_mix(xx_.data(), ffn_shift, b.ffn_mk, b.ffn_1mk, kx_.data());
    shift_mix(xx_.data(), ffn_shift, b.ffn_mr, b.ffn_1mr, rx_.data());
    std::memcpy(ffn_shift, xx_.data() + size_t(T - 1) * C, sizeof(float) * C);
    // r = σ(x_r W_r);  h = max(x_k W_k, 0)²;  x ← x + r ⊙ (h W_v)
    matmuls({{&b.ffn_r, rx_.data(), r_.data()}, {&b.ffn_k, kx_.data(), ffk_.data()}}, T);
    ew::sigmoid(r_.data(), TC, BF16);
    ew::relu_square(ffk_.data(), TF, BF16);
    matmul(b.ffn_v, ffk_.data(), T, tmp_.data());
    ew::add_gated_residual(x, r_.data(), tmp_.data(), TC, BF16);

    // RESCALE_LAYER (§2.2): the weights of later blocks were pre-divided.
    if (R > 0 && (layer + 1) % R == 0) ew::halve(x, TC, BF16);
  }

  // ---- Head: logits = LN_out(x) W_head, only when asked for ---------------
  if (spec_.has_head && opts.logits)
    products_.run_head(isa_, head_, x, T, opts.all_logits, lnout_w_, lnout_b_, xx_.data(), BF16, opts.logits, pool_);
}

template void Rwkv4Stage::run<true>(float*, int, Rwkv4State&, const ForwardOptions&);
template void Rwkv4Stage::run<false>(float*, int, Rwkv4State&, const ForwardOptions&);

}  // namespace corvid::cpu
