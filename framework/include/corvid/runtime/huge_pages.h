// Memory for streamed weights: private anonymous mappings, 2 MiB-aligned and
// advised MADV_HUGEPAGE. A decode token streams every weight once; with 4 KiB
// pages that stream pays a TLB miss and a page walk every 4 KiB (see
// memory_weight_store.cpp for the measurements). The prepared weights
// (MemoryWeightStore) and the bandwidth probes that set their roofline
// (corvid-bench, bench_cpu_kernels) all come from here, so they see the same
// page size. Where transparent huge pages are off, the advice is ignored.
#pragma once

#include <cstddef>

namespace corvid {

constexpr size_t kHugePageBytes = size_t(2) << 20;

// Maps at least `bytes` (rounded up to 2 MiB, stored in *mapped) at a 2 MiB
// boundary; nullptr when the mapping fails. Release with unmap_huge_pages.
void* map_huge_pages(size_t bytes, size_t* mapped);
void unmap_huge_pages(void* p, size_t mapped);

// The same as an owning buffer; throws corvid::Error when the mapping fails.
class HugePageBuffer {
 public:
  explicit HugePageBuffer(size_t bytes);
  ~HugePageBuffer();
  HugePageBuffer(const HugePageBuffer&) = delete;
  HugePageBuffer& operator=(const HugePageBuffer&) = delete;
  void* data() const { return p_; }
  size_t size() const { return size_; }  // rounded up to 2 MiB

 private:
  void* p_ = nullptr;
  size_t size_ = 0;
};

}  // namespace corvid
