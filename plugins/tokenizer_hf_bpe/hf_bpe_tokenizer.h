// Hugging Face `tokenizer.json`, byte-level BPE kind (GPT-NeoX 20B, GPT-2 style).
//
// encode() reproduces the HF `tokenizers` pipeline step by step:
//  1. added tokens with normalized=false (e.g. <|endoftext|>) are split out of
//     the raw text, leftmost-longest;
//  2. every other piece is normalized (NFC, via utf8proc) and the added tokens
//     with normalized=true (the 20B runs of spaces) are split out of it;
//  3. the rest is cut by the GPT-2 regex of the ByteLevel pre-tokenizer (PCRE2,
//     JIT), with `\s` spelled out as the Unicode White_Space property that the
//     official library's regex engine uses;
//  4. every regex piece goes through BPE on its bytes (merge ranks, lowest rank
//     first, leftmost on ties) — results are cached per piece.
// Decoding maps each token back to its bytes (ByteLevel decoder); special
// tokens decode to nothing.
//
// Everything in the file that this pipeline does not implement is refused
// when loading, naming the file, the line and the unsupported value.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "corvid/sdk/tokenizer.h"

namespace corvid::hf_bpe {

// Leftmost-longest literal matching (the semantics of the aho-corasick
// LeftmostLongest matcher HF uses for added tokens) over a few patterns.
class LiteralMatcher {
 public:
  void add(std::string_view pattern, int32_t value);
  bool empty() const { return nodes_.size() <= 1; }
  // Longest pattern starting exactly at `pos`: sets `end` and returns its value,
  // or -1 if none starts there.
  int32_t longest_at(std::string_view s, size_t pos, size_t& end) const;
  // Position of the first byte at or after `pos` that can start a pattern.
  size_t next_candidate(std::string_view s, size_t pos) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> kids;
    int32_t value = -1;
  };
  std::vector<Node> nodes_{Node{}};
  std::array<bool, 256> first_byte_{};
};

struct AddedTokenInfo {
  int32_t id = 0;
  std::string content;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = true;
};

class HfBpeTokenizer final : public Tokenizer {
 public:
  static HfBpeTokenizer* from_file(const std::string& path);
  // `name` is used in error messages (normally the file path).
  static HfBpeTokenizer* from_json_text(const std::string& text, const std::string& name);
  ~HfBpeTokenizer() override;

  std::string kind() const override { return "hf_bpe"; }
  // Throws Error if `text` is not valid UTF-8 (HF accepts only str).
  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  std::string token_bytes(int32_t id) const override;
  size_t vocab_size() const override { return id_bytes_.size(); }
  std::vector<AddedToken> added_tokens() const override;
  int32_t eot_id() const override { return eot_id_; }

  // Empties the per-piece BPE cache (benchmarks measure a cold start with it).
  void clear_cache() const;

 private:
  HfBpeTokenizer();
  struct Regex;  // the compiled PCRE2 pattern
  struct Scratch;

  void split_added(std::string_view text, const LiteralMatcher& m,
                   std::vector<std::pair<std::pair<size_t, size_t>, int32_t>>& out) const;
  void encode_normalized_piece(std::string_view piece, std::vector<int32_t>& out, Scratch& sc) const;
  void pre_tokenize_and_bpe(std::string_view piece, std::vector<int32_t>& out, Scratch& sc) const;
  void bpe_piece(std::string_view piece, std::vector<int32_t>& out, Scratch& sc) const;
  void bpe_uncached(std::string_view piece, std::vector<int32_t>& out, Scratch& sc) const;

  bool nfc_ = false;
  bool ignore_merges_ = false;
  std::unique_ptr<Regex> regex_;

  std::array<int32_t, 256> byte_id_{};         // id of the one-byte token, -1 if none
  std::unordered_map<std::string, int32_t> bytes_to_id_;  // only for ignore_merges
  // merge (left id, right id) -> (rank << 32) | merged id, open addressing.
  std::vector<uint64_t> merge_keys_, merge_vals_;
  uint64_t merge_mask_ = 0;
  const uint64_t* find_merge(int32_t a, int32_t b) const;

  std::vector<std::string> id_bytes_;  // decoded bytes of every id
  std::vector<bool> id_special_;
  std::vector<AddedTokenInfo> added_;  // in file order
  LiteralMatcher raw_matcher_, normalized_matcher_;  // values: index into added_
  int32_t eot_id_ = 0;

  // The BPE result of each distinct regex piece seen so far. encode() holds
  // the mutex for its whole call so the tokenizer may be shared by threads.
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace corvid::hf_bpe
