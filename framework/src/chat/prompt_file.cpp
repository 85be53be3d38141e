// A reader for the Python subset of ChatRWKV prompt files (see prompt_file.h).
#include "corvid/chat/prompt_file.h"

#include <cctype>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "corvid/sdk/error.h"

namespace corvid::chat {

namespace {

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

class Parser {
 public:
  Parser(std::string_view src, const std::string& name) : s_(src), name_(name) {
    if (s_.substr(0, 3) == "\xEF\xBB\xBF") pos_ = 3;  // a UTF-8 BOM, as Python accepts
  }

  ChatPromptFile run() {
    ChatPromptFile f;
    f.path = name_;
    while (true) {
      skip_blank_lines();
      if (pos_ >= s_.size()) break;
      statement();
    }
    auto need = [&](const char* key, std::string& dst) {
      auto it = vars_.find(key);
      if (it == vars_.end())
        throw Error(name_ + ": no assignment to '" + key + "' (a ChatRWKV prompt file defines user, bot, interface and init_prompt)");
      dst = it->second;
    };
    need("user", f.user);
    need("bot", f.bot);
    need("interface", f.interface);
    need("init_prompt", f.init_prompt);
    f.variables = vars_;
    f.notes = notes_;
    return f;
  }

 private:
  [[noreturn]] void fail(const std::string& what, size_t at) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < s_.size(); ++i) {
      if (s_[i] == '\n') { ++line; col = 1; } else if ((static_cast<unsigned char>(s_[i]) & 0xC0) != 0x80) { ++col; }
    }
    throw Error(name_ + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + what);
  }

  char peek(size_t k = 0) const { return pos_ + k < s_.size() ? s_[pos_ + k] : '\0'; }

  // Spaces, tabs, comments and backslash continuations; newlines too when inside brackets.
  void skip_space(bool newlines) {
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == ' ' || c == '\t' || c == '\f') { ++pos_; continue; }
      if (c == '\\' && (peek(1) == '\n' || (peek(1) == '\r' && peek(2) == '\n'))) { pos_ += peek(1) == '\r' ? 3 : 2; continue; }
      if (c == '#') { while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_; continue; }
      if (newlines && (c == '\n' || c == '\r')) { ++pos_; continue; }
      break;
    }
  }

  void skip_blank_lines() {
    while (true) {
      skip_space(false);
      if (pos_ < s_.size() && (s_[pos_] == '\n' || s_[pos_] == '\r')) { ++pos_; continue; }
      break;
    }
  }

  static bool ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
  static bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

  std::string identifier() {
    size_t b = pos_;
    while (pos_ < s_.size() && ident_char(s_[pos_])) ++pos_;
    return std::string(s_.substr(b, pos_ - b));
  }

  void statement() {
    size_t at = pos_;
    if (!ident_start(peek())) fail("expected an assignment `name = \"text\"`", at);
    std::string target = identifier();
    skip_space(false);
    if (target == "print" && peek() == '(') {
      // print("...") lines (English-3.py has one): the text is kept as a note
      // for the app to show; nothing else is called.
      ++pos_;
      std::string text = expression(1);
      skip_space(true);
      if (peek() != ')') fail("expected ')' closing print(", pos_);
      ++pos_;
      notes_.push_back(std::move(text));
      end_of_statement("print(...)");
      return;
    }
    static const char* kKeywords[] = {"import", "from", "def", "class", "if", "for", "while", "with", "return", "exec", "eval"};
    for (const char* k : kKeywords)
      if (target == k) fail("'" + target + "' statements are not supported (only string assignments; the file is never executed)", at);
    bool append = false;
    if (peek() == '+' && peek(1) == '=') {
      append = true;
      ++pos_;
    }
    if (peek() != '=' || peek(1) == '=') fail("expected '=' or '+=' after '" + target + "'", pos_);
    ++pos_;
    skip_space(false);
    std::string value = expression(0);
    if (append) {
      auto it = vars_.find(target);
      if (it == vars_.end()) fail("'" + target + " +=' before '" + target + "' is assigned", at);
      value = it->second + value;
    }
    vars_[target] = std::move(value);
    end_of_statement("the value of '" + target + "'");
  }

  void end_of_statement(const std::string& what) {
    skip_space(false);
    if (peek() == ';') { ++pos_; skip_space(false); }
    if (pos_ < s_.size() && s_[pos_] != '\n' && s_[pos_] != '\r') fail("expected the end of the line after " + what, pos_);
  }

  // expr := term ('+' term)* ; inside parentheses newlines are free.
  std::string expression(int depth) {
    std::string v = term(depth);
    while (true) {
      skip_space(depth > 0);
      if (peek() != '+') break;
      ++pos_;
      skip_space(depth > 0);
      v += term(depth);
    }
    return v;
  }

  std::string term(int depth) {
    skip_space(depth > 0);
    char c = peek();
    if (c == '(') {
      ++pos_;
      std::string v = expression(depth + 1);
      skip_space(true);
      if (peek() != ')') fail("expected ')'", pos_);
      ++pos_;
      return v;
    }
    if (string_start()) {
      std::string v;
      // Adjacent literals concatenate ("a" "b").
      while (true) {
        v += string_literal();
        size_t save = pos_;
        skip_space(depth > 0);
        if (!string_start()) { pos_ = save; break; }
      }
      return v;
    }
    if (ident_start(c)) {
      size_t at = pos_;
      std::string n = identifier();
      skip_space(depth > 0);
      if (peek() == '(' || peek() == '.' || peek() == '[')
        fail("calls, attributes and indexing are not supported (only strings, names and +)", pos_);
      auto it = vars_.find(n);
      if (it == vars_.end()) fail("name '" + n + "' is not assigned before this line", at);
      return it->second;
    }
    fail("expected a string literal, a name or '('", pos_);
  }

  // Whether a string literal (with an optional r/f/u/b prefix) starts here.
  bool string_start() const {
    size_t k = 0;
    while (k < 2 && std::strchr("rRfFuUbB", peek(k)) && peek(k) != '\0') ++k;
    return peek(k) == '\'' || peek(k) == '"';
  }

  std::string string_literal() {
    size_t at = pos_;
    bool raw = false, fmt = false;
    while (peek() != '\'' && peek() != '"') {
      char p = char(std::tolower(static_cast<unsigned char>(peek())));
      if (p == 'r') raw = true;
      else if (p == 'f') fmt = true;
      else if (p == 'b') fail("bytes literals are not text; expected a str literal", at);
      ++pos_;
    }
    char q = peek();
    bool triple = peek(1) == q && peek(2) == q;
    pos_ += triple ? 3 : 1;
    std::string out;
    while (true) {
      if (pos_ >= s_.size()) fail("unterminated string literal", at);
      char c = s_[pos_];
      if (c == q && (!triple || (peek(1) == q && peek(2) == q))) {
        pos_ += triple ? 3 : 1;
        return out;
      }
      if (!triple && (c == '\n' || c == '\r')) fail("string literal not closed before the end of its line", at);
      if (c == '\\') {
        if (raw) {
          // A raw string keeps the backslash and the next character (even a quote).
          out += c;
          if (pos_ + 1 < s_.size()) out += s_[pos_ + 1];
          pos_ += 2;
          continue;
        }
        escape(out);
        continue;
      }
      if (fmt && c == '{') {
        if (peek(1) == '{') { out += '{'; pos_ += 2; continue; }
        size_t fat = pos_;
        ++pos_;
        while (peek() == ' ') ++pos_;
        if (!ident_start(peek())) fail("f-string fields must be a plain name such as {user}", fat);
        std::string n = identifier();
        while (peek() == ' ') ++pos_;
        if (peek() != '}') fail("f-string field {" + n + "...}: conversions, format specs and expressions are not supported", pos_);
        ++pos_;
        auto it = vars_.find(n);
        if (it == vars_.end()) fail("f-string field {" + n + "} refers to a name not assigned before", fat);
        out += it->second;
        continue;
      }
      if (fmt && c == '}') {
        if (peek(1) == '}') { out += '}'; pos_ += 2; continue; }
        fail("single '}' in an f-string", pos_);
      }
      if (c == '\r' && peek(1) == '\n') { ++pos_; continue; }  // CRLF source: Python reads "\n"
      out += c;
      ++pos_;
    }
  }

  void escape(std::string& out) {
    size_t at = pos_;
    char e = peek(1);
    pos_ += 2;
    auto hex = [&](int n) {
      uint32_t v = 0;
      for (int i = 0; i < n; ++i) {
        char h = peek();
        if (!std::isxdigit(static_cast<unsigned char>(h))) fail("truncated \\x/\\u/\\U escape", at);
        v = v * 16 + uint32_t(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : std::tolower(h) - 'a' + 10);
        ++pos_;
      }
      return v;
    };
    switch (e) {
      case '\n': break;  // backslash-newline: a line continuation inside the string
      case '\r': if (peek() == '\n') ++pos_; break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'v': out += '\v'; break;
      case 'x': append_utf8(out, hex(2)); break;
      case 'u': append_utf8(out, hex(4)); break;
      case 'U': {
        uint32_t v = hex(8);
        if (v > 0x10FFFF) fail("\\U escape beyond U+10FFFF", at);
        append_utf8(out, v);
        break;
      }
      case 'N': fail("\\N{...} escapes are not supported", at);
      default:
        if (e >= '0' && e <= '7') {
          uint32_t v = uint32_t(e - '0');
          for (int i = 0; i < 2 && peek() >= '0' && peek() <= '7'; ++i) v = v * 8 + uint32_t(s_[pos_++] - '0');
          append_utf8(out, v);
        } else {
          // Python keeps unknown escapes as they are (backslash included).
          out += '\\';
          --pos_;
        }
    }
  }

  std::string_view s_;
  std::string name_;
  size_t pos_ = 0;
  std::map<std::string, std::string> vars_;
  std::vector<std::string> notes_;
};

}  // namespace

ChatPromptFile parse_chat_prompt(std::string_view source, const std::string& name) {
  return Parser(source, name).run();
}

ChatPromptFile read_chat_prompt_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the prompt file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_chat_prompt(ss.str(), path);
}

}  // namespace corvid::chat
