#include "world_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "corvid/sdk/error.h"

// GCC 12 reports a spurious -Wfree-nonheap-object for the vector-of-vectors
// trie built in build_trie (a known false positive with inlined std::vector).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wfree-nonheap-object"
#endif

namespace corvid::world {
namespace {

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Reads exactly `n` hex digits at line[pos...]; -1 if they are not there.
int64_t read_hex(std::string_view line, size_t pos, int n) {
  if (pos + n > line.size()) return -1;
  int64_t v = 0;
  for (int i = 0; i < n; ++i) {
    int h = hex_value(line[pos + i]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

[[noreturn]] void fail(const std::string& where, size_t col, const std::string& what) {
  throw Error(where + ":" + std::to_string(col + 1) + ": " + what);
}

}  // namespace

// Python 3 literal rules (the reference loads each line with eval()):
//  * prefixes: b/B makes a bytes literal (ASCII characters only), u/U is a str;
//    raw and f-strings are refused (never used by vocabulary files);
//  * escapes in both: \\ \' \" \a \b \f \n \r \t \v, \ooo (1-3 octal digits),
//    \xhh (exactly 2 hex digits); only in str: \uhhhh, \Uhhhhhhhh; \N{...} is
//    refused; any other backslash pair stays as written (backslash kept);
//  * a str stands for its UTF-8 bytes; a surrogate cannot be encoded (error).
std::string parse_python_literal(std::string_view line, size_t& pos, const std::string& where) {
  bool is_bytes = false;
  size_t start = pos;
  if (pos < line.size() && (line[pos] == 'b' || line[pos] == 'B')) {
    is_bytes = true;
    ++pos;
  } else if (pos < line.size() && (line[pos] == 'u' || line[pos] == 'U')) {
    ++pos;
  }
  if (pos < line.size() && (line[pos] == 'r' || line[pos] == 'R' || line[pos] == 'f' || line[pos] == 'F'))
    fail(where, pos, "raw or formatted string literals are not supported");
  if (pos >= line.size() || (line[pos] != '\'' && line[pos] != '"'))
    fail(where, start, "expected a Python string literal ('...', \"...\" or b'...')");
  const char quote = line[pos++];
  if (pos + 1 < line.size() && line[pos] == quote && line[pos + 1] == quote)
    fail(where, pos - 1, "triple-quoted literals are not supported");
  std::string out;
  while (true) {
    if (pos >= line.size()) fail(where, start, "unterminated string literal");
    char c = line[pos];
    if (c == quote) { ++pos; break; }
    if (c == '\n' || c == '\r') fail(where, pos, "line break inside a string literal");
    if (c != '\\') {
      if (is_bytes && static_cast<unsigned char>(c) >= 0x80)
        fail(where, pos, "bytes literal contains a non-ASCII character");
      out += c;
      ++pos;
      continue;
    }
    if (pos + 1 >= line.size()) fail(where, pos, "backslash at end of line");
    char e = line[pos + 1];
    size_t esc = pos;
    pos += 2;
    switch (e) {
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case 'x': {
        int64_t v = read_hex(line, pos, 2);
        if (v < 0) fail(where, esc, "\\x escape needs exactly two hex digits");
        pos += 2;
        if (is_bytes) out += static_cast<char>(v);
        else append_utf8(out, static_cast<uint32_t>(v));
        break;
      }
      case 'u':
      case 'U': {
        if (is_bytes) {  // not an escape in bytes literals: kept as written
          out += '\\';
          out += e;
          break;
        }
        int n = e == 'u' ? 4 : 8;
        int64_t v = read_hex(line, pos, n);
        if (v < 0) fail(where, esc, std::string("\\") + e + " escape needs exactly " + std::to_string(n) + " hex digits");
        if (v > 0x10FFFF) fail(where, esc, "escape beyond U+10FFFF");
        if (v >= 0xD800 && v <= 0xDFFF) fail(where, esc, "surrogate code point cannot be encoded as UTF-8");
        pos += n;
        append_utf8(out, static_cast<uint32_t>(v));
        break;
      }
      case 'N':
        if (!is_bytes) fail(where, esc, "\\N{...} escapes are not supported");
        out += "\\N";
        break;
      default:
        if (e >= '0' && e <= '7') {
          uint32_t v = e - '0';
          for (int k = 0; k < 2 && pos < line.size() && line[pos] >= '0' && line[pos] <= '7'; ++k)
            v = v * 8 + (line[pos++] - '0');
          if (is_bytes) {
            if (v > 0xFF) fail(where, esc, "octal escape above \\377 in a bytes literal");
            out += static_cast<char>(v);
          } else {
            append_utf8(out, v);
          }
        } else {
          // Unknown escape: Python keeps the backslash and the character.
          if (is_bytes && static_cast<unsigned char>(e) >= 0x80)
            fail(where, pos - 1, "bytes literal contains a non-ASCII character");
          out += '\\';
          out += e;
        }
    }
  }
  return out;
}

WorldTokenizer* WorldTokenizer::from_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open World vocabulary file");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw Error(path + ": read error");
  return from_text(ss.str(), path);
}

WorldTokenizer* WorldTokenizer::from_text(std::string_view text, const std::string& name) {
  std::unique_ptr<WorldTokenizer> tok(new WorldTokenizer());
  std::vector<std::pair<std::string, int32_t>> entries;
  std::map<int32_t, size_t> line_of_id;
  size_t line_no = 0;
  size_t p = 0;
  int32_t max_id = -1;
  while (p < text.size()) {
    size_t eol = text.find('\n', p);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(p, eol - p);
    p = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // universal newlines
    const std::string where = name + ":" + std::to_string(line_no);
    if (line.empty()) throw Error(where + ": empty line (expected '<id> <literal> <byte length>')");

    size_t q = 0;
    int64_t id = 0;
    while (q < line.size() && line[q] >= '0' && line[q] <= '9') {
      id = id * 10 + (line[q] - '0');
      if (id > 0x7FFFFFFF) fail(where, 0, "token id too large");
      ++q;
    }
    if (q == 0) fail(where, 0, "expected a token id (decimal digits) at the start of the line");
    if (q >= line.size() || line[q] != ' ') fail(where, q, "expected one space after the token id");
    ++q;
    std::string bytes = parse_python_literal(line, q, where);
    if (q >= line.size() || line[q] != ' ') fail(where, q, "expected one space and the byte length after the literal");
    ++q;
    size_t len_start = q;
    int64_t stated = 0;
    while (q < line.size() && line[q] >= '0' && line[q] <= '9') {
      stated = stated * 10 + (line[q] - '0');
      if (stated > 1 << 20) fail(where, len_start, "byte length too large");
      ++q;
    }
    if (q == len_start) fail(where, len_start, "expected the byte length (decimal digits)");
    if (q != line.size()) fail(where, q, "unexpected text after the byte length");
    if (static_cast<size_t>(stated) != bytes.size())
      throw Error(where + ": stated byte length " + std::to_string(stated) + " but the literal has " +
                  std::to_string(bytes.size()) + " bytes");
    if (bytes.empty()) throw Error(where + ": empty token");
    auto [it, inserted] = line_of_id.emplace(static_cast<int32_t>(id), line_no);
    if (!inserted)
      throw Error(where + ": duplicate token id " + std::to_string(id) + " (first defined on line " +
                  std::to_string(it->second) + ")");
    max_id = std::max<int32_t>(max_id, static_cast<int32_t>(id));
    entries.emplace_back(std::move(bytes), static_cast<int32_t>(id));
  }
  if (entries.empty()) throw Error(name + ": empty World vocabulary file");

  tok->id_to_bytes_.assign(static_cast<size_t>(max_id) + 1, std::string());
  tok->has_id_.assign(static_cast<size_t>(max_id) + 1, false);
  for (const auto& [b, id] : entries) {
    tok->id_to_bytes_[id] = b;
    tok->has_id_[id] = true;
  }
  tok->build_trie(entries, name);
  return tok.release();
}

void WorldTokenizer::build_trie(const std::vector<std::pair<std::string, int32_t>>& entries, const std::string& name) {
  // 1. An ordinary trie. When two ids have the same bytes the later line wins,
  //    as in the reference (its bytes->id dict is filled in file order).
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> kids;  // (byte, node), sorted by byte at the end
    int32_t value = -1;
  };
  std::vector<Node> nodes(1);
  for (const auto& [bytes, id] : entries) {
    int32_t n = 0;
    for (unsigned char c : bytes) {
      int32_t next = -1;
      for (auto& [k, v] : nodes[n].kids)
        if (k == c) { next = v; break; }
      if (next < 0) {
        next = static_cast<int32_t>(nodes.size());
        nodes[n].kids.emplace_back(c, next);
        nodes.emplace_back();
      }
      n = next;
    }
    nodes[n].value = id;
  }
  for (int c = 0; c < 256; ++c) {
    bool found = false;
    for (auto& [k, v] : nodes[0].kids)
      if (k == c && nodes[v].value >= 0) found = true;
    if (!found) {
      char hex[8];
      snprintf(hex, sizeof hex, "0x%02X", c);
      throw Error(name + ": no token for the single byte " + hex +
                  " (a World vocabulary needs all 256 bytes so that every input can be encoded)");
    }
  }

  // 2. Place the nodes into the double array, breadth first. Each node's
  //    children need free slots base+c+1 for all their bytes c; first fit with
  //    a moving lower bound keeps this fast for ~100k nodes.
  std::vector<int32_t> base(nodes.size() * 2 + 600, 0), check(base.size(), -1), value(base.size(), -1);
  std::vector<int32_t> slot_of(nodes.size(), -1);
  slot_of[0] = 0;
  check[0] = -2;  // the root slot is taken
  size_t first_free = 1;
  auto grow = [&](size_t need) {
    if (need + 258 > check.size()) {
      size_t ns = std::max(need + 258, check.size() * 3 / 2);
      base.resize(ns, 0);
      check.resize(ns, -1);
      value.resize(ns, -1);
    }
  };
  std::vector<int32_t> queue;
  queue.reserve(nodes.size());
  queue.push_back(0);
  for (size_t qi = 0; qi < queue.size(); ++qi) {
    int32_t n = queue[qi];
    int32_t s = slot_of[n];
    auto& kids = nodes[n].kids;
    if (kids.empty()) continue;
    std::sort(kids.begin(), kids.end());
    while (first_free < check.size() && check[first_free] != -1) ++first_free;
    size_t b = first_free > kids[0].first + 1u ? first_free - kids[0].first - 1 : 0;
    for (;; ++b) {
      grow(b + 257);
      bool ok = true;
      for (auto& [c, v] : kids)
        if (check[b + c + 1] != -1) { ok = false; break; }
      if (ok) break;
    }
    base[s] = static_cast<int32_t>(b);
    for (auto& [c, v] : kids) {
      size_t t = b + c + 1;
      check[t] = s;
      value[t] = nodes[v].value;
      slot_of[v] = static_cast<int32_t>(t);
      queue.push_back(v);
    }
  }
  // Trim to the last used slot plus the padding that makes lookups bounds-free.
  size_t used = check.size();
  while (used > 1 && check[used - 1] == -1) --used;
  size_t max_base = 0;
  for (size_t i = 0; i < used; ++i) max_base = std::max<size_t>(max_base, base[i]);
  size_t final_size = std::max(used, max_base + 257);
  grow(final_size);
  base.resize(final_size);
  check.resize(final_size);
  value.resize(final_size);
  base_ = std::move(base);
  check_ = std::move(check);
  value_ = std::move(value);
}

void WorldTokenizer::encode_append(std::string_view text, std::vector<int32_t>& out) const {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  const int32_t* base = base_.data();
  const int32_t* check = check_.data();
  const int32_t* value = value_.data();
  size_t i = 0;
  while (i < n) {
    // Longest match from i: follow the trie while bytes match, remembering the
    // last state that ends a token. The first byte always ends one.
    int32_t state = 0;
    int32_t best = -1;
    size_t best_end = i + 1;
    for (size_t j = i; j < n; ++j) {
      int32_t t = base[state] + s[j] + 1;
      if (check[t] != state) break;
      state = t;
      if (value[t] >= 0) {
        best = value[t];
        best_end = j + 1;
      }
    }
    out.push_back(best);
    i = best_end;
  }
}

std::vector<int32_t> WorldTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  encode_append(text, out);
  return out;
}

std::string WorldTokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids)
    if (id >= 0 && static_cast<size_t>(id) < id_to_bytes_.size()) out += id_to_bytes_[id];
  return out;
}

std::string WorldTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_bytes_.size()) return {};
  return id_to_bytes_[id];
}

}  // namespace corvid::world
