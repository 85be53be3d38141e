#include "corvid/runtime/plan_preview.h"

#include "corvid/convert/converted.h"
#include "corvid/io/checkpoint.h"
#include "corvid/model/model_info.h"

namespace corvid {

Plan preview_plan(const std::string& model_path, const StrategySpec* spec, int rescale_override, const PluginRegistry& reg) {
  auto ck = Checkpoint::open(model_path);
  ModelHParams hp;
  StrategySpec parsed;
  if (is_converted(*ck)) {
    ConvertedInfo info = read_converted_info(*ck);
    hp = info.hp;
    if (!spec) parsed = parse_strategy(info.strategy);
  } else {
    hp = detect_hparams(*ck);
    if (!spec) parsed = parse_strategy("cpu fp32");
  }
  if (!spec) spec = &parsed;
  Plan plan = assign_slots(*spec, hp.n_layer, rescale_override);
  hp.rescale_layer = plan.rescale_layer;
  resolve_backends(plan, *spec, reg, hp);
  return plan;
}

}  // namespace corvid
