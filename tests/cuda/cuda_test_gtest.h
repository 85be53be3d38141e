// GoogleTest, or (in the minimal GPU build of scripts/gpu_check.sh on machines
// without libgtest-dev, -DCORVID_MINI_GTEST) a small stand-in with the subset the
// CUDA tests use: TEST, EXPECT_/ASSERT_ comparisons, FAIL, ADD_FAILURE, GTEST_SKIP.
// Its main() prints gtest-like lines and exits non-zero on any failure.
#pragma once

#ifndef CORVID_MINI_GTEST
#include <gtest/gtest.h>
#else

#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace mini_gtest {

struct TestCase {
  std::string name;
  std::function<void()> fn;
};
inline std::vector<TestCase>& registry() {
  static std::vector<TestCase> r;
  return r;
}
struct State {
  bool failed = false;
  bool skipped = false;
};
inline State& state() {
  static State s;
  return s;
}
struct Registrar {
  Registrar(const char* suite, const char* name, std::function<void()> fn) {
    registry().push_back({std::string(suite) + "." + name, std::move(fn)});
  }
};
// Collects the streamed message and reports on destruction.
class Reporter {
 public:
  Reporter(const char* file, int line, const char* what, bool fatal_skip = false)
      : file_(file), line_(line), what_(what), skip_(fatal_skip) {}
  ~Reporter() {
    if (skip_) {
      state().skipped = true;
      std::cout << "[  SKIPPED ] " << msg_.str() << "\n";
    } else {
      state().failed = true;
      std::cout << file_ << ":" << line_ << ": Failure: " << what_ << " " << msg_.str() << "\n";
    }
  }
  template <typename T>
  Reporter& operator<<(const T& v) {
    msg_ << v;
    return *this;
  }

 private:
  const char* file_;
  int line_;
  const char* what_;
  bool skip_;
  std::ostringstream msg_;
};
struct Voidify {
  void operator&(const Reporter&) {}
};
}  // namespace mini_gtest

#define TEST(suite, name)                                                                              \
  static void suite##_##name##_body();                                                                 \
  static ::mini_gtest::Registrar suite##_##name##_reg(#suite, #name, &suite##_##name##_body);          \
  static void suite##_##name##_body()

#define MG_CHECK_(cond, text, ret)                                                                     \
  if (cond) {                                                                                          \
  } else                                                                                               \
    ret ::mini_gtest::Voidify() & ::mini_gtest::Reporter(__FILE__, __LINE__, text)
#define MG_NONE_
#define EXPECT_TRUE(c) MG_CHECK_((c), "EXPECT_TRUE(" #c ")", MG_NONE_)
#define EXPECT_FALSE(c) MG_CHECK_(!(c), "EXPECT_FALSE(" #c ")", MG_NONE_)
#define ASSERT_TRUE(c) MG_CHECK_((c), "ASSERT_TRUE(" #c ")", return)
#define ASSERT_FALSE(c) MG_CHECK_(!(c), "ASSERT_FALSE(" #c ")", return)
#define EXPECT_EQ(a, b) MG_CHECK_((a) == (b), #a " == " #b, MG_NONE_)
#define EXPECT_NE(a, b) MG_CHECK_((a) != (b), #a " != " #b, MG_NONE_)
#define EXPECT_LT(a, b) MG_CHECK_((a) < (b), #a " < " #b, MG_NONE_)
#define EXPECT_LE(a, b) MG_CHECK_((a) <= (b), #a " <= " #b, MG_NONE_)
#define EXPECT_GT(a, b) MG_CHECK_((a) > (b), #a " > " #b, MG_NONE_)
#define EXPECT_GE(a, b) MG_CHECK_((a) >= (b), #a " >= " #b, MG_NONE_)
#define ASSERT_EQ(a, b) MG_CHECK_((a) == (b), #a " == " #b, return)
#define ASSERT_NE(a, b) MG_CHECK_((a) != (b), #a " != " #b, return)
#define ASSERT_LT(a, b) MG_CHECK_((a) < (b), #a " < " #b, return)
#define ASSERT_LE(a, b) MG_CHECK_((a) <= (b), #a " <= " #b, return)
#define ASSERT_GT(a, b) MG_CHECK_((a) > (b), #a " > " #b, return)
#define ASSERT_GE(a, b) MG_CHECK_((a) >= (b), #a " >= " #b, return)
#define EXPECT_NEAR(a, b, t) MG_CHECK_(std::abs(double(a) - double(b)) <= double(t), #a " ~ " #b, MG_NONE_)
#define EXPECT_STREQ(a, b) MG_CHECK_(std::string(a) == std::string(b), #a " == " #b, MG_NONE_)
#define EXPECT_THROW(stmt, ex)                                                                          \
  do {                                                                                                  \
    bool caught_ = false;                                                                               \
    try {                                                                                               \
      stmt;                                                                                             \
    } catch (const ex&) {                                                                               \
      caught_ = true;                                                                                   \
    }                                                                                                   \
    EXPECT_TRUE(caught_) << "expected " #ex;                                                           \
  } while (0)
#define EXPECT_NO_THROW(stmt)                                                                           \
  do {                                                                                                  \
    try {                                                                                               \
      stmt;                                                                                             \
    } catch (const std::exception& e_) {                                                                \
      EXPECT_TRUE(false) << "threw: " << e_.what();                                                    \
    }                                                                                                   \
  } while (0)
#define ADD_FAILURE() ::mini_gtest::Voidify() & ::mini_gtest::Reporter(__FILE__, __LINE__, "ADD_FAILURE")
#define FAIL() return ::mini_gtest::Voidify() & ::mini_gtest::Reporter(__FILE__, __LINE__, "FAIL")
#define GTEST_SKIP() return ::mini_gtest::Voidify() & ::mini_gtest::Reporter(__FILE__, __LINE__, "", true)

#ifdef CORVID_MINI_GTEST_MAIN
int main() {
  int failed = 0, skipped = 0, passed = 0;
  for (auto& t : ::mini_gtest::registry()) {
    ::mini_gtest::state() = {};
    std::cout << "[ RUN      ] " << t.name << std::endl;
    try {
      t.fn();
    } catch (const std::exception& e) {
      ::mini_gtest::state().failed = true;
      std::cout << "uncaught exception: " << e.what() << "\n";
    }
    if (::mini_gtest::state().failed) {
      ++failed;
      std::cout << "[  FAILED  ] " << t.name << std::endl;
    } else if (::mini_gtest::state().skipped) {
      ++skipped;
      std::cout << "[  SKIPPED ] " << t.name << std::endl;
    } else {
      ++passed;
      std::cout << "[       OK ] " << t.name << std::endl;
    }
  }
  std::cout << "[==========] " << passed << " passed, " << skipped << " skipped, " << failed << " failed" << std::endl;
  return failed ? 1 : 0;
}
#endif

#endif
