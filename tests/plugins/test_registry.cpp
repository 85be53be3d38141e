#include <gtest/gtest.h>

#include <dlfcn.h>

#include <filesystem>
#include <fstream>

#include "corvid/plugins/registry.h"
#include "corvid/sdk/error.h"

using namespace corvid;
namespace fs = std::filesystem;

static std::string dir(const char* v) { return std::string(TEST_PLUGIN_DIR) + "/" + v; }

static std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Registry, LoadsAGoodPluginAndFindsItByManifest) {
  PluginRegistry reg({dir("good")});
  const LoadedPlugin* p = reg.find_by_name("test_good");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(&reg.find_backend("testdev", "fp16i8"), p);
  BackendHandle h = reg.create_backend(*p);
  ASSERT_TRUE(h.backend);
  StageSpec s;
  s.first_block = 0;
  s.end_block = 3;
  EXPECT_EQ(h.backend->estimate_weight_bytes(s, ModelHParams{}), 3000u);
  EXPECT_NE(reg.describe().find("test_good"), std::string::npos);
}

TEST(Registry, NoPluginServesThePair) {
  PluginRegistry reg({dir("good")});
  std::string e = error_of([&] { reg.find_backend("mps", "fp16"); });
  EXPECT_NE(e.find("no plugin serves device 'mps'"), std::string::npos) << e;
  EXPECT_NE(e.find("testdev fp32"), std::string::npos) << e;  // lists what exists
}

TEST(Registry, ExplicitNameMustServeThePair) {
  PluginRegistry reg({dir("good")});
  EXPECT_NE(error_of([&] { reg.find_backend("testdev", "bf16", "test_good"); }).find("does not serve testdev bf16"),
            std::string::npos);
  EXPECT_NE(error_of([&] { reg.find_backend("testdev", "fp32", "nope"); }).find("unknown plugin 'nope'"), std::string::npos);
}

TEST(Registry, WrongAbiIsRefusedWithFileAndReason) {
  std::string f = dir("wrong_abi") + "/libcorvid_test_wrong_abi.so";
  PluginRegistry reg(std::vector<std::string>{});
  std::string e = error_of([&] { reg.load_file(f); });
  EXPECT_NE(e.find(f), std::string::npos) << e;
  EXPECT_NE(e.find("ABI version"), std::string::npos) << e;
}

TEST(Registry, PluginWithoutFactoryIsRefused) {
  PluginRegistry reg(std::vector<std::string>{});
  std::string e = error_of([&] { reg.load_file(dir("no_factory") + "/libcorvid_test_no_factory.so"); });
  EXPECT_NE(e.find("no factory"), std::string::npos) << e;
}

TEST(Registry, BrokenFilesAreReportedNotFatal) {
  fs::path d = fs::temp_directory_path() / "corvid_registry_test";
  fs::create_directories(d);
  { std::ofstream(d / "libcorvid_garbage.so") << "this is not an ELF file"; }
  PluginRegistry reg({d.string(), dir("good")});
  ASSERT_NE(reg.find_by_name("test_good"), nullptr);  // the good one still loads
  bool reported = false;
  for (const auto& e : reg.load_errors())
    if (e.find("libcorvid_garbage.so") != std::string::npos && e.find("failed to load") != std::string::npos) reported = true;
  EXPECT_TRUE(reported);
  std::string e = error_of([&] { reg.load_file((d / "missing.so").string()); });
  EXPECT_NE(e.find("missing.so"), std::string::npos);
  fs::remove_all(d);
}

TEST(Registry, TwoPluginsServingTheSamePairNeedAChoice) {
  PluginRegistry reg({dir("good"), dir("twin")});
  std::string e = error_of([&] { reg.find_backend("testdev", "fp32"); });
  EXPECT_NE(e.find("several plugins serve testdev fp32"), std::string::npos) << e;
  EXPECT_NE(e.find("test_good"), std::string::npos) << e;
  EXPECT_NE(e.find("test_twin"), std::string::npos) << e;
  // Naming one resolves it.
  EXPECT_EQ(std::string(reg.find_backend("testdev", "fp32", "test_twin").entry->name), "test_twin");
}

TEST(Registry, SameNameTwiceKeepsTheFirst) {
  fs::path d = fs::temp_directory_path() / "corvid_registry_dup";
  fs::create_directories(d);
  fs::copy_file(dir("good") + "/libcorvid_test_good.so", d / "libcorvid_test_good_copy.so", fs::copy_options::overwrite_existing);
  PluginRegistry reg({dir("good"), d.string()});
  EXPECT_EQ(reg.find_backend("testdev", "fp32").path, dir("good") + "/libcorvid_test_good.so");
  fs::remove_all(d);
}

// Plugin code stays mapped after the registry is gone (RTLD_NODELETE), so an
// exception or object created by a plugin can outlive the registry safely.
TEST(Registry, PluginCodeOutlivesTheRegistry) {
  const std::string f = dir("good") + "/libcorvid_test_good.so";
  {
    PluginRegistry reg({dir("good")});
    ASSERT_NE(reg.find_by_name("test_good"), nullptr);
  }
  void* h = dlopen(f.c_str(), RTLD_NOW | RTLD_NOLOAD);
  EXPECT_NE(h, nullptr) << "plugin was unloaded";
  if (h) dlclose(h);
}
