// Reads tests/fixtures/models/fixtures.json: the small torch.save checkpoints and
// the expected outputs of the independent numpy reference (tests/reference).
#pragma once

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace corvid_test {

struct ExpectedRun {
  int rescale_layer = 0;
  std::map<std::string, std::string> logits;  // "step", "chunk:4", ... -> .npy path
  std::string state_final;
  // Pass when |got - want| <= atol + rtol * |want| (fixtures.json "tolerances").
  double logits_atol = 0, logits_rtol = 0, state_atol = 0, state_rtol = 0;
};

struct Fixture {
  std::string name, dtype;
  std::vector<std::string> files;  // absolute paths (.pth, .safetensors)
  int L = 0, C = 0, V = 0;
  std::vector<int32_t> tokens;
  std::vector<int> chunks;
  std::map<std::string, ExpectedRun> expected;  // by strategy
};

inline std::string fixtures_dir() { return std::string(CORVID_TEST_DATA_DIR) + "/fixtures/models"; }

// `dir` holds a fixtures.json: tests/fixtures/models (RWKV-4, the default) or
// tests/fixtures/models_v5plus (RWKV-5.x/6/7, same schema plus "arch").
inline std::vector<Fixture> load_fixtures(const std::string& dir) {
  std::ifstream in(dir + "/fixtures.json");
  nlohmann::json j = nlohmann::json::parse(in);
  std::vector<Fixture> out;
  for (const auto& f : j["fixtures"]) {
    Fixture x;
    x.name = f["name"];
    x.dtype = f["dtype"];
    for (const auto& file : f["files"]) x.files.push_back(dir + "/" + file["file"].get<std::string>());
    x.L = f["L"];
    x.C = f["C"];
    x.V = f["V"];
    x.tokens = f["tokens"].get<std::vector<int32_t>>();
    x.chunks = f["chunks"].get<std::vector<int>>();
    for (auto it = f["expected"].begin(); it != f["expected"].end(); ++it) {
      ExpectedRun e;
      e.rescale_layer = it.value()["rescale_layer"];
      for (auto l = it.value()["logits"].begin(); l != it.value()["logits"].end(); ++l)
        e.logits[l.key()] = dir + "/" + l.value().get<std::string>();
      e.state_final = dir + "/" + it.value()["state_final"].get<std::string>();
      const auto& tol = j["tolerances"][it.key()];
      e.logits_atol = tol["logits"]["atol"];
      e.logits_rtol = tol["logits"]["rtol"];
      e.state_atol = tol["state"]["atol"];
      e.state_rtol = tol["state"]["rtol"];
      x.expected[it.key()] = e;
    }
    out.push_back(std::move(x));
  }
  return out;
}

inline std::vector<Fixture> load_fixtures() { return load_fixtures(fixtures_dir()); }

inline double max_abs_diff(const float* a, const float* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) {
    double d = std::abs(double(a[i]) - double(b[i]));
    if (!(d <= m)) m = d;  // NaN propagates as "huge"
  }
  return m;
}

// Largest violation of |got - want| <= atol + rtol*|want|, as a ratio: <= 1 passes.
// Also reports the worst index through `where`.
inline double tolerance_ratio(const float* got, const float* want, size_t n, double atol, double rtol,
                              size_t* where = nullptr) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    double d = std::abs(double(got[i]) - double(want[i]));
    double lim = atol + rtol * std::abs(double(want[i]));
    double r = lim > 0 ? d / lim : (d > 0 ? INFINITY : 0);
    if (!(r <= worst)) {  // NaN counts as a failure
      worst = std::isnan(r) ? INFINITY : r;
      if (where) *where = i;
    }
  }
  return worst;
}

}  // namespace corvid_test
