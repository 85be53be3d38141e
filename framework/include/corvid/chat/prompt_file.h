// ChatRWKV prompt files (v2/prompt/default/*.py), read WITHOUT running Python.
//
// A prompt file is a short Python module assigning four strings:
//
//     interface = ":"
//     user = "Bob"
//     bot = "Alice"
//     init_prompt = f'''
//     The following is ... {bot} and her friend {user}. <backslash-newline>
//     ...'''
//
// The reader accepts exactly the subset such files use: assignments `name = expr`
// (or `name += expr`) where expr is string literals (', ", ''', """, with r/f/u prefixes, escapes,
// backslash-newline continuations inside strings, implicit concatenation of
// adjacent literals), names assigned earlier, `+` and parentheses; f-strings with
// `{name}` fields referring to earlier assignments and `{{`/`}}`; comments;
// backslash line continuations; `#` comments; `print("...")` lines, whose text
// is kept as a note (English-3.py prints a warning). Anything else (other calls,
// imports, format specs) is an error naming the file, line and column. Nothing
// is executed.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace corvid::chat {

struct ChatPromptFile {
  std::string path;
  std::string user, bot, interface;
  std::string init_prompt;  // as the file defines it, before ChatRWKV's normalisation
  std::map<std::string, std::string> variables;  // every string assigned, in case a template wants more
  std::vector<std::string> notes;                // texts of print("...") lines, in order
};

// Parses source text; `name` is used in errors ("name:LINE:COL: ...").
// Throws corvid::Error when the syntax is outside the subset or one of user,
// bot, interface, init_prompt is missing.
ChatPromptFile parse_chat_prompt(std::string_view source, const std::string& name);
// Reads and parses a file (errors name the path).
ChatPromptFile read_chat_prompt_file(const std::string& path);

}  // namespace corvid::chat
