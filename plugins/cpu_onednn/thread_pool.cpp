#include "thread_pool.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace corvid::cpu {

namespace {
// How long an idle worker spins before it sleeps on the futex. The caller's
// serial work between two jobs (element-wise work, an RWKV-6 block's mixes)
// can take tens of microseconds; a worker that slept meanwhile costs a futex
// wake-up (tens of microseconds on a VM) at the next job. Measured in time,
// not pause instructions: a pause takes 14 ns on this machine's CPU and about
// 140 on others.
constexpr auto kSpinBeforeSleep = std::chrono::microseconds(300);
constexpr int kCallerSpinsBeforeYield = 20000;
constexpr int kMaxUnitsPerRange = 0xffff;

constexpr uint64_t pack(uint32_t gen, uint32_t front, uint32_t back) {
  return (uint64_t(gen) << 32) | (uint64_t(front) << 16) | uint64_t(back);
}
constexpr uint32_t gen_of(uint64_t w) { return uint32_t(w >> 32); }
constexpr uint32_t front_of(uint64_t w) { return uint32_t(w >> 16) & 0xffffu; }
constexpr uint32_t back_of(uint64_t w) { return uint32_t(w) & 0xffffu; }
}  // namespace

ThreadPool::ThreadPool(int threads) : ranges_(size_t(std::max(1, threads))) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_main(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_seq_cst);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

// A successful claim is made with the job still current: the job cannot
// finish (and its fields cannot change) before this unit is counted done.
bool ThreadPool::claim_front(uint32_t gen, int range, int& unit) {
  Range& r = ranges_[size_t(range)];
  uint64_t w = r.word.load(std::memory_order_acquire);
  for (;;) {
    if (gen_of(w) != gen || front_of(w) >= back_of(w)) return false;
    if (r.word.compare_exchange_weak(w, pack(gen, front_of(w) + 1, back_of(w)), std::memory_order_acq_rel)) {
      unit = r.first.load(std::memory_order_relaxed) + int(front_of(w));
      return true;
    }
  }
}

bool ThreadPool::claim_back(uint32_t gen, int range, int& unit) {
  Range& r = ranges_[size_t(range)];
  uint64_t w = r.word.load(std::memory_order_acquire);
  for (;;) {
    if (gen_of(w) != gen || front_of(w) >= back_of(w)) return false;
    if (r.word.compare_exchange_weak(w, pack(gen, front_of(w), back_of(w) - 1), std::memory_order_acq_rel)) {
      unit = r.first.load(std::memory_order_relaxed) + int(back_of(w)) - 1;
      return true;
    }
  }
}

void ThreadPool::work(uint32_t gen, int thread) {
  const int P = size();
  // The range's first unit and the job's fields were written before the range
  // opened; a successful claim (acquire) makes them visible.
  // Units finished by this thread are counted once, when it leaves the job:
  // an atomic add per unit on a line that every thread writes moved that
  // line between the cores every few microseconds (about 2% of a 2-thread
  // int8 decode). The job cannot finish before this thread's add, so its
  // claimed units are still covered.
  int finished = 0;
  auto run = [&](int unit) {
    const int per = unit_.load(std::memory_order_relaxed), n = n_.load(std::memory_order_relaxed);
    const ChunkFn fn = fn_.load(std::memory_order_relaxed);
    void* ctx = ctx_.load(std::memory_order_relaxed);
    for (int c = unit * per, end = std::min(n, c + per); c < end; ++c) fn(ctx, c, thread);
    ++finished;
  };
  int unit;
  while (claim_front(gen, thread, unit)) run(unit);
  for (int k = 1; k < P; ++k) {
    const int victim = (thread + k) % P;
    while (claim_back(gen, victim, unit)) run(unit);
  }
  if (finished > 0) done_.fetch_add(finished, std::memory_order_release);
}

void ThreadPool::worker_main(int index) {
  omp_set_num_threads(1);  // oneDNN inside a chunk runs on this thread only
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = generation_.load(std::memory_order_acquire);
    if (g == seen) {
      const auto until = std::chrono::steady_clock::now() + kSpinBeforeSleep;
      for (int i = 1; g == seen; ++i) {
        _mm_pause();
        g = generation_.load(std::memory_order_acquire);
        if ((i & 63) == 0 && std::chrono::steady_clock::now() > until) break;
      }
    }
    if (g == seen) {
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      generation_.wait(seen, std::memory_order_seq_cst);
      sleepers_.fetch_sub(1, std::memory_order_seq_cst);
      continue;
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = g;
    work(g, index);
  }
}

void ThreadPool::run(int n, ChunkFn fn, void* ctx) {
  const int P = size();
  const uint32_t g = ++gen_;
  // Close every range under the new generation BEFORE the job's fields
  // change. A worker still in work() for the previous job may hold a stale
  // range word (old generation); had it read the new fields it could otherwise
  // win its compare-exchange against a word still on the old generation and
  // run a chunk of the new job twice, letting this call return before every
  // chunk finished. After these exchanges (acq_rel: the stores below cannot
  // move before them) every such compare-exchange fails, and a worker that
  // sees the new generation in a closed (empty) range returns.
  for (Range& r : ranges_) r.word.exchange(pack(g, 0, 0), std::memory_order_acq_rel);
  const int per = std::max(1, int((int64_t(n) + int64_t(P) * kMaxUnitsPerRange - 1) / (int64_t(P) * kMaxUnitsPerRange)));
  const int units = (n + per - 1) / per;
  fn_.store(fn, std::memory_order_relaxed);
  ctx_.store(ctx, std::memory_order_relaxed);
  n_.store(n, std::memory_order_relaxed);
  unit_.store(per, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  for (int t = 0; t < P; ++t) {
    const int b = int(int64_t(units) * t / P), e = int(int64_t(units) * (t + 1) / P);
    ranges_[size_t(t)].first.store(b, std::memory_order_relaxed);
    ranges_[size_t(t)].word.store(pack(g, 0, uint32_t(e - b)), std::memory_order_release);  // open
  }
  generation_.store(g, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) generation_.notify_all();
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  work(g, 0);
  omp_set_num_threads(saved);
  for (int i = 0; done_.load(std::memory_order_acquire) < units; ++i) {
    if (i < kCallerSpinsBeforeYield) _mm_pause();
    else std::this_thread::yield();
  }
}

int physical_cores() {
  // Physical cores: count distinct (package, core) pairs; SMT siblings share one.
  int n = 0;
  std::vector<std::string> seen;
  for (int cpu = 0; cpu < 4096; ++cpu) {
    std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    FILE* f = std::fopen((base + "core_id").c_str(), "r");
    if (!f) break;
    int core = -1, pkg = -1;
    if (std::fscanf(f, "%d", &core) != 1) core = cpu;
    std::fclose(f);
    if (FILE* g = std::fopen((base + "physical_package_id").c_str(), "r")) {
      if (std::fscanf(g, "%d", &pkg) != 1) pkg = 0;
      std::fclose(g);
    }
    std::string key = std::to_string(pkg) + ":" + std::to_string(core);
    if (std::find(seen.begin(), seen.end(), key) == seen.end()) seen.push_back(key);
  }
  n = int(seen.size());
  if (n <= 0) n = int(std::thread::hardware_concurrency());
  return std::max(1, n);
}

}  // namespace corvid::cpu
