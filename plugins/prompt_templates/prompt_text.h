// Text helpers of the prompt templates, header-only so tests can include them:
// Python's str.strip() on UTF-8 and ChatRWKV's init-prompt normalisation.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace corvid::prompt_text {

// Whether code point c is whitespace for Python's str.isspace() (and so for
// str.strip() without arguments): ASCII \t\n\v\f\r, \x1c-\x1f, space, U+0085,
// U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
inline bool py_isspace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Decodes the code point starting at s[i] (length in `len`); invalid bytes are
// returned as themselves with length 1 (they are never whitespace).
inline uint32_t decode_at(std::string_view s, size_t i, size_t& len) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  len = 1;
  if (c < 0x80) return c;
  size_t n = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0xFFFFFFFFu;
  uint32_t v = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    unsigned char d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xC0) != 0x80) return 0xFFFFFFFFu;
    v = (v << 6) | (d & 0x3F);
  }
  len = n;
  return v;
}

// Python's s.strip(): removes leading and trailing Unicode whitespace.
inline std::string_view py_strip(std::string_view s) {
  size_t b = 0;
  while (b < s.size()) {
    size_t len;
    uint32_t c = decode_at(s, b, len);
    if (!py_isspace(c)) break;
    b += len;
  }
  size_t e = s.size();
  while (e > b) {
    // Find the start of the last code point before e.
    size_t start = e - 1;
    while (start > b && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80 && e - start < 4) --start;
    size_t len;
    uint32_t c = decode_at(s, start, len);
    if (start + len != e) {  // not a clean code point: an invalid byte, never whitespace
      break;
    }
    if (!py_isspace(c)) break;
    e = start;
  }
  return s.substr(b, e - b);
}

// ChatRWKV's load_prompt (rwkv-reference §7.1): strip the text, split it into
// lines at '\n', strip each line (whitespace, U+3000 and CR), join with '\n',
// strip again, and return "\n" + text + "\n\n". An empty prompt stays empty
// (Corvid's choice: "no init prompt" rather than three newlines).
inline std::string normalize_init_prompt(std::string_view raw) {
  std::string_view t = py_strip(raw);
  if (t.empty()) return {};
  std::string joined;
  size_t pos = 0;
  while (true) {
    size_t nl = t.find('\n', pos);
    std::string_view line = t.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    if (pos) joined += '\n';
    joined += py_strip(line);
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  std::string out = "\n";  // (appending: GCC 12 warns falsely on literal + string)
  out += py_strip(joined);
  out += "\n\n";
  return out;
}

// Replaces {user}, {bot} and {interface} (the names ChatRWKV prompt files use).
inline std::string substitute_names(std::string_view text, std::string_view user, std::string_view bot,
                                    std::string_view interface) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    auto try_tok = [&](std::string_view tok, std::string_view val) {
      if (text.substr(i, tok.size()) == tok) {
        out += val;
        i += tok.size();
        return true;
      }
      return false;
    };
    if (text[i] == '{' && (try_tok("{user}", user) || try_tok("{bot}", bot) || try_tok("{interface}", interface)))
      continue;
    out += text[i++];
  }
  return out;
}

}  // namespace corvid::prompt_text
