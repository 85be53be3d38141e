// Prepared weights held in memory: the WeightSink a backend's prepare() writes
// into at load time, and the WeightSource its create_stage() then reads.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "corvid/sdk/weights.h"

namespace corvid {

class MemoryWeightStore : public WeightSink, public WeightSource {
 public:
  explicit MemoryWeightStore(std::string origin) : origin_(std::move(origin)) {}
  ~MemoryWeightStore() override;
  MemoryWeightStore(const MemoryWeightStore&) = delete;
  MemoryWeightStore& operator=(const MemoryWeightStore&) = delete;
  void* begin(std::string_view name, DType dtype, const std::vector<int64_t>& shape) override;
  const TensorView* find(std::string_view name) const override;
  std::string origin() const override { return origin_; }

  uint64_t total_bytes() const { return total_; }
  // Names in the order they were written.
  const std::vector<std::string>& names() const { return order_; }

 private:
  struct Arena {
    void* base;
    size_t size, used;
  };
  void* allocate(size_t bytes);
  std::string origin_;
  std::unordered_map<std::string, TensorView> views_;
  std::vector<Arena> arenas_;  // 2 MiB-aligned, MADV_HUGEPAGE (see the .cpp)
  std::vector<std::string> order_;
  uint64_t total_ = 0;
};

}  // namespace corvid
