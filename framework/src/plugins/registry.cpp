// Plugin discovery and loading through Boost.DLL, and backend selection from
// the plugins' manifests (no table of devices in the framework).
#include "corvid/plugins/registry.h"

#include <algorithm>
#include <boost/dll/runtime_symbol_info.hpp>
#include <boost/dll/shared_library.hpp>
#include <dlfcn.h>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>

#include "corvid/sdk/error.h"

namespace corvid {
namespace fs = std::filesystem;

namespace {

void add_dir(std::vector<std::string>& dirs, const fs::path& p) {
  std::error_code ec;
  fs::path c = fs::weakly_canonical(p, ec);
  std::string s = (ec ? p : c).string();
  if (std::find(dirs.begin(), dirs.end(), s) == dirs.end()) dirs.push_back(s);
}

bool serves(const PluginEntry& e, const std::string& device_kind, const std::string& precision) {
  for (size_t i = 0; i < e.n_served; ++i)
    if (e.served[i].device_kind && e.served[i].precision && device_kind == e.served[i].device_kind &&
        precision == e.served[i].precision)
      return true;
  return false;
}

}  // namespace

std::vector<std::string> default_plugin_dirs() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("CORVID_PLUGIN_PATH")) {
    std::stringstream ss(env);
    std::string d;
    while (std::getline(ss, d, ':'))
      if (!d.empty()) add_dir(dirs, d);
  }
  // Next to libcorvid: <libdir>/corvid/plugins. This is right both in the build
  // tree (build/lib) and in an installed prefix (prefix/lib).
  boost::system::error_code bec;
  fs::path self = boost::dll::this_line_location(bec).string();
  if (!bec) add_dir(dirs, self.parent_path() / "corvid" / "plugins");
  // Next to the executable: <bin>/../lib/corvid/plugins.
  fs::path exe = boost::dll::program_location(bec).string();
  if (!bec) add_dir(dirs, exe.parent_path().parent_path() / CORVID_INSTALL_PLUGIN_SUBDIR);
  add_dir(dirs, CORVID_INSTALL_PLUGIN_DIR);
  return dirs;
}

PluginRegistry::PluginRegistry(const std::vector<std::string>& extra_dirs) {
  for (const auto& d : extra_dirs) add_dir(dirs_, d);
  for (const auto& d : default_plugin_dirs()) add_dir(dirs_, d);
  for (const auto& d : dirs_) {
    std::error_code ec;
    if (!fs::is_directory(d, ec)) continue;
    std::vector<fs::path> files;
    for (const auto& ent : fs::directory_iterator(d, ec)) {
      const std::string fn = ent.path().filename().string();
      if (fn.rfind("libcorvid_", 0) == 0 && ent.path().extension() == ".so") files.push_back(ent.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      try {
        load_file(f.string());
      } catch (const std::exception& e) {
        load_errors_.push_back(e.what());
      }
    }
  }
}

const LoadedPlugin& PluginRegistry::load_file(const std::string& path) {
  auto lib = std::make_shared<boost::dll::shared_library>();
  try {
    // RTLD_NODELETE: a plugin's code stays mapped after the last handle goes.
    // Objects and exceptions created by a plugin (their destructors live in its
    // code) may outlive the registry, e.g. an Error propagating out of a scope
    // that destroyed the engine; unmapping the code under them would crash.
    lib->load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local |
                        static_cast<boost::dll::load_mode::type>(RTLD_NODELETE));
  } catch (const std::exception& e) {
    throw Error(path + ": plugin failed to load: " + e.what());
  }
  if (!lib->has(CORVID_PLUGIN_ENTRY_SYMBOL))
    throw Error(path + ": not a Corvid plugin (no '" CORVID_PLUGIN_ENTRY_SYMBOL "' symbol)");
  auto fn = lib->get<const PluginEntry*()>(CORVID_PLUGIN_ENTRY_SYMBOL);
  const PluginEntry* e = fn();
  if (!e) throw Error(path + ": plugin entry returned null");
  // abi_version is the first field of every version of PluginEntry, so reading
  // it is safe before we know anything else.
  if (e->abi_version != CORVID_ABI_VERSION)
    throw Error(path + ": plugin ABI version " + std::to_string(e->abi_version) + ", expected " +
                std::to_string(CORVID_ABI_VERSION) + " (rebuild the plugin against this Corvid SDK)");
  if (e->entry_size != sizeof(PluginEntry))
    throw Error(path + ": plugin entry size " + std::to_string(e->entry_size) + ", expected " +
                std::to_string(sizeof(PluginEntry)) + " (rebuild the plugin against this Corvid SDK)");
  if (!e->name || !*e->name) throw Error(path + ": plugin has no name");
  const bool factory_ok = (e->kind == PluginKind::Backend && e->create_backend) ||
                          (e->kind == PluginKind::Tokenizer && e->create_tokenizer) ||
                          (e->kind == PluginKind::PromptTemplate && e->create_prompt_template);
  if (!factory_ok) throw Error(path + ": plugin '" + e->name + "' has no factory for its kind");
  if (const LoadedPlugin* dup = find_by_name(e->name)) {
    // First found wins (earlier search directories take precedence).
    return *dup;
  }
  LoadedPlugin p;
  p.path = path;
  p.entry = e;
  p.library = std::static_pointer_cast<void>(lib);
  plugins_.push_back(std::move(p));
  return plugins_.back();
}

const LoadedPlugin* PluginRegistry::find_by_name(const std::string& name) const {
  for (const auto& p : plugins_)
    if (name == p.entry->name) return &p;
  return nullptr;
}

const LoadedPlugin& PluginRegistry::find_backend(const std::string& device_kind, const std::string& precision,
                                                 const std::string& name) const {
  if (!name.empty()) {
    const LoadedPlugin* p = find_by_name(name);
    if (!p) {
      std::string msg = "unknown plugin '" + name + "'";
      std::string known;
      for (const auto& q : plugins_) known += (known.empty() ? "" : ", ") + std::string(q.entry->name);
      msg += known.empty() ? " (no plugins found)" : " (loaded: " + known + ")";
      throw Error(msg);
    }
    if (p->entry->kind != PluginKind::Backend) throw Error("plugin '" + name + "' is not a backend");
    if (!serves(*p->entry, device_kind, precision)) {
      std::string list;
      for (size_t i = 0; i < p->entry->n_served; ++i)
        list += (i ? ", " : "") + std::string(p->entry->served[i].device_kind) + " " + p->entry->served[i].precision;
      throw Error("plugin '" + name + "' does not serve " + device_kind + " " + precision + " (it serves: " + list + ")");
    }
    return *p;
  }
  std::vector<const LoadedPlugin*> hits;
  for (const auto& p : plugins_)
    if (p.entry->kind == PluginKind::Backend && serves(*p.entry, device_kind, precision)) hits.push_back(&p);
  if (hits.size() == 1) return *hits[0];
  if (hits.empty()) {
    std::string msg = "no plugin serves device '" + device_kind + "' with dtype '" + precision + "'";
    std::string have;
    for (const auto& p : plugins_)
      if (p.entry->kind == PluginKind::Backend)
        for (size_t i = 0; i < p.entry->n_served; ++i)
          have += (have.empty() ? "" : ", ") + std::string(p.entry->served[i].device_kind) + " " + p.entry->served[i].precision;
    msg += have.empty() ? " (no backend plugins found" : " (available: " + have;
    if (!load_errors_.empty()) msg += "; " + std::to_string(load_errors_.size()) + " plugin(s) failed to load: " + load_errors_.front();
    msg += ")";
    throw Error(msg);
  }
  std::string names;
  for (auto* p : hits) names += (names.empty() ? "" : ", ") + std::string(p->entry->name) + " (" + p->path + ")";
  throw Error("several plugins serve " + device_kind + " " + precision + ": " + names +
              "; choose one with backend=\"NAME\" in the config");
}

BackendHandle PluginRegistry::create_backend(const LoadedPlugin& p) const {
  BackendHandle h;
  h.library = p.library;
  h.plugin_name = p.entry->name;
  Backend* b = p.entry->create_backend();
  if (!b) throw Error(p.path + ": backend factory returned null");
  auto lib = p.library;
  // The deleter holds the library so it is unloaded only after the object.
  h.backend = std::shared_ptr<Backend>(b, [lib](Backend* x) { delete x; });
  return h;
}

std::shared_ptr<Tokenizer> PluginRegistry::create_tokenizer(const std::string& kind, const std::string& path) const {
  for (const auto& p : plugins_) {
    if (p.entry->kind != PluginKind::Tokenizer) continue;
    for (size_t i = 0; i < p.entry->n_served; ++i) {
      if (kind == p.entry->served[i].precision) {
        Tokenizer* t = p.entry->create_tokenizer(path);
        if (!t) throw Error(path + ": tokenizer plugin '" + p.entry->name + "' returned null");
        auto lib = p.library;
        return std::shared_ptr<Tokenizer>(t, [lib](Tokenizer* x) { delete x; });
      }
    }
  }
  throw Error("no tokenizer plugin serves kind '" + kind + "'" +
              (load_errors_.empty() ? std::string() : " (plugin load errors: " + load_errors_.front() + ")"));
}

std::shared_ptr<PromptTemplate> PluginRegistry::create_prompt_template(const std::string& name,
                                                                       const TemplateOptions& opts) const {
  for (const auto& p : plugins_) {
    if (p.entry->kind != PluginKind::PromptTemplate) continue;
    for (size_t i = 0; i < p.entry->n_served; ++i) {
      if (name == p.entry->served[i].precision) {
        PromptTemplate* t = p.entry->create_prompt_template(name, opts);
        if (!t) throw Error("prompt template plugin '" + std::string(p.entry->name) + "' returned null");
        auto lib = p.library;
        return std::shared_ptr<PromptTemplate>(t, [lib](PromptTemplate* x) { delete x; });
      }
    }
  }
  std::string have;
  for (const auto& p : plugins_)
    if (p.entry->kind == PluginKind::PromptTemplate)
      for (size_t i = 0; i < p.entry->n_served; ++i) have += (have.empty() ? "" : ", ") + std::string(p.entry->served[i].precision);
  throw Error("no prompt template named '" + name + "'" + (have.empty() ? std::string(" (no template plugins found)") : " (available: " + have + ")"));
}

std::string PluginRegistry::describe() const {
  std::ostringstream os;
  os << "Plugin search path:\n";
  for (const auto& d : dirs_) os << "  " << d << "\n";
  os << "Plugins:\n";
  for (const auto& p : plugins_) {
    os << "  " << p.entry->name << " " << (p.entry->version ? p.entry->version : "") << " ["
       << plugin_kind_name(p.entry->kind) << "] " << (p.entry->description ? p.entry->description : "") << "\n";
    os << "    file: " << p.path << "\n    serves:";
    for (size_t i = 0; i < p.entry->n_served; ++i) os << " " << p.entry->served[i].device_kind << "/" << p.entry->served[i].precision;
    os << "\n";
  }
  for (const auto& e : load_errors_) os << "  failed: " << e << "\n";
  return os.str();
}

}  // namespace corvid
