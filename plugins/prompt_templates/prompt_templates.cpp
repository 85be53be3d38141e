// The prompt-template plugin: how user text becomes model text in corvid-chat.
//
//   raven-chat  ChatRWKV's chat format: "Bob: <msg>\n\nAlice:" after an init
//               prompt (Corvid's own by default), with the fix of a final "\n\n"
//               token for non-World vocabularies (rwkv-reference §7.1).
//   world-chat  the same format with "User"/"Assistant", no init prompt, no fix.
//   qa          each message asked as "\nQ: <msg>\nA:" (chat.py's +qq format).
//   instruct    each message wrapped in the Alpaca instruction format (chat.py's +i).
//
// Every template also serves the free-generation prompts of +gen, +qq and +i.
//
// Options (XML <option key=.. value=../> or the command line):
//   user, bot, interface   names and separator shown and fed ("Bob", "Alice", ":")
//   init_prompt            raw init prompt text; {user}/{bot}/{interface} are
//                          substituted and the text is normalised as ChatRWKV's
//                          load_prompt does. A ChatRWKV prompt *file* is read by
//                          the framework (prompt_file option) and arrives here as
//                          these four options.
//   normalize              "false" feeds init_prompt exactly as given
//   fix_tokens             "true"/"false": override the "\n\n"-token fix
#include <map>
#include <stdexcept>
#include <string>

#include "corvid/sdk/error.h"
#include "corvid/sdk/plugin.h"
#include "prompt_text.h"

namespace {

using corvid::Error;
using corvid::TemplateOptions;
namespace pt = corvid::prompt_text;

// Corvid's default init prompt (its own words), in the structure of ChatRWKV's
// English-2 prompt: one intro paragraph, then 8 turns alternating from the user.
// configs/prompts/default-en.py holds the same text as an editable prompt file
// (a test checks that the two agree).
constexpr const char* kDefaultInitPrompt =
    "The following is a long, friendly and detailed conversation between a woman named {bot} and her friend "
    "{user}. {bot} is clever, imaginative and warm. {bot} rarely contradicts {user}, and {bot} seldom asks "
    "{user} questions. {bot} enjoys sharing her own experiences and views with {user}. {bot} always gives "
    "{user} thoughtful, practical and accurate answers.\n"
    "\n"
    "{user}{interface} Good morning, {bot}! How has your week been?\n"
    "\n"
    "{bot}{interface} Good morning! It has been a lovely week, thank you. I finally finished a novel I had been "
    "reading for ages.\n"
    "\n"
    "{user}{interface} That sounds great. Look, there is a bakery across the street that sells bread and "
    "pastries.\n"
    "\n"
    "{bot}{interface} Wonderful, let's stop by. I always get a cinnamon roll there, it is my favourite treat!\n"
    "\n"
    "{user}{interface} What is a cinnamon roll?\n"
    "\n"
    "{bot}{interface} A cinnamon roll is a soft rolled pastry filled with butter, sugar and ground cinnamon, "
    "often topped with a sweet glaze.\n"
    "\n"
    "{user}{interface} That sounds delicious. Could I ask you a few things while we walk?\n"
    "\n"
    "{bot}{interface} Certainly! I'm happy to answer anything you would like to know, and I will do my best to "
    "be clear and helpful. Go ahead!\n";

// The Alpaca no-input instruction format. This sentence is a format constant,
// not prose of ours: Raven and World models were fine-tuned on prompts that
// begin with exactly these bytes (the widely used Stanford Alpaca template, as
// ChatRWKV's +i command feeds it), so paraphrasing it would change what the
// model sees. Layout (rwkv-reference §7.3): "\n", the preamble, "\n\n",
// "# Instruction:\n", the text, "\n\n# Response:\n".
constexpr const char* kAlpacaPreamble =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.";

// Joins pieces (appending avoids GCC 12's false -Wrestrict on literal + string).
std::string concat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view p : parts) out += p;
  return out;
}

enum class Kind { RavenChat, WorldChat, Qa, Instruct };

bool parse_bool(const TemplateOptions& o, const std::string& key, bool dflt) {
  auto it = o.find(key);
  if (it == o.end()) return dflt;
  if (it->second == "true" || it->second == "1" || it->second == "yes") return true;
  if (it->second == "false" || it->second == "0" || it->second == "no") return false;
  throw Error("template option " + key + "=\"" + it->second + "\": expected true or false");
}

class ChatTemplate final : public corvid::PromptTemplate {
 public:
  ChatTemplate(Kind kind, std::string name, const TemplateOptions& o) : kind_(kind), name_(std::move(name)) {
    static const char* kKnown[] = {"user", "bot", "interface", "init_prompt", "normalize", "fix_tokens"};
    for (const auto& [k, v] : o) {
      bool ok = false;
      for (const char* known : kKnown) ok = ok || k == known;
      if (!ok)
        throw Error("template " + name_ + ": unknown option '" + k +
                    "' (expected user, bot, interface, init_prompt, normalize, fix_tokens)");
    }
    auto option = [&](const char* key, const char* dflt) {
      auto it = o.find(key);
      return it != o.end() ? it->second : std::string(dflt);
    };
    static const char* kUsers[] = {"Bob", "User", "Q", "Instruction"};
    static const char* kBots[] = {"Alice", "Assistant", "A", "Response"};
    user_ = option("user", kUsers[int(kind)]);
    bot_ = option("bot", kBots[int(kind)]);
    interface_ = option("interface", ":");
    if (user_.empty() || bot_.empty()) throw Error("template " + name_ + ": user and bot names must not be empty");

    std::string raw;
    if (auto it = o.find("init_prompt"); it != o.end()) raw = it->second;
    else if (kind == Kind::RavenChat) raw = kDefaultInitPrompt;
    raw = pt::substitute_names(raw, user_, bot_, interface_);
    init_prompt_ = parse_bool(o, "normalize", true) ? pt::normalize_init_prompt(raw) : raw;
    fix_ = parse_bool(o, "fix_tokens", kind == Kind::RavenChat);
  }

  std::string name() const override { return name_; }
  std::string user_name() const override { return user_; }
  std::string bot_name() const override { return bot_; }
  std::string interface_str() const override { return interface_; }
  std::string init_prompt() const override { return init_prompt_; }
  bool fix_trailing_double_newline() const override { return fix_; }

  std::string chat_turn(std::string_view msg) const override {
    switch (kind_) {
      case Kind::Qa: return free_prompt("qq", msg);
      case Kind::Instruct: return free_prompt("instruct", msg);
      default: return concat({user_, interface_, " ", msg, "\n\n", bot_, interface_});
    }
  }

  std::string free_prompt(std::string_view kind, std::string_view text) const override {
    if (kind == "gen") return concat({"\n", text});
    if (kind == "qq") return concat({"\nQ: ", text, "\nA:"});
    if (kind == "instruct") return concat({"\n", kAlpacaPreamble, "\n\n# Instruction:\n", text, "\n\n# Response:\n"});
    throw Error("template " + name_ + ": unknown free-generation kind '" + std::string(kind) +
                "' (expected gen, qq or instruct)");
  }

  std::string stop_text() const override { return "\n\n"; }

 private:
  Kind kind_;
  std::string name_, user_, bot_, interface_, init_prompt_;
  bool fix_ = false;
};

corvid::PromptTemplate* create(const std::string& name, const TemplateOptions& options) {
  static const std::map<std::string, Kind> kinds = {
      {"raven-chat", Kind::RavenChat}, {"world-chat", Kind::WorldChat}, {"qa", Kind::Qa}, {"instruct", Kind::Instruct}};
  auto it = kinds.find(name);
  if (it == kinds.end())
    throw Error("prompt_templates: no template named '" + name + "' (expected raven-chat, world-chat, qa or instruct)");
  return new ChatTemplate(it->second, name, options);
}

const corvid::ServedPair kServed[] = {
    {"template", "raven-chat"}, {"template", "world-chat"}, {"template", "qa"}, {"template", "instruct"}};

const corvid::PluginEntry kEntry = {
    CORVID_ABI_VERSION,
    sizeof(corvid::PluginEntry),
    corvid::PluginKind::PromptTemplate,
    "prompt_templates",
    "0.1.0",
    "Chat prompt formats: raven-chat (Bob/Alice), world-chat (User/Assistant), qa, instruct",
    kServed,
    sizeof(kServed) / sizeof(kServed[0]),
    nullptr,
    nullptr,
    &create,
};

}  // namespace

CORVID_DEFINE_PLUGIN(kEntry)
