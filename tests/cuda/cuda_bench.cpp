// corvid-cuda-bench: speed of one CUDA stage on synthetic weights of a real
// model shape, through the backend's public contract (sdk only, no framework).
//
//   corvid-cuda-bench --shape 1.5B --precision fp16i8 [--resident 12] [--tokens 64] [--prefill 256]
//
// Weights are synthetic prepared tensors (speed does not depend on values; every
// block aliases the same host buffers, so a 3B shape needs little host RAM).
// Prints load time, decode ms/token (min and median of 3 runs), the weight bytes
// read per token, the achieved bandwidth and its fraction of the device's HBM
// peak (memory clock x bus width), and prefill tokens/s.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "corvid/sdk/weights_util.h"
#include "cuda_util.h"
#include "layout_v4.h"

using namespace corvid;

namespace {

struct Shape {
  int L, C;
};
const std::map<std::string, Shape> kShapes = {{"169M", {12, 768}}, {"430M", {24, 1024}}, {"1.5B", {24, 2048}},
                                              {"3B", {32, 2560}},  {"7B", {32, 4096}},   {"14B", {40, 5120}}};

// Prepared tensors of every block alias one set of buffers.
class SyntheticPrepared : public WeightSource {
 public:
  SyntheticPrepared(const ModelHParams& hp, Precision p, bool head) {
    const DType at = p.atype;
    auto buf = [&](const std::string& key, size_t bytes) -> void* {
      auto& b = bufs_[key];
      b.resize(bytes);
      return b.data();
    };
    uint64_t s = 0x9E3779B97F4A7C15ull;
    auto rnd = [&] {  // xorshift64*, uniform in [-1, 1)
      s ^= s >> 12;
      s ^= s << 25;
      s ^= s >> 27;
      return float((s * 2685821657736338717ull) >> 40) / float(1ull << 23) - 1.f;
    };
    auto fill_at = [&](void* d, size_t n, float lo, float hi) {
      std::vector<float> v(n);
      for (float& z : v) z = lo + (hi - lo) * 0.5f * (rnd() + 1.f);
      cuda::store_as(at, v.data(), d, n);
    };
    auto vec = [&](const std::string& key, int64_t n, DType dt, float lo, float hi) {
      void* d = buf(key, size_t(n) * dtype_size(dt));
      if (dt == DType::F32) {
        for (int64_t i = 0; i < n; ++i) static_cast<float*>(d)[i] = lo + (hi - lo) * 0.5f * (rnd() + 1.f);
      } else {
        fill_at(d, size_t(n), lo, hi);
      }
      protos_[key] = TensorView::contiguous(d, dt, {n});
    };
    auto mat = [&](const std::string& key, cuda::MatShape sh) {
      const size_t n = size_t(sh.in) * size_t(sh.out);
      if (!p.quantized()) {
        void* d = buf(key, n * dtype_size(p.wtype));
        const float a = 1.f / std::sqrt(float(sh.in));
        fill_at(d, n, -a, a);
        protos_[key] = TensorView::contiguous(d, p.wtype, {sh.out, sh.in});
        return;
      }
      auto* q = static_cast<uint8_t*>(buf(key, n));
      for (size_t i = 0; i < n; ++i) q[i] = uint8_t(int((rnd() + 1.f) * 127.5f));
      protos_[key] = TensorView::contiguous(q, DType::U8, {sh.out, sh.in});
      const float a = 1.f / std::sqrt(float(sh.in));
      vec(key + "_mx", sh.out, at, -a, -a / 2);
      vec(key + "_rx", sh.out, at, a / 256, a / 128);
      vec(key + "_my", sh.in, at, -a / 4, 0.f);
      vec(key + "_ry", sh.in, at, 1.f / 16, 1.f / 8);
    };
    for (const char* v : cuda::kBlockAtypeVectors) {
      const bool w = std::strstr(v, ".weight") != nullptr, mixv = std::strstr(v, "time_mix") != nullptr;
      vec(v, hp.n_embd, at, w ? 0.9f : (mixv ? 0.2f : -0.1f), w ? 1.1f : (mixv ? 0.8f : 0.1f));
    }
    vec("att.time_decay", hp.n_att, DType::F32, -2.f, -0.05f);
    vec("att.time_first", hp.n_att, DType::F32, -1.f, 1.f);
    for (int m = 0; m < cuda::kMatsPerBlock; ++m)
      mat(cuda::mat_suffix(cuda::Mat(m)), cuda::mat_shape(cuda::Mat(m), hp));
    if (head) {
      vec("ln_out.weight", hp.n_embd, at, 0.9f, 1.1f);
      vec("ln_out.bias", hp.n_embd, at, -0.1f, 0.1f);
      mat("head.weight", cuda::head_shape(hp));
    }
  }
  const TensorView* find(std::string_view name) const override {
    std::string key(name);
    if (key.rfind("blocks.", 0) == 0) key = key.substr(key.find('.', 7) + 1);  // blocks.N.<suffix> -> <suffix>
    auto it = protos_.find(key);
    return it == protos_.end() ? nullptr : &it->second;
  }
  std::string origin() const override { return "synthetic"; }

 private:
  std::map<std::string, std::vector<uint8_t>> bufs_;
  std::map<std::string, TensorView> protos_;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr, "corvid-cuda-bench: %s\n", msg);
  std::fprintf(stderr,
               "usage: corvid-cuda-bench --shape 169M|430M|1.5B|3B|7B|14B --precision fp16|fp16i8|bf16|fp32|... "
               "[--resident N (stream the rest: *N+)] [--tokens 64] [--prefill 256] [--device 0]\n");
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  std::string shape = "169M", prec = "fp16";
  int resident = -1, tokens = 64, prefill = 256, device = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + a).c_str());
      return argv[++i];
    };
    if (a == "--shape") shape = next();
    else if (a == "--precision") prec = next();
    else if (a == "--resident") resident = std::atoi(next().c_str());
    else if (a == "--tokens") tokens = std::atoi(next().c_str());
    else if (a == "--prefill") prefill = std::atoi(next().c_str());
    else if (a == "--device") device = std::atoi(next().c_str());
    else usage(("unknown option " + a).c_str());
  }
  auto sh = kShapes.find(shape);
  if (sh == kShapes.end()) usage(("unknown shape " + shape).c_str());
  auto p = precision_from_name(prec);
  if (!p) usage(("unknown precision " + prec).c_str());
  try {
    ModelHParams hp;
    hp.arch = Arch::V4;
    hp.n_layer = sh->second.L;
    hp.n_embd = hp.n_att = sh->second.C;
    hp.n_ffn = 4 * sh->second.C;
    hp.n_vocab = 50277;
    hp.rescale_layer = p->atype == DType::F16 ? 6 : 0;
    StageSpec spec;
    spec.device = "cuda:" + std::to_string(device);
    spec.device_index = device;
    spec.precision = *p;
    spec.first_block = 0;
    spec.end_block = hp.n_layer;
    spec.has_head = true;
    spec.stream_first = resident >= 0 && resident < hp.n_layer ? resident : -1;
    spec.chunk_len = std::max(1, prefill);
    auto be = cuda::make_backend(p->quantized() ? "cuda_int8" : "cuda_fp16", p->quantized());
    be->check_device(spec);
    SyntheticPrepared prepared(hp, *p, true);
    double t0 = now_s();
    auto stage = be->create_stage(spec, hp, prepared);
    const double load_s = now_s() - t0;
    auto st = stage->new_state();
    std::vector<float> x(size_t(spec.chunk_len) * hp.n_embd), logits(size_t(hp.n_vocab));
    uint64_t seed = 1;
    auto fresh_x = [&](int T) {
      for (int i = 0; i < T * hp.n_embd; ++i) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[size_t(i)] = float(int64_t(seed >> 40) % 2001 - 1000) / 1000.f;
      }
    };
    ForwardOptions o;
    o.logits = logits.data();
    for (int i = 0; i < 8; ++i) {
      fresh_x(1);
      stage->forward(x.data(), 1, *st, o);
    }
    std::vector<double> per_tok;
    for (int rep = 0; rep < 3; ++rep) {
      t0 = now_s();
      for (int i = 0; i < tokens; ++i) {
        fresh_x(1);
        stage->forward(x.data(), 1, *st, o);
      }
      per_tok.push_back((now_s() - t0) / tokens);
    }
    std::sort(per_tok.begin(), per_tok.end());
    double prefill_tps = 0;
    if (prefill > 1) {
      fresh_x(prefill);
      stage->forward(x.data(), prefill, *st, o);  // warm-up (cuBLAS heuristics)
      double best = 1e30;
      for (int rep = 0; rep < 3; ++rep) {
        fresh_x(prefill);
        t0 = now_s();
        stage->forward(x.data(), prefill, *st, o);
        best = std::min(best, now_s() - t0);
      }
      prefill_tps = prefill / best;
    }
    int clock_khz = 0, bus_bits = 0;
    cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device);
    cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device);
    const double peak = 2.0 * double(clock_khz) * 1e3 * double(bus_bits) / 8.0;  // bytes/s (DDR)
    const double bytes = double(stage->resident_weight_bytes() + stage->streamed_weight_bytes());
    const double achieved = bytes / per_tok[0];
    std::printf("%s\n", stage->describe().c_str());
    std::printf(
        "RESULT shape=%s precision=%s resident=%d load_s=%.2f decode_ms_min=%.3f decode_ms_median=%.3f "
        "decode_tok_s=%.1f weight_GB_per_tok=%.3f achieved_GB_s=%.1f hbm_peak_GB_s=%.1f roofline_fraction=%.3f "
        "prefill_tokens=%d prefill_tok_s=%.1f streamed_GB_total=%.3f\n",
        shape.c_str(), prec.c_str(), resident, load_s, per_tok[0] * 1e3, per_tok[1] * 1e3, 1.0 / per_tok[0], bytes / 1e9,
        achieved / 1e9, peak / 1e9, peak > 0 ? (bytes / peak) / per_tok[0] : 0.0, prefill, prefill_tps,
        double(stage->streamed_bytes_total()) / 1e9);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "corvid-cuda-bench: %s\n", e.what());
    return 1;
  }
}
