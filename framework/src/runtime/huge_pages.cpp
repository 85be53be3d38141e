#include "corvid/runtime/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>
#include <string>

#include "corvid/sdk/error.h"

namespace corvid {

void* map_huge_pages(size_t bytes, size_t* mapped) {
  // Over-allocate by one huge page, then trim both ends to a 2 MiB-aligned range.
  const size_t len = (std::max<size_t>(bytes, 1) + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  void* raw = ::mmap(nullptr, len + kHugePageBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t start = (lo + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  if (start > lo) ::munmap(raw, start - lo);
  const uintptr_t end = start + len, hi = lo + len + kHugePageBytes;
  if (hi > end) ::munmap(reinterpret_cast<void*>(end), hi - end);
  ::madvise(reinterpret_cast<void*>(start), len, MADV_HUGEPAGE);  // advisory: failure is harmless
  if (mapped) *mapped = len;
  return reinterpret_cast<void*>(start);
}

void unmap_huge_pages(void* p, size_t mapped) {
  if (p) ::munmap(p, mapped);
}

HugePageBuffer::HugePageBuffer(size_t bytes) {
  p_ = map_huge_pages(bytes, &size_);
  if (!p_) throw Error("cannot map " + std::to_string(bytes) + " bytes of memory");
}

HugePageBuffer::~HugePageBuffer() { unmap_huge_pages(p_, size_); }

}  // namespace corvid
