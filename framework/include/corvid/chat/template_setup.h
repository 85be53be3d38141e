// Creating the chat's PromptTemplate: options may name a ChatRWKV prompt file
// (`prompt_file`), which the framework reads (prompt_file.h) and passes on to
// the template plugin as user/bot/interface/init_prompt.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "corvid/plugins/registry.h"
#include "corvid/sdk/prompt_template.h"

namespace corvid::chat {

// Throws corvid::Error (unknown template, bad prompt file, option conflict).
// `notes` (optional) receives the texts of the prompt file's print("...") lines.
std::shared_ptr<PromptTemplate> make_prompt_template(const PluginRegistry& registry, const std::string& name,
                                                     TemplateOptions options, std::vector<std::string>* notes = nullptr);

}  // namespace corvid::chat
