// Strategies and plans.
//
// A strategy says which slots run where: the ChatRWKV DSL string
// ("cuda fp16i8 *20 -> cpu fp32", rwkv-reference §3) or an XML pipeline config
// (config.h). Both are parsed into a StrategySpec (stages with counts or
// explicit ranges), which assign_slots() turns into a Plan for a model of L
// layers: L+1 slots, slot L being ln_out + head. A Plan is what the runtime
// builds; resolve_backends() fills in which plugin serves each stage.
//
// Every stage of a StrategySpec becomes exactly one PlanStage (stages that
// would get no slots are rejected), so spec.stages[i] <-> plan.stages[i].
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "corvid/sdk/dtype.h"

namespace corvid {

class PluginRegistry;
struct ModelHParams;

// Written as "head" in an XML range: slot L, whatever L is. Sorts after every
// real slot so ranges can be checked for order before L is known.
inline constexpr int kHeadSlot = std::numeric_limits<int>::max();

struct StageRequest {
  std::string device;       // "cpu", "cuda", "cuda:1", "mps", "dml" as written
  std::string device_kind;  // device without ":N"
  int device_index = 0;
  Precision precision;
  std::string precision_name;  // "fp16i8", as written
  std::string backend;         // explicit plugin name (XML), "" = choose from manifests
  // Exactly one of: a count (*N), an explicit range (XML layers="a-b"), or neither (free).
  std::optional<int> count;
  std::optional<std::pair<int, int>> range;  // inclusive slot range; kHeadSlot = slot L
  bool stream = false;                       // "*N+" / stream="true"
  // With a range and stream: first streamed slot (XML stream_from; default: the
  // range's first slot, i.e. the whole range is streamed). kHeadSlot = slot L.
  std::optional<int> stream_from;
  std::string text;   // the stage as DSL text ("cuda fp16 *10+"), for messages
  std::string where;  // for errors: `column 11` (DSL) or `file.xml:12` (XML)
  int column = 0;     // DSL: 1-based column of the stage's device word (0 for XML)
  int line = 0;       // XML: line of the <stage> element (0 for DSL)
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

  int n_slots() const { return last_slot - first_slot + 1; }
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
// Columns are 1-based and count characters (UTF-8 code points).
StrategySpec parse_strategy(const std::string& text);

// The reference's normalization: split on "->", trim spaces, join with " -> ".
// (No validation; parse_strategy() fills StrategySpec::normalized with it.)
std::string normalize_strategy(const std::string& text);

// The reference's layer assignment (rwkv-reference §3.2) plus explicit ranges
// from XML. Rejects the quirks: several stream stages, *0 without +, stages
// left with no slots, i4/i3, ranges that overlap, leave gaps or pass slot L.
// rescale_layer: RWKV_RESCALE_LAYER if set, else 6 when "fp16" appears in the
// strategy, else 0 (an explicit override, e.g. from XML, wins when >= 0).
Plan assign_slots(const StrategySpec& spec, int n_layer, int rescale_override = -1);

// The RESCALE_LAYER rule alone (rwkv-reference §2.2) for a normalized strategy.
// Throws Error when RWKV_RESCALE_LAYER is set but not an integer >= 0.
int rescale_layer_for(const std::string& normalized_strategy, int rescale_override = -1);

// Chooses the plugin for every stage from the registry's manifests and fills
// weight_bytes from the backends' estimates. Errors name the stage (its column
// in the DSL string or file:line in the XML config).
void resolve_backends(Plan& plan, const StrategySpec& spec, const PluginRegistry& reg, const ModelHParams& hp);

// An error message about one stage of `spec`, located the way the spec was
// written: `strategy "...": stage 2 "cpu fp32" at column 17: WHAT` for a DSL
// string, `file.xml:12: WHAT` for a config. For the runtime's per-stage errors.
std::string stage_message(const StrategySpec& spec, size_t stage_index, const std::string& what);

// The resolved plan as text (per stage: backend, device, dtype, slot range,
// streamed slots, weight bytes; totals per device) and as the JSON object of
// `--print-plan --json`:
//   {"n_layer": L, "slots": L+1, "stages": [{"backend": NAME, "device": "cuda:0",
//    "dtype": "fp16i8", "slots": [first, last], "streamed": [first, last] | null,
//    "weight_bytes": N}], "rescale_layer": R}
// ("backend" is null for a stage not yet resolved.)
std::string plan_to_text(const Plan& plan);
std::string plan_to_json(const Plan& plan);

// "1.50 GiB", "512.0 MiB", "12 B": for plan listings and load logs.
std::string format_bytes(uint64_t bytes);

}  // namespace corvid
