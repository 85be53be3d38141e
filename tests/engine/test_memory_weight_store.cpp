// MemoryWeightStore packs prepared tensors into 2 MiB-aligned huge-page arenas
// (framework/src/runtime/memory_weight_store.cpp). What a backend relies on:
// every tensor 64-byte aligned, its bytes its own (no overlap with neighbours,
// also across arena boundaries and for tensors larger than an arena), views
// that describe it, and clear errors for duplicates.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "corvid/runtime/memory_weight_store.h"
#include "corvid/sdk/error.h"

using corvid::DType;
using corvid::MemoryWeightStore;

TEST(MemoryWeightStore, TensorsAreAlignedDistinctAndKeepTheirBytes) {
  MemoryWeightStore store("test");
  // Sizes chosen to cross the 64 MiB arena size: odd small ones, a 40 MiB one
  // (fills most of an arena), a 100 MiB one (its own arena), more small ones.
  const std::vector<int64_t> sizes = {1, 3, 1000, 12345, 40 << 20, 7, 100 << 20, 65, 64, 1 << 20, 9};
  std::vector<uint8_t*> ptrs;
  for (size_t i = 0; i < sizes.size(); ++i) {
    auto* p = static_cast<uint8_t*>(store.begin("t" + std::to_string(i), DType::U8, {sizes[i]}));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << "tensor " << i;
    std::memset(p, int(i + 1), size_t(sizes[i]));
    ptrs.push_back(p);
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    const auto* v = store.find("t" + std::to_string(i));
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->data, ptrs[i]);
    EXPECT_EQ(v->shape[0], sizes[i]);
    // Written in order, so a later tensor overlapping an earlier one would have
    // overwritten its first or last byte.
    EXPECT_EQ(ptrs[i][0], uint8_t(i + 1)) << "tensor " << i;
    EXPECT_EQ(ptrs[i][sizes[i] - 1], uint8_t(i + 1)) << "tensor " << i;
  }
  uint64_t total = 0;
  for (int64_t s : sizes) total += uint64_t(s);
  EXPECT_EQ(store.total_bytes(), total);
  EXPECT_EQ(store.names().size(), sizes.size());
}

TEST(MemoryWeightStore, MultiDimensionalViewsAndDuplicateNames) {
  MemoryWeightStore store("ckpt.pth");
  auto* f = static_cast<float*>(store.begin("m", DType::F32, {3, 5}));
  for (int i = 0; i < 15; ++i) f[i] = float(i);
  const auto* v = store.find("m");
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->ndim, 2);
  EXPECT_EQ(v->strides[0], 5);
  EXPECT_EQ(v->strides[1], 1);
  EXPECT_EQ(static_cast<const float*>(v->data)[14], 14.f);
  EXPECT_EQ(store.find("absent"), nullptr);
  try {
    store.begin("m", DType::F32, {1});
    FAIL() << "a duplicate name must throw";
  } catch (const corvid::Error& e) {
    EXPECT_NE(std::string(e.what()).find("ckpt.pth: prepared tensor 'm' written twice"), std::string::npos) << e.what();
  }
}
