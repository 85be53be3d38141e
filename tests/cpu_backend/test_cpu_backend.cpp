// cpu_onednn as a whole, against the independent numpy reference
// (tests/reference/rwkv_ref.py, outputs in tests/fixtures/models):
//   * prepare() writes the reference's int8 codes and scales bit for bit;
//   * every kernel family this CPU has (forced with CORVID_CPU_ISA) and 1 or 2
//     threads reproduce the reference logits and state for cpu fp32, fp32i8
//     and bf16 in step and chunked modes, within the fixtures.json tolerances.
//
// Tolerances (fixtures.json): fp32 and fp32i8 |Δ| <= 1e-4 (summation order of
// fp32 dot products; fp32i8 uses the same codes, so only the order of the
// dequantised sum differs); bf16 1e-2 + 1e-2·|want| (the reference rounds to
// bf16 at the same points, but a different fp32 summation order may flip one
// bf16 rounding, 2^-8 relative, which later blocks carry on).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>

#include "common/fixture_run.h"
#include "cpu_backend/fixture_sweep.h"
#include "corvid/io/npy.h"
#include "corvid/runtime/engine.h"
#include "corvid/sdk/weights_util.h"
#include "kernels.h"
#include "layout.h"

using namespace corvid;
using namespace corvid_test;

namespace {

// Minimal .npy reader for the dtypes of the quantisation fixtures (|u1, <f4).
struct RawNpy {
  std::string descr;
  std::vector<int64_t> shape;
  std::vector<char> bytes;
};

RawNpy read_raw_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  char magic[10];
  in.read(magic, 10);
  const size_t hlen = uint8_t(magic[8]) | (size_t(uint8_t(magic[9])) << 8);
  std::string header(hlen, '\0');
  in.read(header.data(), std::streamsize(hlen));
  RawNpy r;
  auto d = header.find("'descr': '");
  r.descr = header.substr(d + 10, header.find('\'', d + 10) - (d + 10));
  if (header.find("'fortran_order': False") == std::string::npos) throw std::runtime_error(path + ": Fortran order");
  auto s = header.find("'shape': (");
  std::string dims = header.substr(s + 10, header.find(')', s) - (s + 10));
  for (size_t p = 0; p < dims.size();) {
    size_t q = dims.find(',', p);
    std::string item = dims.substr(p, q == std::string::npos ? std::string::npos : q - p);
    if (item.find_first_of("0123456789") != std::string::npos) r.shape.push_back(std::stoll(item));
    if (q == std::string::npos) break;
    p = q + 1;
  }
  r.bytes.assign(std::istreambuf_iterator<char>(in), {});
  return r;
}

template <typename T>
std::vector<T> values(const RawNpy& a) {
  std::vector<T> v(a.bytes.size() / sizeof(T));
  std::memcpy(v.data(), a.bytes.data(), v.size() * sizeof(T));
  return v;
}

struct OneTensorSource : WeightSource {
  std::string name;
  TensorView view;
  const TensorView* find(std::string_view n) const override { return n == name ? &view : nullptr; }
  std::string origin() const override { return "test"; }
};

struct MapSink : WeightSink {
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<char> bytes;
  };
  std::map<std::string, Entry> out;
  void* begin(std::string_view name, DType dtype, const std::vector<int64_t>& shape) override {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    Entry& e = out[std::string(name)];
    e.dtype = dtype;
    e.shape = shape;
    e.bytes.assign(size_t(n) * dtype_size(dtype), 0);
    return e.bytes.data();
  }
};

}  // namespace

// The codes and the four scale vectors prepare() stores for fp32i8 are the
// reference's, bit for bit (same floor, same order of the min steps, same /16),
// including the constant-row guard. The raw view is the reference's (in, out)
// matrix seen transposed, i.e. a strided (out, in) view, as a checkpoint may hold.
TEST(CpuBackend, PreparedInt8CodesAreTheReferences) {
  std::ifstream in(fixtures_dir() + "/fixtures.json");
  nlohmann::json j = nlohmann::json::parse(in);
  int checked = 0;
  for (const auto& f : j["fixtures"]) {
    if (!f.contains("quantized")) continue;
    for (auto it = f["quantized"].begin(); it != f["quantized"].end(); ++it) {
      SCOPED_TRACE(it.key());
      const auto& e = it.value();
      auto path = [&](const char* k) { return fixtures_dir() + "/" + e[k].get<std::string>(); };
      RawNpy w = read_raw_npy(path("w_in_out"));
      ASSERT_EQ(w.descr, "<f4");
      ASSERT_EQ(w.shape.size(), 2u);
      const int64_t n = w.shape[0], m = w.shape[1];  // n = in, m = out
      std::vector<float> wv = values<float>(w);
      OneTensorSource src;
      src.name = "blocks.0.att.key.weight";  // a name RESCALE_LAYER never touches
      src.view.data = wv.data();
      src.view.dtype = DType::F32;
      src.view.ndim = 2;
      src.view.shape[0] = m;
      src.view.shape[1] = n;
      src.view.strides[0] = 1;
      src.view.strides[1] = m;
      ModelHParams hp{};
      hp.rescale_layer = 0;
      MapSink sink;
      cpu::prepare_matrix(src, sink, hp, src.name, m, n, *precision_from_name("fp32i8"));
      const auto& codes = sink.out.at(src.name);
      ASSERT_EQ(codes.dtype, DType::U8);
      ASSERT_EQ(codes.shape, (std::vector<int64_t>{m, n}));
      // The reference stores the codes as float32 values 0..255 (or uint8).
      RawNpy q = read_raw_npy(path("q"));
      ASSERT_EQ(q.shape, (std::vector<int64_t>{n, m}));
      ASSERT_TRUE(q.descr == "<f4" || q.descr == "|u1") << q.descr;
      std::vector<float> qv(size_t(n * m));
      if (q.descr == "<f4") qv = values<float>(q);
      else for (size_t i = 0; i < qv.size(); ++i) qv[i] = float(uint8_t(q.bytes[i]));
      for (int64_t r = 0; r < n; ++r)
        for (int64_t c = 0; c < m; ++c)
          ASSERT_EQ(float(uint8_t(codes.bytes[size_t(c * n + r)])), qv[size_t(r * m + c)]) << "code " << r << "," << c;
      for (const char* k : {"mx", "rx", "my", "ry"}) {
        std::vector<float> want = values<float>(read_raw_npy(path(k)));
        const auto& got = sink.out.at(src.name + "." + k);
        ASSERT_EQ(got.bytes.size(), want.size() * 4) << k;
        EXPECT_EQ(0, std::memcmp(got.bytes.data(), want.data(), got.bytes.size())) << k << " differs";
      }
      ++checked;
    }
  }
  EXPECT_GE(checked, 3);
}

// Every fixture, every CPU strategy, every mode, every kernel family, 1 and 2
// threads: logits and the final state against the reference.
TEST(CpuBackend, EveryKernelFamilyMatchesTheReference) {
  const int runs = sweep_cpu_fixtures(load_fixtures(), "v4 fixture", [](const Fixture&) { return true; });
  EXPECT_GE(runs, 3 * 3 * 2 * 2);  // RWKV-4 fixtures, three strategies, two thread counts, >= 2 modes
}

TEST(CpuBackend, UnknownOrUnsupportedIsaIsAnError) {
  const Fixture fx = load_fixtures().front();
  EngineOptions o = engine_default_options();
  o.model_path = fx.files[0];
  o.strategy = "cpu fp32";
  setenv("CORVID_CPU_ISA", "avx9000", 1);
  EXPECT_THROW(Engine::load(o), Error);
  unsetenv("CORVID_CPU_ISA");
}
