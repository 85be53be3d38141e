// A minimal backend plugin in three variants, to test the registry's checks.
#include "corvid/sdk/plugin.h"

namespace {

class NullBackend : public corvid::Backend {
 public:
  void check_device(const corvid::StageSpec&) const override {}
  std::string layout_id(const corvid::StageSpec&, const corvid::ModelHParams&) const override { return "test/1"; }
  uint64_t estimate_weight_bytes(const corvid::StageSpec& s, const corvid::ModelHParams&) const override {
    return uint64_t(s.n_blocks()) * 1000;
  }
  void prepare(const corvid::StageSpec&, const corvid::ModelHParams&, const corvid::WeightSource&, corvid::WeightSink&,
               const corvid::ProgressFn&) const override {}
  std::unique_ptr<corvid::Stage> create_stage(const corvid::StageSpec&, const corvid::ModelHParams&,
                                              const corvid::WeightSource&) const override {
    throw corvid::Error("test plugin cannot run");
  }
};

corvid::Backend* create() { return new NullBackend(); }

const corvid::ServedPair kServed[] = {{"testdev", "fp32"}, {"testdev", "fp16i8"}};

#if defined(TEST_PLUGIN_VARIANT_good)
const corvid::PluginEntry kEntry = {CORVID_ABI_VERSION, sizeof(corvid::PluginEntry), corvid::PluginKind::Backend,
                                    "test_good", "1.0", "registry test backend", kServed, 2, &create, nullptr, nullptr};
#elif defined(TEST_PLUGIN_VARIANT_twin)
const corvid::PluginEntry kEntry = {CORVID_ABI_VERSION, sizeof(corvid::PluginEntry), corvid::PluginKind::Backend,
                                    "test_twin", "1.0", "serves the same pairs as test_good", kServed, 2, &create, nullptr, nullptr};
#elif defined(TEST_PLUGIN_VARIANT_wrong_abi)
const corvid::PluginEntry kEntry = {CORVID_ABI_VERSION + 1, sizeof(corvid::PluginEntry), corvid::PluginKind::Backend,
                                    "test_wrong_abi", "1.0", "built against another SDK", kServed, 2, &create, nullptr, nullptr};
#else
const corvid::PluginEntry kEntry = {CORVID_ABI_VERSION, sizeof(corvid::PluginEntry), corvid::PluginKind::Backend,
                                    "test_no_factory", "1.0", "forgot its factory", kServed, 2, nullptr, nullptr, nullptr};
#endif

}  // namespace

CORVID_DEFINE_PLUGIN(kEntry)
