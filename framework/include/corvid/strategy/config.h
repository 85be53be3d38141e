// XML pipeline configs (tinyxml2): everything a run needs in one file.
// See configs/reference.xml for every element and attribute, explained.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "corvid/strategy/plan.h"

namespace corvid {

struct SamplingDefaults {
  std::optional<float> temperature, top_p, presence, frequency, penalty_decay;
  std::optional<int> top_k;
  std::optional<uint64_t> seed;
};

struct RunConfig {
  std::string path;                  // the config file itself
  std::string model;                 // resolved against the config's folder ("" if absent)
  std::optional<StrategySpec> strategy;  // from <pipeline> (absent: use --strategy)
  int rescale_layer = -1;            // <pipeline rescale_layer="..."> (-1 = default rule)
  std::string tokenizer_kind;        // "" = detect from the file
  std::string tokenizer_path;
  std::string template_name;
  std::map<std::string, std::string> template_options;  // paths resolved
  SamplingDefaults sampling;
  std::vector<std::string> plugin_dirs;  // resolved
  int threads = 0;
  int chunk_len = 0;
  // Lines of <tokenizer> and <template> (0 = absent), for validate_config_plugins().
  int tokenizer_line = 0;
  int template_line = 0;
};

// Parses and validates; throws Error "file.xml:LINE: what is wrong".
RunConfig load_run_config(const std::string& path);

// Checks the pipeline against the model once it is opened: explicit ranges
// past slot L or not reaching it, stages left with no layers; throws
// "file.xml:LINE: ...". (The stages' plugins are checked by resolve_backends,
// which reports the same file:line.)
void validate_config_against_model(const RunConfig& cfg, int n_layer);

// Checks that some loaded plugin answers to the config's tokenizer kind (when
// given) and template name; throws "file.xml:LINE: no tokenizer plugin answers
// to kind 'x' (available: ...)".
void validate_config_plugins(const RunConfig& cfg, const PluginRegistry& reg);

}  // namespace corvid
