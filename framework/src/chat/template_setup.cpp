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
    // The file defines the names; options repeating them must agree with it.
    const std::pair<const char*, const std::string*> defined[] = {{"user", &f.user}, {"bot", &f.bot}, {"interface", &f.interface}};
    for (const auto& [k, v] : defined) {
      auto o = options.find(k);
      if (o != options.end() && o->second != *v)
        throw Error(f.path + ": defines " + k + " = \"" + *v + "\" but the template option " + k + " is \"" + o->second +
                    "\"; drop one of them");
      options[k] = *v;
    }
    if (options.count("init_prompt"))
      throw Error(f.path + ": the template option init_prompt is also given; a prompt file defines the init prompt");
    options["init_prompt"] = f.init_prompt;  // {user}/{bot} already substituted by the f-string
    if (notes) notes->insert(notes->end(), f.notes.begin(), f.notes.end());
  }
  return registry.create_prompt_template(name, options);
}

}  // namespace corvid::chat
