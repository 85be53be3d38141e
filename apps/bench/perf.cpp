// corvid-bench --perf (see perf.h).
//
// What is measured, in this order (so the peak RSS is the model's, not the
// bandwidth probe's buffer):
//   1. load: Engine::load wall time (read, prepare, create stages);
//   2. prefill: a `prompt_tokens` prompt of random ids fed in sequence mode
//      (chunks of chunk_len), logits of the last token only, from a fresh
//      state; one untimed short warm-up call first (oneDNN primitive creation,
//      first-touch of scratch);
//   3. decode: continuing from the prompt's state, greedy argmax tokens one at
//      a time with logits, `warmup_tokens` untimed, then `decode_tokens` timed
//      one by one; the median is reported (min and mean too);
//   4. peak RSS (VmHWM) at that point;
//   5. read bandwidth: the same number of threads sums a buffer of
//      `bandwidth_mib` MiB, best of 3 plain and 3 prefetching passes, once
//      right after the load (before step 2) and once here; the better of the
//      two moments is the machine's read bandwidth. On a shared machine one
//      moment can be busy (a probe that ran while another process held a core
//      read half the rate and put a decode at 151% of its "roofline"); two
//      moments minutes apart rarely both are. The first probe's buffer is not
//      counted in the peak RSS: the peak is read before it and the kernel's
//      counter reset after it (/proc/self/clear_refs); where that reset is
//      not allowed, only the second probe runs.
// roofline_ms_per_token = weight bytes read per token / bandwidth.
#include "perf.h"

#include <immintrin.h>
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "corvid/runtime/engine.h"
#include "corvid/runtime/huge_pages.h"
#include "corvid/sdk/error.h"

namespace po = boost::program_options;
using namespace corvid;
using Clock = std::chrono::steady_clock;

namespace corvid_bench {

void add_perf_options(po::options_description& desc, PerfOptions& o) {
  // clang-format off
  desc.add_options()
    ("perf", "speed: load time, prefill tokens/s, decode ms/token, peak RSS, bandwidth roofline")
    ("prompt-tokens", po::value(&o.prompt_tokens), "with --perf: prefill prompt length (default 512)")
    ("prefill-runs", po::value(&o.prefill_runs), "with --perf: prefill repetitions, each from a fresh state (default 2)")
    ("chunk", po::value(&o.chunk_len), "with --perf: sequence-mode chunk length (default 256, like ChatRWKV)")
    ("warmup-tokens", po::value(&o.warmup_tokens), "with --perf: untimed decode tokens (default 8)")
    ("decode-tokens", po::value(&o.decode_tokens), "with --perf: timed decode tokens, median reported (default 128)")
    ("bandwidth-mib", po::value(&o.bandwidth_mib), "with --perf: read-bandwidth probe buffer in MiB (default 1024; 0 = skip)")
    ("seed", po::value(&o.seed), "with --perf: seed of the random prompt ids (default 1)");
  // clang-format on
}

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Physical cores (distinct package:core pairs), the engine's default thread count.
int physical_cores() {
  std::set<std::pair<int, int>> seen;
  for (int cpu = 0; cpu < 4096; ++cpu) {
    const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    FILE* f = std::fopen((base + "core_id").c_str(), "r");
    if (!f) break;
    int core = cpu, pkg = 0;
    if (std::fscanf(f, "%d", &core) != 1) core = cpu;
    std::fclose(f);
    if (FILE* g = std::fopen((base + "physical_package_id").c_str(), "r")) {
      if (std::fscanf(g, "%d", &pkg) != 1) pkg = 0;
      std::fclose(g);
    }
    seen.insert({pkg, core});
  }
  int n = int(seen.size());
  if (n <= 0) n = int(std::thread::hardware_concurrency());
  return std::max(1, n);
}

// Peak resident set so far: VmHWM of /proc/self/status (resettable, see
// reset_peak_rss), getrusage's ru_maxrss where /proc is not there.
uint64_t peak_rss_bytes() {
  if (FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    unsigned long long kib = 0;
    bool found = false;
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "VmHWM: %llu kB", &kib) == 1) {
        found = true;
        break;
      }
    std::fclose(f);
    if (found) return uint64_t(kib) * 1024;
  }
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return uint64_t(ru.ru_maxrss) * 1024;  // Linux reports KiB
}

// Resets VmHWM to the current RSS (Linux: "5" to /proc/PID/clear_refs).
bool reset_peak_rss() {
  FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (!f) return false;
  const bool ok = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

std::string cpu_model() {
  FILE* f = std::fopen("/proc/cpuinfo", "r");
  if (!f) return "";
  char line[512];
  std::string out;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "model name", 10) == 0) {
      const char* c = std::strchr(line, ':');
      if (c) out = c + 2;
      break;
    }
  }
  std::fclose(f);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// Sum of n floats; several independent accumulators so the loop is bound by
// loads, not by the add latency. One variant per ISA, chosen by CPUID. With
// PF, a software prefetch 4 KiB ahead (what the GEMV kernels do) carries the
// stream across page boundaries; the probe reports the better of the two.
template <bool PF>
__attribute__((target("avx512f"))) float sum_avx512(const float* p, size_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    if (PF)
      for (int l = 0; l < 4; ++l) _mm_prefetch(reinterpret_cast<const char*>(p + i + 16 * l) + 4096, _MM_HINT_T0);
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
  }
  float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  for (; i < n; ++i) s += p[i];
  return s;
}

template <bool PF>
__attribute__((target("avx2"))) float sum_avx2(const float* p, size_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    if (PF)
      for (int l = 0; l < 2; ++l) _mm_prefetch(reinterpret_cast<const char*>(p + i + 16 * l) + 4096, _MM_HINT_T0);
    a0 = _mm256_add_ps(a0, _mm256_load_ps(p + i));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(p + i + 8));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(p + i + 16));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(p + i + 24));
  }
  __m256 v = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  float s = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
  for (; i < n; ++i) s += p[i];
  return s;
}

float sum_scalar(const float* p, size_t n) {
  float a[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) a[k] += p[i + k];
  float s = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
  for (; i < n; ++i) s += p[i];
  return s;
}

}  // namespace

double measure_read_bandwidth(size_t bytes, int threads, int passes) {
  threads = std::max(1, threads);
  const size_t n = std::max<size_t>(bytes / sizeof(float) / 64 * 64, 64);
  // Placed like the prepared weights (MemoryWeightStore): 2 MiB-aligned and
  // advised MADV_HUGEPAGE, so that the roofline is the best read rate this
  // machine gives the weights' own page size, not a 4 KiB-page rate that
  // huge-page weights could beat (≈ +5% here).
  std::unique_ptr<HugePageBuffer> buf;
  try {
    buf = std::make_unique<HugePageBuffer>(n * sizeof(float));
  } catch (const Error& e) {
    throw Error(std::string("bandwidth probe: ") + e.what());
  }
  float* p = static_cast<float*>(buf->data());
  __builtin_cpu_init();
  const int isa = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
  // Each thread first-touches and later reads the same slice (NUMA-local pages).
  auto slice = [&](int t, size_t& b, size_t& e) {
    const size_t per = (n / 64 + threads - 1) / threads * 64;
    b = std::min(n, size_t(t) * per);
    e = std::min(n, b + per);
  };
#pragma omp parallel num_threads(threads)
  {
    size_t b, e;
    slice(omp_get_thread_num(), b, e);
    for (size_t i = b; i < e; ++i) p[i] = 1.0f;
  }
  double best = 0;
  volatile float sink = 0;
  for (int pass = 0; pass < 2 * std::max(1, passes); ++pass) {
    const bool pf = pass % 2 == 1;
    float total = 0;
    const auto t0 = Clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
      size_t b, e;
      slice(omp_get_thread_num(), b, e);
      if (isa == 2) total += pf ? sum_avx512<true>(p + b, e - b) : sum_avx512<false>(p + b, e - b);
      else if (isa == 1) total += pf ? sum_avx2<true>(p + b, e - b) : sum_avx2<false>(p + b, e - b);
      else total += sum_scalar(p + b, e - b);
    }
    const double s = seconds_since(t0);
    sink = sink + total;
    best = std::max(best, double(n * sizeof(float)) / s);
  }
  (void)sink;
  return best;
}

int run_perf(const PerfOptions& o) {
  if (o.model.empty()) throw Error("--perf needs --model FILE");
  if (o.prompt_tokens < 1) throw Error("--prompt-tokens must be at least 1");
  if (o.decode_tokens < 1) throw Error("--decode-tokens must be at least 1");
  if (o.prefill_runs < 1) throw Error("--prefill-runs must be at least 1");
  if (o.chunk_len < 1) throw Error("--chunk must be at least 1");
  if (o.warmup_tokens < 0) throw Error("--warmup-tokens must be at least 0");
  if (o.bandwidth_mib < 0) throw Error("--bandwidth-mib must be at least 0");

  EngineOptions eo = engine_default_options();
  eo.model_path = o.model;
  eo.strategy = o.strategy.empty() ? "cpu fp32" : o.strategy;
  eo.threads = o.threads;
  eo.chunk_len = o.chunk_len;
  eo.plugin_dirs = o.plugin_dirs;
  const auto t_load = Clock::now();
  std::unique_ptr<Engine> eng = Engine::load(eo);
  const double load_s = seconds_since(t_load);
  const int threads = o.threads > 0 ? o.threads : physical_cores();
  const int V = eng->hparams().n_vocab;

  // First bandwidth moment (see the top of this file), kept out of the peak RSS.
  const uint64_t load_peak_rss = peak_rss_bytes();
  double bw_before = 0.0;
  if (o.bandwidth_mib > 0 && reset_peak_rss()) {
    bw_before = measure_read_bandwidth(size_t(o.bandwidth_mib) << 20, threads, 3);
    if (!reset_peak_rss()) bw_before = 0.0;  // cannot keep its buffer out of the peak: not used
  }

  std::mt19937 rng(o.seed);
  std::uniform_int_distribution<int32_t> pick(0, V - 1);
  std::vector<int32_t> prompt(static_cast<size_t>(o.prompt_tokens));
  for (auto& t : prompt) t = pick(rng);
  std::vector<float> logits(static_cast<size_t>(V));

  // Warm-up: primitive creation and first touch, on a throwaway state.
  {
    State warm = eng->new_state();
    const size_t n = std::min<size_t>(prompt.size(), size_t(std::min(o.chunk_len, 16)));
    eng->forward(std::span<const int32_t>(prompt.data(), n), warm, logits.data());
  }

  // Prefill.
  std::vector<double> prefill_s;
  State st = eng->new_state();
  for (int r = 0; r < o.prefill_runs; ++r) {
    st.reset();
    const auto t0 = Clock::now();
    eng->forward(prompt, st, logits.data());
    prefill_s.push_back(seconds_since(t0));
  }
  std::sort(prefill_s.begin(), prefill_s.end());
  const double prefill_best = double(o.prompt_tokens) / prefill_s.front();
  const double prefill_median = double(o.prompt_tokens) / prefill_s[prefill_s.size() / 2];

  // Decode: greedy continuation of the prompt, one token per call, with logits.
  auto argmax = [&] { return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin()); };
  int32_t tok = argmax();
  for (int i = 0; i < o.warmup_tokens; ++i) {
    eng->forward(std::span<const int32_t>(&tok, 1), st, logits.data());
    tok = argmax();
  }
  std::vector<double> ms(static_cast<size_t>(o.decode_tokens));
  for (int i = 0; i < o.decode_tokens; ++i) {
    const auto t0 = Clock::now();
    eng->forward(std::span<const int32_t>(&tok, 1), st, logits.data());
    ms[size_t(i)] = seconds_since(t0) * 1e3;
    tok = argmax();
  }
  std::vector<double> sorted = ms;
  std::sort(sorted.begin(), sorted.end());
  const double decode_median = sorted.size() % 2 ? sorted[sorted.size() / 2]
                                                 : 0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]);
  const double decode_min = sorted.front();
  const double decode_mean = std::accumulate(ms.begin(), ms.end(), 0.0) / double(ms.size());

  const uint64_t rss = std::max(load_peak_rss, peak_rss_bytes());
  const uint64_t wbytes = eng->weight_bytes_per_token();
  const double bw_after = o.bandwidth_mib > 0 ? measure_read_bandwidth(size_t(o.bandwidth_mib) << 20, threads, 3) : 0.0;
  const double bw = std::max(bw_before, bw_after);
  const double roofline_ms = bw > 0 ? double(wbytes) / bw * 1e3 : 0.0;
  const double pct = roofline_ms > 0 ? 100.0 * roofline_ms / decode_median : 0.0;
  // Decode-mode feeding of the same prompt would take decode_median per token.
  const double prefill_speedup = prefill_best * decode_median / 1e3;

  if (o.json) {
    nlohmann::json j;
    j["model"] = o.model;
    j["strategy"] = eng->plan().strategy;
    j["threads"] = threads;
    j["cpu"] = cpu_model();
    j["stages"] = eng->describe_stages();
    j["load_s"] = load_s;
    j["prompt_tokens"] = o.prompt_tokens;
    j["chunk_len"] = o.chunk_len;
    j["prefill_tokens_per_s"] = prefill_best;
    j["prefill_tokens_per_s_median"] = prefill_median;
    j["prefill_speedup_vs_decode"] = prefill_speedup;
    j["decode_tokens"] = o.decode_tokens;
    j["decode_ms_per_token"] = decode_median;
    j["decode_ms_per_token_min"] = decode_min;
    j["decode_ms_per_token_mean"] = decode_mean;
    j["peak_rss_bytes"] = rss;
    j["weight_bytes_per_token"] = wbytes;
    j["bandwidth_gb_per_s"] = bw / 1e9;
    j["bandwidth_gb_per_s_after_load"] = bw_before / 1e9;  // 0: not measured
    j["bandwidth_gb_per_s_after_decode"] = bw_after / 1e9;
    j["roofline_ms_per_token"] = roofline_ms;
    j["roofline_percent"] = pct;
    std::cout << j.dump(1) << "\n";
  } else {
    std::printf("model      %s\nstrategy   %s\nthreads    %d  (%s)\n", o.model.c_str(), eng->plan().strategy.c_str(),
                threads, cpu_model().c_str());
    for (const std::string& s : eng->describe_stages()) std::printf("stage      %s\n", s.c_str());
    std::printf("load       %.2f s\n", load_s);
    std::printf("prefill    %.1f tokens/s best, %.1f median (%d tokens, chunk %d, %d runs); %.1fx decode-mode feeding\n",
                prefill_best, prefill_median, o.prompt_tokens, o.chunk_len, o.prefill_runs, prefill_speedup);
    std::printf("decode     %.2f ms/token median, %.2f min, %.2f mean (%d tokens after %d warm-up)\n", decode_median,
                decode_min, decode_mean, o.decode_tokens, o.warmup_tokens);
    std::printf("peak RSS   %.1f MiB\n", double(rss) / (1 << 20));
    std::printf("weights    %.3f GB read per token\n", double(wbytes) / 1e9);
    if (bw > 0)
      std::printf("bandwidth  %.1f GB/s read (%d threads, %d MiB; after load %.1f, after decode %.1f)\n"
                  "roofline   %.2f ms/token; decode at %.0f%% of it\n",
                  bw / 1e9, threads, o.bandwidth_mib, bw_before / 1e9, bw_after / 1e9, roofline_ms, pct);
  }
  std::fflush(nullptr);
  return 0;
}

}  // namespace corvid_bench
