// Small deterministic stand-ins for the chat tests: a byte tokenizer with a
// "\n\n" token (so fix_tokens can be exercised) and a model whose logits are a
// fixed function of what it has been fed, with a serializable state.
#pragma once

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "corvid/chat/model.h"
#include "corvid/sdk/error.h"
#include "corvid/sdk/tokenizer.h"

namespace fake {

// ids: 0 end of text (decodes to nothing), 1-256 bytes (id = byte + 1),
// 257 "\n\n", 258 "，" (one token, for AVOID_REPEAT). kind() is configurable:
// "rwkv_world" makes the chat treat it as a World vocabulary.
class Tokenizer final : public corvid::Tokenizer {
 public:
  explicit Tokenizer(std::string kind = "hf_bpe") : kind_(std::move(kind)) {}
  std::string kind() const override { return kind_; }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> out;
    for (size_t i = 0; i < text.size();) {
      if (text.substr(i, 2) == "\n\n") { out.push_back(257); i += 2; continue; }
      if (text.substr(i, 3) == "\xEF\xBC\x8C") { out.push_back(258); i += 3; continue; }
      out.push_back(int32_t(static_cast<unsigned char>(text[i])) + 1);
      ++i;
    }
    return out;
  }
  std::string decode(std::span<const int32_t> ids) const override {
    std::string s;
    for (int32_t id : ids) s += token_bytes(id);
    return s;
  }
  std::string token_bytes(int32_t id) const override {
    if (id >= 1 && id <= 256) return std::string(1, char(id - 1));
    if (id == 257) return "\n\n";
    if (id == 258) return "\xEF\xBC\x8C";
    return "";
  }
  size_t vocab_size() const override { return 259; }
  std::vector<corvid::AddedToken> added_tokens() const override { return {}; }
  int32_t eot_id() const override { return 0; }

 private:
  std::string kind_;
};

inline int32_t id_of(char c) { return int32_t(static_cast<unsigned char>(c)) + 1; }

// A model with V = 260 and a 4-float state. By default the logits are a smooth
// pseudo-random function of the state; `fixed` replaces them by a constant
// vector (to test the newline-bias schedule exactly). `on_forward` runs after
// every call (tests use it to press "Ctrl-C" mid-reply).
class Model final : public corvid::chat::ChatModel {
 public:
  static constexpr int V = 260;  // the default vocabulary size (n_vocab() may be larger)
  struct Box final : StateBox {
    float h[4] = {0, 0, 0, 0};
  };
  explicit Model(uint64_t fingerprint = 42, int n_vocab = V) : fp_(fingerprint), n_vocab_(n_vocab) {}

  std::vector<float> fixed;
  std::function<void()> on_forward;
  int forward_calls = 0;
  size_t tokens_fed = 0;

  int n_vocab() const override { return n_vocab_; }
  std::unique_ptr<StateBox> new_state() const override { return std::make_unique<Box>(); }
  void copy_state(const StateBox& from, StateBox& to) const override {
    std::memcpy(static_cast<Box&>(to).h, static_cast<const Box&>(from).h, sizeof(Box::h));
  }
  void reset_state(StateBox& st) const override { std::memset(static_cast<Box&>(st).h, 0, sizeof(Box::h)); }
  void forward(std::span<const int32_t> tokens, StateBox& st, float* logits) override {
    float* h = static_cast<Box&>(st).h;
    for (int32_t t : tokens)
      for (int k = 0; k < 4; ++k) h[k] = h[k] * 0.9f + std::sin(float(t) * float(k + 1) * 0.7f);
    ++forward_calls;
    tokens_fed += tokens.size();
    if (logits) {
      for (int v = 0; v < n_vocab_; ++v) {
        if (!fixed.empty()) {
          logits[v] = fixed[size_t(v)];
          continue;
        }
        float s = 0;
        for (int k = 0; k < 4; ++k) s += h[k] * std::cos(float(v) * float(k + 1) * 0.37f + float(k));
        logits[v] = 3.0f * s;
      }
    }
    if (on_forward) on_forward();
  }
  void forward_all(std::span<const int32_t> tokens, StateBox& st, float* out) override {
    for (size_t i = 0; i < tokens.size(); ++i) forward(tokens.subspan(i, 1), st, out + i * size_t(n_vocab_));
  }
  std::vector<float> serialize_state(const StateBox& st) const override {
    const float* h = static_cast<const Box&>(st).h;
    return std::vector<float>(h, h + 4);
  }
  void deserialize_state(std::span<const float> d, StateBox& st) const override {
    if (d.size() != 4) throw corvid::Error("fake state: wrong size");
    std::memcpy(static_cast<Box&>(st).h, d.data(), sizeof(Box::h));
  }
  corvid::chat::ModelIdentity identity() const override {
    corvid::chat::ModelIdentity id;
    id.description = "fake V=260";
    id.fingerprint = fp_;
    id.state_floats = 4;
    id.state_dtypes = dtypes;
    return id;
  }
  std::vector<corvid::DType> dtypes = {corvid::DType::F32};

 private:
  uint64_t fp_;
  int n_vocab_;
};

}  // namespace fake
