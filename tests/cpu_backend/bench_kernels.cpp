// Micro-benchmarks of the cpu_onednn kernels (not run by ctest):
//   build/tests/bench_cpu_kernels [--benchmark_filter=Gemv]
// GEMV: one matrix-vector product per iteration over a set of matrices larger
// than the last-level cache (so the weights stream from DRAM, as in decode);
// bytes/s counts weight bytes. GEMM: a T-row chunk (prefill); items/s = FLOP/s.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <vector>


#include "corvid/runtime/huge_pages.h"
#include "corvid/sdk/dtype.h"
#include "kernels.h"

#include <immintrin.h>

using namespace corvid;
using namespace corvid::cpu;

namespace {

struct Weights {
  int rows, cols, copies;
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  std::vector<uint8_t> q;
  std::vector<float> mx, rx, my, ry;
  Weights(int r, int c, size_t min_bytes_f32) : rows(r), cols(c) {
    const size_t one = size_t(r) * c;
    copies = int(std::max<size_t>(1, min_bytes_f32 / (one * 4)));
    std::mt19937 g(1);
    std::normal_distribution<float> d(0.f, 0.02f);
    f32.resize(one * copies);
    for (auto& v : f32) v = d(g);
    bf16.resize(f32.size());
    q.resize(f32.size());
    for (size_t i = 0; i < f32.size(); ++i) bf16[i] = f32_to_bf16(f32[i]), q[i] = uint8_t(i * 2654435761u >> 24);
    mx.assign(r, 0.01f);
    rx.assign(r, 0.001f);
    my.assign(c, 0.01f);
    ry.assign(c, 0.001f);
  }
  Matrix get(Matrix::Kind k, int copy) const {
    Matrix m;
    m.rows = rows;
    m.cols = cols;
    m.kind = k;
    const size_t off = size_t(copy) * rows * cols;
    m.f32 = f32.data() + off;
    m.bf16 = bf16.data() + off;
    m.q = q.data() + off;
    m.mx = mx.data();
    m.rx = rx.data();
    m.my = my.data();
    m.ry = ry.data();
    return m;
  }
};

const Weights& weights(int rows, int cols) {
  // Enough copies that one pass over them (fp32) is >= 1 GiB: out of any cache.
  static std::map<std::pair<int, int>, std::unique_ptr<Weights>> cache;
  auto& w = cache[{rows, cols}];
  if (!w) w = std::make_unique<Weights>(rows, cols, size_t(1) << 30);
  return *w;
}

void BM_Gemv(benchmark::State& state) {
  const auto kind = Matrix::Kind(state.range(0));
  const Isa isa = Isa(state.range(1));
  const int rows = int(state.range(2)), cols = int(state.range(3)), threads = int(state.range(4));
  if (!isa_supported(isa)) {
    state.SkipWithError("ISA not supported on this CPU");
    return;
  }
  const Weights& w = weights(rows, cols);
  std::vector<float> x(cols, 0.5f), y(rows), xs(cols);
  std::vector<uint16_t> xb(cols + 64);
  GemvScratch s{xs.data(), xb.data()};
  ThreadPool pool(threads);
  int copy = 0;
  size_t bytes = 0;
  for (auto _ : state) {
    const Matrix m = w.get(kind, copy);
    gemv(isa, m, x.data(), y.data(), s, pool);
    benchmark::DoNotOptimize(y.data());
    bytes += m.weight_bytes();
    copy = (copy + 1) % w.copies;
  }
  state.SetBytesProcessed(int64_t(bytes));
  state.SetLabel(std::string(isa_name(isa)));
}

void BM_Gemm(benchmark::State& state) {
  const auto kind = Matrix::Kind(state.range(0));
  const int T = int(state.range(1)), rows = int(state.range(2)), cols = int(state.range(3)), threads = int(state.range(4));
  const Weights& w = weights(rows, cols);
  std::vector<float> X(size_t(T) * cols, 0.25f), Y(size_t(T) * rows);
  GemmContext ctx;
  ThreadPool pool(threads);
  for (auto _ : state) {
    ctx.gemm(w.get(kind, 0), X.data(), T, Y.data(), pool);
    benchmark::DoNotOptimize(Y.data());
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * 2 * T * int64_t(rows) * cols);
}

void BM_Dot(benchmark::State& state) {
  const auto kind = Matrix::Kind(state.range(0));
  const Isa isa = Isa(state.range(1));
  const int n = int(state.range(2));
  if (!isa_supported(isa)) {
    state.SkipWithError("ISA not supported on this CPU");
    return;
  }
  std::vector<float> a(n, 0.5f), b(n, 0.25f);
  std::vector<uint16_t> w(n, f32_to_bf16(0.5f)), xb(n + 64, f32_to_bf16(0.25f));
  std::vector<uint8_t> q(n, 7);
  for (auto _ : state) {
    float r = kind == Matrix::Kind::F32    ? dot_f32(isa, a.data(), b.data(), n)
              : kind == Matrix::Kind::BF16 ? dot_bf16(isa, w.data(), b.data(), xb.data(), n)
                                           : dot_u8(isa, q.data(), b.data(), n);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * n);
  state.SetLabel(std::string(isa_name(isa)));
}

void gemv_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"kind", "isa", "rows", "cols", "threads"});
  for (int kind : {0, 1, 2})
    for (int isa : {0, 1, 2, 3})
      for (auto [r, c] : {std::pair{2048, 2048}, std::pair{8192, 2048}, std::pair{2048, 8192}})
        for (int t : {1, 2}) {
          if (isa == 0 && (r != 2048 || c != 2048 || t != 1)) continue;  // scalar: one shape
          if (isa == 3 && kind != 1) continue;                             // BF16 dot only changes bf16
          b->Args({kind, isa, r, c, t});
        }
}


// One RWKV-4 token's products at a real shape, as the stage runs them: per
// block the r/k/v batch, the output, the FFN key/receptance batch and the FFN
// value, then the head; weights packed one after another in a 2 MiB-aligned
// MADV_HUGEPAGE buffer like MemoryWeightStore's arenas; the stage's
// StageProducts (so int8 takes the VNNI path where the CPU has it).
// Each iteration also reads the same buffer once with a plain summing loop on
// the same pool (contiguous slices, software prefetch), right after the token,
// so both see the same moment of this shared machine. Reported: bytes/s of the
// token's weights, `read_GBps` of the plain read and `of_read` = median read
// time / median token time, the kernels' and the pool's share of the decode
// roofline (the element-wise work between products is not included). This is
// the A/B measure docs/performance.md quotes; ratios between runs are stable
// to a few percent where absolute rates move by 10-20%.
struct TokenModel {
  int d, layers, vocab;
  Matrix::Kind kind;
  std::unique_ptr<HugePageBuffer> buf;
  std::vector<Matrix> m;  // per block: k v r o fk fr fv; then the head
  size_t bytes = 0;
  TokenModel(Matrix::Kind k, int d_, int layers_, int vocab_) : d(d_), layers(layers_), vocab(vocab_), kind(k) {
    std::vector<std::pair<int, int>> shapes;
    for (int l = 0; l < layers; ++l)
      for (auto s : {std::pair{d, d}, {d, d}, {d, d}, {d, d}, {4 * d, d}, {d, d}, {d, 4 * d}}) shapes.push_back(s);
    shapes.push_back({vocab, d});
    const size_t elem = k == Matrix::Kind::F32 ? 4 : k == Matrix::Kind::BF16 ? 2 : 1;
    auto align = [](size_t x) { return (x + 63) / 64 * 64; };
    size_t total = 0;
    for (auto [r, c] : shapes) total += align(size_t(r) * c * elem) + (k == Matrix::Kind::U8 ? align(8 * size_t(r)) + align(8 * size_t(c)) : 0);
    buf = std::make_unique<HugePageBuffer>(total);
    size_t off = 0;
    std::mt19937 g(3);
    for (auto [r, c] : shapes) {
      Matrix x;
      x.rows = r;
      x.cols = c;
      x.kind = k;
      uint8_t* w = static_cast<uint8_t*>(buf->data()) + off;
      const size_t n = size_t(r) * c;
      if (k == Matrix::Kind::F32) {
        float* f = reinterpret_cast<float*>(w);
        for (size_t i = 0; i < n; ++i) f[i] = float(int(g() % 2001) - 1000) * 1e-5f;
        x.f32 = f;
      } else if (k == Matrix::Kind::BF16) {
        uint16_t* b = reinterpret_cast<uint16_t*>(w);
        for (size_t i = 0; i < n; ++i) b[i] = f32_to_bf16(float(int(g() % 2001) - 1000) * 1e-5f);
        x.bf16 = b;
      } else {
        for (size_t i = 0; i < n; ++i) w[i] = uint8_t(g());
        x.q = w;
      }
      off += align(n * elem);
      bytes += n * elem;
      if (k == Matrix::Kind::U8) {
        float* side = reinterpret_cast<float*>(static_cast<uint8_t*>(buf->data()) + off);
        x.mx = side;
        x.rx = side + r;
        std::fill(side, side + 2 * size_t(r), 0.001f);
        off += align(8 * size_t(r));
        float* in = reinterpret_cast<float*>(static_cast<uint8_t*>(buf->data()) + off);
        x.my = in;
        x.ry = in + c;
        std::fill(in, in + 2 * size_t(c), 0.001f);
        off += align(8 * size_t(c));
        bytes += 8 * (size_t(r) + size_t(c));
      }
      m.push_back(x);
    }
  }
};

// A plain read of [p, p + n) floats: 4 accumulators, a software prefetch 4 KiB
// ahead (carries the stream across pages, as in corvid-bench's probe).
__attribute__((target("avx512f"))) float sum_slice(const float* p, size_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 64 <= n; i += 64) {
    for (int l = 0; l < 4; ++l) _mm_prefetch(reinterpret_cast<const char*>(p + i + 16 * l) + 4096, _MM_HINT_T0);
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  float s = 0;
  for (float v : lanes) s += v;
  return s;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

void BM_DecodeStream(benchmark::State& state) {
  if (!__builtin_cpu_supports("avx512f")) {
    state.SkipWithError("the plain-read comparison needs AVX-512");
    return;
  }
  const auto kind = Matrix::Kind(state.range(0));
  const int d = int(state.range(1)), layers = int(state.range(2)), threads = int(state.range(3));
  const Isa isa = detect_isa();
  static std::map<std::tuple<int, int, int>, std::unique_ptr<TokenModel>> cache;
  auto& tm = cache[{int(kind), d, layers}];
  if (!tm) tm = std::make_unique<TokenModel>(kind, d, layers, 50277);
  const TokenModel& M = *tm;
  std::vector<float> x(size_t(4) * d, 0.25f), a(size_t(4) * d), b(size_t(4) * d), c(size_t(4) * d), head(size_t(M.vocab));
  for (int i = 0; i < 4 * d; ++i) x[size_t(i)] = float((i * 37) % 101 - 50) * 0.01f;
  ThreadPool pool(threads);
  StageProducts products;
  products.reserve(4 * d, threads);
  const float* all = static_cast<const float*>(M.buf->data());
  const size_t per = M.buf->size() / 4 / size_t(threads) / 64 * 64;
  std::vector<float> part(static_cast<size_t>(threads));
  std::vector<double> token_s, read_s;
  using Clock = std::chrono::steady_clock;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    for (int l = 0; l < layers; ++l) {
      const Matrix* w = &M.m[size_t(l) * 7];
      products.run(isa, {{&w[0], x.data(), a.data()}, {&w[1], x.data() + d, b.data()}, {&w[2], x.data() + 2 * d, c.data()}}, 1, pool);
      products.run(isa, {{&w[3], a.data(), b.data()}}, 1, pool);
      products.run(isa, {{&w[4], x.data(), a.data()}, {&w[5], x.data() + d, c.data()}}, 1, pool);
      products.run(isa, {{&w[6], a.data(), b.data()}}, 1, pool);
    }
    products.run(isa, {{&M.m.back(), x.data(), head.data()}}, 1, pool);
    benchmark::DoNotOptimize(head.data());
    const auto t1 = Clock::now();
    pool.for_chunks(threads, [&](int t, int) { part[size_t(t)] = sum_slice(all + size_t(t) * per, per); });
    benchmark::DoNotOptimize(part.data());
    const auto t2 = Clock::now();
    token_s.push_back(std::chrono::duration<double>(t1 - t0).count());
    read_s.push_back(std::chrono::duration<double>(t2 - t1).count() * double(M.bytes) / double(per * 4 * size_t(threads)));
    state.SetIterationTime(token_s.back());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(M.bytes));
  state.counters["read_GBps"] = double(M.bytes) / median(read_s) / 1e9;
  state.counters["of_read"] = median(read_s) / median(token_s);
  state.SetLabel(std::string(isa_name(isa)));
}

}  // namespace

BENCHMARK(BM_Dot)->ArgNames({"kind", "isa", "n"})->ArgsProduct({{0, 1, 2}, {0, 1, 2, 3}, {1024, 4096}});
BENCHMARK(BM_Gemv)->Apply(gemv_args)->UseRealTime();
BENCHMARK(BM_Gemm)
    ->ArgNames({"kind", "T", "rows", "cols", "threads"})
    ->ArgsProduct({{0, 1, 2}, {256}, {2048, 8192}, {2048}, {1, 2}})
    ->UseRealTime();

// RWKV-4 430M (24 x 1024) and 1.5B (24 x 2048), 1 and 2 threads.
BENCHMARK(BM_DecodeStream)
    ->ArgNames({"kind", "d", "layers", "threads"})
    ->ArgsProduct({{0, 1, 2}, {1024, 2048}, {24}, {1, 2}})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
