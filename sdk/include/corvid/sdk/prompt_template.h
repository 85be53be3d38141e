// The PromptTemplate interface: how a chat turns user text into model text.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace corvid {

// Options from the XML config (<template name="raven-chat"><option key=... />)
// or the command line. Paths are already resolved against the config's folder.
using TemplateOptions = std::map<std::string, std::string>;

class PromptTemplate {
 public:
  virtual ~PromptTemplate() = default;
  virtual std::string name() const = 0;
  // Names shown in the chat ("Bob", "Alice") and the separator (":").
  virtual std::string user_name() const = 0;
  virtual std::string bot_name() const = 0;
  virtual std::string interface_str() const = 0;
  // Text fed once at start (the "init prompt"), "" for none.
  virtual std::string init_prompt() const = 0;
  // Whether a final "\n\n" token of the encoded init prompt is replaced by two
  // "\n" tokens (ChatRWKV's fix_tokens for non-World vocabularies).
  virtual bool fix_trailing_double_newline() const = 0;
  // One chat turn as fed to the model, ending where the bot's reply starts
  // (raven-chat: "Bob: <msg>\n\nAlice:").
  virtual std::string chat_turn(std::string_view user_message) const = 0;
  // Free-generation prompts: kind is "gen" (+gen), "qq" (+qq), "instruct" (+i).
  virtual std::string free_prompt(std::string_view kind, std::string_view text) const = 0;
  // The reply ends once its decoded text contains this ("\n\n").
  virtual std::string stop_text() const = 0;
};

}  // namespace corvid
