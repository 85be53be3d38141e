// A backend plugin for the strategy tests: it serves "mps" pairs (which no
// real plugin does) and cannot run anything. Its weight estimate encodes the
// StageSpec it was given, so the tests can check how a PlanStage is mapped:
//   estimate = first_block * 1e9 + end_block * 1e6 + has_head * 1e3 + (stream_first + 1)
#include "corvid/sdk/plugin.h"

namespace {

class FakeBackend : public corvid::Backend {
 public:
  void check_device(const corvid::StageSpec&) const override { throw corvid::Error("fake backend: no device"); }
  std::string layout_id(const corvid::StageSpec&, const corvid::ModelHParams&) const override { return "fake/1"; }
  uint64_t estimate_weight_bytes(const corvid::StageSpec& s, const corvid::ModelHParams&) const override {
    return uint64_t(s.first_block) * 1000000000ull + uint64_t(s.end_block) * 1000000ull +
           (s.has_head ? 1000ull : 0ull) + uint64_t(s.stream_first + 1);
  }
  void prepare(const corvid::StageSpec&, const corvid::ModelHParams&, const corvid::WeightSource&,
               corvid::WeightSink&, const corvid::ProgressFn&) const override {
    throw corvid::Error("fake backend cannot prepare weights");
  }
  std::unique_ptr<corvid::Stage> create_stage(const corvid::StageSpec&, const corvid::ModelHParams&,
                                              const corvid::WeightSource&) const override {
    throw corvid::Error("fake backend cannot run");
  }
};

corvid::Backend* create() { return new FakeBackend(); }

#if defined(FAKE_BACKEND_VARIANT_fake)
const corvid::ServedPair kServed[] = {{"mps", "fp16"}, {"mps", "fp32i8"}, {"dml", "fp32"}};
const corvid::PluginEntry kEntry = {CORVID_ABI_VERSION, sizeof(corvid::PluginEntry), corvid::PluginKind::Backend,
                                    "test_fake_backend", "1.0", "strategy test backend (mps/dml, runs nothing)",
                                    kServed, 3, &create, nullptr, nullptr};
#elif defined(FAKE_BACKEND_VARIANT_template)
// Not a backend: a prompt-template plugin answering to "fake-chat", for the
// config's template-name check.
corvid::PromptTemplate* create_template(const std::string&, const corvid::TemplateOptions&) {
  throw corvid::Error("fake template cannot be created");
}
const corvid::ServedPair kServed[] = {{"template", "fake-chat"}};
const corvid::PluginEntry kEntry = {CORVID_ABI_VERSION, sizeof(corvid::PluginEntry), corvid::PluginKind::PromptTemplate,
                                    "test_fake_template", "1.0", "strategy test template", kServed, 1, nullptr,
                                    nullptr, &create_template};
#else
const corvid::ServedPair kServed[] = {{"mps", "fp16"}};
const corvid::PluginEntry kEntry = {CORVID_ABI_VERSION, sizeof(corvid::PluginEntry), corvid::PluginKind::Backend,
                                    "test_twin_backend", "1.0", "serves mps fp16 like test_fake_backend",
                                    kServed, 1, &create, nullptr, nullptr};
#endif

}  // namespace

CORVID_DEFINE_PLUGIN(kEntry)
