// Shared helpers for the converter tests: fixture lookup, scratch folders,
// running the engine on a file, and a writer of synthetic RWKV-4 safetensors
// checkpoints (independent of Corvid's own writer) big enough to interrupt.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "corvid/convert/convert.h"
#include "corvid/runtime/engine.h"
#include "corvid/sdk/dtype.h"

namespace convert_test {

namespace fs = std::filesystem;

inline std::string fixtures_dir() { return std::string(CORVID_TEST_DATA_DIR) + "/fixtures/models"; }
inline std::string fixture(const std::string& file) { return fixtures_dir() + "/" + file; }

// Token ids a fixture's expected outputs were computed for.
inline std::vector<int32_t> fixture_tokens(const std::string& name) {
  std::ifstream f(fixtures_dir() + "/fixtures.json");
  nlohmann::json j = nlohmann::json::parse(f);
  for (const auto& fx : j.at("fixtures"))
    if (fx.at("name") == name) return fx.at("tokens").get<std::vector<int32_t>>();
  ADD_FAILURE() << "fixture " << name << " not in fixtures.json";
  return {};
}

// A fresh folder, removed with everything in it when the object goes.
class ScratchDir {
 public:
  ScratchDir() {
    std::string t = (fs::temp_directory_path() / "corvid_convert_XXXXXX").string();
    std::vector<char> buf(t.begin(), t.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
    path_ = buf.data();
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  // Names of everything in the folder (to prove nothing was left behind).
  std::vector<std::string> listing() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(path_)) out.push_back(e.path().filename().string());
    return out;
  }

 private:
  std::string path_;
};

inline corvid::EngineOptions engine_options(const std::string& model, const std::string& strategy) {
  corvid::EngineOptions o = corvid::engine_default_options();
  o.model_path = model;
  o.strategy = strategy;
  o.plugin_dirs = {CORVID_PLUGIN_DIR};
  o.threads = 1;
  o.chunk_len = 5;  // several chunks and a partial one for 16 tokens
  return o;
}

inline corvid::ConvertOptions convert_options(const std::string& in, const std::string& out, const std::string& strategy) {
  corvid::ConvertOptions o;
  o.in_path = in;
  o.out_path = out;
  o.strategy = strategy;
  o.plugin_dirs = {CORVID_PLUGIN_DIR};
  return o;
}

struct RunOutput {
  std::vector<float> logits;  // [T][V]
  std::vector<float> state;   // canonical serialized state after the last token
};

inline RunOutput run_engine(const corvid::EngineOptions& o, const std::vector<int32_t>& tokens) {
  auto eng = corvid::Engine::load(o);
  corvid::State st = eng->new_state();
  RunOutput r;
  r.logits.resize(tokens.size() * size_t(eng->hparams().n_vocab));
  eng->forward_all(tokens, st, r.logits.data());
  r.state = st.serialize();
  return r;
}

// The converted file must run bit for bit like the raw checkpoint: same
// logits for every token and the same final state.
inline void expect_same_bits(const RunOutput& raw, const RunOutput& conv) {
  ASSERT_EQ(raw.logits.size(), conv.logits.size());
  EXPECT_EQ(0, std::memcmp(raw.logits.data(), conv.logits.data(), raw.logits.size() * sizeof(float)))
      << "logits differ between the converted and the unconverted path";
  ASSERT_EQ(raw.state.size(), conv.state.size());
  EXPECT_EQ(0, std::memcmp(raw.state.data(), conv.state.data(), raw.state.size() * sizeof(float)))
      << "final state differs between the converted and the unconverted path";
}

// Writes a random RWKV-4 checkpoint (bf16, raw nn.Linear layout) as
// safetensors, straight from the format's definition: 8-byte little-endian
// header length, JSON header, data. Values ~ U(-0.5, 0.5) from an LCG.
inline void write_random_rwkv4_safetensors(const std::string& path, int L, int C, int V) {
  struct T {
    std::string name;
    std::vector<int64_t> shape;
  };
  std::vector<T> ts;
  const int64_t F = 4 * C;
  ts.push_back({"emb.weight", {V, C}});
  ts.push_back({"blocks.0.ln0.weight", {C}});
  ts.push_back({"blocks.0.ln0.bias", {C}});
  for (int l = 0; l < L; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    for (const char* n : {"ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias", "att.time_decay", "att.time_first"}) ts.push_back({b + n, {C}});
    for (const char* n : {"att.time_mix_k", "att.time_mix_v", "att.time_mix_r", "ffn.time_mix_k", "ffn.time_mix_r"})
      ts.push_back({b + n, {1, 1, C}});
    for (const char* n : {"att.key.weight", "att.value.weight", "att.receptance.weight", "att.output.weight", "ffn.receptance.weight"})
      ts.push_back({b + n, {C, C}});
    ts.push_back({b + "ffn.key.weight", {F, C}});
    ts.push_back({b + "ffn.value.weight", {C, F}});
  }
  ts.push_back({"ln_out.weight", {C}});
  ts.push_back({"ln_out.bias", {C}});
  ts.push_back({"head.weight", {V, C}});

  nlohmann::ordered_json h;
  uint64_t off = 0;
  for (const auto& t : ts) {
    uint64_t n = 2;
    for (int64_t s : t.shape) n *= uint64_t(s);
    h[t.name] = {{"dtype", "BF16"}, {"shape", t.shape}, {"data_offsets", {off, off + n}}};
    off += n;
  }
  std::string header = h.dump();
  while ((8 + header.size()) % 8) header += ' ';
  std::ofstream f(path, std::ios::binary);
  uint64_t hl = header.size();
  f.write(reinterpret_cast<const char*>(&hl), 8);
  f.write(header.data(), std::streamsize(header.size()));
  uint32_t state = 12345;
  std::vector<uint16_t> buf(1 << 20);
  uint64_t left = off / 2;
  while (left) {
    size_t n = size_t(std::min<uint64_t>(left, buf.size()));
    for (size_t i = 0; i < n; ++i) {
      state = state * 1664525u + 1013904223u;
      buf[i] = corvid::f32_to_bf16(float(state >> 8) / float(1 << 24) - 0.5f);
    }
    f.write(reinterpret_cast<const char*>(buf.data()), std::streamsize(n * 2));
    left -= n;
  }
  if (!f) throw std::runtime_error("cannot write " + path);
}

// Reads/writes a whole file (for corrupting converted files).
inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}
inline void spit(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), std::streamsize(data.size()));
}

}  // namespace convert_test
