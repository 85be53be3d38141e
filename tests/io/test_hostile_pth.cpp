// Hostile and broken .pth files: each ends in one corvid::Error naming the
// file and the problem — never a crash, never code execution, never a huge
// allocation (ASan/valgrind runs of this suite check the "never" part).
#include <gtest/gtest.h>

#include <filesystem>

#include "io_test_util.h"

namespace corvid {
namespace {

using iotest::expect_open_error;
using iotest::fixture;

constexpr const char* kPwnedMarker = "/tmp/corvid-io-test-pwned";

TEST(HostilePth, ForeignGlobalOsSystemIsRefusedByNameAndNotRun) {
  std::filesystem::remove(kPwnedMarker);
  std::string msg = expect_open_error(fixture("foreign_os_system.pth"),
                                      {"data.pkl", "refusing pickle global 'posix.system'", "at byte",
                                       "only torch state dicts are accepted"});
  EXPECT_FALSE(std::filesystem::exists(kPwnedMarker));
}

TEST(HostilePth, ForeignGlobalEvalIsRefusedByName) {
  std::filesystem::remove(kPwnedMarker);
  // Protocol 2 spells the builtins module the Python 2 way.
  expect_open_error(fixture("foreign_eval.pth"), {"refusing pickle global '__builtin__.eval'"});
  EXPECT_FALSE(std::filesystem::exists(kPwnedMarker));
}

TEST(HostilePth, ForeignGlobalViaStackGlobalIsRefused) {  // protocol 4 names globals differently
  expect_open_error(fixture("foreign_proto4.pth"), {"refusing pickle global 'posix.system'"});
}

TEST(HostilePth, TruncatedArchive) {
  expect_open_error(fixture("truncated.pth"), {"end-of-central-directory", "truncated"});
}

TEST(HostilePth, EmptyAndUnknownFiles) {
  expect_open_error(fixture("empty.pth"), {"empty file", "at byte 0", "expected"});
  expect_open_error(fixture("garbage.bin"), {"unrecognised content", "expected a torch.save zip archive"});
  expect_open_error(fixture("bare_pickle.pkl"), {"bare pickle", "torch.save"});
  expect_open_error(fixture("does_not_exist.pth"), {"cannot open", "No such file"});
  expect_open_error(std::string(CORVID_TEST_DATA_DIR), {"not a regular file"});
}

TEST(HostilePth, LegacyFormatAsksToResave) {
  expect_open_error(fixture("legacy.pth"), {"legacy (pre-1.6) torch file", "re-save it with a current torch",
                                            "torch.save(torch.load(f), f)"});
}

TEST(HostilePth, NestedAndNonDictPickles) {
  expect_open_error(fixture("nested_dict.pth"), {"entry 'model' is a nested dict", "expected a flat dict"});
  expect_open_error(fixture("not_a_dict.pth"), {"list", "expected a dict of tensors"});
}

TEST(HostilePth, StorageSmallerThanShapeTimesStride) {
  expect_open_error(fixture("storage_too_small.pth"),
                    {"tensor 't'", "shape (4, 5), stride (5, 1), offset 0", "needs 80 bytes", "at most the 64"});
  expect_open_error(fixture("stride_past_end.pth"), {"tensor 't'", "stride (4, 100)", "needs 1252 bytes"});
  expect_open_error(fixture("offset_past_end.pth"), {"tensor 't'", "offset 100", "needs 408 bytes"});
  expect_open_error(fixture("numel_exceeds_entry.pth"), {"tensor 't'", "holds 64 bytes", "expected 256 (64 elements"});
}

TEST(HostilePth, AbsurdShapesAreRefusedWithoutAllocating) {
  expect_open_error(fixture("absurd_shape.pth"), {"tensor 't'", "overflows 64-bit sizes"});
  expect_open_error(fixture("overflow_stride.pth"), {"tensor 't'", "overflows 64-bit sizes"});
  expect_open_error(fixture("huge_expanded.pth"), {"tensor 't'", "logical size of 68719476736 bytes"});
  expect_open_error(fixture("negative_size.pth"), {"negative entry -1", "at byte"});
  expect_open_error(fixture("five_dims.pth"), {"5 dimensions", "at most 4"});
}

TEST(HostilePth, MissingStorageAndUnsupportedDtype) {
  expect_open_error(fixture("missing_storage.pth"), {"tensor 't'", "'archive/data/7' is missing"});
  expect_open_error(fixture("double_dtype.pth"), {"tensor 't'", "torch.DoubleStorage", "unsupported dtype"});
}

TEST(HostilePth, DeepNestingIsRefusedWithoutRecursion) {
  expect_open_error(fixture("deep_nesting.pth"), {"entry 'x' is a tuple", "expected a tensor"});
}

TEST(HostilePth, ControlCharactersInNamesKeepTheErrorOnOneLine) {
  expect_open_error(fixture("newline_name.pth"), {"tensor 'bad?name'", "needs 80 bytes"});
}

TEST(HostilePth, DamagedCentralDirectory) {
  expect_open_error(fixture("bad_central_dir.pth"), {"claims 28672 entries", "expected at most"});
  expect_open_error(fixture("bad_central_offset.pth"), {"central directory", "outside the archive"});
  expect_open_error(fixture("bad_central_sig.pth"), {"central directory entry 0", "signature 0x58585858",
                                                     "expected 0x02014b50"});
}

}  // namespace
}  // namespace corvid
