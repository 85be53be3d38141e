// Runs a fixture's tokens through an Engine the way fixtures.json's modes mean:
// "step" feeds one token per call, "chunk:N" feeds chunks of N (sequence mode).
// Shared by the engine, CPU-backend and CUDA fixture tests.
#pragma once

#include <string>
#include <vector>

#include "common/fixtures.h"
#include "corvid/runtime/engine.h"

namespace corvid_test {

// The engine chunk length a mode needs: "step" -> 1, "chunk:N" -> N.
inline int mode_chunk_len(const std::string& mode) { return mode == "step" ? 1 : std::stoi(mode.substr(6)); }

// Logits after every token, [T][V]; `st` holds the final state.
inline std::vector<float> run_fixture_mode(corvid::Engine& eng, const Fixture& fx, const std::string& mode, corvid::State& st) {
  std::vector<float> got(fx.tokens.size() * size_t(fx.V));
  if (mode == "step") eng.forward_stepwise(fx.tokens, st, got.data());
  else eng.forward_all(fx.tokens, st, got.data());
  return got;
}

}  // namespace corvid_test
