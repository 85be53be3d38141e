#include "corvid/chat/text.h"

namespace corvid::chat {

bool py_isspace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 if it is invalid or incomplete.
size_t valid_seq(std::string_view s, size_t i, uint32_t* cp = nullptr) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) {
    if (cp) *cp = c;
    return 1;
  }
  size_t n;
  uint32_t v, min;
  if ((c & 0xE0) == 0xC0) { n = 2; v = c & 0x1F; min = 0x80; }
  else if ((c & 0xF0) == 0xE0) { n = 3; v = c & 0x0F; min = 0x800; }
  else if ((c & 0xF8) == 0xF0) { n = 4; v = c & 0x07; min = 0x10000; }
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b(i + k) & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  if (cp) *cp = v;
  return n;
}

}  // namespace

std::string_view py_strip(std::string_view s) {
  size_t b = 0;
  while (b < s.size()) {
    uint32_t cp;
    size_t n = valid_seq(s, b, &cp);
    if (!n || !py_isspace(cp)) break;
    b += n;
  }
  size_t e = s.size();
  while (e > b) {
    size_t start = e - 1;
    while (start > b && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80 && e - start < 4) --start;
    uint32_t cp;
    size_t n = valid_seq(s, start, &cp);
    if (!n || start + n != e || !py_isspace(cp)) break;
    e = start;
  }
  return s.substr(b, e - b);
}

std::string py_replace(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  if (from.empty()) return std::string(s);
  while (true) {
    size_t k = s.find(from, pos);
    if (k == std::string_view::npos) break;
    out.append(s.substr(pos, k - pos));
    out.append(to);
    pos = k + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

bool utf8_valid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t n = valid_seq(s, i);
    if (!n) return false;
    i += n;
  }
  return true;
}

bool printable_now(std::string_view s) {
  return utf8_valid(s) && s.find("\xEF\xBF\xBD") == std::string_view::npos;
}

std::string utf8_sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n = valid_seq(s, i);
    if (n) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

}  // namespace corvid::chat
