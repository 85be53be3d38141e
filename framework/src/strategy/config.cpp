// XML run configs (configs/reference.xml documents every element).
//
// Everything is validated while reading, so a typo is reported with the
// file:line where it is, not later as a confusing runtime failure: unknown
// elements and attributes, malformed values, repeated elements, and the stage
// ranges as far as they can be checked before the model's layer count is known
// (the rest: validate_config_against_model). Relative paths are resolved against
// the config file's folder.
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tinyxml2.h>

#include "corvid/plugins/registry.h"
#include "corvid/sdk/error.h"
#include "corvid/strategy/config.h"
#include "stage_words.h"

namespace corvid {

namespace {

namespace fs = std::filesystem;
using tinyxml2::XMLAttribute;
using tinyxml2::XMLElement;
using tinyxml2::XMLNode;

class ConfigReader {
 public:
  explicit ConfigReader(const std::string& path) : path_(path) {
    fs::path p(path);
    dir_ = p.parent_path();
  }

  RunConfig read() {
    std::ifstream in(path_, std::ios::binary);
    if (!in) throw Error(path_ + ": cannot open the config file");
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    if (in.bad()) throw Error(path_ + ": cannot read the config file");

    tinyxml2::XMLDocument doc;
    if (doc.Parse(text.data(), text.size()) != tinyxml2::XML_SUCCESS) syntax_error(doc);

    cfg_.path = path_;
    const XMLElement* root = nullptr;
    for (const XMLNode* n = doc.FirstChild(); n; n = n->NextSibling()) {
      if (n->ToComment() || n->ToDeclaration()) continue;
      if (const XMLElement* e = n->ToElement()) {
        if (root) fail(e, "a second root element <" + std::string(e->Name()) + ">: a config has one <corvid> element");
        root = e;
        continue;
      }
      check_node(n, "the document");
    }
    if (!root) fail(1, "no <corvid> element: the file is empty or holds only comments");
    if (std::string(root->Name()) != "corvid")
      fail(root, "root element <" + std::string(root->Name()) + ">: expected <corvid>");
    check_attributes(root, {});

    std::map<std::string, int> seen;
    for (const XMLElement* e = first_element(root); e; e = next_element(e)) {
      const std::string name = e->Name();
      static const std::set<std::string> known = {"model", "pipeline", "tokenizer", "template",
                                                  "sampling", "plugins", "runtime"};
      if (!known.count(name))
        fail(e, "unknown element <" + name + "> in <corvid>: expected model, pipeline, tokenizer, template, sampling, "
                "plugins or runtime");
      if (seen.count(name))
        fail(e, "a second <" + name + "> (the first is at line " + std::to_string(seen[name]) + ")");
      seen[name] = e->GetLineNum();
      if (name == "model") read_model(e);
      else if (name == "pipeline") read_pipeline(e);
      else if (name == "tokenizer") read_tokenizer(e);
      else if (name == "template") read_template(e);
      else if (name == "sampling") read_sampling(e);
      else if (name == "plugins") read_plugins(e);
      else if (name == "runtime") read_runtime(e);
    }
    return cfg_;
  }

 private:
  std::string path_;
  fs::path dir_;
  RunConfig cfg_;

  std::string at(int line) const { return path_ + ":" + std::to_string(line); }
  [[noreturn]] void fail(int line, const std::string& what) const { throw Error(at(line) + ": " + what); }
  [[noreturn]] void fail(const XMLElement* e, const std::string& what) const { fail(e->GetLineNum(), what); }
  [[noreturn]] void fail(const XMLAttribute* a, const XMLElement* e, const std::string& what) const {
    fail(a->GetLineNum() > 0 ? a->GetLineNum() : e->GetLineNum(), what);
  }

  [[noreturn]] void syntax_error(const tinyxml2::XMLDocument& doc) const {
    std::string what;
    switch (doc.ErrorID()) {
      case tinyxml2::XML_ERROR_EMPTY_DOCUMENT: what = "empty document: expected a <corvid> element"; break;
      case tinyxml2::XML_ERROR_MISMATCHED_ELEMENT: what = "the element opened here is closed by another tag"; break;
      case tinyxml2::XML_ERROR_PARSING_ELEMENT: what = "malformed or unclosed element"; break;
      case tinyxml2::XML_ERROR_PARSING_ATTRIBUTE: what = "malformed or repeated attribute"; break;
      case tinyxml2::XML_ERROR_PARSING_TEXT: what = "malformed text (a stray '<' or '&'?)"; break;
      case tinyxml2::XML_ERROR_PARSING_CDATA: what = "malformed CDATA section"; break;
      case tinyxml2::XML_ERROR_PARSING_COMMENT: what = "malformed or unclosed comment"; break;
      case tinyxml2::XML_ERROR_PARSING_DECLARATION: what = "malformed <?xml ...?> declaration"; break;
      case tinyxml2::XML_ERROR_PARSING_UNKNOWN: what = "malformed <!...> construct"; break;
      case tinyxml2::XML_ELEMENT_DEPTH_EXCEEDED: what = "elements nested too deeply"; break;
      default: what = std::string("XML error ") + doc.ErrorName(); break;
    }
    fail(doc.ErrorLineNum() > 0 ? doc.ErrorLineNum() : 1, "XML syntax error: " + what);
  }

  // Text between elements must be whitespace; <!DOCTYPE> and the like are not
  // part of a config.
  void check_node(const XMLNode* n, const std::string& parent) const {
    if (n->ToComment() || n->ToElement()) return;
    if (const auto* t = n->ToText()) {
      std::string v = t->Value() ? t->Value() : "";
      if (v.find_first_not_of(" \t\r\n") == std::string::npos) return;
      std::string shown = v.substr(v.find_first_not_of(" \t\r\n"));
      if (shown.size() > 30) shown = shown.substr(0, 30) + "...";
      throw Error(at(n->GetLineNum()) + ": unexpected text " + strategy_detail::quote(shown) + " in " + parent +
                  ": values go in attributes");
    }
    throw Error(at(n->GetLineNum()) + ": unexpected markup in " + parent + " (only elements and comments belong in a config)");
  }

  // "<name>" (built by appending: GCC 12 warns falsely on "<" + std::string).
  static std::string tag(const char* name) {
    std::string t = "<";
    t.append(name ? name : "");
    t.push_back('>');
    return t;
  }

  const XMLElement* first_element(const XMLElement* parent) const {
    for (const XMLNode* n = parent->FirstChild(); n; n = n->NextSibling()) {
      if (const XMLElement* e = n->ToElement()) return e;
      check_node(n, tag(parent->Name()));
    }
    return nullptr;
  }
  const XMLElement* next_element(const XMLElement* e) const {
    for (const XMLNode* n = e->NextSibling(); n; n = n->NextSibling()) {
      if (const XMLElement* x = n->ToElement()) return x;
      check_node(n, tag(e->Parent()->Value()));
    }
    return nullptr;
  }
  void no_children(const XMLElement* e) const {
    if (const XMLElement* c = first_element(e))
      fail(c, "unexpected element <" + std::string(c->Name()) + "> inside <" + e->Name() + ">");
  }

  void check_attributes(const XMLElement* e, const std::vector<std::string>& allowed) const {
    for (const XMLAttribute* a = e->FirstAttribute(); a; a = a->Next()) {
      bool ok = false;
      for (const auto& n : allowed) ok = ok || n == a->Name();
      if (!ok) {
        std::string list;
        for (size_t i = 0; i < allowed.size(); ++i)
          list += (i ? (i + 1 == allowed.size() ? " or " : ", ") : "") + allowed[i];
        fail(a, e, "unknown attribute '" + std::string(a->Name()) + "' on <" + e->Name() + ">" +
                       (allowed.empty() ? ": it takes no attributes" : ": expected " + list));
      }
    }
  }

  const XMLAttribute* attr(const XMLElement* e, const char* name) const { return e->FindAttribute(name); }

  std::string required(const XMLElement* e, const char* name, const std::string& what) const {
    const XMLAttribute* a = attr(e, name);
    if (!a) fail(e, "<" + std::string(e->Name()) + "> needs a " + name + " attribute (" + what + ")");
    std::string v = a->Value();
    if (v.empty()) fail(a, e, "empty " + std::string(name) + " on <" + e->Name() + "> (" + what + ")");
    return v;
  }

  std::string path_value(const XMLAttribute* a, const XMLElement* e) const {
    std::string v = a->Value();
    if (v.empty()) fail(a, e, "empty " + std::string(a->Name()) + " on <" + e->Name() + ">");
    fs::path p(v);
    if (p.is_absolute() || dir_.empty()) return p.lexically_normal().string();
    return (dir_ / p).lexically_normal().string();
  }

  // ---- number parsing: the whole value must be the number ----
  long long integer(const XMLAttribute* a, const XMLElement* e, long long lo, long long hi, const std::string& what) const {
    std::string v = a->Value();
    long long x = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (v.empty() || ec != std::errc() || p != v.data() + v.size() || x < lo || x > hi)
      fail(a, e, std::string(a->Name()) + "=" + strategy_detail::quote(v) + " on <" + e->Name() + ">: expected " + what);
    return x;
  }
  uint64_t unsigned64(const XMLAttribute* a, const XMLElement* e, const std::string& what) const {
    std::string v = a->Value();
    uint64_t x = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (v.empty() || ec != std::errc() || p != v.data() + v.size())
      fail(a, e, std::string(a->Name()) + "=" + strategy_detail::quote(v) + " on <" + e->Name() + ">: expected " + what);
    return x;
  }
  float real(const XMLAttribute* a, const XMLElement* e, double lo, double hi, const std::string& what) const {
    std::string v = a->Value();
    double x = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (v.empty() || ec != std::errc() || p != v.data() + v.size() || !std::isfinite(x) || x < lo || x > hi)
      fail(a, e, std::string(a->Name()) + "=" + strategy_detail::quote(v) + " on <" + e->Name() + ">: expected " + what);
    return static_cast<float>(x);
  }
  bool boolean(const XMLAttribute* a, const XMLElement* e) const {
    std::string v = a->Value();
    if (v == "true") return true;
    if (v == "false") return false;
    fail(a, e, std::string(a->Name()) + "=" + strategy_detail::quote(v) + " on <" + e->Name() + ">: expected true or false");
  }

  // ---- elements ----
  void read_model(const XMLElement* e) {
    check_attributes(e, {"path"});
    no_children(e);
    required(e, "path", "the checkpoint file");
    cfg_.model = path_value(attr(e, "path"), e);
  }

  void read_tokenizer(const XMLElement* e) {
    check_attributes(e, {"kind", "path"});
    no_children(e);
    cfg_.tokenizer_line = e->GetLineNum();
    if (!attr(e, "kind") && !attr(e, "path")) fail(e, "<tokenizer> needs a path (the vocabulary file) or a kind");
    if (const XMLAttribute* a = attr(e, "kind")) {
      cfg_.tokenizer_kind = a->Value();
      if (cfg_.tokenizer_kind.empty()) fail(a, e, "empty kind on <tokenizer> (leave it out to detect it from the file)");
    }
    if (const XMLAttribute* a = attr(e, "path")) cfg_.tokenizer_path = path_value(a, e);
  }

  void read_template(const XMLElement* e) {
    check_attributes(e, {"name"});
    cfg_.template_name = required(e, "name", "a prompt template, e.g. raven-chat");
    cfg_.template_line = e->GetLineNum();
    std::map<std::string, int> keys;
    for (const XMLElement* o = first_element(e); o; o = next_element(o)) {
      if (std::string(o->Name()) != "option")
        fail(o, "unknown element <" + std::string(o->Name()) + "> in <template>: expected <option>");
      check_attributes(o, {"key", "value", "path"});
      no_children(o);
      std::string key = required(o, "key", "the option's name");
      if (keys.count(key))
        fail(o, "option '" + key + "' is given twice (first at line " + std::to_string(keys[key]) + ")");
      keys[key] = o->GetLineNum();
      const XMLAttribute* v = attr(o, "value");
      const XMLAttribute* p = attr(o, "path");
      if (v && p) fail(o, "option '" + key + "' has both value and path: give one");
      if (!v && !p) fail(o, "option '" + key + "' needs a value (text) or a path (a file, relative to this config)");
      cfg_.template_options[key] = v ? std::string(v->Value()) : path_value(p, o);
    }
  }

  void read_sampling(const XMLElement* e) {
    check_attributes(e, {"temperature", "top_p", "top_k", "presence", "frequency", "penalty_decay", "seed"});
    no_children(e);
    SamplingDefaults& s = cfg_.sampling;
    if (auto a = attr(e, "temperature")) s.temperature = real(a, e, 0, 1e6, "a number >= 0 (0 = greedy)");
    if (auto a = attr(e, "top_p")) s.top_p = real(a, e, 0, 1, "a number from 0 to 1");
    if (auto a = attr(e, "top_k")) s.top_k = static_cast<int>(integer(a, e, 0, 1 << 30, "an integer >= 0 (0 = off)"));
    if (auto a = attr(e, "presence")) s.presence = real(a, e, -1e6, 1e6, "a number (the presence penalty)");
    if (auto a = attr(e, "frequency")) s.frequency = real(a, e, -1e6, 1e6, "a number (the frequency penalty)");
    if (auto a = attr(e, "penalty_decay")) s.penalty_decay = real(a, e, 0, 1, "a number from 0 to 1");
    if (auto a = attr(e, "seed")) s.seed = unsigned64(a, e, "an integer from 0 to 2^64-1");
  }

  void read_plugins(const XMLElement* e) {
    check_attributes(e, {});
    for (const XMLElement* d = first_element(e); d; d = next_element(d)) {
      if (std::string(d->Name()) != "dir")
        fail(d, "unknown element <" + std::string(d->Name()) + "> in <plugins>: expected <dir path=\"...\"/>");
      check_attributes(d, {"path"});
      no_children(d);
      required(d, "path", "a folder with plugins");
      cfg_.plugin_dirs.push_back(path_value(attr(d, "path"), d));
    }
  }

  void read_runtime(const XMLElement* e) {
    check_attributes(e, {"threads", "chunk_len"});
    no_children(e);
    if (auto a = attr(e, "threads")) cfg_.threads = static_cast<int>(integer(a, e, 0, 4096, "an integer >= 0 (0 = all physical cores)"));
    if (auto a = attr(e, "chunk_len")) cfg_.chunk_len = static_cast<int>(integer(a, e, 1, 1 << 20, "an integer >= 1"));
  }

  // "a-b", "a", "a-head", "head" -> inclusive slot range.
  std::pair<int, int> slot_range(const XMLAttribute* a, const XMLElement* e) const {
    std::string v = a->Value();
    auto bad = [&]() {
      fail(a, e, "layers=" + strategy_detail::quote(v) +
                     ": expected a slot range like 0-19, 20-24, 20-head or a single slot (slot L, the head, may be "
                     "written 'head')");
    };
    auto slot = [&](const std::string& s) -> int {
      if (s == "head") return kHeadSlot;
      int x = 0;
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
      if (s.empty() || ec != std::errc() || p != s.data() + s.size() || x < 0 || x > 1000000) bad();
      return x;
    };
    size_t dash = v.find('-');
    if (dash == std::string::npos) {
      int x = slot(v);
      return {x, x};
    }
    return {slot(v.substr(0, dash)), slot(v.substr(dash + 1))};
  }

  void read_pipeline(const XMLElement* e) {
    check_attributes(e, {"strategy", "rescale_layer"});
    if (auto a = attr(e, "rescale_layer"))
      cfg_.rescale_layer = static_cast<int>(integer(a, e, 0, 1000000, "an integer >= 0 (0 = no rescaling)"));

    StrategySpec spec;
    if (const XMLAttribute* a = attr(e, "strategy")) {
      // A DSL string inside the config: its errors keep their column and gain file:line.
      try {
        spec = parse_strategy(a->Value());
      } catch (const Error& err) {
        fail(a, e, err.what());
      }
      spec.origin = at(a->GetLineNum() > 0 ? a->GetLineNum() : e->GetLineNum()) + ": " + spec.origin;
      if (const XMLElement* s = first_element(e)) fail(s, "<pipeline> has a strategy attribute and <stage> elements: give one or the other");
      cfg_.strategy = std::move(spec);
      return;
    }

    spec.origin = path_;
    int stream_line = 0;
    for (const XMLElement* s = first_element(e); s; s = next_element(s)) {
      if (std::string(s->Name()) != "stage")
        fail(s, "unknown element <" + std::string(s->Name()) + "> in <pipeline>: expected <stage>");
      spec.stages.push_back(read_stage(s, stream_line));
    }
    if (spec.stages.empty())
      fail(e, "<pipeline> has no stages: add <stage device=\"...\" dtype=\"...\"/> elements or a strategy attribute");

    bool ranged = spec.stages.front().range.has_value();
    for (const auto& st : spec.stages)
      if (st.range.has_value() != ranged)
        fail(st.line, "mix of stages with and without layers=: give layers= on every stage (explicit ranges) or on "
                      "none (counts, as in the DSL)");
    if (ranged) {
      strategy_detail::check_ranges(spec, -1);  // order, overlap, gaps: what does not depend on L
    } else {
      for (size_t i = 0; i < spec.stages.size(); ++i)
        spec.normalized += (i ? " -> " : "") + spec.stages[i].text;
    }
    cfg_.strategy = std::move(spec);
  }

  StageRequest read_stage(const XMLElement* s, int& stream_line) {
    check_attributes(s, {"device", "dtype", "backend", "layers", "count", "stream", "stream_from"});
    no_children(s);
    StageRequest st;
    st.line = s->GetLineNum();
    st.where = at(st.line);
    const XMLAttribute* dev = attr(s, "device");
    const XMLAttribute* dt = attr(s, "dtype");
    required(s, "device", "cpu, cuda, cuda:N, mps or dml");
    required(s, "dtype", "fp32, fp16 or bf16, optionally with i8");
    if (std::string err = strategy_detail::parse_device_word(dev->Value(), st); !err.empty())
      fail(dev, s, strategy_detail::place(err, ""));
    if (std::string err = strategy_detail::parse_dtype_word(dt->Value(), st); !err.empty())
      fail(dt, s, strategy_detail::place(err, ""));
    if (const XMLAttribute* b = attr(s, "backend")) {
      st.backend = b->Value();
      if (st.backend.empty()) fail(b, s, "empty backend on <stage> (leave it out to choose from the plugins' manifests)");
    }
    const XMLAttribute* layers = attr(s, "layers");
    const XMLAttribute* count = attr(s, "count");
    if (layers && count) fail(count, s, "<stage> has both layers and count: give one");
    if (layers) st.range = slot_range(layers, s);
    if (count) st.count = static_cast<int>(integer(count, s, 0, 1000000, "a layer count >= 0"));
    if (const XMLAttribute* a = attr(s, "stream")) st.stream = boolean(a, s);
    if (const XMLAttribute* a = attr(s, "stream_from")) {
      if (!layers) fail(a, s, "stream_from needs layers= (with count=, the slots after the count are streamed)");
      if (!st.stream) fail(a, s, "stream_from needs stream=\"true\"");
      std::string v = a->Value();
      if (v == "head") {
        st.stream_from = kHeadSlot;
      } else {
        st.stream_from = static_cast<int>(integer(a, s, 0, 1000000, "a slot number or head"));
      }
    }
    if (st.stream) {
      if (stream_line)
        fail(s, "a second streamed stage (the first is at line " + std::to_string(stream_line) +
                    "): only one stage may stream");
      stream_line = st.line;
      // Streaming without a count or range: stream all remaining slots, the
      // DSL's "*0+".
      if (!layers && !count) st.count = 0;
    }
    if (st.count && *st.count == 0 && !st.stream)
      fail(count, s, "count=\"0\" gives the stage no layers (the reference refills it or divides by zero); stream it "
                     "(stream=\"true\") or remove the stage");
    st.text = strategy_detail::stage_text(st);
    return st;
  }
};

}  // namespace

RunConfig load_run_config(const std::string& path) { return ConfigReader(path).read(); }

void validate_config_against_model(const RunConfig& cfg, int n_layer) {
  // Everything that depends on L (ranges past slot L, slots left over, stages
  // left with no layers) is what assign_slots checks; its messages carry the
  // stages' file:line.
  if (cfg.strategy) (void)assign_slots(*cfg.strategy, n_layer, cfg.rescale_layer);
}

namespace {
// Whether a plugin of `kind` lists `name` in its manifest (tokenizers and
// templates list their names as ServedPair{"tokenizer"/"template", name}).
void check_named_plugin(const PluginRegistry& reg, PluginKind kind, const char* what, const std::string& name,
                        const std::string& where, const std::string& noun) {
  std::string available;
  for (const LoadedPlugin& p : reg.plugins()) {
    if (p.entry->kind != kind) continue;
    for (size_t i = 0; i < p.entry->n_served; ++i) {
      if (name == p.entry->served[i].precision) return;
      available += (available.empty() ? "" : ", ") + std::string(p.entry->served[i].precision);
    }
  }
  throw Error(where + ": no " + what + " plugin answers to " + noun + " '" + name + "'" +
              (available.empty() ? " (no " + std::string(what) + " plugins found)" : " (available: " + available + ")"));
}
}  // namespace

void validate_config_plugins(const RunConfig& cfg, const PluginRegistry& reg) {
  if (!cfg.tokenizer_kind.empty())
    check_named_plugin(reg, PluginKind::Tokenizer, "tokenizer", cfg.tokenizer_kind,
                       cfg.path + ":" + std::to_string(cfg.tokenizer_line), "kind");
  if (!cfg.template_name.empty())
    check_named_plugin(reg, PluginKind::PromptTemplate, "prompt template", cfg.template_name,
                       cfg.path + ":" + std::to_string(cfg.template_line), "name");
}

}  // namespace corvid
