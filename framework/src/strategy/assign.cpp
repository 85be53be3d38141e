// Layer assignment (rwkv-reference §3.2) and the RESCALE_LAYER rule (§2.2).
//
// Slots 0..L-1 are blocks, slot L is ln_out + head: S = L + 1 slots in all.
// Counted stages ("*N") follow the reference's algorithm step by step; XML
// stages with explicit ranges ("layers=0-19") are checked for order, overlap,
// gaps and the end at slot L. A spec uses one way or the other, never both.
#include <cstdlib>
#include <string>

#include "corvid/sdk/error.h"
#include "corvid/strategy/plan.h"
#include "stage_words.h"

namespace corvid {

namespace {

std::string model_text(int n_layer) {
  return "a " + std::to_string(n_layer) + "-layer model (" + std::to_string(n_layer + 1) + " slots, slot " +
         std::to_string(n_layer) + " = head)";
}

PlanStage plan_stage_of(const StageRequest& req) {
  PlanStage ps;
  ps.device_kind = req.device_kind;
  ps.device_index = req.device_index;
  // "cuda" means cuda:0; other kinds have no index in the DSL.
  ps.device = req.device_kind == "cuda" ? "cuda:" + std::to_string(req.device_index) : req.device_kind;
  ps.precision = req.precision;
  return ps;
}

// The reference's algorithm for stages with counts or none ("free").
std::vector<int> counted_plan(const StrategySpec& spec, int n_layer, int& stream_i, int& stream_count,
                              std::vector<std::string>& why_empty) {
  const int n = static_cast<int>(spec.stages.size());
  const int to_allocate = n_layer + 1;
  std::vector<int> plan(n, 0);
  why_empty.assign(n, "");
  stream_i = -1;
  stream_count = 0;
  int allocated = 0, free_slots = 0;
  int cut_at = -1;  // stage whose count reached the last slot
  for (int i = 0; i < n; ++i) {
    const StageRequest& st = spec.stages[i];
    if (st.count) {
      plan[i] = *st.count;
      if (st.stream) stream_i = i;
      allocated += plan[i];
      if (allocated >= to_allocate) {
        plan[i] += to_allocate - allocated;
        allocated = to_allocate;
        cut_at = i;
        break;
      }
    } else {
      ++free_slots;
    }
  }
  if (cut_at >= 0) {
    for (int i = cut_at + 1; i < n; ++i)
      why_empty[i] = "the stages before it already take all " + std::to_string(to_allocate) + " slots (" +
                     std::to_string(n_layer) + " layers + head)";
  }
  if (stream_i < 0) {
    if (free_slots > 0 && to_allocate > allocated) {
      const int free_total = free_slots;
      const int remaining = to_allocate - allocated;
      for (int i = 0; i < n; ++i) {
        // The reference refills every stage whose plan is still 0, which also
        // catches an explicit "*0" (and then divides by zero); "*0" without
        // "+" is refused before we get here, so only free stages are zero.
        if (plan[i] == 0 && !spec.stages[i].count) {
          plan[i] = (to_allocate - allocated) / free_slots;
          allocated += plan[i];
          --free_slots;
          if (plan[i] == 0)
            why_empty[i] = std::to_string(remaining) + " remaining slots split among " + std::to_string(free_total) +
                           " stages without a count leave none for it (floor division, as the reference)";
        }
      }
    }
    if (to_allocate > allocated) plan[n - 1] += to_allocate - allocated;
  } else {
    if (to_allocate > allocated) {
      stream_count = to_allocate - allocated;
      plan[stream_i] += stream_count;
    }
    for (int i = 0; i < n; ++i)
      if (!spec.stages[i].count && why_empty[i].empty())
        why_empty[i] = "with a streamed stage ('+'), stages without '*N' get no layers (the reference gives them 0); "
                       "give it a count";
  }
  return plan;
}

}  // namespace

void strategy_detail::check_ranges(const StrategySpec& spec, int n_layer) {
  const bool known = n_layer >= 0;
  const int n = static_cast<int>(spec.stages.size());
  auto show = [](int v) { return v == kHeadSlot ? std::string("head") : std::to_string(v); };
  auto range = [&](int a, int b) { return a == b ? "slot " + show(a) : "slots " + show(a) + "-" + show(b); };
  auto unassigned = [&](int a, int b) {
    return range(a, b) + (a == b ? " is" : " are") + " not assigned to any stage";
  };
  // Values with "head" replaced by L when L is known; kHeadSlot otherwise.
  auto resolve = [&](int v) { return (known && v == kHeadSlot) ? n_layer : v; };
  auto past_end = [&](int i, const std::string& what, int v) {
    if (known && v != kHeadSlot && v > n_layer)
      throw Error(stage_message(spec, i, what + " " + std::to_string(v) + " is past the last slot " +
                                             std::to_string(n_layer) + " of " + model_text(n_layer)));
  };
  // For a gap: a later stage that starts where the gap does was probably
  // listed out of order.
  auto listed_later = [&](int i, int slot) -> std::string {
    for (int k = i + 1; k < n; ++k)
      if (spec.stages[k].range && resolve(spec.stages[k].range->first) == slot)
        return " (the stage at " + spec.stages[k].where +
               " starts there, but stages run in the order listed: move it up)";
    return "";
  };
  int prev_last = -1;  // resolved last slot of the previous stage
  for (int i = 0; i < n; ++i) {
    const StageRequest& st = spec.stages[i];
    if (!st.range) continue;
    int f = st.range->first, l = st.range->second;
    if (f < 0 || l < 0) throw Error(stage_message(spec, i, "negative slot in range"));
    past_end(i, "slot", f);
    past_end(i, "slot", l);
    f = resolve(f);
    l = resolve(l);
    if (l < f) throw Error(stage_message(spec, i, "range " + show(f) + "-" + show(l) + " ends before it starts"));
    if (i == 0) {
      if (f != 0)
        throw Error(stage_message(spec, i, (f == kHeadSlot ? "the slots before the head are not assigned to any stage"
                                                           : unassigned(0, f - 1)) +
                                               (listed_later(i, 0).empty() ? " (the first stage must start at slot 0)"
                                                                           : listed_later(i, 0))));
    } else if (prev_last == kHeadSlot || (f != kHeadSlot && f <= prev_last)) {
      const StageRequest& prev = spec.stages[i - 1];
      throw Error(stage_message(spec, i, range(f, l) + (f == l ? " overlaps" : " overlap") + " the previous stage's " +
                                             range(resolve(prev.range->first), prev_last) + " (" + prev.where +
                                             "); stages run in the order listed, each starting right after the "
                                             "one before"));
    } else if (f != kHeadSlot && f > prev_last + 1) {
      throw Error(stage_message(spec, i, unassigned(prev_last + 1, f - 1) + listed_later(i, prev_last + 1)));
    }
    if (st.stream_from) {
      if (!st.stream) throw Error(stage_message(spec, i, "stream_from is given but the stage is not streamed"));
      int sf = *st.stream_from;
      past_end(i, "stream_from", sf);
      sf = resolve(sf);
      bool inside = (f == kHeadSlot || sf >= f) && (sf == kHeadSlot ? l == kHeadSlot || !known : sf <= l);
      if (!inside)
        throw Error(stage_message(spec, i, "stream_from " + show(sf) + " is outside the stage's " + range(f, l)));
    }
    prev_last = l;
  }
  if (known && n > 0 && spec.stages[n - 1].range && prev_last != n_layer)
    throw Error(stage_message(spec, n - 1, unassigned(prev_last + 1, n_layer) + " (the "
                                           "last stage must end at slot " + std::to_string(n_layer) +
                                           ", the head, written as " + std::to_string(n_layer) + " or 'head')"));
}

std::string stage_message(const StrategySpec& spec, size_t stage_index, const std::string& what) {
  if (stage_index >= spec.stages.size()) return spec.origin + ": " + what;
  const StageRequest& st = spec.stages[stage_index];
  if (st.line > 0 || (st.column == 0 && !st.where.empty())) return st.where + ": " + what;
  std::string s = spec.origin + ": stage " + std::to_string(stage_index + 1) + " " + strategy_detail::quote(st.text);
  if (st.column > 0) s += " at column " + std::to_string(st.column);
  return s + ": " + what;
}

int rescale_layer_for(const std::string& normalized_strategy, int rescale_override) {
  if (rescale_override >= 0) return rescale_override;
  if (const char* env = std::getenv("RWKV_RESCALE_LAYER")) {
    std::string v = env;
    bool ok = !v.empty() && v.size() <= 9;
    for (char c : v) ok = ok && c >= '0' && c <= '9';
    // The reference takes any int and treats R <= 0 as "off"; a negative or
    // non-numeric value is more likely a typo, so say so.
    if (!ok)
      throw Error("RWKV_RESCALE_LAYER=" + strategy_detail::quote(v) +
                  ": expected an integer >= 0 (0 turns rescaling off, 6 is the fp16 default)");
    return std::stoi(v);
  }
  return normalized_strategy.find("fp16") != std::string::npos ? 6 : 0;
}

Plan assign_slots(const StrategySpec& spec, int n_layer, int rescale_override) {
  if (n_layer < 1) throw Error(spec.origin + ": the model must have at least one layer (got " + std::to_string(n_layer) + ")");
  if (spec.stages.empty()) throw Error(spec.origin + ": no stages");
  const int n = static_cast<int>(spec.stages.size());

  Plan plan;
  plan.n_layer = n_layer;

  size_t n_ranged = 0;
  int n_stream = 0;
  for (const auto& st : spec.stages) {
    if (st.range) ++n_ranged;
    if (st.stream) ++n_stream;
  }
  if (n_ranged != 0 && n_ranged != spec.stages.size()) {
    for (int i = 0; i < n; ++i)
      if (!spec.stages[i].range)
        throw Error(stage_message(spec, i, "this stage has no explicit range while others do: give layers= on every "
                                           "stage or on none"));
  }
  if (n_stream > 1) {
    for (int i = 0, seen = 0; i < n; ++i)
      if (spec.stages[i].stream && ++seen == 2)
        throw Error(stage_message(spec, i, "a second streamed stage: only one stage may stream"));
  }

  if (n_ranged == 0) {
    for (int i = 0; i < n; ++i) {
      const auto& st = spec.stages[i];
      if (st.count && *st.count < 0) throw Error(stage_message(spec, i, "negative layer count"));
      if (st.count && *st.count == 0 && !st.stream)
        throw Error(stage_message(spec, i, "a count of 0 gives the stage no layers (the reference refills it or "
                                           "divides by zero); stream it ('*0+') or remove it"));
    }
    int stream_i = -1, stream_count = 0;
    std::vector<std::string> why_empty;
    std::vector<int> counts = counted_plan(spec, n_layer, stream_i, stream_count, why_empty);
    int next = 0;
    for (int i = 0; i < n; ++i) {
      if (counts[i] <= 0) {
        std::string why = why_empty[i].empty() ? "nothing is left for it in " + model_text(n_layer) : why_empty[i];
        throw Error(stage_message(spec, i, "this stage gets no layers: " + why));
      }
      PlanStage ps = plan_stage_of(spec.stages[i]);
      ps.first_slot = next;
      ps.last_slot = next + counts[i] - 1;
      if (i == stream_i && stream_count > 0) ps.stream_first = ps.last_slot + 1 - stream_count;
      next = ps.last_slot + 1;
      plan.stages.push_back(ps);
    }
    plan.strategy = spec.normalized;
    if (plan.strategy.empty()) {
      for (int i = 0; i < n; ++i) plan.strategy += (i ? " -> " : "") + spec.stages[i].text;
    }
  } else {
    strategy_detail::check_ranges(spec, n_layer);
    std::string strategy;
    for (int i = 0; i < n; ++i) {
      const auto& st = spec.stages[i];
      auto resolve = [&](int v) { return v == kHeadSlot ? n_layer : v; };
      PlanStage ps = plan_stage_of(st);
      ps.first_slot = resolve(st.range->first);
      ps.last_slot = resolve(st.range->second);
      int resident = ps.n_slots();
      if (st.stream) {
        ps.stream_first = resolve(st.stream_from ? *st.stream_from : st.range->first);
        resident = ps.stream_first - ps.first_slot;
      }
      // The DSL equivalent: every stage counted, the stream stage "*resident+"
      // (it then absorbs exactly the streamed remainder; see §3.2 step 3).
      strategy += (i ? " -> " : "") + st.device + " " + st.precision_name + " *" + std::to_string(resident) +
                  (st.stream ? "+" : "");
      plan.stages.push_back(ps);
    }
    plan.strategy = strategy;
  }
  plan.rescale_layer = rescale_layer_for(plan.strategy, rescale_override);
  return plan;
}

}  // namespace corvid
