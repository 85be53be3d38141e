// Small RWKV-5.x/6 checkpoints (and the bf16 safetensors writer the v7 tests use too) written by tests: the released tensor names and
// §1.3's shapes, bf16 safetensors with small deterministic values. Used by the
// detection/hostile-shape tests (tests/engine) and the chat app tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "corvid/sdk/dtype.h"
#include "corvid/sdk/model.h"

namespace corvid_test {

using Shape = std::vector<int64_t>;

// Tensors of a v5.x/v6 checkpoint (released key order), World-style shapes.
inline std::vector<std::pair<std::string, Shape>> v5_tensors(corvid::Arch arch, int L, int C, int H, int F, int V, int Dm, int Dd) {
  const int N = C / H;
  std::vector<std::pair<std::string, Shape>> ts;
  ts.push_back({"emb.weight", {V, C}});
  for (int l = 0; l < L; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    for (const char* n : {"ln1.weight", "ln1.bias", "ln2.weight", "ln2.bias"}) ts.push_back({b + n, {C}});
    if (l == 0) {
      ts.push_back({b + "ln0.weight", {C}});
      ts.push_back({b + "ln0.bias", {C}});
    }
    if (arch == corvid::Arch::V6_0) {
      for (const char* n : {"att.time_maa_x", "att.time_maa_w", "att.time_maa_k", "att.time_maa_v", "att.time_maa_r",
                            "att.time_maa_g"})
        ts.push_back({b + n, {1, 1, C}});
      ts.push_back({b + "att.time_maa_w1", {C, 5 * Dm}});
      ts.push_back({b + "att.time_maa_w2", {5, Dm, C}});
      ts.push_back({b + "att.time_decay", {1, 1, C}});
      ts.push_back({b + "att.time_decay_w1", {C, Dd}});
      ts.push_back({b + "att.time_decay_w2", {Dd, C}});
      ts.push_back({b + "att.time_faaaa", {H, N}});
    } else {
      for (const char* n : {"att.time_mix_k", "att.time_mix_v", "att.time_mix_r"}) ts.push_back({b + n, {1, 1, C}});
      if (arch >= corvid::Arch::V5_1) ts.push_back({b + "att.time_mix_g", {1, 1, C}});
      if (arch == corvid::Arch::V5_2) {
        ts.push_back({b + "att.time_decay", {H, N}});
        ts.push_back({b + "att.time_faaaa", {H, N}});
      } else {
        ts.push_back({b + "att.time_decay", {H}});
        ts.push_back({b + "att.time_first", {H}});
      }
    }
    for (const char* n : {"att.receptance.weight", "att.key.weight", "att.value.weight", "att.output.weight"})
      ts.push_back({b + n, {C, C}});
    if (arch >= corvid::Arch::V5_1) ts.push_back({b + "att.gate.weight", {C, C}});
    ts.push_back({b + "att.ln_x.weight", {C}});
    ts.push_back({b + "att.ln_x.bias", {C}});
    if (arch == corvid::Arch::V6_0) {
      ts.push_back({b + "ffn.time_maa_k", {1, 1, C}});
      ts.push_back({b + "ffn.time_maa_r", {1, 1, C}});
    } else {
      ts.push_back({b + "ffn.time_mix_k", {1, 1, C}});
      ts.push_back({b + "ffn.time_mix_r", {1, 1, C}});
    }
    ts.push_back({b + "ffn.key.weight", {F, C}});
    ts.push_back({b + "ffn.receptance.weight", {C, C}});
    ts.push_back({b + "ffn.value.weight", {C, F}});
  }
  ts.push_back({"ln_out.weight", {C}});
  ts.push_back({"ln_out.bias", {C}});
  ts.push_back({"head.weight", {V, C}});
  return ts;
}

// Writes the tensors as bf16 safetensors with small values (~U(-0.25, 0.25)):
// override[name] replaces a shape, an empty Shape{-1} drops the tensor.
inline void write_safetensors(const std::string& path, std::vector<std::pair<std::string, Shape>> ts,
                       const std::map<std::string, Shape>& override = {}, uint32_t seed = 777) {
  nlohmann::ordered_json h;
  uint64_t off = 0;
  for (auto& [name, shape] : ts) {
    auto it = override.find(name);
    if (it != override.end()) {
      if (it->second == Shape{-1}) continue;
      shape = it->second;
    }
    uint64_t n = 2;
    for (int64_t s : shape) n *= uint64_t(s);
    h[name] = {{"dtype", "BF16"}, {"shape", shape}, {"data_offsets", {off, off + n}}};
    off += n;
  }
  std::string header = h.dump();
  while ((8 + header.size()) % 8) header += ' ';
  std::ofstream f(path, std::ios::binary);
  const uint64_t hl = header.size();
  f.write(reinterpret_cast<const char*>(&hl), 8);
  f.write(header.data(), std::streamsize(header.size()));
  uint32_t state = seed;
  for (uint64_t i = 0; i < off / 2; ++i) {
    state = state * 1664525u + 1013904223u;
    const uint16_t v = corvid::f32_to_bf16((float(state >> 8) / float(1 << 24) - 0.5f) * 0.5f);
    f.write(reinterpret_cast<const char*>(&v), 2);
  }
  ASSERT_TRUE(bool(f));
}

}  // namespace corvid_test
