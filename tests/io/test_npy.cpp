// .npy reading (files written by numpy in make_hostile.py) and writing.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "corvid/io/npy.h"
#include "corvid/sdk/error.h"
#include "io_test_util.h"

namespace corvid {
namespace {

using iotest::fixture;

std::vector<double> expected_values(const std::string& name) {
  std::ifstream f(fixture("expected.json"));
  return nlohmann::json::parse(f)["tensors"][name]["values"].get<std::vector<double>>();
}

std::vector<double> as_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

TEST(Npy, ReadsNumpyF4F2F8) {
  NpyArray a = read_npy(fixture("w32.npy"));
  EXPECT_EQ(a.shape, (std::vector<int64_t>{3, 5}));
  EXPECT_EQ(as_double(a.data), expected_values("w32"));
  NpyArray h = read_npy(fixture("w16.npy"));
  EXPECT_EQ(h.shape, (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(as_double(h.data), expected_values("w16"));
  NpyArray d = read_npy(fixture("offset_view_f8.npy"));
  EXPECT_EQ(d.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(as_double(d.data), expected_values("offset_view"));
}

TEST(Npy, RefusesFortranOrderAndBrokenFiles) {
  try {
    read_npy(fixture("w32_fortran.npy"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected False (C order)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_npy(fixture("good.pth")), Error);
  EXPECT_THROW(read_npy(fixture("no-such.npy")), Error);
  std::string dir = iotest::scratch_dir("npy_bad");
  auto bytes = [&](const std::string& name, const std::string& content) {
    std::ofstream(dir + "/" + name, std::ios::binary) << content;
    return dir + "/" + name;
  };
  std::string good;
  {
    std::ifstream f(fixture("w32.npy"), std::ios::binary);
    good.assign(std::istreambuf_iterator<char>(f), {});
  }
  EXPECT_THROW(read_npy(bytes("trunc.npy", good.substr(0, good.size() - 1))), Error);
  EXPECT_THROW(read_npy(bytes("short.npy", good.substr(0, 20))), Error);
  std::string i4 = good;
  i4.replace(i4.find("<f4"), 3, "<i4");
  EXPECT_THROW(read_npy(bytes("i4.npy", i4)), Error);
  std::string badshape = good;
  badshape.replace(badshape.find("(3, 5)"), 6, "(3,-5)");
  EXPECT_THROW(read_npy(bytes("neg.npy", badshape)), Error);
}

TEST(Npy, WriteRoundTripsInNumpyFormat) {
  std::string dir = iotest::scratch_dir("npy_write");
  std::string p = dir + "/logits.npy";
  std::vector<float> v = {1.5f, -2.0f, 3.25f, 0.0f, 1e-8f, -1e30f};
  write_npy_f32(p, v.data(), {2, 3});
  EXPECT_EQ(iotest::list_dir(dir), std::vector<std::string>{"logits.npy"});
  NpyArray a = read_npy(p);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.data, v);
  std::ifstream f(p, std::ios::binary);
  std::string s(std::istreambuf_iterator<char>(f), {});
  EXPECT_EQ(s.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  size_t hlen = uint8_t(s[8]) | uint8_t(s[9]) << 8;
  EXPECT_EQ((10 + hlen) % 64, 0u);
  EXPECT_EQ(s.substr(10, 50), "{'descr': '<f4', 'fortran_order': False, 'shape': ");
  EXPECT_EQ(s[10 + hlen - 1], '\n');
  EXPECT_EQ(s.size(), 10 + hlen + 24);

  write_npy_f32(p, v.data(), {6});  // 1-D: "(6,)"
  EXPECT_EQ(read_npy(p).shape, std::vector<int64_t>{6});
  EXPECT_THROW(write_npy_f32(dir + "/missing/x.npy", v.data(), {6}), Error);
}

}  // namespace
}  // namespace corvid
