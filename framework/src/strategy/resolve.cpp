// Which plugin serves each stage. The answer comes from the plugins' manifests
// (PluginRegistry::find_backend), never from a table here; a stage may name a
// plugin explicitly (XML backend="..."), which must then serve its pair.
#include "corvid/plugins/registry.h"
#include "corvid/runtime/engine.h"
#include "corvid/sdk/error.h"
#include "corvid/strategy/plan.h"

namespace corvid {

void resolve_backends(Plan& plan, const StrategySpec& spec, const PluginRegistry& reg, const ModelHParams& hp) {
  if (plan.stages.size() != spec.stages.size())
    throw Error(spec.origin + ": the plan has " + std::to_string(plan.stages.size()) + " stages but the strategy " +
                std::to_string(spec.stages.size()) + " (plan made from another strategy?)");
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    PlanStage& ps = plan.stages[i];
    const StageRequest& req = spec.stages[i];
    try {
      const LoadedPlugin& p = reg.find_backend(ps.device_kind, precision_name(ps.precision), req.backend);
      BackendHandle h = reg.create_backend(p);
      ps.backend = p.entry->name;
      // Only the estimate: no device is touched, so a plan for a GPU strategy
      // can be printed on a machine without one. threads/chunk_len do not
      // change the weight bytes.
      ps.weight_bytes = h.backend->estimate_weight_bytes(make_stage_spec(ps, plan.n_layer, 0, 256), hp);
    } catch (const std::exception& e) {
      throw Error(stage_message(spec, i, e.what()));
    }
  }
}

}  // namespace corvid
