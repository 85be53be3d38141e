// Read-only access to the entries of a zip archive held in a MappedFile, as
// written by torch.save (PyTorchStreamWriter) and by Python's zipfile.
//
// Written by hand rather than with libzip/minizip on purpose: torch stores
// every storage uncompressed at a 64-byte aligned offset, so a tensor can be
// used directly from the file mapping. libzip and minizip only hand out entry
// data through their read() APIs, which copy it into a caller buffer — that
// would cost one full copy of the model in RAM. Here a stored entry is a
// pointer into the mapping (zero copy); only deflated entries are inflated
// (with zlib), once.
//
// Everything read from the file is bounds-checked against the file size;
// errors are corvid::Error "<path>: <what> at byte N, expected <what>".
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "corvid/io/mapped_file.h"

namespace corvid {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;           // 0 = stored, 8 = deflate
  uint16_t flags = 0;
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;  // bytes in the file
  uint64_t size = 0;             // bytes once inflated
  uint64_t header_offset = 0;    // local file header
  uint64_t data_offset = 0;      // first byte of the (compressed) data, in range
};

// The contents of one entry: either a view into the mapping (stored) or an
// owned, 64-byte aligned inflated buffer (deflated). Cheap to copy.
struct ZipBytes {
  const uint8_t* data = nullptr;
  uint64_t size = 0;
  bool copied = false;                  // true when inflated into memory
  std::shared_ptr<const void> owner;    // keeps an inflated buffer alive
};

class ZipArchive {
 public:
  // Parses the end-of-central-directory record (zip64 aware), the central
  // directory and every local header. `file` must outlive the archive.
  explicit ZipArchive(const MappedFile& file);

  const std::vector<ZipEntry>& entries() const { return entries_; }
  const ZipEntry* find(std::string_view name) const;
  // Stored: a view into the mapping. Deflated: inflated (CRC-checked) copy.
  ZipBytes read(const ZipEntry& e) const;

 private:
  [[noreturn]] void fail(const std::string& what) const;
  const MappedFile& file_;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, size_t> by_name_;
};

}  // namespace corvid
