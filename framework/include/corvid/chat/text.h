// Text helpers of the chat: Python's str.strip()/replace() semantics, UTF-8
// checks that emulate the reference's decode-then-test rules.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace corvid::chat {

// Whether code point c is whitespace for Python's str.isspace().
bool py_isspace(uint32_t c);
// Python's s.strip() on UTF-8 text.
std::string_view py_strip(std::string_view s);
// Python's s.replace(from, to): every non-overlapping occurrence, left to right, one pass.
std::string py_replace(std::string_view s, std::string_view from, std::string_view to);

// Whether s is complete, valid UTF-8 (no overlong forms, no surrogates, <= U+10FFFF).
bool utf8_valid(std::string_view s);
// Whether the reference would print this pending text: its decode is valid and
// holds no U+FFFD ("contains U+FFFD => wait" in both tokenizers' pipelines).
bool printable_now(std::string_view pending_bytes);
// Invalid sequences replaced by U+FFFD (for display of whatever is left at the end).
std::string utf8_sanitize(std::string_view s);

}  // namespace corvid::chat
