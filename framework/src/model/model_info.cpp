// Version/size detection and the backend-independent load transforms
// (rwkv-reference §1.4, §2.1-2.4).
#include "corvid/model/model_info.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "corvid/sdk/error.h"
#include "corvid/sdk/weights_util.h"
#include "validate_v7.h"

namespace corvid {
namespace {

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// Limits that keep a hostile file from making us allocate absurd amounts; far
// above any released RWKV model (14B: 40 x 5120, vocab 65536).
constexpr int64_t kMaxEmbd = 1 << 16;
constexpr int64_t kMaxVocab = 1 << 22;
constexpr int kMaxLayers = 4096;

[[noreturn]] void fail(const Checkpoint& c, const std::string& what) { throw Error(c.path() + ": " + what); }

const TensorView& need(const Checkpoint& c, const std::string& name) {
  const TensorView* t = c.find(name);
  if (!t) fail(c, "missing tensor '" + name + "' (not an RWKV checkpoint?)");
  return *t;
}

// Shape with size-1 dimensions dropped (torch .squeeze()).
std::vector<int64_t> squeezed(const TensorView& t) {
  std::vector<int64_t> s;
  for (int i = 0; i < t.ndim; ++i)
    if (t.shape[i] != 1) s.push_back(t.shape[i]);
  return s;
}

void expect_shape(const Checkpoint& c, const std::string& name, std::vector<int64_t> want) {
  const TensorView& t = need(c, name);
  std::vector<int64_t> got = squeezed(t);
  // Vectors of size 1 (C == 1) squeeze to nothing; compare on squeezed forms.
  std::vector<int64_t> w2;
  for (int64_t v : want)
    if (v != 1) w2.push_back(v);
  if (got != w2) {
    std::string ws = "(";
    for (size_t i = 0; i < want.size(); ++i) ws += (i ? ", " : "") + std::to_string(want[i]);
    fail(c, "tensor '" + name + "' has shape " + shape_string(t) + ", expected " + ws + ")");
  }
  if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
    fail(c, "tensor '" + name + "' has dtype " + dtype_name(t.dtype) + ", expected F32, F16 or BF16");
}

}  // namespace

ModelHParams detect_hparams(const Checkpoint& ckpt) {
  ModelHParams hp;
  const TensorView& emb = need(ckpt, "emb.weight");
  if (emb.ndim != 2) fail(ckpt, "tensor 'emb.weight' has shape " + shape_string(emb) + ", expected (vocab, n_embd)");
  if (emb.shape[0] < 1 || emb.shape[0] > kMaxVocab || emb.shape[1] < 1 || emb.shape[1] > kMaxEmbd)
    fail(ckpt, "tensor 'emb.weight' has implausible shape " + shape_string(emb));
  hp.n_vocab = int(emb.shape[0]);
  hp.n_embd = int(emb.shape[1]);

  int max_block = -1;
  bool has_ln_x = false, has_gate = false, has_maa = false, has_v7 = false, has_faaaa = false;
  for (const std::string& n : ckpt.names()) {
    int b = wutil::block_index(n);
    if (n.rfind("blocks.", 0) == 0 && b < 0) fail(ckpt, "tensor '" + n + "': cannot read the block number");
    if (b >= kMaxLayers) fail(ckpt, "tensor '" + n + "': block number " + std::to_string(b) + " is implausible");
    max_block = std::max(max_block, b);
    has_ln_x |= contains(n, "ln_x");
    has_gate |= contains(n, "gate.weight");
    has_maa |= contains(n, "time_maa");
    has_faaaa |= contains(n, "time_faaaa");
    has_v7 |= contains(n, "att.r_k") || contains(n, "att.x_r");
  }
  if (max_block < 0) fail(ckpt, "no 'blocks.N.*' tensors (not an RWKV checkpoint?)");
  hp.n_layer = max_block + 1;

  const TensorView* attk = ckpt.find("blocks.0.att.key.weight");
  const TensorView* ffnk = ckpt.find("blocks.0.ffn.key.weight");
  if (!attk || !ffnk) fail(ckpt, "missing tensor 'blocks.0.att.key.weight' or 'blocks.0.ffn.key.weight'");
  if (attk->ndim != 2 || ffnk->ndim != 2) fail(ckpt, "att/ffn key weights must be matrices");
  // Raw nn.Linear layout is (out, in). (ChatRWKV-converted .pth files store the
  // transpose; Corvid reads raw checkpoints and its own converted format only.)
  hp.n_att = int(attk->shape[0]);
  hp.n_ffn = int(ffnk->shape[0]);
  if (hp.n_att < 1 || hp.n_att > kMaxEmbd || hp.n_ffn < 1 || hp.n_ffn > 8 * kMaxEmbd)
    fail(ckpt, "implausible attention/FFN sizes " + std::to_string(hp.n_att) + "/" + std::to_string(hp.n_ffn));

  if (has_v7) {
    hp.arch = Arch::V7_0;
    const TensorView& rk = need(ckpt, "blocks.0.att.r_k");
    std::vector<int64_t> s = squeezed(rk);
    if (rk.ndim == 2) { hp.n_head = int(rk.shape[0]); hp.head_size = int(rk.shape[1]); }
    else if (!s.empty()) { hp.head_size = 64; hp.n_head = int(s[0]) / 64; }
  } else if (has_maa) {
    hp.arch = Arch::V6_0;
    const TensorView* f = ckpt.find("blocks.0.att.time_faaaa");
    if (!f) f = ckpt.find("blocks.0.att.time_first");
    if (!f || f->ndim < 1) fail(ckpt, "v6 checkpoint without 'blocks.0.att.time_faaaa'");
    hp.n_head = int(f->shape[0]);
  } else if (has_ln_x) {
    hp.arch = has_gate ? Arch::V5_1 : Arch::V5_0;
    const TensorView& d = need(ckpt, "blocks.0.att.time_decay");
    hp.n_head = int(d.shape[0]);
    if (d.ndim >= 2 && d.shape[1] > 1) hp.arch = Arch::V5_2;
  } else {
    hp.arch = Arch::V4;
  }
  (void)has_faaaa;
  if (hp.arch != Arch::V4) {
    if (hp.n_head <= 0 || hp.n_att % hp.n_head != 0) fail(ckpt, "cannot derive the head count from the shapes");
    if (hp.head_size == 0) hp.head_size = hp.n_att / hp.n_head;
  }

  // Validate every tensor a v4 forward pass reads, so backends can trust shapes.
  if (hp.arch == Arch::V4) {
    const int64_t C = hp.n_embd, A = hp.n_att, F = hp.n_ffn, V = hp.n_vocab;
    expect_shape(ckpt, "blocks.0.ln0.weight", {C});
    expect_shape(ckpt, "blocks.0.ln0.bias", {C});
    for (int l = 0; l < hp.n_layer; ++l) {
      const std::string b = "blocks." + std::to_string(l) + ".";
      for (const char* ln : {"ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias"}) expect_shape(ckpt, b + ln, {C});
      for (const char* m : {"att.time_mix_k", "att.time_mix_v", "att.time_mix_r", "ffn.time_mix_k", "ffn.time_mix_r"})
        expect_shape(ckpt, b + m, {C});
      expect_shape(ckpt, b + "att.time_decay", {A});
      expect_shape(ckpt, b + "att.time_first", {A});
      expect_shape(ckpt, b + "att.key.weight", {A, C});
      expect_shape(ckpt, b + "att.value.weight", {A, C});
      expect_shape(ckpt, b + "att.receptance.weight", {A, C});
      expect_shape(ckpt, b + "att.output.weight", {C, A});
      expect_shape(ckpt, b + "ffn.key.weight", {F, C});
      expect_shape(ckpt, b + "ffn.value.weight", {C, F});
      expect_shape(ckpt, b + "ffn.receptance.weight", {C, C});
    }
    expect_shape(ckpt, "ln_out.weight", {C});
    expect_shape(ckpt, "ln_out.bias", {C});
    expect_shape(ckpt, "head.weight", {V, C});
  }

  // RWKV-5.0/5.1/5.2 and 6.0: every tensor their forward pass reads
  // (rwkv-reference §1.3; shapes compared after squeezing unit dimensions).
  if (hp.arch >= Arch::V5_0 && hp.arch <= Arch::V6_0) {
    const int64_t C = hp.n_embd, A = hp.n_att, F = hp.n_ffn, V = hp.n_vocab, H = hp.n_head, N = hp.head_size;
    const bool v6 = hp.arch == Arch::V6_0, gate = hp.arch >= Arch::V5_1, per_channel = hp.arch >= Arch::V5_2;
    expect_shape(ckpt, "blocks.0.ln0.weight", {C});
    expect_shape(ckpt, "blocks.0.ln0.bias", {C});
    // v6 LoRA widths, from block 0 (every block must agree).
    int64_t Dm = 0, Dd = 0;
    if (v6) {
      const TensorView& m1 = need(ckpt, "blocks.0.att.time_maa_w1");
      const TensorView& d1 = need(ckpt, "blocks.0.att.time_decay_w1");
      if (m1.ndim != 2 || m1.shape[1] % 5 != 0 || m1.shape[1] < 5)
        fail(ckpt, "tensor 'blocks.0.att.time_maa_w1' has shape " + shape_string(m1) + ", expected (" +
                       std::to_string(C) + ", 5*Dm)");
      if (d1.ndim != 2 || d1.shape[1] < 1)
        fail(ckpt, "tensor 'blocks.0.att.time_decay_w1' has shape " + shape_string(d1) + ", expected (" +
                       std::to_string(C) + ", Dd)");
      Dm = m1.shape[1] / 5;
      Dd = d1.shape[1];
    }
    for (int l = 0; l < hp.n_layer; ++l) {
      const std::string b = "blocks." + std::to_string(l) + ".";
      for (const char* ln : {"ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias"}) expect_shape(ckpt, b + ln, {C});
      if (v6) {
        for (const char* m : {"att.time_maa_x", "att.time_maa_w", "att.time_maa_k", "att.time_maa_v", "att.time_maa_r",
                              "att.time_maa_g", "ffn.time_maa_k", "ffn.time_maa_r"})
          expect_shape(ckpt, b + m, {C});
        expect_shape(ckpt, b + "att.time_maa_w1", {C, 5 * Dm});
        expect_shape(ckpt, b + "att.time_maa_w2", {5, Dm, C});
        expect_shape(ckpt, b + "att.time_decay_w1", {C, Dd});
        expect_shape(ckpt, b + "att.time_decay_w2", {Dd, C});
        expect_shape(ckpt, b + "att.time_decay", {A});
      } else {
        for (const char* m : {"att.time_mix_k", "att.time_mix_v", "att.time_mix_r", "ffn.time_mix_k", "ffn.time_mix_r"})
          expect_shape(ckpt, b + m, {C});
        if (gate) expect_shape(ckpt, b + "att.time_mix_g", {C});
        if (per_channel) expect_shape(ckpt, b + "att.time_decay", {H, N});
        else expect_shape(ckpt, b + "att.time_decay", {H});
      }
      // The bonus: time_faaaa (H, N) in v5.2/v6 (time_first is accepted too), (H) in v5.0/5.1.
      const std::string bonus = ckpt.find(b + "att.time_faaaa") ? b + "att.time_faaaa" : b + "att.time_first";
      if (per_channel) expect_shape(ckpt, bonus, {H, N});
      else expect_shape(ckpt, bonus, {H});
      expect_shape(ckpt, b + "att.ln_x.weight", {A});
      expect_shape(ckpt, b + "att.ln_x.bias", {A});
      expect_shape(ckpt, b + "att.key.weight", {A, C});
      expect_shape(ckpt, b + "att.value.weight", {A, C});
      expect_shape(ckpt, b + "att.receptance.weight", {A, C});
      expect_shape(ckpt, b + "att.output.weight", {C, A});
      if (gate) expect_shape(ckpt, b + "att.gate.weight", {A, C});
      if (ckpt.find(b + "att.time_state")) expect_shape(ckpt, b + "att.time_state", {H, N, N});
      expect_shape(ckpt, b + "ffn.key.weight", {F, C});
      expect_shape(ckpt, b + "ffn.value.weight", {C, F});
      expect_shape(ckpt, b + "ffn.receptance.weight", {C, C});
    }
    expect_shape(ckpt, "ln_out.weight", {C});
    expect_shape(ckpt, "ln_out.bias", {C});
    expect_shape(ckpt, "head.weight", {V, C});
  }

  // RWKV-7: validated by its own engineer (rwkv7_stage); nothing here yet.
  if (hp.arch == Arch::V7_0) {
    validate_v7(ckpt, hp);
  }
  return hp;
}

std::string describe_hparams(const ModelHParams& hp) {
  std::string s = std::string("RWKV ") + arch_name(hp.arch) + ", " + std::to_string(hp.n_layer) + " layers, n_embd " +
                  std::to_string(hp.n_embd) + ", n_ffn " + std::to_string(hp.n_ffn) + ", vocab " + std::to_string(hp.n_vocab);
  if (hp.n_head) s += ", " + std::to_string(hp.n_head) + " heads of " + std::to_string(hp.head_size);
  return s;
}

// ---------------------------------------------------------------------------

RawWeights::RawWeights(const Checkpoint& ckpt, const ModelHParams& hp) : ckpt_(ckpt), hp_(hp) {
  for (const std::string& name0 : ckpt.names()) {
    if (name0 == "emb.weight" || name0.rfind("blocks.0.ln0.", 0) == 0) continue;  // framework-owned
    const TensorView& src = *ckpt.find(name0);
    std::string name = name0;
    size_t fa = name.find(".time_faaaa");
    bool real_first = fa != std::string::npos;
    if (real_first) name.replace(fa, 11, ".time_first");

    TensorView v = src;
    if (contains(name, ".time_")) {  // squeeze
      TensorView s = src;
      s.ndim = 0;
      for (int i = 0; i < src.ndim; ++i)
        if (src.shape[i] != 1) { s.shape[s.ndim] = src.shape[i]; s.strides[s.ndim] = src.strides[i]; ++s.ndim; }
      v = s;
    }
    const bool is_decay = contains(name, ".time_decay") && !contains(name, "_w");
    const bool is_first = contains(name, ".time_first");
    if ((is_decay || is_first) && hp.arch != Arch::V7_0) {
      // §2.4: always fp32.
      auto buf = std::make_unique<std::vector<float>>(size_t(v.numel()));
      wutil::to_f32(v, buf->data());
      for (float& x : *buf) {
        if (is_decay) {
          if (hp.arch == Arch::V4) x = -std::exp(x);
          else if (hp.arch < Arch::V6_0) x = std::exp(-std::exp(x));
          // v6: raw d, kept as is.
        } else if (hp.arch != Arch::V4 && hp.arch < Arch::V5_2 && !real_first) {
          x = std::exp(x);  // v5.0/5.1 time_first is a log
        }
      }
      TensorView t;
      t.data = buf->data();
      t.dtype = DType::F32;
      t.ndim = v.ndim;
      int64_t st = 1;
      for (int i = v.ndim - 1; i >= 0; --i) { t.shape[i] = v.shape[i]; t.strides[i] = st; st *= v.shape[i]; }
      owned_.push_back(std::move(buf));
      v = t;
    }
    views_[name] = v;
  }
}

const TensorView* RawWeights::find(std::string_view name) const {
  auto it = views_.find(std::string(name));
  return it == views_.end() ? nullptr : &it->second;
}

std::string RawWeights::origin() const { return ckpt_.path(); }

// ---------------------------------------------------------------------------

std::vector<float> fold_embedding(const Checkpoint& ckpt, const ModelHParams& hp, DType layer0_atype) {
  const TensorView& emb = need(ckpt, "emb.weight");
  const TensorView& w = need(ckpt, "blocks.0.ln0.weight");
  const TensorView& b = need(ckpt, "blocks.0.ln0.bias");
  const int64_t V = hp.n_vocab, C = hp.n_embd;
  std::vector<float> gw(C), gb(C), row(C);
  wutil::to_f32(w, gw.data());
  wutil::to_f32(b, gb.data());
  std::vector<float> out(size_t(V * C));
  // The reference computes LayerNorm in the file's dtype where torch can (bf16,
  // fp32) and in fp32 otherwise (fp16 on CPU), then casts to layer 0's atype.
  // We compute exactly (fp64), round to fp32, then to bf16 for bf16 files.
  // [deviation] torch 1.13's CPU bf16 LayerNorm computes its moments with
  // visible error (up to 1 bf16 ulp differences in ~30% of values); that is a
  // property of one torch build, so we use the exact value (docs/numerics.md).
  const DType file_dt = emb.dtype;
  // RWKV-7 (the reference's v7 class, §2.8): emb and ln0 are cast to the model
  // dtype first and the fold is computed in it, whatever the file dtype.
  const bool v7_fold = hp.arch == Arch::V7_0;
  if (v7_fold)
    for (int64_t c = 0; c < C; ++c) {
      gw[c] = wutil::round_to(layer0_atype, gw[c]);
      gb[c] = wutil::round_to(layer0_atype, gb[c]);
    }
  for (int64_t v = 0; v < V; ++v) {
    for (int64_t c = 0; c < C; ++c) row[c] = wutil::load_scalar(emb.data, emb.dtype, v * emb.strides[0] + c * emb.strides[1]);
    if (v7_fold)
      for (int64_t c = 0; c < C; ++c) row[c] = wutil::round_to(layer0_atype, row[c]);
    double mean = 0;
    for (int64_t c = 0; c < C; ++c) mean += row[c];
    mean /= double(C);
    double var = 0;
    for (int64_t c = 0; c < C; ++c) { double d = row[c] - mean; var += d * d; }
    var /= double(C);
    const double rstd = 1.0 / std::sqrt(var + 1e-5);
    float* o = out.data() + v * C;
    for (int64_t c = 0; c < C; ++c) {
      float y = float((double(row[c]) - mean) * rstd * double(gw[c]) + double(gb[c]));
      if (file_dt == DType::BF16 && !v7_fold) y = wutil::round_to(DType::BF16, y);
      o[c] = wutil::round_to(layer0_atype, y);
    }
  }
  return out;
}

}  // namespace corvid
