#include "io_test_util.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "corvid/io/checkpoint.h"
#include "corvid/sdk/error.h"

namespace corvid::iotest {

std::string fixture(const std::string& name) { return std::string(CORVID_TEST_DATA_DIR) + "/fixtures/hostile/" + name; }

std::string scratch_dir(const std::string& name) {
  auto d = std::filesystem::path(CORVID_BUILD_DIR) / "test_io_scratch" / name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

double element(const TensorView& t, int64_t i) {
  int64_t off = 0;
  for (int d = t.ndim - 1; d >= 0; --d) {
    off += (i % t.shape[d]) * t.strides[d];
    i /= t.shape[d];
  }
  const auto* p = static_cast<const uint8_t*>(t.data) + size_t(off) * dtype_size(t.dtype);
  switch (t.dtype) {
    case DType::F32: { float v; std::memcpy(&v, p, 4); return v; }
    case DType::F16: { uint16_t v; std::memcpy(&v, p, 2); return f16_to_f32(v); }
    case DType::BF16: { uint16_t v; std::memcpy(&v, p, 2); return bf16_to_f32(v); }
    case DType::U8: return *p;
    case DType::I8: return int8_t(*p);
    case DType::I32: { int32_t v; std::memcpy(&v, p, 4); return v; }
    case DType::I64: { int64_t v; std::memcpy(&v, p, 8); return double(v); }
  }
  return 0;
}

std::vector<double> elements(const TensorView& t) {
  std::vector<double> v;
  for (int64_t i = 0; i < t.numel(); ++i) v.push_back(element(t, i));
  return v;
}

std::string expect_open_error(const std::string& path, std::initializer_list<const char*> words) {
  try {
    auto ck = Checkpoint::open(path);
    ADD_FAILURE() << path << ": opened without error (" << ck->names().size() << " tensors)";
    return "";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "multi-line error: " << msg;
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << "error does not start with the path: " << msg;
    for (const char* w : words) EXPECT_NE(msg.find(w), std::string::npos) << "missing '" << w << "' in: " << msg;
    return msg;
  }
}

}  // namespace corvid::iotest
