// XXH64, the 64-bit xxHash of Yann Collet (public specification, seed 0 by
// default), used by corvid-convert to fingerprint the source checkpoint and the
// converted file's tensor index. Chosen because it is fast (several GB/s on one
// core, so hashing never dominates a conversion) and its value can be checked
// with any xxhash tool (`xxh64sum FILE`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace corvid {

class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void update(const void* data, size_t len);
  uint64_t digest() const;

  static uint64_t hash(const void* data, size_t len, uint64_t seed = 0);
  // 16 lowercase hex digits, as xxh64sum prints.
  static std::string hex(uint64_t h);

 private:
  uint64_t v_[4];
  uint64_t seed_;
  uint64_t total_ = 0;
  unsigned char buf_[32];
  size_t buf_len_ = 0;
};

// Hashes a whole file with read() in large blocks (no mapping, so the file's
// pages do not count towards this process's RSS). `keep_going` is polled
// between blocks; when it returns false, hashing stops and Error is thrown.
// Throws Error naming the file on I/O errors.
uint64_t xxh64_file(const std::string& path, const std::function<bool()>& keep_going = {});

}  // namespace corvid
