#include "stage_words.h"

#include <cstdio>

namespace corvid::strategy_detail {

namespace {
bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}
}  // namespace

std::string parse_device_word(const std::string& word, StageRequest& req) {
  req.device = word;
  req.device_index = 0;
  if (word == "cpu" || word == "cuda" || word == "mps" || word == "dml") {
    // mps and dml are valid words (the reference's regex has them); whether a
    // plugin serves them is the registry's answer, not a syntax question.
    req.device_kind = word;
    return "";
  }
  if (word.rfind("cuda:", 0) == 0) {
    std::string idx = word.substr(5);
    if (idx.empty()) return "expected a device index after 'cuda:'{at}";
    if (!all_digits(idx)) return "device index '" + idx + "' of '" + word + "'{at} is not a number";
    // Leading zeros are allowed (the reference's regex takes any digits);
    // the value is what counts: cuda:01 is cuda:1.
    size_t first = idx.find_first_not_of('0');
    std::string sig = first == std::string::npos ? "0" : idx.substr(first);
    if (sig.size() > 6) return "device index '" + idx + "' of '" + word + "'{at} is too large";
    req.device_kind = "cuda";
    req.device_index = std::stoi(sig);
    return "";
  }
  std::string lower;
  for (char c : word) lower += (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
  std::string hint;
  if (lower != word && (lower == "cpu" || lower == "cuda" || lower.rfind("cuda:", 0) == 0 || lower == "mps" || lower == "dml"))
    hint = " (device names are lower case)";
  return "unknown device '" + word + "'{at}: expected cpu, cuda, cuda:N, mps or dml" + hint;
}

std::string parse_dtype_word(const std::string& word, StageRequest& req) {
  req.precision_name = word;
  if (auto p = precision_from_name(word)) {
    req.precision = *p;
    return "";
  }
  // The reference accepts i4/i3 suffixes but loads those stages unquantised
  // (rwkv-reference §3.1 [quirk]); refuse rather than pretend.
  if (word.size() > 2) {
    std::string base = word.substr(0, word.size() - 2), suffix = word.substr(word.size() - 2);
    if ((suffix == "i4" || suffix == "i3") && precision_from_name(base))
      return "dtype '" + word + "'{at} is not supported (the reference accepts it but does not quantise)";
  }
  return "unknown dtype '" + word + "'{at}: expected fp32, fp16 or bf16, optionally followed by i8 (e.g. fp16i8)";
}

std::string stage_text(const StageRequest& req) {
  std::string s = req.device + " " + req.precision_name;
  if (req.count) s += " *" + std::to_string(*req.count) + (req.stream ? "+" : "");
  return s;
}

std::string place(std::string text, const std::string& at) {
  size_t p = text.find("{at}");
  if (p != std::string::npos) text.replace(p, 4, at);
  return text;
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"') out += "\\\"";
    else if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

}  // namespace corvid::strategy_detail
