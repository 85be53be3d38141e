#include "json_locate.h"

namespace corvid::hf_bpe {
namespace {

// A small forward-only scanner over text already known to be valid JSON (it
// has been parsed by nlohmann::json first), so it only needs to skip values.
class Scanner {
 public:
  explicit Scanner(std::string_view t) : t_(t) {}
  size_t pos = 0;

  void ws() {
    while (pos < t_.size() && (t_[pos] == ' ' || t_[pos] == '\t' || t_[pos] == '\n' || t_[pos] == '\r')) ++pos;
  }
  bool at(char c) { ws(); return pos < t_.size() && t_[pos] == c; }

  // Reads a string at pos (opening quote) and returns its decoded UTF-8 value.
  std::string string() {
    std::string out;
    ++pos;  // opening quote
    while (pos < t_.size() && t_[pos] != '"') {
      char c = t_[pos++];
      if (c != '\\') { out += c; continue; }
      char e = t_[pos++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && pos + 1 < t_.size() && t_[pos] == '\\' && t_[pos + 1] == 'u') {
            pos += 2;
            uint32_t lo = hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          utf8(out, cp);
          break;
        }
        default: out += e;  // \" \\ \/
      }
    }
    ++pos;  // closing quote
    return out;
  }

  void skip_value() {
    ws();
    if (pos >= t_.size()) return;
    char c = t_[pos];
    if (c == '"') { string(); return; }
    if (c == '{' || c == '[') {
      char close = c == '{' ? '}' : ']';
      ++pos;
      if (at(close)) { ++pos; return; }
      while (pos < t_.size()) {
        if (c == '{') { ws(); string(); ws(); ++pos; /* ':' */ }
        skip_value();
        ws();
        if (pos < t_.size() && t_[pos] == ',') { ++pos; continue; }
        ++pos;  // close
        return;
      }
      return;
    }
    while (pos < t_.size() && t_[pos] != ',' && t_[pos] != '}' && t_[pos] != ']' && t_[pos] != ' ' &&
           t_[pos] != '\n' && t_[pos] != '\r' && t_[pos] != '\t')
      ++pos;  // number, true, false, null
  }

 private:
  uint32_t hex4() {
    uint32_t v = 0;
    for (int i = 0; i < 4 && pos < t_.size(); ++i, ++pos) {
      char h = t_[pos];
      v = v * 16 + (h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
    }
    return v;
  }
  static void utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) { out += char(cp); return; }
    if (cp < 0x800) { out += char(0xC0 | cp >> 6); out += char(0x80 | (cp & 0x3F)); return; }
    if (cp < 0x10000) {
      out += char(0xE0 | cp >> 12); out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
      return;
    }
    out += char(0xF0 | cp >> 18); out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F)); out += char(0x80 | (cp & 0x3F));
  }
  std::string_view t_;
};

}  // namespace

std::pair<size_t, size_t> line_col_of_offset(std::string_view text, size_t pos) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos && i < text.size(); ++i) {
    if (text[i] == '\n') { ++line; col = 1; } else { ++col; }
  }
  return {line, col};
}

size_t json_line_of(std::string_view text, const std::vector<JsonStep>& path) {
  Scanner s(text);
  s.ws();
  for (const auto& step : path) {
    if (const auto* key = std::get_if<std::string>(&step)) {
      if (!s.at('{')) return 0;
      ++s.pos;
      bool found = false;
      while (!s.at('}') && s.pos < text.size()) {
        s.ws();
        size_t key_pos = s.pos;
        std::string k = s.string();
        s.ws();
        ++s.pos;  // ':'
        if (k == *key) {
          found = true;
          // Remember the key's position: for the last step it is what we report.
          if (&step == &path.back()) return line_col_of_offset(text, key_pos).first;
          break;
        }
        s.skip_value();
        if (s.at(',')) ++s.pos;
      }
      if (!found) return 0;
    } else {
      size_t index = std::get<size_t>(step);
      if (!s.at('[')) return 0;
      ++s.pos;
      for (size_t i = 0; i < index; ++i) {
        if (s.at(']')) return 0;
        s.skip_value();
        if (!s.at(',')) return 0;
        ++s.pos;
      }
      s.ws();
      if (s.at(']')) return 0;
    }
  }
  s.ws();
  return line_col_of_offset(text, s.pos).first;
}

}  // namespace corvid::hf_bpe
