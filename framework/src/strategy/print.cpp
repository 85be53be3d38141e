// Plans as text (for people deciding whether a strategy fits in memory) and as
// JSON (for scripts): `corvid-run --print-plan [--json]`.
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "corvid/strategy/plan.h"

namespace corvid {

std::string format_bytes(uint64_t bytes) {
  static const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  int u = -1;
  while (v >= 1024.0 && u < 3) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

namespace {
std::string range_text(int first, int last) {
  return first == last ? std::to_string(first) : std::to_string(first) + "-" + std::to_string(last);
}
}  // namespace

std::string plan_to_text(const Plan& plan) {
  std::ostringstream os;
  os << "Plan: " << plan.n_layer << " layers + head = " << plan.slots() << " slots (slot " << plan.n_layer
     << " = ln_out + head), strategy \"" << plan.strategy << "\", RESCALE_LAYER " << plan.rescale_layer << "\n";
  // Per stage, aligned columns.
  struct Row {
    std::string idx, backend, device, dtype, slots, streamed, bytes;
  };
  std::vector<Row> rows;
  bool any_stream = false;
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    const PlanStage& s = plan.stages[i];
    Row r;
    r.idx = "stage " + std::to_string(i + 1);
    r.backend = s.backend.empty() ? "(unresolved)" : s.backend;
    r.device = s.device;
    r.dtype = precision_name(s.precision);
    r.slots = "slots " + range_text(s.first_slot, s.last_slot);
    if (s.last_slot == plan.n_layer) r.slots += " (head)";
    if (s.stream_first >= 0) {
      r.streamed = "streamed " + range_text(s.stream_first, s.last_slot);
      any_stream = true;
    }
    r.bytes = s.backend.empty() && s.weight_bytes == 0 ? "weights ?" : "weights " + format_bytes(s.weight_bytes);
    rows.push_back(r);
  }
  size_t w[6] = {0, 0, 0, 0, 0, 0};
  for (const Row& r : rows) {
    w[0] = std::max(w[0], r.idx.size());
    w[1] = std::max(w[1], r.backend.size());
    w[2] = std::max(w[2], r.device.size());
    w[3] = std::max(w[3], r.dtype.size());
    w[4] = std::max(w[4], r.slots.size());
    w[5] = std::max(w[5], r.streamed.size());
  }
  auto pad = [](const std::string& s, size_t n) { return s + std::string(n > s.size() ? n - s.size() : 0, ' '); };
  for (const Row& r : rows) {
    os << "  " << pad(r.idx + ":", w[0] + 1) << "  " << pad(r.backend, w[1]) << "  " << pad(r.device, w[2]) << "  "
       << pad(r.dtype, w[3]) << "  " << pad(r.slots, w[4]) << "  ";
    if (any_stream) os << pad(r.streamed, w[5]) << "  ";
    os << r.bytes << "\n";
  }
  // Totals per device, in order of first appearance.
  std::vector<std::string> order;
  std::map<std::string, uint64_t> total;
  std::map<std::string, bool> unknown;  // a stage not resolved yet: no estimate
  for (const PlanStage& s : plan.stages) {
    if (!total.count(s.device)) order.push_back(s.device);
    total[s.device] += s.weight_bytes;
    if (s.backend.empty() && s.weight_bytes == 0) unknown[s.device] = true;
  }
  os << "Weights per device:";
  for (const auto& d : order) os << "  " << d << " " << (unknown[d] ? std::string("?") : format_bytes(total[d]));
  os << "\n";
  if (any_stream)
    os << "Streamed slots keep their large matrices in (pinned) host memory and copy them to the device for each "
          "use.\n";
  return os.str();
}

std::string plan_to_json(const Plan& plan) {
  // ordered_json keeps the documented key order.
  nlohmann::ordered_json j;
  j["n_layer"] = plan.n_layer;
  j["slots"] = plan.slots();
  nlohmann::ordered_json stages = nlohmann::ordered_json::array();
  for (const PlanStage& s : plan.stages) {
    nlohmann::ordered_json st;
    if (s.backend.empty()) st["backend"] = nullptr;
    else st["backend"] = s.backend;
    st["device"] = s.device;
    st["dtype"] = precision_name(s.precision);
    st["slots"] = {s.first_slot, s.last_slot};
    if (s.stream_first >= 0) st["streamed"] = {s.stream_first, s.last_slot};
    else st["streamed"] = nullptr;
    st["weight_bytes"] = s.weight_bytes;
    stages.push_back(st);
  }
  j["stages"] = stages;
  j["rescale_layer"] = plan.rescale_layer;
  return j.dump();
}

}  // namespace corvid
