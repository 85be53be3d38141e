// The plan a run would use, resolved without loading any weights: what
// `--print-plan` shows in corvid-run, corvid-chat and corvid-bench.
#pragma once

#include <string>

#include "corvid/plugins/registry.h"
#include "corvid/strategy/plan.h"

namespace corvid {

// spec == nullptr: the strategy a converted file was made for, or "cpu fp32"
// for a raw checkpoint (as Engine::load decides).
Plan preview_plan(const std::string& model_path, const StrategySpec* spec, int rescale_override, const PluginRegistry& reg);

}  // namespace corvid
