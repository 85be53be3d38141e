// CPU-side tests of the CUDA plugins: prepare() layout and values against the
// SDK's reference transforms, layout ids, estimates, the device-memory budget,
// and the "no CUDA device" behaviour (run on machines without a GPU, where the
// plugins must still load). None of these need a GPU; the last two check the
// opposite outcome when one is present.
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "backend.h"
#include "corvid/sdk/plugin.h"
#include "cuda_test_gtest.h"
#include "cuda_test_support.h"
#include "cuda_util.h"
#include "layout_v4.h"
#include "stage_v4.h"

using namespace corvid;
using namespace corvid_test;

namespace {

StageSpec make_spec(const ModelHParams& hp, const char* prec, int first, int end, bool head, int stream_first = -1) {
  StageSpec s;
  s.device = "cuda";
  s.precision = *precision_from_name(prec);
  s.first_block = first;
  s.end_block = end;
  s.has_head = head;
  s.stream_first = stream_first;
  s.chunk_len = 16;
  return s;
}

bool have_device(std::string* why) {
  try {
    cuda::check_cuda_device(0);
    return true;
  } catch (const std::exception& e) {
    *why = e.what();
    return false;
  }
}

uint64_t store_bytes(const MemoryStore& st) {
  uint64_t n = 0;
  for (const auto& name : st.names()) n += st.find(name)->nbytes();
  return n;
}

}  // namespace

TEST(CudaPrepare, Fp16TensorsShapesAndValues) {
  const ModelHParams hp = tiny_hparams(3, 36, 50, /*R=*/1);
  RandomModel m(hp, 1);
  auto be = cuda::make_backend("cuda_fp16", false);
  const StageSpec spec = make_spec(hp, "fp16", 0, 3, true);
  MemoryStore st;
  uint64_t last_done = 0;
  be->prepare(spec, hp, m, st, [&](uint64_t d, uint64_t) { last_done = d; });
  EXPECT_EQ(store_bytes(st), be->estimate_weight_bytes(spec, hp));
  EXPECT_EQ(last_done, be->estimate_weight_bytes(spec, hp));

  // Vectors: atype; decay/first: fp32 copied exactly.
  const TensorView* ln = st.find("blocks.2.ln1.weight");
  ASSERT_NE(ln, nullptr);
  EXPECT_EQ(ln->dtype, DType::F16);
  const std::vector<float> raw_ln = m.f32("blocks.2.ln1.weight");
  for (int c = 0; c < 36; ++c) EXPECT_EQ(ln->as<uint16_t>()[c], f32_to_f16(raw_ln[size_t(c)]));
  const TensorView* dec = st.find("blocks.1.att.time_decay");
  ASSERT_NE(dec, nullptr);
  EXPECT_EQ(dec->dtype, DType::F32);
  const std::vector<float> raw_dec = m.f32("blocks.1.att.time_decay");
  for (int c = 0; c < 36; ++c) EXPECT_EQ(dec->as<float>()[c], raw_dec[size_t(c)]);

  // Matrices: (out, in) in fp16; RESCALE_LAYER = 1 divides block l's output and
  // ffn.value by 2^l, nothing else.
  struct Case {
    const char* name;
    int shift;
  } cases[] = {{"blocks.0.att.output.weight", 0}, {"blocks.1.att.output.weight", 1}, {"blocks.2.ffn.value.weight", 2},
               {"blocks.2.att.key.weight", 0},    {"blocks.1.ffn.key.weight", 0},    {"head.weight", 0}};
  for (const Case& c : cases) {
    const TensorView& raw = m.require(c.name);
    const TensorView* p = st.find(c.name);
    ASSERT_NE(p, nullptr) << c.name;
    EXPECT_EQ(p->dtype, DType::F16) << c.name;
    ASSERT_EQ(p->ndim, 2);
    EXPECT_EQ(p->shape[0], raw.shape[0]) << c.name;
    EXPECT_EQ(p->shape[1], raw.shape[1]) << c.name;
    const std::vector<float> w = m.f32(c.name);
    for (size_t i = 0; i < w.size(); ++i) {
      ASSERT_EQ(p->as<uint16_t>()[i], f32_to_f16(std::ldexp(w[i], -c.shift))) << c.name << " element " << i;
    }
  }
}

TEST(CudaPrepare, Int8CodesAreTheReferenceSchemeTransposed) {
  const ModelHParams hp = tiny_hparams(2, 36, 50, /*R=*/6);
  RandomModel m(hp, 2);
  auto be = cuda::make_backend("cuda_int8", true);
  const StageSpec spec = make_spec(hp, "fp16i8", 0, 2, true);
  MemoryStore st;
  be->prepare(spec, hp, m, st, nullptr);
  EXPECT_EQ(store_bytes(st), be->estimate_weight_bytes(spec, hp));
  for (const char* name : {"blocks.1.ffn.key.weight", "blocks.0.att.receptance.weight", "head.weight",
                           "blocks.1.ffn.value.weight"}) {
    const TensorView& raw = m.require(name);
    const int64_t out = raw.shape[0], in = raw.shape[1];
    // Independent path: the SDK's exact quantiser on the (in, out) matrix.
    std::vector<float> w = wutil::matrix_in_out_f32(raw, hp, name);
    std::vector<uint8_t> q(w.size());
    std::vector<float> mx(static_cast<size_t>(out)), rx(static_cast<size_t>(out)), my(static_cast<size_t>(in)), ry(static_cast<size_t>(in));
    wutil::quantize_u8(w.data(), in, out, q.data(), mx.data(), rx.data(), my.data(), ry.data());
    const TensorView* codes = st.find(name);
    ASSERT_NE(codes, nullptr) << name;
    EXPECT_EQ(codes->dtype, DType::U8);
    EXPECT_EQ(codes->shape[0], out);
    EXPECT_EQ(codes->shape[1], in);
    for (int64_t r = 0; r < in; ++r)
      for (int64_t c = 0; c < out; ++c)
        ASSERT_EQ(codes->as<uint8_t>()[c * in + r], q[size_t(r * out + c)]) << name << " [" << r << "][" << c << "]";
    auto side = [&](const char* suf, const std::vector<float>& ref) {
      const TensorView* t = st.find(std::string(name) + suf);
      ASSERT_NE(t, nullptr) << name << suf;
      EXPECT_EQ(t->dtype, DType::F16);
      ASSERT_EQ(size_t(t->numel()), ref.size());
      for (size_t i = 0; i < ref.size(); ++i) ASSERT_EQ(t->as<uint16_t>()[i], f32_to_f16(ref[i])) << name << suf << i;
    };
    side("_mx", mx);
    side("_rx", rx);
    side("_my", my);
    side("_ry", ry);
    // The dequantised matrix is close to the original: each element within one
    // bucket, (range of its row scale)*(column scale)*16*16/256 plus fp16 scale rounding.
    std::vector<float> w0 = wutil::matrix_in_out_f32(raw, hp, name);
    double worst = 0;
    for (int64_t r = 0; r < in; ++r)
      for (int64_t c = 0; c < out; ++c) {
        const double deq = (q[size_t(r * out + c)] + 0.5) * ry[size_t(r)] * rx[size_t(c)] + my[size_t(r)] + mx[size_t(c)];
        const double bucket = double(ry[size_t(r)]) * rx[size_t(c)];
        worst = std::max(worst, std::abs(deq - w0[size_t(r * out + c)]) / (bucket + 1e-12));
      }
    EXPECT_LE(worst, 0.5 + 1e-3) << name;  // at most half a bucket from the centre
  }
}

TEST(CudaPrepare, StridedBf16RawViewsAndPartialStages) {
  const ModelHParams hp = tiny_hparams(3, 32, 40, 0);
  RandomModel m(hp, 3, DType::BF16);
  auto be = cuda::make_backend("cuda_fp16", false);
  // Blocks 1-2 only, no head: only those tensors are written.
  const StageSpec spec = make_spec(hp, "bf16", 1, 3, false);
  MemoryStore st;
  be->prepare(spec, hp, m, st, nullptr);
  EXPECT_EQ(st.find("blocks.0.att.key.weight"), nullptr);
  EXPECT_EQ(st.find("head.weight"), nullptr);
  EXPECT_EQ(st.find("ln_out.weight"), nullptr);
  ASSERT_NE(st.find("blocks.2.ffn.value.weight"), nullptr);
  EXPECT_EQ(st.find("blocks.2.ffn.value.weight")->dtype, DType::BF16);
  // bf16 -> bf16 is exact.
  const TensorView& raw = m.require("blocks.1.att.value.weight");
  const TensorView* p = st.find("blocks.1.att.value.weight");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(0, std::memcmp(raw.data, p->data, raw.nbytes()));
  EXPECT_EQ(store_bytes(st), be->estimate_weight_bytes(spec, hp));

  // A transposed (strided) raw view, as converted checkpoints can hold.
  TensorMap strided;
  for (const auto& name : m.names()) {
    const TensorView& t = *m.find(name);
    std::vector<int64_t> shape(t.shape, t.shape + t.ndim);
    void* d = strided.add(name, t.dtype, shape);
    std::memcpy(d, t.data, t.nbytes());
  }
  const std::string wn = "blocks.1.att.key.weight";
  const TensorView& src = m.require(wn);
  const int64_t out = src.shape[0], in = src.shape[1];
  std::vector<uint16_t> colmajor(size_t(out * in));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) colmajor[size_t(i * out + o)] = src.as<uint16_t>()[o * in + i];
  TensorView* v = const_cast<TensorView*>(strided.find(wn));
  std::memcpy(const_cast<void*>(v->data), colmajor.data(), colmajor.size() * 2);
  v->strides[0] = 1;
  v->strides[1] = out;
  MemoryStore st2;
  be->prepare(spec, hp, strided, st2, nullptr);
  EXPECT_EQ(0, std::memcmp(st2.find(wn)->data, st.find(wn)->data, src.nbytes()));
}

TEST(CudaPrepare, BadShapesAndModelsAreOneLineErrors) {
  ModelHParams hp = tiny_hparams(2, 32, 40, 0);
  RandomModel m(hp, 4);
  auto be = cuda::make_backend("cuda_fp16", false);
  ModelHParams wrong = hp;
  wrong.n_ffn = 100;  // the checkpoint's ffn.key is (128, 32)
  MemoryStore st;
  try {
    be->prepare(make_spec(wrong, "fp16", 0, 2, true), wrong, m, st, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("random-model"), std::string::npos) << w;
    EXPECT_NE(w.find("blocks.0.ffn.key.weight"), std::string::npos) << w;
    EXPECT_NE(w.find("expected (100, 32)"), std::string::npos) << w;
    EXPECT_EQ(w.find('\n'), std::string::npos);
  }
  ModelHParams v5 = hp;
  v5.arch = Arch::V5_2;
  MemoryStore st2;
  EXPECT_THROW(be->prepare(make_spec(v5, "fp16", 0, 2, true), v5, m, st2, nullptr), Error);
  // Precision served by the other plugin.
  MemoryStore st3;
  EXPECT_THROW(be->prepare(make_spec(hp, "fp16i8", 0, 2, true), hp, m, st3, nullptr), Error);
  auto be8 = cuda::make_backend("cuda_int8", true);
  EXPECT_THROW(be8->prepare(make_spec(hp, "fp16", 0, 2, true), hp, m, st3, nullptr), Error);
}

TEST(CudaLayout, IdsEstimatesAndDeviceBudget) {
  const ModelHParams hp = tiny_hparams(24, 2048, 50277, 6);
  auto be = cuda::make_backend("cuda_fp16", false);
  auto be8 = cuda::make_backend("cuda_int8", true);
  const StageSpec f16 = make_spec(hp, "fp16", 0, 24, true);
  const StageSpec i8 = make_spec(hp, "fp16i8", 0, 24, true);
  EXPECT_NE(be->layout_id(f16, hp), be8->layout_id(i8, hp));
  ModelHParams hp0 = hp;
  hp0.rescale_layer = 0;
  EXPECT_NE(be->layout_id(f16, hp), be->layout_id(f16, hp0));  // RESCALE changes the bytes
  EXPECT_NE(be->layout_id(f16, hp).find("cuda_fp16"), std::string::npos);
  // 1.5B: 13*C^2*L + V*C parameters (+ vectors): fp16 ~ 3.0 GB, int8 about half.
  const uint64_t params = 13ull * 2048 * 2048 * 24 + 50277ull * 2048;
  const uint64_t e16 = be->estimate_weight_bytes(f16, hp), e8 = be8->estimate_weight_bytes(i8, hp);
  EXPECT_GE(e16, 2 * params);
  EXPECT_LE(e16, 2 * params + 24ull * 16 * 2048 * 4 + 4 * 2048);
  EXPECT_GE(e8, params);
  EXPECT_LT(e8, params + params / 50);
  // Streaming 12 of 24 blocks: 12 blocks' matrices leave the device, 2 slots come in.
  const StageSpec s12 = make_spec(hp, "fp16i8", 0, 24, true, 12);
  const cuda::DeviceBudget a = cuda::device_budget(i8, hp), b = cuda::device_budget(s12, hp);
  const uint64_t per_block = cuda::streamed_block_bytes(hp, i8.precision);
  EXPECT_EQ(per_block, 13ull * 2048 * 2048);
  EXPECT_EQ(a.stream, 0u);
  EXPECT_GE(b.stream, 2 * per_block);
  EXPECT_LE(b.stream, 2 * per_block + 7 * 2 * 256);
  EXPECT_LE(b.weights + 12 * per_block, a.weights);
  EXPECT_GE(b.weights + 12 * per_block + 12 * 7 * 256, a.weights);
  // Scratch grows with the chunk length and includes [chunk][V] fp32 logits.
  StageSpec big = i8;
  big.chunk_len = 256;
  EXPECT_GT(cuda::device_budget(big, hp).scratch, uint64_t(256) * 50277 * 4);
}

TEST(CudaDevice, CheckDeviceReportsNoDeviceOrAcceptsOne) {
  std::string why;
  const bool dev = have_device(&why);
  auto be = cuda::make_backend("cuda_fp16", false);
  StageSpec spec = make_spec(tiny_hparams(1, 32, 10, 0), "fp16", 0, 1, true);
  if (!dev) {
    EXPECT_EQ(why.rfind("no CUDA device", 0), 0u) << why;
    try {
      be->check_device(spec);
      FAIL() << "check_device accepted a machine without a CUDA device";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("no CUDA device", 0), 0u) << e.what();
    }
    // create_stage fails the same way (never a crash).
    const ModelHParams hp = tiny_hparams(1, 32, 10, 0);
    RandomModel m(hp, 5);
    MemoryStore st;
    be->prepare(spec, hp, m, st, nullptr);
    try {
      be->create_stage(spec, hp, st);
      FAIL() << "create_stage without a device";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("no CUDA device", 0), 0u) << e.what();
    }
  } else {
    EXPECT_NO_THROW(be->check_device(spec));
  }
  // An index past the last device is always "no CUDA device".
  spec.device_index = 999;
  try {
    be->check_device(spec);
    FAIL() << "cuda:999 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("no CUDA device", 0), 0u) << e.what();
  }
}

#ifdef CORVID_PLUGIN_DIR
// The built plugin modules load (with or without a driver), export the entry
// point and serve the documented pairs.
TEST(CudaPlugins, ModulesLoadAndDescribeThemselves) {
  struct Want {
    const char* file;
    const char* name;
    std::vector<std::string> precisions;
  } wants[] = {{"libcorvid_cuda_fp16.so", "cuda_fp16", {"fp16", "fp32", "bf16"}},
               {"libcorvid_cuda_int8.so", "cuda_int8", {"fp16i8", "fp32i8", "bf16i8"}}};
  for (const Want& w : wants) {
    const std::string path = std::string(CORVID_PLUGIN_DIR) + "/" + w.file;
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(h, nullptr) << path << ": " << dlerror();
    using EntryFn = const PluginEntry* (*)();
    auto fn = reinterpret_cast<EntryFn>(dlsym(h, CORVID_PLUGIN_ENTRY_SYMBOL));
    ASSERT_NE(fn, nullptr);
    const PluginEntry* e = fn();
    EXPECT_EQ(e->abi_version, CORVID_ABI_VERSION);
    EXPECT_EQ(e->entry_size, sizeof(PluginEntry));
    EXPECT_EQ(e->kind, PluginKind::Backend);
    EXPECT_STREQ(e->name, w.name);
    ASSERT_EQ(e->n_served, w.precisions.size());
    for (size_t i = 0; i < e->n_served; ++i) {
      EXPECT_STREQ(e->served[i].device_kind, "cuda");
      EXPECT_EQ(e->served[i].precision, w.precisions[i]);
    }
    ASSERT_NE(e->create_backend, nullptr);
    std::unique_ptr<Backend> be(e->create_backend());
    StageSpec spec = make_spec(tiny_hparams(1, 32, 10, 0), w.precisions[0].c_str(), 0, 1, true);
    std::string why;
    if (!have_device(&why)) {
      try {
        be->check_device(spec);
        ADD_FAILURE() << "no error without a device";
      } catch (const std::exception& ex) {
        EXPECT_EQ(std::string(ex.what()).rfind("no CUDA device", 0), 0u) << ex.what();
      }
    }
    be.reset();
    dlclose(h);
  }
}
#endif
