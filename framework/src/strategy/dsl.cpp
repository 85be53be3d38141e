// The strategy DSL (rwkv-reference §3.1).
//
// The reference validates the whole string with one regex,
//   strategy := stage ( "->" stage )*
//   stage    := " "* DEVICE " " DTYPE [ " *" DIGITS [ "+" ] ] " "*
// and then splits it. This is a hand-written scanner accepting exactly the same
// language (minus the quirks refused on purpose: i4/i3, "*0" without "+", a
// second "+" stage), so that a mismatch can say which character is wrong and
// why instead of "invalid strategy".
#include <climits>

#include "corvid/sdk/error.h"
#include "corvid/strategy/plan.h"
#include "stage_words.h"

namespace corvid {

using strategy_detail::parse_device_word;
using strategy_detail::parse_dtype_word;
using strategy_detail::place;
using strategy_detail::quote;
using strategy_detail::stage_text;

namespace {

bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' || c == '_' ||
         (static_cast<unsigned char>(c) >= 0x80);
}

class Scanner {
 public:
  explicit Scanner(const std::string& text) : s_(text) {}

  StrategySpec run() {
    StrategySpec spec;
    spec.origin = "strategy " + quote(s_);
    int stream_stage_column = 0;
    size_t arrow = std::string::npos;  // position of the "->" before the current stage
    for (;;) {
      skip_spaces();
      if (at_end() || at_arrow()) {
        if (arrow == std::string::npos) {
          if (at_end()) fail("empty strategy", pos_, ": expected a device (cpu, cuda, cuda:N, mps or dml)");
          fail("expected a stage (a device and a dtype) before '->'", pos_);
        }
        if (at_end()) fail("trailing '->'", arrow, ": expected a stage after it");
        fail("expected a stage (a device and a dtype) after '->'", arrow);
      }
      StageRequest st = stage();
      if (st.stream) {
        if (stream_stage_column) {
          fail("a second streamed stage ('+')", plus_pos_,
             ": only one stage may stream (the reference silently keeps the last; the first '+' is at column " +
                 std::to_string(stream_stage_column) + ")");
        }
        stream_stage_column = column(plus_pos_);
      }
      spec.stages.push_back(std::move(st));
      skip_spaces();
      if (at_end()) break;
      if (!at_arrow()) {
        // stage() stops only at spaces, "->" or the end, and we skipped spaces.
        fail("unexpected " + describe_char(pos_), pos_, ": expected '->' or the end of the strategy");
      }
      arrow = pos_;
      pos_ += 2;
    }
    spec.normalized = normalize_strategy(s_);
    return spec;
  }

 private:
  const std::string& s_;
  size_t pos_ = 0;
  size_t plus_pos_ = 0;

  bool at_end() const { return pos_ >= s_.size(); }
  bool at_arrow() const { return s_.compare(pos_, 2, "->") == 0; }
  void skip_spaces() {
    while (pos_ < s_.size() && s_[pos_] == ' ') ++pos_;
  }

  // 1-based column in characters (UTF-8 continuation bytes do not count).
  int column(size_t pos) const {
    int col = 1;
    for (size_t i = 0; i < pos && i < s_.size(); ++i)
      if ((static_cast<unsigned char>(s_[i]) & 0xC0) != 0x80) ++col;
    return col;
  }

  std::string at(size_t pos) const { return " at column " + std::to_string(column(pos)); }

  // "strategy \"...\": HEAD at column N[TAIL]": the column right after the
  // thing it locates, the explanation (TAIL, with its own ": ") after it.
  [[noreturn]] void fail(const std::string& head, size_t pos, const std::string& tail = "") const {
    throw Error("strategy " + quote(s_) + ": " + head + at(pos) + tail);
  }
  // For texts from stage_words with the "{at}" placeholder.
  [[noreturn]] void fail_placed(const std::string& what, size_t pos) const {
    throw Error("strategy " + quote(s_) + ": " + place(what, at(pos)));
  }

  std::string describe_char(size_t pos) const {
    if (pos >= s_.size()) return "end of the strategy";
    char c = s_[pos];
    if (c == '\t') return "tab";
    if (c == '\n' || c == '\r') return "line break";
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "control character";
    if (static_cast<unsigned char>(c) >= 0x80) return "non-ASCII character";
    return std::string("'") + c + "'";
  }

  std::string word() {
    size_t b = pos_;
    while (pos_ < s_.size() && is_word_char(s_[pos_])) ++pos_;
    return s_.substr(b, pos_ - b);
  }

  // One stage, starting at its device word; stops after the optional "*N[+]".
  StageRequest stage() {
    StageRequest st;
    size_t dev_pos = pos_;
    st.column = column(dev_pos);
    st.where = "column " + std::to_string(st.column);

    std::string dev = word();
    if (dev.empty()) fail("unexpected " + describe_char(pos_), pos_, ": expected a device (cpu, cuda, cuda:N, mps or dml)");
    if (std::string e = parse_device_word(dev, st); !e.empty()) fail_placed(e, dev_pos);

    // Exactly one space, then the dtype.
    if (at_end() || at_arrow())
      fail("expected a space and a dtype (fp32, fp16 or bf16, optionally with i8) after device '" + dev + "'", dev_pos);
    if (s_[pos_] != ' ')
      fail("unexpected " + describe_char(pos_) + " after device '" + dev + "'", pos_, ": expected one space and a dtype");
    ++pos_;
    if (at_end() || at_arrow())
      fail("expected a dtype (fp32, fp16 or bf16, optionally with i8) after device '" + dev + "'", dev_pos);
    if (s_[pos_] == ' ') fail("extra space", pos_, ": the dtype follows the device after exactly one space");
    size_t dt_pos = pos_;
    std::string dt = word();
    if (dt.empty())
      fail("unexpected " + describe_char(pos_), pos_, ": expected a dtype (fp32, fp16 or bf16, optionally with i8)");
    if (std::string e = parse_dtype_word(dt, st); !e.empty()) fail_placed(e, dt_pos);

    // Optional " *N" / " *N+": exactly one space before '*', none after it.
    size_t sp = pos_;
    while (sp < s_.size() && s_[sp] == ' ') ++sp;
    if (sp < s_.size() && s_[sp] == '*') {
      if (sp == pos_) fail("expected one space before '*'", sp);
      if (sp - pos_ > 1) fail("extra space", pos_ + 1, ": '*' follows the dtype after exactly one space");
      size_t star = sp;
      pos_ = sp + 1;
      size_t digits = pos_;
      long long n = 0;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
        // Saturate: any count >= the number of slots means "all the rest",
        // exactly as the reference cuts it.
        n = std::min<long long>(n * 10 + (s_[pos_] - '0'), INT_MAX / 2);
        ++pos_;
      }
      if (pos_ == digits) fail("expected a layer count after '*'", star);
      const std::string count_text = s_.substr(star, pos_ - star);  // "*10"
      st.count = static_cast<int>(n);
      if (pos_ < s_.size() && s_[pos_] == '+') {
        st.stream = true;
        plus_pos_ = pos_;
        ++pos_;
      }
      if (n == 0 && !st.stream)
        fail("'*0'", star,
             " gives the stage no layers (the reference refills it or divides by zero); use '*0+' to stream all "
             "remaining layers, or remove the stage");
      // After the count only spaces, "->" or the end may follow.
      size_t after = pos_;
      while (after < s_.size() && s_[after] == ' ') ++after;
      if (after < s_.size() && s_.compare(after, 2, "->") != 0)
        fail("unexpected " + describe_char(after) + " after '" + count_text + (st.stream ? "+'" : "'"),
             after, ": expected '->' or the end of the strategy");
    } else if (sp < s_.size() && s_.compare(sp, 2, "->") != 0) {
      fail("unexpected " + describe_char(sp) + " after dtype '" + dt + "'", sp,
           ": expected ' *N', ' *N+', '->' or the end of the strategy");
    }
    st.text = stage_text(st);
    return st;
  }
};

}  // namespace

std::string normalize_strategy(const std::string& text) {
  // Split on "->", strip each part, join with " -> " (the reference strips all
  // whitespace; after validation only spaces can be there).
  std::string out;
  size_t start = 0;
  for (;;) {
    size_t arrow = text.find("->", start);
    std::string part = text.substr(start, arrow == std::string::npos ? std::string::npos : arrow - start);
    size_t b = part.find_first_not_of(" \t\r\n\f\v");
    size_t e = part.find_last_not_of(" \t\r\n\f\v");
    part = b == std::string::npos ? "" : part.substr(b, e - b + 1);
    if (start) out += " -> ";
    out += part;
    if (arrow == std::string::npos) break;
    start = arrow + 2;
  }
  return out;
}

StrategySpec parse_strategy(const std::string& text) { return Scanner(text).run(); }

}  // namespace corvid
