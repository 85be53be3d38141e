// detect_hparams for RWKV-5.0/5.1/5.2/6.0 checkpoints (framework/src/model/
// model_info.cpp): the version, H, N and n_ffn come from the shapes, and a
// malformed file gives one line naming the tensor (never a crash in a backend).
// The checkpoints are small safetensors written here from §1.3's shape table;
// each hostile case changes or drops one tensor of an otherwise valid file,
// and the valid file itself must load and run (positive control).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "corvid/io/checkpoint.h"
#include "corvid/model/model_info.h"
#include "corvid/runtime/engine.h"
#include "corvid/sdk/dtype.h"
#include "corvid/sdk/error.h"
#include "../common/detect_error.h"
#include "../common/v5_checkpoint.h"

using namespace corvid;
namespace fs = std::filesystem;

namespace {

using corvid_test::Shape;
using corvid_test::v5_tensors;
using corvid_test::write_safetensors;

class Scratch {
 public:
  Scratch() : dir_(fs::temp_directory_path() / ("corvid_v5shapes_" + std::to_string(::getpid()))) {
    fs::create_directories(dir_);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string file(const std::string& n) const { return (dir_ / n).string(); }

 private:
  fs::path dir_;
};

using corvid_test::detect_error;

constexpr int L = 2, C = 32, H = 2, F = 112, V = 50, Dm = 4, Dd = 8;

}  // namespace

TEST(Rwkv5Shapes, VersionsHeadsAndWidthsFromTheShapes) {
  Scratch dir;
  for (Arch a : {Arch::V5_0, Arch::V5_1, Arch::V5_2, Arch::V6_0}) {
    SCOPED_TRACE(arch_name(a));
    const std::string p = dir.file(std::string("ok_") + arch_name(a) + ".safetensors");
    write_safetensors(p, v5_tensors(a, L, C, H, F, V, Dm, Dd));
    auto ck = Checkpoint::open(p);
    ModelHParams hp = detect_hparams(*ck);
    EXPECT_EQ(hp.arch, a);
    EXPECT_EQ(hp.n_head, H);
    EXPECT_EQ(hp.head_size, C / H);
    EXPECT_EQ(hp.n_ffn, F);
    EXPECT_EQ(hp.n_layer, L);
    // Positive control: the valid file loads and runs on the CPU backend.
    EngineOptions o = engine_default_options();
    o.model_path = p;
    o.strategy = "cpu fp32";
    o.threads = 1;
    auto eng = Engine::load(o);
    State st = eng->new_state();
    std::vector<float> logits(V);
    std::vector<float> all(size_t(4) * V);
    std::vector<int32_t> toks = {1, 2, 3, 4};
    eng->forward_stepwise(toks, st, all.data());
    std::copy(all.end() - V, all.end(), logits.begin());
    for (float x : logits) ASSERT_TRUE(std::isfinite(x));
  }
}

struct Hostile {
  Arch arch;
  const char* tensor;  // the tensor changed (and named in the error)
  Shape shape;         // {-1}: dropped
};

TEST(Rwkv5Shapes, MalformedTensorIsOneLineNamingIt) {
  const int N = C / H;
  const Hostile cases[] = {
      {Arch::V5_0, "blocks.1.att.time_decay", {H + 1}},
      {Arch::V5_0, "blocks.0.att.time_first", {H, 2}},
      {Arch::V5_0, "blocks.1.att.ln_x.weight", {C - 1}},
      {Arch::V5_0, "blocks.1.att.ln_x.bias", {-1}},
      {Arch::V5_1, "blocks.1.att.gate.weight", {C, C + 1}},
      {Arch::V5_1, "blocks.0.att.time_mix_g", {-1}},
      {Arch::V5_2, "blocks.1.att.time_faaaa", {H, N + 1}},
      {Arch::V5_2, "blocks.1.att.time_decay", {H, N - 1}},
      {Arch::V5_2, "blocks.1.ffn.value.weight", {C, F + 2}},
      {Arch::V6_0, "blocks.1.att.time_maa_w1", {C, 5 * Dm + 5}},
      {Arch::V6_0, "blocks.0.att.time_maa_w1", {C, 7}},
      {Arch::V6_0, "blocks.1.att.time_maa_w2", {4, Dm, C}},
      {Arch::V6_0, "blocks.1.att.time_decay_w2", {Dd, C + 1}},
      {Arch::V6_0, "blocks.1.att.time_decay_w1", {C, Dd * 2}},
      {Arch::V6_0, "blocks.1.att.time_decay", {1, 1, C - 2}},
      {Arch::V6_0, "blocks.1.att.time_maa_g", {-1}},
      {Arch::V6_0, "blocks.1.ffn.time_maa_r", {C + 1}},
      {Arch::V6_0, "blocks.0.att.time_state", {H, N, N + 1}},
      {Arch::V6_0, "head.weight", {V, C + 1}},
  };
  Scratch dir;
  int i = 0;
  for (const Hostile& h : cases) {
    SCOPED_TRACE(std::string(arch_name(h.arch)) + " " + h.tensor);
    const std::string p = dir.file("bad" + std::to_string(i++) + ".safetensors");
    auto ts = v5_tensors(h.arch, L, C, H, F, V, Dm, Dd);
    if (std::string(h.tensor).find("time_state") != std::string::npos) ts.push_back({h.tensor, {H, N, N}});
    write_safetensors(p, ts, {{h.tensor, h.shape}});
    const std::string e = detect_error(p);
    EXPECT_NE(e.find(p), std::string::npos) << e;
    EXPECT_NE(e.find(std::string("'") + h.tensor + "'"), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
}
