// Loading plugins (Boost.DLL) and choosing which one serves what.
//
// Search path, in order: directories given with --plugin-dir, $CORVID_PLUGIN_PATH
// (colon-separated), corvid/plugins next to libcorvid (right in the build tree
// and in an install prefix), ../lib/corvid/plugins next to the running
// executable, and the configured install prefix's lib/corvid/plugins. Never the
// current directory implicitly. The first plugin of a given name wins. Files named
// libcorvid_*.so are loaded; a file that fails to load, lacks the entry point or
// has another ABI version is reported with its path and the reason.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "corvid/sdk/plugin.h"

namespace corvid {

struct LoadedPlugin {
  std::string path;
  std::shared_ptr<void> library;  // keeps the shared library loaded
  const PluginEntry* entry = nullptr;
};

// A backend instance plus the library that must outlive it.
struct BackendHandle {
  std::shared_ptr<void> library;
  std::shared_ptr<Backend> backend;  // destroyed before `library`
  std::string plugin_name;
};

class PluginRegistry {
 public:
  // Loads every plugin found on the search path. Problems with individual files
  // are collected in load_errors() (and reported when a lookup fails), so one
  // broken third-party plugin does not stop the others.
  explicit PluginRegistry(const std::vector<std::string>& extra_dirs = {});

  // Loads one plugin file explicitly; throws Error "<path>: <reason>".
  const LoadedPlugin& load_file(const std::string& path);

  const std::vector<LoadedPlugin>& plugins() const { return plugins_; }
  const std::vector<std::string>& load_errors() const { return load_errors_; }
  std::vector<std::string> search_dirs() const { return dirs_; }

  // Backends serving (device_kind, precision). With `name` non-empty, that
  // plugin must serve it. Errors: none serves it (listing what exists and
  // load errors), or several do and no name was given (listing them).
  const LoadedPlugin& find_backend(const std::string& device_kind, const std::string& precision,
                                   const std::string& name = "") const;
  // Whether a plugin with this name is loaded, and its entry.
  const LoadedPlugin* find_by_name(const std::string& name) const;

  BackendHandle create_backend(const LoadedPlugin& p) const;
  std::shared_ptr<Tokenizer> create_tokenizer(const std::string& kind, const std::string& path) const;
  std::shared_ptr<PromptTemplate> create_prompt_template(const std::string& name, const TemplateOptions& opts) const;

  // Multi-line human-readable listing (corvid-run --list-plugins).
  std::string describe() const;

 private:
  std::vector<std::string> dirs_;
  std::vector<LoadedPlugin> plugins_;
  std::vector<std::string> load_errors_;
};

// Default search directories (without extra dirs), in order.
std::vector<std::string> default_plugin_dirs();

}  // namespace corvid
