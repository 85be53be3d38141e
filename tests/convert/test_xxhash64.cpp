// XXH64 against values computed by the system's libxxhash (0.8.1) through
// Python ctypes: XXH64(data, n, seed) with data[i] = (7*i + 3) & 255. These
// cover every tail path (<4, 4-7, 8-31 bytes, stripes, and stripes + tail).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <vector>

#include "corvid/convert/xxhash64.h"

namespace {

std::vector<unsigned char> pattern(size_t n) {
  std::vector<unsigned char> d(n);
  for (size_t i = 0; i < n; ++i) d[i] = static_cast<unsigned char>((i * 7 + 3) & 255);
  return d;
}

struct Case { size_t n; uint64_t seed0, seed12345; };
const Case kCases[] = {
    {0, 0xef46db3751d8e999ull, 0x95584af7701f808dull},   {1, 0x1f25c8d0bc1f4bb6ull, 0x9102786a712ff044ull},
    {3, 0x31d2363f52e564c9ull, 0xc6270ec97f034479ull},   {4, 0x9bb64b7d66ee9fdaull, 0x6a3181371bbc2026ull},
    {7, 0x9a7b149959ce60d8ull, 0x6e596c9ec41c4637ull},   {8, 0xdab99d95c6f90092ull, 0xbbcc4601a016b1e4ull},
    {15, 0x1b47cb8243cc8e32ull, 0x44ae2523b2890bb5ull},  {31, 0xa2aa5f33cc4a6119ull, 0x8086bf60119a7308ull},
    {32, 0x23c3c17ef790fd97ull, 0x244c3905cf320c2dull},  {33, 0x50a7cfc7ba588784ull, 0x1edc993457cf1fd8ull},
    {63, 0x5e3e54b431c7493cull, 0x0e4a6a50d61e6220ull},  {64, 0x0eb64b3ef6eeb01full, 0xef589281222c0318ull},
    {100, 0xa61f8d4c170fe531ull, 0xacb8a02891fea7d2ull}, {1000, 0x5f235fa033f1a3fbull, 0x365c39a0c5a4c88eull},
    {65537, 0x8c846e275f1376aeull, 0xce4a1927123c5942ull},
};

TEST(Xxh64, MatchesLibxxhash) {
  for (const Case& c : kCases) {
    auto d = pattern(c.n);
    EXPECT_EQ(corvid::Xxh64::hash(d.data(), d.size(), 0), c.seed0) << "n=" << c.n;
    EXPECT_EQ(corvid::Xxh64::hash(d.data(), d.size(), 12345), c.seed12345) << "n=" << c.n;
  }
  EXPECT_EQ(corvid::Xxh64::hash("abc", 3), 0x44bc2cf5ad770999ull);
}

TEST(Xxh64, StreamingEqualsOneShotForAnySplit) {
  auto d = pattern(65537);
  for (size_t step : {1, 5, 31, 32, 33, 4096}) {
    corvid::Xxh64 x;
    for (size_t off = 0; off < d.size(); off += step) x.update(d.data() + off, std::min(step, d.size() - off));
    EXPECT_EQ(x.digest(), 0x8c846e275f1376aeull) << "step " << step;
  }
}

TEST(Xxh64, FileHashAndHex) {
  auto d = pattern(1000);
  std::string path = ::testing::TempDir() + "xxh64_test.bin";
  { std::ofstream f(path, std::ios::binary); f.write(reinterpret_cast<const char*>(d.data()), std::streamsize(d.size())); }
  EXPECT_EQ(corvid::xxh64_file(path), 0x5f235fa033f1a3fbull);
  EXPECT_EQ(corvid::Xxh64::hex(0x0eb64b3ef6eeb01full), "0eb64b3ef6eeb01f");
  EXPECT_THROW(corvid::xxh64_file(path, [] { return false; }), std::exception);
  std::remove(path.c_str());
  EXPECT_THROW(corvid::xxh64_file(path), std::exception);
}

}  // namespace
