// The Tokenizer interface and a streaming UTF-8 decoder built on it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace corvid {

struct AddedToken {
  int32_t id = 0;
  std::string text;
  bool special = false;  // special tokens decode to nothing (HF "skip_special_tokens")
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // "hf_bpe", "rwkv_world", ... (the plugin's kind of tokenizer).
  virtual std::string kind() const = 0;
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Raw bytes of the tokens, concatenated; special tokens contribute nothing.
  // The result may be invalid UTF-8 (a character split across calls).
  virtual std::string decode(std::span<const int32_t> ids) const = 0;
  // Bytes of one token ("" for special or unknown ids).
  virtual std::string token_bytes(int32_t id) const = 0;
  // Number of ids (largest id + 1).
  virtual size_t vocab_size() const = 0;
  virtual std::vector<AddedToken> added_tokens() const = 0;
  // End-of-text id (0 for both RWKV tokenizers).
  virtual int32_t eot_id() const = 0;
};

// Length of the longest prefix of `s` that is complete UTF-8 (an incomplete
// multi-byte sequence at the very end is held back; invalid bytes elsewhere
// count as complete, they will print as U+FFFD).
inline size_t utf8_complete_prefix(std::string_view s) {
  size_t n = s.size();
  // Look back at most 3 bytes for the start of a multi-byte sequence.
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;           // continuation byte, keep looking
    size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return need > back ? n - back : n;            // incomplete lead at n-back
  }
  return n;
}

// Turns tokens arriving one by one into printable text: push() returns the bytes
// that are now complete UTF-8 and holds back an incomplete trailing character.
class StreamingDecoder {
 public:
  explicit StreamingDecoder(const Tokenizer& tok) : tok_(&tok) {}
  std::string push(int32_t id) {
    pending_ += tok_->token_bytes(id);
    size_t k = utf8_complete_prefix(pending_);
    std::string out = pending_.substr(0, k);
    pending_.erase(0, k);
    return out;
  }
  // Whatever is held back (an incomplete character), e.g. at the end of a reply.
  std::string flush() { std::string out; out.swap(pending_); return out; }
  const std::string& pending() const { return pending_; }
  void reset() { pending_.clear(); }

 private:
  const Tokenizer* tok_;
  std::string pending_;
};

}  // namespace corvid
