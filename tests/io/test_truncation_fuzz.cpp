// Fuzz-ish robustness: every truncation (at every 97th byte) and single-byte
// corruption of valid files either opens or throws corvid::Error — no crash,
// no hang, no other exception type.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fstream>

#include "corvid/io/checkpoint.h"
#include "corvid/sdk/error.h"
#include "io_test_util.h"

namespace corvid {
namespace {

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// An in-memory file (memfd) reopened by path through /proc/self/fd: thousands
// of variants without touching the disk.
class MemFile {
 public:
  MemFile() : fd_(memfd_create("corvid-fuzz", MFD_CLOEXEC)) { EXPECT_GE(fd_, 0); }
  ~MemFile() { ::close(fd_); }
  std::string put(const std::string& bytes) {
    EXPECT_EQ(::ftruncate(fd_, 0), 0);
    EXPECT_EQ(::pwrite(fd_, bytes.data(), bytes.size(), 0), ssize_t(bytes.size()));
    return "/proc/self/fd/" + std::to_string(fd_);
  }

 private:
  int fd_;
};

// Opens and touches every tensor byte (so a bad view would be caught by ASan).
void open_and_read(const std::string& p) {
  auto ck = Checkpoint::open(p);
  volatile double sink = 0;
  for (const std::string& n : ck->names()) {
    const TensorView* t = ck->find(n);
    for (int64_t i = 0; i < t->numel(); ++i) sink = sink + iotest::element(*t, i);
  }
}

void truncations(const std::string& name, size_t step) {
  std::string good = slurp(iotest::fixture(name));
  ASSERT_FALSE(good.empty());
  MemFile mem;
  size_t errors = 0;
  for (size_t len = 0; len < good.size(); len += step) {
    std::string p = mem.put(good.substr(0, len));
    try {
      open_and_read(p);
    } catch (const Error&) {
      ++errors;
    }
  }
  // A prefix of a zip loses its end record; a prefix of safetensors loses data.
  EXPECT_EQ(errors, (good.size() + step - 1) / step) << name << ": some truncation opened successfully";
}

TEST(TruncationFuzz, PthEvery97thByte) { truncations("good.pth", 97); }
TEST(TruncationFuzz, DeflatedPthEvery97thByte) { truncations("good_deflated.pth", 97); }
TEST(TruncationFuzz, Proto4PthEvery97thByte) { truncations("good_proto4.pth", 97); }
TEST(TruncationFuzz, Zip64PthEvery97thByte) { truncations("good_zip64.pth", 97); }
TEST(TruncationFuzz, SafetensorsEvery7thByte) { truncations("good.safetensors", 7); }

void corruptions(const std::string& name) {
  std::string good = slurp(iotest::fixture(name));
  MemFile mem;
  for (size_t i = 0; i < good.size(); ++i) {
    for (uint8_t x : {uint8_t(0xff), uint8_t(0x01)}) {
      std::string bad = good;
      bad[i] = char(uint8_t(bad[i]) ^ x);
      std::string p = mem.put(bad);
      try {
        open_and_read(p);
      } catch (const Error&) {
      }
    }
  }
}

TEST(CorruptionFuzz, EveryByteOfPth) { corruptions("good.pth"); }
TEST(CorruptionFuzz, EveryByteOfDeflatedPth) { corruptions("good_deflated.pth"); }
TEST(CorruptionFuzz, EveryByteOfZip64Pth) { corruptions("good_zip64.pth"); }
TEST(CorruptionFuzz, EveryByteOfSafetensors) { corruptions("good.safetensors"); }

}  // namespace
}  // namespace corvid
