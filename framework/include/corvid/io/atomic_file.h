// A file that appears at its path complete or not at all.
//
// Data goes to a temporary file in the target directory (".<name>.tmp-<random>",
// same filesystem, so the final rename is atomic); commit() fsyncs it, renames
// it over the target and fsyncs the directory. Destroying it without commit()
// (an exception, an error) removes the temporary file: no partial output.
// A process killed by a signal cannot run destructors; apps that want to clean
// up on SIGINT can unlink temp_path() from their handler (unlink is
// async-signal-safe).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace corvid {

class AtomicFile {
 public:
  // Creates the temporary file (mode 0666 & ~umask). Throws Error naming the
  // target when the directory is missing or not writable.
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_; }
  int fd() const { return fd_; }

  // Writes all of [data, data + n) at `offset` (retrying short writes).
  // Throws Error "<path>: writing N bytes at byte M failed (<reason>)".
  void write_at(uint64_t offset, const void* data, size_t n);
  // Copies `n` bytes from another file descriptor (copy_file_range, falling back
  // to read/write).
  void copy_from(int src_fd, uint64_t src_offset, uint64_t dst_offset, uint64_t n);
  // fsync + rename over path() + fsync of the directory. Throws on failure
  // (and the temporary file is then removed by the destructor).
  void commit();
  // Removes the temporary file now (idempotent, never throws).
  void discard() noexcept;
  bool committed() const { return committed_; }

 private:
  [[noreturn]] void fail(const std::string& what, int err) const;
  std::string path_, temp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace corvid
