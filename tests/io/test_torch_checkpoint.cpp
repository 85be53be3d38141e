// Valid torch.save archives: values, order, strides, offsets, shared storages,
// zero-copy, deflated entries, protocol-4 pickles, ChatRWKV metadata. Expected
// values come from torch (expected.json, written by make_hostile.py).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "corvid/io/checkpoint.h"
#include "corvid/sdk/error.h"
#include "io_test_util.h"

namespace corvid {
namespace {

using iotest::elements;
using iotest::fixture;

nlohmann::json load_json(const std::string& name) {
  std::ifstream f(fixture(name));
  return nlohmann::json::parse(f);
}

// True when address p lies in a mapping of `path` (from /proc/self/maps).
bool mapped_from(const void* p, const std::string& path) {
  std::string canon = std::filesystem::canonical(path).string();
  std::ifstream maps("/proc/self/maps");
  std::string line;
  auto a = uintptr_t(p);
  while (std::getline(maps, line)) {
    if (line.size() < canon.size() || line.compare(line.size() - canon.size(), canon.size(), canon) != 0) continue;
    uintptr_t lo = std::stoull(line.substr(0, line.find('-')), nullptr, 16);
    uintptr_t hi = std::stoull(line.substr(line.find('-') + 1), nullptr, 16);
    if (a >= lo && a < hi) return true;
  }
  return false;
}

void check_against_expected(const Checkpoint& ck) {
  nlohmann::json ex = load_json("expected.json");
  std::vector<std::string> want_names = ex["names"].get<std::vector<std::string>>();
  EXPECT_EQ(ck.names(), want_names);  // file (dict) order
  for (const auto& [name, e] : ex["tensors"].items()) {
    SCOPED_TRACE(name);
    const TensorView* t = ck.find(name);
    ASSERT_NE(t, nullptr);
    EXPECT_STREQ(dtype_name(t->dtype), e["dtype"].get<std::string>().c_str());
    std::vector<int64_t> shape(t->shape, t->shape + t->ndim);
    EXPECT_EQ(shape, e["shape"].get<std::vector<int64_t>>());
    std::vector<int64_t> stride(t->strides, t->strides + t->ndim);
    EXPECT_EQ(stride, e["stride"].get<std::vector<int64_t>>());
    EXPECT_EQ(t->is_contiguous(), e["contiguous"].get<bool>());
    // Exact: every stored value is exactly representable as a double.
    EXPECT_EQ(elements(*t), e["values"].get<std::vector<double>>());
  }
}

TEST(TorchCheckpoint, GoodArchiveValuesOrderAndLayout) {
  auto ck = Checkpoint::open(fixture("good.pth"));
  EXPECT_EQ(ck->format(), Checkpoint::Format::TorchZip);
  EXPECT_STREQ(format_name(ck->format()), "torch zip (.pth)");
  EXPECT_EQ(ck->path(), fixture("good.pth"));
  EXPECT_EQ(ck->file_size(), std::filesystem::file_size(fixture("good.pth")));
  EXPECT_TRUE(ck->metadata().empty());  // OrderedDict._metadata (BUILD state) is not a dict entry
  check_against_expected(*ck);
  EXPECT_EQ(ck->find("no.such.tensor"), nullptr);
}

TEST(TorchCheckpoint, ViewsShareStoragesAndHonourOffsets) {
  auto ck = Checkpoint::open(fixture("good.pth"));
  const TensorView* w = ck->find("w32");
  const TensorView* wt = ck->find("w32_t");
  const TensorView* col = ck->find("w32_col");
  ASSERT_TRUE(w && wt && col);
  EXPECT_EQ(wt->data, w->data);  // same storage, no copy
  EXPECT_EQ(col->data, static_cast<const void*>(w->as<float>() + 1));
  EXPECT_EQ(col->strides[0], 5);
  EXPECT_EQ(ck->find("wbf16_t")->data, ck->find("wbf16")->data);
  EXPECT_EQ(ck->find("empty")->numel(), 0);
  EXPECT_EQ(ck->find("scalar")->ndim, 0);
}

TEST(TorchCheckpoint, StoredEntriesAreUsedInPlaceAndAligned) {
  std::string path = fixture("good.pth");
  auto ck = Checkpoint::open(path);
  for (const std::string& n : ck->names()) {
    const TensorView* t = ck->find(n);
    if (t->numel() == 0) continue;
    EXPECT_TRUE(mapped_from(t->data, path)) << n << " is not a view into the file mapping";
  }
  // torch aligns storages to 64 bytes; a tensor at storage offset 0 is aligned.
  EXPECT_EQ(uintptr_t(ck->find("w32")->data) % 64, 0u);
  EXPECT_EQ(uintptr_t(ck->find("wbf16")->data) % 64, 0u);
}

TEST(TorchCheckpoint, DeflatedEntriesAreInflatedOnceWithSameValues) {
  std::string path = fixture("good_deflated.pth");
  auto ck = Checkpoint::open(path);
  check_against_expected(*ck);
  const TensorView* w = ck->find("w32");
  EXPECT_FALSE(mapped_from(w->data, path));  // inflated into memory
  EXPECT_EQ(ck->find("w32_t")->data, w->data);  // once per storage, shared by its views
  EXPECT_EQ(uintptr_t(w->data) % 64, 0u);
}

TEST(TorchCheckpoint, Zip64CentralDirectoryLikeMultiGigabyteFiles) {
  // Sizes and offsets only in zip64 extra fields, as in files over 4 GiB.
  std::string path = fixture("good_zip64.pth");
  auto ck = Checkpoint::open(path);
  check_against_expected(*ck);
  EXPECT_TRUE(mapped_from(ck->find("w32")->data, path));
}

TEST(TorchCheckpoint, Protocol4PickleGivesTheSameTensors) {
  auto ck = Checkpoint::open(fixture("good_proto4.pth"));
  check_against_expected(*ck);
}

TEST(TorchCheckpoint, CraftedArchiveMatchesTorchLoad) {
  // make_hostile.py checked with torch.load that this crafted layout is torch's.
  auto ck = Checkpoint::open(fixture("crafted_ok.pth"));
  const TensorView* t = ck->find("t");
  ASSERT_NE(t, nullptr);
  std::vector<double> want;
  for (int i = 2; i < 14; ++i) want.push_back(i);  // arange(16)[2:14].view(3, 4)
  EXPECT_EQ(iotest::elements(*t), want);
}

TEST(TorchCheckpoint, ChatRwkvNonTensorKeysBecomeMetadata) {
  auto ck = Checkpoint::open(fixture("chatrwkv_style.pth"));
  nlohmann::json ex = load_json("expected.json");
  std::map<std::string, std::string> want = ex["chatrwkv_metadata"].get<std::map<std::string, std::string>>();
  EXPECT_EQ(ck->metadata(), want);
  EXPECT_EQ(ck->names(), std::vector<std::string>{"emb.weight"});
  EXPECT_EQ(iotest::elements(*ck->find("emb.weight")), (std::vector<double>{0, 1, 2, 3, 4, 5}));
}

}  // namespace
}  // namespace corvid
