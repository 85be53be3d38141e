// Shared helpers for the io tests.
#pragma once

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "corvid/sdk/tensor.h"

namespace corvid::iotest {

// tests/fixtures/hostile/<name>
std::string fixture(const std::string& name);
// A fresh empty directory under the build tree's temp area.
std::string scratch_dir(const std::string& name);
// Files in `dir` (names only), sorted.
std::vector<std::string> list_dir(const std::string& dir);

// Element i (C order over the logical shape) as a double, honouring strides.
double element(const TensorView& t, int64_t i);
std::vector<double> elements(const TensorView& t);

// Checkpoint::open(path) must throw corvid::Error whose message is one line,
// starts with the path and contains every word. Returns the message.
std::string expect_open_error(const std::string& path, std::initializer_list<const char*> words);

}  // namespace corvid::iotest
