// RWKV-7 shape validation (rwkv-reference §1.3, §1.4): every tensor the v7
// forward pass reads, with its squeezed shape. DeepEmbed files
// (RWKV_DE_VERSION: ffn.s_emb*, ffn.s0/s1/s2) are refused with one line.
#include "validate_v7.h"

#include <string>
#include <vector>

#include "corvid/sdk/error.h"

namespace corvid {
namespace {

[[noreturn]] void fail(const Checkpoint& c, const std::string& what) { throw Error(c.path() + ": " + what); }

const TensorView& need(const Checkpoint& c, const std::string& name) {
  const TensorView* t = c.find(name);
  if (!t) fail(c, "missing tensor '" + name + "' (RWKV-7 checkpoint expected)");
  return *t;
}

std::vector<int64_t> squeezed(const std::vector<int64_t>& s) {
  std::vector<int64_t> o;
  for (int64_t v : s)
    if (v != 1) o.push_back(v);
  return o;
}

void expect(const Checkpoint& c, const std::string& name, const std::vector<int64_t>& want) {
  const TensorView& t = need(c, name);
  const std::vector<int64_t> got = squeezed(std::vector<int64_t>(t.shape, t.shape + t.ndim));
  if (got != squeezed(want)) {
    std::string ws = "(";
    for (size_t i = 0; i < want.size(); ++i) ws += (i ? ", " : "") + std::to_string(want[i]);
    fail(c, "tensor '" + name + "' has shape " + shape_string(t) + ", expected " + ws + ")");
  }
  if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
    fail(c, "tensor '" + name + "' has dtype " + dtype_name(t.dtype) + ", expected F32, F16 or BF16");
}

bool ends_with(const std::string& s, const char* suf) {
  const std::string x(suf);
  return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

// A LoRA pair (down: (C, D), up: (D, C), stored (in, out)); D from `down`.
void expect_lora(const Checkpoint& c, const std::string& b, const char* down, const char* up, int64_t C) {
  const TensorView& d = need(c, b + down);
  if (d.ndim != 2 || d.shape[0] != C || d.shape[1] < 1 || d.shape[1] > C)
    fail(c, "tensor '" + b + down + "' has shape " + shape_string(d) + ", expected (" + std::to_string(C) + ", D)");
  expect(c, b + down, {C, d.shape[1]});
  expect(c, b + up, {d.shape[1], C});
}

}  // namespace

void validate_v7(const Checkpoint& ckpt, const ModelHParams& hp) {
  for (const std::string& n : ckpt.names())
    if (n.find("ffn.s_emb") != std::string::npos || ends_with(n, "ffn.s0") || ends_with(n, "ffn.s1") ||
        ends_with(n, "ffn.s2"))
      fail(ckpt, "tensor '" + n + "' belongs to RWKV-7 DeepEmbed (RWKV_DE_VERSION), which Corvid does not support");
  const int64_t C = hp.n_embd, F = hp.n_ffn, V = hp.n_vocab, H = hp.n_head, N = hp.head_size;
  if (hp.n_att != C) fail(ckpt, "RWKV-7 needs att.key.weight of (C, C), got attention size " + std::to_string(hp.n_att));
  if (H <= 0 || N <= 0 || H * N != C)
    fail(ckpt, "tensor 'blocks.0.att.r_k' gives " + std::to_string(H) + " heads of " + std::to_string(N) +
                   ", expected H·N = " + std::to_string(C));
  expect(ckpt, "emb.weight", {V, C});
  expect(ckpt, "blocks.0.ln0.weight", {C});
  expect(ckpt, "blocks.0.ln0.bias", {C});
  for (int l = 0; l < hp.n_layer; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    for (const char* n : {"ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "att.x_r", "att.x_w", "att.x_k", "att.x_v",
                          "att.x_a", "att.x_g", "att.w0", "att.a0", "att.k_k", "att.k_a", "att.ln_x.weight",
                          "att.ln_x.bias", "ffn.x_k"})
      expect(ckpt, b + n, {C});
    expect(ckpt, b + "att.r_k", {H, N});
    for (const char* n : {"att.receptance.weight", "att.key.weight", "att.value.weight", "att.output.weight"})
      expect(ckpt, b + n, {C, C});
    expect(ckpt, b + "ffn.key.weight", {F, C});
    expect(ckpt, b + "ffn.value.weight", {C, F});
    expect_lora(ckpt, b, "att.w1", "att.w2", C);
    expect_lora(ckpt, b, "att.a1", "att.a2", C);
    expect_lora(ckpt, b, "att.g1", "att.g2", C);
    if (l > 0) {  // layer 0's v0/v1/v2 are unused (§1.3)
      expect(ckpt, b + "att.v0", {C});
      expect_lora(ckpt, b, "att.v1", "att.v2", C);
    }
  }
  expect(ckpt, "ln_out.weight", {C});
  expect(ckpt, "ln_out.bias", {C});
  expect(ckpt, "head.weight", {V, C});
}

}  // namespace corvid
