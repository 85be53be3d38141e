// detect_hparams for RWKV-7 checkpoints (framework/src/model/validate_v7.cpp):
// a malformed v7 file, or a DeepEmbed one (out of scope), gives one line naming
// the tensor, never a crash in the backend. The checkpoints are small bf16
// safetensors written here from §1.3's shape table; each hostile case changes,
// drops or adds one tensor of an otherwise valid file, and the valid file
// itself must load and run (positive control).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "../common/detect_error.h"
#include "../common/v5_checkpoint.h"
#include "corvid/io/checkpoint.h"
#include "corvid/model/model_info.h"
#include "corvid/runtime/engine.h"
#include "corvid/sdk/dtype.h"
#include "corvid/sdk/error.h"

using namespace corvid;
namespace fs = std::filesystem;

namespace {

using Shape = std::vector<int64_t>;
constexpr int L = 2, C = 32, H = 2, N = 16, F = 128, V = 50, Dw = 8, Da = 8, Dv = 4, Dg = 16;

std::vector<std::pair<std::string, Shape>> v7_tensors() {
  std::vector<std::pair<std::string, Shape>> ts;
  ts.push_back({"emb.weight", {V, C}});
  for (int l = 0; l < L; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    if (l == 0) {
      ts.push_back({b + "ln0.weight", {C}});
      ts.push_back({b + "ln0.bias", {C}});
    }
    for (const char* n : {"ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias"}) ts.push_back({b + n, {C}});
    for (const char* n : {"att.x_r", "att.x_w", "att.x_k", "att.x_v", "att.x_a", "att.x_g", "att.w0", "att.a0",
                          "att.v0", "att.k_k", "att.k_a"})
      ts.push_back({b + n, {1, 1, C}});
    ts.push_back({b + "att.w1", {C, Dw}});
    ts.push_back({b + "att.w2", {Dw, C}});
    ts.push_back({b + "att.a1", {C, Da}});
    ts.push_back({b + "att.a2", {Da, C}});
    ts.push_back({b + "att.v1", {C, Dv}});
    ts.push_back({b + "att.v2", {Dv, C}});
    ts.push_back({b + "att.g1", {C, Dg}});
    ts.push_back({b + "att.g2", {Dg, C}});
    ts.push_back({b + "att.r_k", {H, N}});
    for (const char* n : {"att.receptance.weight", "att.key.weight", "att.value.weight", "att.output.weight"})
      ts.push_back({b + n, {C, C}});
    ts.push_back({b + "att.ln_x.weight", {C}});
    ts.push_back({b + "att.ln_x.bias", {C}});
    ts.push_back({b + "ffn.x_k", {1, 1, C}});
    ts.push_back({b + "ffn.key.weight", {F, C}});
    ts.push_back({b + "ffn.value.weight", {C, F}});
  }
  ts.push_back({"ln_out.weight", {C}});
  ts.push_back({"ln_out.bias", {C}});
  ts.push_back({"head.weight", {V, C}});
  return ts;
}

// bf16 safetensors with small values (tests/common/v5_checkpoint.h); override[name]
// replaces a shape, {-1} drops the tensor.
void write_safetensors(const std::string& path, std::vector<std::pair<std::string, Shape>> ts,
                       const std::map<std::string, Shape>& override = {}) {
  corvid_test::write_safetensors(path, std::move(ts), override, /*seed*/ 4242);
}

std::string scratch_file(const std::string& n) {
  const fs::path d = fs::temp_directory_path() / ("corvid_v7shapes_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return (d / n).string();
}

using corvid_test::detect_error;

}  // namespace

TEST(Rwkv7Shapes, ValidFileIsDetectedAndRuns) {
  const std::string p = scratch_file("ok_v7.safetensors");
  write_safetensors(p, v7_tensors());
  auto ck = Checkpoint::open(p);
  ModelHParams hp = detect_hparams(*ck);
  EXPECT_EQ(hp.arch, Arch::V7_0);
  EXPECT_EQ(hp.n_head, H);
  EXPECT_EQ(hp.head_size, N);
  EXPECT_EQ(hp.n_ffn, F);
  for (const char* strategy : {"cpu fp32", "cpu bf16", "cpu fp32i8", "cpu bf16i8", "cpu fp32 *1 -> cpu bf16"}) {
    SCOPED_TRACE(strategy);
    EngineOptions o = engine_default_options();
    o.model_path = p;
    o.strategy = strategy;
    o.threads = 1;
    auto eng = Engine::load(o);
    State st = eng->new_state();
    std::vector<int32_t> toks = {1, 2, 3, 4};
    std::vector<float> all(toks.size() * V);
    eng->forward_stepwise(toks, st, all.data());
    for (float x : all) ASSERT_TRUE(std::isfinite(x));
  }
  fs::remove(p);
}

TEST(Rwkv7Shapes, MalformedTensorIsOneLineNamingIt) {
  const std::pair<const char*, Shape> cases[] = {
      {"blocks.1.att.r_k", {H, N + 1}},
      {"blocks.1.att.x_a", {1, 1, C - 1}},
      {"blocks.0.att.k_k", {-1}},
      {"blocks.1.att.w2", {Dw + 1, C}},
      {"blocks.1.att.a1", {C + 1, Da}},
      {"blocks.1.att.v1", {-1}},
      {"blocks.1.att.v2", {Dv, C - 2}},
      {"blocks.0.att.g2", {Dg, C, 2}},
      {"blocks.1.att.ln_x.bias", {C + 3}},
      {"blocks.1.ffn.value.weight", {C, F + 1}},
      {"blocks.1.ffn.x_k", {-1}},
      {"head.weight", {V, C + 1}},
  };
  for (const auto& [tensor, shape] : cases) {
    SCOPED_TRACE(tensor);
    const std::string p = scratch_file("bad_v7.safetensors");
    write_safetensors(p, v7_tensors(), {{tensor, shape}});
    const std::string e = detect_error(p);
    EXPECT_NE(e.find(tensor), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    fs::remove(p);
  }
}

// DeepEmbed (RWKV_DE_VERSION) is out of scope: refused by name, one line.
TEST(Rwkv7Shapes, DeepEmbedIsRefused) {
  auto ts = v7_tensors();
  ts.push_back({"blocks.0.ffn.s_emb.weight", {V, 32}});
  ts.push_back({"blocks.0.ffn.s0", {C}});
  const std::string p = scratch_file("deepembed_v7.safetensors");
  write_safetensors(p, ts);
  const std::string e = detect_error(p);
  EXPECT_NE(e.find("DeepEmbed"), std::string::npos) << e;
  EXPECT_NE(e.find("blocks.0.ffn.s_emb.weight"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  fs::remove(p);
}
