// Finding where a value sits in JSON text, for error messages.
//
// nlohmann::json keeps no source positions, so when a loaded value turns out to be
// wrong (a merge naming an unknown token, a duplicate id) we walk the original
// text once more along the value's path to report its line.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace corvid::hf_bpe {

// One step of a path: an object key or an array index.
using JsonStep = std::variant<std::string, size_t>;

// 1-based line of the value at `path` (for an object member: the line of its
// key), or 0 when the path cannot be found (the caller then names no line).
size_t json_line_of(std::string_view text, const std::vector<JsonStep>& path);

// 1-based line and column of byte offset `pos`.
std::pair<size_t, size_t> line_col_of_offset(std::string_view text, size_t pos);

}  // namespace corvid::hf_bpe
