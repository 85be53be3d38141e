// A whole file mapped read-only into memory (RAII: unmapped on destruction).
//
// Checkpoints are used in place from this mapping, so a file of many GB costs
// address space, not RAM: pages come from the page cache as tensors are read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace corvid {

class MappedFile {
 public:
  MappedFile() = default;
  // Opens and maps `path`. Throws Error "<path>: cannot open (<reason>)" when
  // the file is missing, unreadable or not a regular file. An empty file maps
  // to size() == 0 and data() == nullptr.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // True when [offset, offset + length) lies inside the file (overflow-safe).
  bool contains(uint64_t offset, uint64_t length) const {
    return offset <= size_ && length <= size_ - offset;
  }

 private:
  void reset() noexcept;
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace corvid
