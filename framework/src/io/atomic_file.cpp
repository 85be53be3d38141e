#include "corvid/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <vector>

#include "corvid/sdk/error.h"

namespace corvid {
namespace {

std::string dir_of(const std::string& p) {
  size_t s = p.rfind('/');
  if (s == std::string::npos) return ".";
  return s == 0 ? "/" : p.substr(0, s);
}
std::string base_of(const std::string& p) {
  size_t s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

}  // namespace

void AtomicFile::fail(const std::string& what, int err) const {
  throw Error(path_ + ": " + what + " (" + std::strerror(err) + ")");
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  if (path_.empty() || path_.back() == '/') throw Error("'" + path_ + "': output path names a directory, expected a file name");
  std::random_device rd;
  const std::string stem = dir_of(path_) + "/." + base_of(path_) + ".tmp-";
  for (int attempt = 0; attempt < 100; ++attempt) {
    char suffix[24];
    std::snprintf(suffix, sizeof suffix, "%08x%04x", unsigned(rd()), unsigned(::getpid() & 0xffff));
    temp_ = stem + suffix;
    fd_ = ::open(temp_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ >= 0) return;
    if (errno != EEXIST) {
      int e = errno;
      temp_.clear();
      fail("cannot create a temporary file in " + dir_of(path_), e);
    }
  }
  int e = errno;
  temp_.clear();
  fail("cannot create a unique temporary file in " + dir_of(path_), e);
}

AtomicFile::~AtomicFile() { discard(); }

void AtomicFile::discard() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!committed_ && !temp_.empty()) ::unlink(temp_.c_str());
  temp_.clear();
}

void AtomicFile::write_at(uint64_t offset, const void* data, size_t n) {
  if (fd_ < 0) throw Error(path_ + ": write after the output was closed");
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < n) {
    ssize_t w = ::pwrite(fd_, p + done, n - done, off_t(offset + done));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("writing " + std::to_string(n) + " bytes at byte " + std::to_string(offset + done) + " of the output failed", errno);
    }
    if (w == 0) fail("writing at byte " + std::to_string(offset + done) + " of the output made no progress", ENOSPC);
    done += size_t(w);
  }
}

void AtomicFile::copy_from(int src_fd, uint64_t src_offset, uint64_t dst_offset, uint64_t n) {
  loff_t in = loff_t(src_offset), out = loff_t(dst_offset);
  uint64_t left = n;
  bool fallback = false;
  while (left > 0 && !fallback) {
    ssize_t c = ::copy_file_range(src_fd, &in, fd_, &out, size_t(std::min<uint64_t>(left, 1u << 30)), 0);
    if (c < 0) {
      if (errno == EINTR) continue;
      if (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP) { fallback = true; break; }
      fail("copying " + std::to_string(n) + " bytes into the output failed", errno);
    }
    if (c == 0) fail("copying into the output: the source ended " + std::to_string(left) + " bytes early", EIO);
    left -= uint64_t(c);
  }
  std::vector<char> buf(size_t(1) << 20);
  while (left > 0) {
    ssize_t r = ::pread(src_fd, buf.data(), size_t(std::min<uint64_t>(left, buf.size())), off_t(in));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) fail("reading back " + std::to_string(left) + " bytes to copy failed", r < 0 ? errno : EIO);
    write_at(uint64_t(out), buf.data(), size_t(r));
    in += r;
    out += r;
    left -= uint64_t(r);
  }
}

void AtomicFile::commit() {
  if (committed_) throw Error(path_ + ": output committed twice");
  if (fd_ < 0) throw Error(path_ + ": commit after the output was discarded");
  if (::fsync(fd_) != 0) fail("fsync of the output failed", errno);
  if (::close(fd_) != 0) {
    fd_ = -1;
    fail("closing the output failed", errno);
  }
  fd_ = -1;
  if (::rename(temp_.c_str(), path_.c_str()) != 0) fail("cannot rename the finished output into place", errno);
  committed_ = true;
  temp_.clear();
  // Make the rename itself durable. Some filesystems refuse fsync on a
  // directory; the data is complete either way, so that is not an error.
  int dfd = ::open(dir_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace corvid
