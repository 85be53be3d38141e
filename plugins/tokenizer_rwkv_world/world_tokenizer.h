// The RWKV World tokenizer: a vocabulary of byte strings read from the World
// text format, and greedy longest-prefix matching over the UTF-8 bytes.
//
// File format (rwkv_vocab_v20230424.txt), one token per line:
//     <id> <python str or bytes literal> <byte length>
// e.g.  `11 '\n' 1`, `257 b'\xe4\xb8' 2`, `65529 '    ...' 128`.
// A str literal stands for its UTF-8 bytes. The stated length is checked.
//
// Encoding walks a double-array trie (two array reads per byte) from each
// position and emits the longest token that matches there, exactly like
// ChatRWKV's TRIE_TOKENIZER; every single byte is a token, so it never fails.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "corvid/sdk/tokenizer.h"

namespace corvid::world {

// Parses one Python string/bytes literal starting at `pos` in `line` (the
// opening quote or a b/u prefix). On success returns the bytes and sets `pos`
// just past the closing quote; on failure throws Error("<where>: <what>").
std::string parse_python_literal(std::string_view line, size_t& pos, const std::string& where);

class WorldTokenizer final : public Tokenizer {
 public:
  // Reads and checks a World vocabulary file; throws Error naming file and line.
  static WorldTokenizer* from_file(const std::string& path);
  // Same, from the file's text (`name` is used in error messages).
  static WorldTokenizer* from_text(std::string_view text, const std::string& name);

  std::string kind() const override { return "rwkv_world"; }
  std::vector<int32_t> encode(std::string_view text) const override;
  void encode_append(std::string_view text, std::vector<int32_t>& out) const;
  std::string decode(std::span<const int32_t> ids) const override;
  std::string token_bytes(int32_t id) const override;
  size_t vocab_size() const override { return id_to_bytes_.size(); }
  std::vector<AddedToken> added_tokens() const override { return {}; }
  int32_t eot_id() const override { return 0; }

 private:
  WorldTokenizer() = default;
  void build_trie(const std::vector<std::pair<std::string, int32_t>>& entries, const std::string& name);

  std::vector<std::string> id_to_bytes_;  // "" where no token has that id
  std::vector<bool> has_id_;
  // Double-array trie: child of state s on byte c is t = base_[s] + c + 1 when
  // check_[t] == s; value_[t] is the token id ending there or -1. The arrays are
  // padded by 257 entries so t never needs a bounds check.
  std::vector<int32_t> base_, check_, value_;
};

}  // namespace corvid::world
