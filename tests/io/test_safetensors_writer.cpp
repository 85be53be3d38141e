// SafetensorsWriter: round trip through the reader, 64-byte alignment, a
// header that is valid safetensors by the format's own rules (checked here by
// parsing the bytes directly, not with Corvid's reader), and "no partial output".
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "corvid/io/checkpoint.h"
#include "corvid/io/safetensors_writer.h"
#include "corvid/sdk/error.h"
#include "io_test_util.h"

namespace corvid {
namespace {

using iotest::list_dir;
using iotest::scratch_dir;

std::vector<uint8_t> slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// The rules a strict safetensors reader (huggingface/safetensors) applies:
// header length in range, JSON object, data offsets that tile the data section
// exactly (sorted, no gaps, no overlap, ending at the file's end).
nlohmann::ordered_json check_strict_safetensors(const std::string& path) {
  std::vector<uint8_t> b = slurp(path);
  EXPECT_GE(b.size(), 8u);
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = n << 8 | b[size_t(k)];
  EXPECT_LE(8 + n, b.size());
  EXPECT_EQ((8 + n) % 64, 0u) << "data section not 64-byte aligned";
  EXPECT_EQ(b[8], '{');
  auto h = nlohmann::ordered_json::parse(b.begin() + 8, b.begin() + 8 + long(n));
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    auto off = it.value()["data_offsets"];
    spans.emplace_back(off[0].get<uint64_t>(), off[1].get<uint64_t>());
    if (it.key().rfind("__pad__.", 0) != 0) {
      EXPECT_EQ(off[0].get<uint64_t>() % 64, 0u) << it.key();
    }
  }
  std::sort(spans.begin(), spans.end());
  uint64_t at = 0;
  for (auto [s, e] : spans) {
    EXPECT_EQ(s, at) << "gap or overlap in data_offsets";
    at = e;
  }
  EXPECT_EQ(8 + n + at, b.size()) << "data section does not end at the end of the file";
  return h;
}

TEST(SafetensorsWriter, RoundTripAlignedWithPaddingHidden) {
  std::string dir = scratch_dir("roundtrip");
  std::string out = dir + "/model.safetensors";
  {
    SafetensorsWriter w(out);
    w.set_metadata("corvid.format", "1");
    w.set_metadata("note", "two\nlines \"quoted\"");
    float* a = static_cast<float*>(w.begin("a", DType::F32, {2, 3}));
    for (int i = 0; i < 6; ++i) a[i] = 0.5f * float(i) - 1.0f;
    uint16_t* b = static_cast<uint16_t*>(w.begin("b", DType::BF16, {5}));  // 10 bytes: the next needs padding
    for (int i = 0; i < 5; ++i) b[i] = f32_to_bf16(float(i) + 0.25f);
    uint8_t* c = static_cast<uint8_t*>(w.begin("c", DType::U8, {3}));
    c[0] = 1, c[1] = 200, c[2] = 255;
    EXPECT_NE(w.begin("empty", DType::F32, {0, 7}), nullptr);
    float* s = static_cast<float*>(w.begin("scalar", DType::F32, {}));
    *s = 42.0f;
    int64_t* d = static_cast<int64_t*>(w.begin("d", DType::I64, {2}));
    d[0] = -3, d[1] = int64_t(1) << 50;
    EXPECT_FALSE(std::filesystem::exists(out));  // nothing at the target before commit
    w.commit();
  }
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"model.safetensors"});
  auto h = check_strict_safetensors(out);
  EXPECT_TRUE(h.contains("__pad__.0"));  // padding before "c" is explicit
  EXPECT_EQ(h["__pad__.0"]["dtype"], "U8");

  auto ck = Checkpoint::open(out);
  EXPECT_EQ(ck->names(), (std::vector<std::string>{"a", "b", "c", "empty", "scalar", "d"}));
  EXPECT_EQ(ck->find("__pad__.0"), nullptr);
  EXPECT_EQ(ck->metadata().at("corvid.format"), "1");
  EXPECT_EQ(ck->metadata().at("note"), "two\nlines \"quoted\"");
  for (const std::string& n : ck->names()) EXPECT_EQ(uintptr_t(ck->find(n)->data) % 64, 0u) << n;
  EXPECT_EQ(iotest::elements(*ck->find("a")), (std::vector<double>{-1, -0.5, 0, 0.5, 1, 1.5}));
  EXPECT_EQ(iotest::elements(*ck->find("b")), (std::vector<double>{0.25, 1.25, 2.25, 3.25, 4.25}));
  EXPECT_EQ(iotest::elements(*ck->find("c")), (std::vector<double>{1, 200, 255}));
  EXPECT_EQ(ck->find("empty")->numel(), 0);
  EXPECT_EQ(iotest::elements(*ck->find("scalar")), std::vector<double>{42});
  EXPECT_EQ(iotest::elements(*ck->find("d")), (std::vector<double>{-3, double(int64_t(1) << 50)}));
}

TEST(SafetensorsWriter, AddCopiesStridedViewsAndSinkPrefixes) {
  std::string dir = scratch_dir("strided");
  std::string out = dir + "/s.safetensors";
  float src[6] = {0, 1, 2, 3, 4, 5};  // (2, 3)
  TensorView t = TensorView::contiguous(src, DType::F32, {3, 2});
  t.strides[0] = 1;  // the transpose of the (2, 3) matrix
  t.strides[1] = 3;
  {
    SafetensorsWriter w(out);
    w.add("t", t);
    SafetensorsWeightSink sink(w, "stage0/");
    float* p = sink.begin_as<float>("att.key", DType::F32, {2});
    p[0] = 7, p[1] = 8;
    w.commit();
  }
  auto ck = Checkpoint::open(out);
  EXPECT_EQ(iotest::elements(*ck->find("t")), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(iotest::elements(*ck->find("stage0/att.key")), (std::vector<double>{7, 8}));
}

TEST(SafetensorsWriter, HeaderLargerThanReserveIsRelocated) {
  std::string dir = scratch_dir("relocate");
  std::string out = dir + "/big_header.safetensors";
  {
    SafetensorsWriter w(out, /*header_reserve=*/64);
    for (int i = 0; i < 40; ++i) {
      int32_t* p = static_cast<int32_t*>(w.begin("a.rather.long.tensor.name.number." + std::to_string(i), DType::I32, {3}));
      p[0] = i, p[1] = -i, p[2] = i * i;
    }
    w.set_metadata("m", std::string(500, 'x'));
    w.commit();
  }
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"big_header.safetensors"});
  check_strict_safetensors(out);
  auto ck = Checkpoint::open(out);
  ASSERT_EQ(ck->names().size(), 40u);
  for (int i = 0; i < 40; ++i)
    EXPECT_EQ(iotest::elements(*ck->find("a.rather.long.tensor.name.number." + std::to_string(i))),
              (std::vector<double>{double(i), double(-i), double(i * i)}));
}

TEST(SafetensorsWriter, NoPartialOutputWithoutCommit) {
  std::string dir = scratch_dir("abandon");
  std::string out = dir + "/x.safetensors";
  {
    SafetensorsWriter w(out);
    std::memset(w.begin("a", DType::F32, {1000}), 0, 4000);
    std::memset(w.begin("b", DType::F32, {10}), 0, 40);
    ASSERT_EQ(list_dir(dir).size(), 1u);  // the temporary file, hidden, in the target directory
    EXPECT_EQ(std::filesystem::path(w.temp_path()).parent_path(), std::filesystem::path(dir));
    EXPECT_EQ(std::filesystem::path(w.temp_path()).filename().string().rfind(".x.safetensors.tmp-", 0), 0u);
  }
  EXPECT_TRUE(list_dir(dir).empty());
}

TEST(SafetensorsWriter, ErrorsLeaveNothingBehindAndKeepOldFile) {
  std::string dir = scratch_dir("errors");
  std::string out = dir + "/x.safetensors";
  { std::ofstream(out) << "previous contents"; }
  try {
    SafetensorsWriter w(out);
    std::memset(w.begin("a", DType::F32, {4}), 0, 16);
    w.begin("a", DType::F32, {4});
    FAIL() << "duplicate name accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'a' written twice"), std::string::npos) << e.what();
  }
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"x.safetensors"});
  EXPECT_EQ(slurp(out).size(), std::string("previous contents").size());

  SafetensorsWriter w(out);
  EXPECT_THROW(w.begin("__pad__.3", DType::U8, {1}), Error);
  EXPECT_THROW(w.begin("__metadata__", DType::U8, {1}), Error);
  EXPECT_THROW(w.begin("", DType::U8, {1}), Error);
  EXPECT_THROW(w.begin("neg", DType::U8, {-1}), Error);
  EXPECT_THROW(w.begin("rank5", DType::U8, {1, 1, 1, 1, 1}), Error);
  *static_cast<uint8_t*>(w.begin("ok", DType::U8, {1})) = 9;
  w.commit();
  EXPECT_THROW(w.begin("late", DType::U8, {1}), Error);
  EXPECT_THROW(w.commit(), Error);
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"x.safetensors"});
}

TEST(SafetensorsWriter, MissingDirectoryIsAnError) {
  try {
    SafetensorsWriter w("/nonexistent-corvid-dir/x.safetensors");
    FAIL();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_EQ(m.rfind("/nonexistent-corvid-dir/x.safetensors: ", 0), 0u) << m;
    EXPECT_NE(m.find("No such file or directory"), std::string::npos) << m;
  }
}

TEST(SafetensorsWriter, WriteFailureSaysWhyAndLeavesNothing) {
  // A file size limit makes write() fail with EFBIG, like a full disk would
  // with ENOSPC; SIGXFSZ is ignored so the failure is an error return.
  std::string dir = scratch_dir("efbig");
  std::string out = dir + "/x.safetensors";
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit old;
  getrlimit(RLIMIT_FSIZE, &old);
  rlimit lim = old;
  lim.rlim_cur = 1 << 16;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  std::string msg;
  try {
    SafetensorsWriter w(out);
    float* p = static_cast<float*>(w.begin("big", DType::F32, {1 << 20}));
    std::memset(p, 0, 4 << 20);
    w.commit();
  } catch (const Error& e) {
    msg = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_NE(msg.find(out + ": writing"), std::string::npos) << msg;
  EXPECT_NE(msg.find("File too large"), std::string::npos) << msg;
  EXPECT_TRUE(list_dir(dir).empty());
}

}  // namespace
}  // namespace corvid
