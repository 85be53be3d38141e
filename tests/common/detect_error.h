// The one-line error detect_hparams gives for a checkpoint, or "(no error)":
// what the hostile-shape tests (tests/engine/test_rwkv*_shapes.cpp) check.
#pragma once

#include <string>

#include "corvid/io/checkpoint.h"
#include "corvid/model/model_info.h"
#include "corvid/sdk/error.h"

namespace corvid_test {

inline std::string detect_error(const std::string& path) {
  try {
    auto ck = corvid::Checkpoint::open(path);
    corvid::detect_hparams(*ck);
  } catch (const corvid::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace corvid_test
