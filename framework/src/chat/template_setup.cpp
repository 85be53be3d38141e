#include "corvid/chat/template_setup.h"

#include "corvid/chat/prompt_file.h"
#include "corvid/sdk/error.h"

namespace corvid::chat {

std::shared_ptr<PromptTemplate> make_prompt_template(const PluginRegistry& registry, const std::string& name,
                                                     TemplateOptions options, std::vector<std::string>* notes) {
  auto it = options.find("prompt_file");
  if (it != options.end()) {
    ChatPromptFile f = read_chat_prompt_file(it->second);
    options.erase(it);
    for (const char* k : {"user", "bot", "interface", "init_prompt"})
      if (options.count(k))
        throw Error(f.path + ": the template option '" + std::string(k) + "' is also given; a prompt file defines it");
    options["user"] = f.user;
    options["bot"] = f.bot;
    options["interface"] = f.interface;
    options["init_prompt"] = f.init_prompt;  // {user}/{bot} already substituted by the f-string
    if (notes) notes->insert(notes->end(), f.notes.begin(), f.notes.end());
  }
  return registry.create_prompt_template(name, options);
}

}  // namespace corvid::chat
