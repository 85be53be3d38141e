// The plugin entry point and manifest.
//
// A plugin is a shared library exporting one C-linkage function:
//
//     CORVID_PLUGIN_EXPORT const corvid::PluginEntry* corvid_plugin_entry();
//
// (use CORVID_DEFINE_PLUGIN below). The framework loads the library with
// Boost.DLL, calls the function, checks `abi_version` and `entry_size`, reads the
// manifest, and calls the factory for the plugin's kind. Objects created by a
// plugin are destroyed through their virtual destructors while the library is
// still loaded (the framework keeps it loaded as long as any object lives).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "corvid/sdk/abi.h"
#include "corvid/sdk/backend.h"
#include "corvid/sdk/prompt_template.h"
#include "corvid/sdk/tokenizer.h"

namespace corvid {

enum class PluginKind : uint32_t { Backend = 1, Tokenizer = 2, PromptTemplate = 3 };

inline const char* plugin_kind_name(PluginKind k) {
  switch (k) {
    case PluginKind::Backend: return "backend";
    case PluginKind::Tokenizer: return "tokenizer";
    case PluginKind::PromptTemplate: return "prompt_template";
  }
  return "?";
}

// One (device kind, precision) pair a backend serves, e.g. {"cuda", "fp16i8"}.
// device_kind is the device word without ":N" ("cpu", "cuda", "mps", ...).
struct ServedPair {
  const char* device_kind;
  const char* precision;
};

struct PluginEntry {
  uint32_t abi_version;  // CORVID_ABI_VERSION the plugin was built with (read first)
  uint32_t entry_size;   // sizeof(PluginEntry) the plugin was built with
  PluginKind kind;
  const char* name;         // unique plugin name, e.g. "cpu_onednn"
  const char* version;      // the plugin's own version, e.g. "0.1.0"
  const char* description;  // one line
  // Backends: the pairs served. Tokenizers/templates: the names they answer to
  // (device_kind = "tokenizer" / "template", precision = the name, e.g. "hf_bpe").
  const ServedPair* served;
  size_t n_served;

  // Exactly one factory is non-null, matching `kind`. Ownership passes to the caller.
  Backend* (*create_backend)();
  // path: the tokenizer file. Throws Error (naming the file and line) on bad input.
  Tokenizer* (*create_tokenizer)(const std::string& path);
  // name: one of the served names; options from the config/command line.
  PromptTemplate* (*create_prompt_template)(const std::string& name, const TemplateOptions& options);
};

}  // namespace corvid

// Defines the entry point. Usage (in exactly one .cpp of the plugin):
//   static const corvid::PluginEntry kEntry = {CORVID_ABI_VERSION, sizeof(corvid::PluginEntry), ...};
//   CORVID_DEFINE_PLUGIN(kEntry)
#define CORVID_DEFINE_PLUGIN(entry_object) \
  CORVID_PLUGIN_EXPORT const corvid::PluginEntry* corvid_plugin_entry() { return &(entry_object); }
