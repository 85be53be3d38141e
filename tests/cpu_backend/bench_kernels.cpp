// Micro-benchmarks of the cpu_onednn kernels (not run by ctest):
//   build/tests/bench_cpu_kernels [--benchmark_filter=Gemv]
// GEMV: one matrix-vector product per iteration over a set of matrices larger
// than the last-level cache (so the weights stream from DRAM, as in decode);
// bytes/s counts weight bytes. GEMM: a T-row chunk (prefill); items/s = FLOP/s.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "corvid/sdk/dtype.h"
#include "kernels.h"

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

}  // namespace

BENCHMARK(BM_Dot)->ArgNames({"kind", "isa", "n"})->ArgsProduct({{0, 1, 2}, {0, 1, 2, 3}, {1024, 4096}});
BENCHMARK(BM_Gemv)->Apply(gemv_args)->UseRealTime();
BENCHMARK(BM_Gemm)
    ->ArgNames({"kind", "T", "rows", "cols", "threads"})
    ->ArgsProduct({{0, 1, 2}, {256}, {2048, 8192}, {2048}, {1, 2}})
    ->UseRealTime();

BENCHMARK_MAIN();
