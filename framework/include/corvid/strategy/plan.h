// Strategies and plans.
//
// A strategy says which slots run where: the ChatRWKV DSL string
// ("cuda fp16i8 *20 -> cpu fp32", rwkv-reference §3) or an XML pipeline config
// (config.h). Both are parsed into a StrategySpec (stages with counts or
// explicit ranges), which assign_slots() turns into a Plan for a model of L
// layers: L+1 slots, slot L being ln_out + head. A Plan is what the runtime
// builds; resolve_backends() fills in which plugin serves each stage.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "corvid/sdk/dtype.h"

namespace corvid {

class PluginRegistry;
struct ModelHParams;

struct StageRequest {
  std::string device;       // "cpu", "cuda", "cuda:1", "mps", "dml" as written
  std::string device_kind;  // device without ":N"
  int device_index = 0;
  Precision precision;
  std::string precision_name;  // "fp16i8", as written
  std::string backend;         // explicit plugin name (XML), "" = choose from manifests
  // Exactly one of: a count (*N), an explicit range (XML layers="a-b"), or neither (free).
  std::optional<int> count;
  std::optional<std::pair<int, int>> range;  // inclusive slot range
  bool stream = false;                       // "*N+" / stream="true"
  std::string where;                         // for errors: `column 11` or `file.xml:12`
};

struct StrategySpec {
  std::vector<StageRequest> stages;
  std::string normalized;  // DSL string normalized as the reference does (parts joined by " -> ")
  std::string origin;      // "strategy \"...\"" or the config path, for messages
};

struct PlanStage {
  std::string backend;      // plugin name (after resolve_backends)
  std::string device;       // "cpu", "cuda:0" (normalized: cuda -> cuda:0)
  std::string device_kind;  // "cpu", "cuda"
  int device_index = 0;
  Precision precision;
  int first_slot = 0;         // inclusive
  int last_slot = -1;         // inclusive; slot n_layer = ln_out + head
  int stream_first = -1;      // first streamed slot, -1 = none
  uint64_t weight_bytes = 0;  // from the backend's estimate (0 before resolution)

  bool operator==(const PlanStage&) const = default;
};

struct Plan {
  int n_layer = 0;
  std::vector<PlanStage> stages;
  int rescale_layer = 0;
  std::string strategy;  // normalized DSL equivalent (for converted-file checks and logs)

  int slots() const { return n_layer + 1; }
  bool operator==(const Plan&) const = default;
};

// Parses a DSL string. Throws Error pointing at the offending part, e.g.
// `strategy "cuda fp16 *x": expected a layer count after '*' at column 11`.
StrategySpec parse_strategy(const std::string& text);

// The reference's layer assignment (rwkv-reference §3.2) plus explicit ranges
// from XML. Rejects the quirks: several stream stages, *0 without +, stages
// left with no slots, i4/i3, ranges that overlap, leave gaps or pass slot L.
// rescale_layer: RWKV_RESCALE_LAYER if set, else 6 when "fp16" appears in the
// strategy, else 0 (an explicit override, e.g. from XML, wins when >= 0).
Plan assign_slots(const StrategySpec& spec, int n_layer, int rescale_override = -1);

// Chooses the plugin for every stage from the registry's manifests and fills
// weight_bytes from the backends' estimates.
void resolve_backends(Plan& plan, const StrategySpec& spec, const PluginRegistry& reg, const ModelHParams& hp);

// The resolved plan as text (per stage: backend, device, dtype, slot range,
// streamed slots, weight bytes; totals per device) and as the JSON object of
// `--print-plan --json`.
std::string plan_to_text(const Plan& plan);
std::string plan_to_json(const Plan& plan);

}  // namespace corvid
