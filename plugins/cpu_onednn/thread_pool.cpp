#include "thread_pool.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace corvid::cpu {

namespace {
// About 0.1-0.3 ms of pause instructions before a worker sleeps.
constexpr int kSpins = 2000;
constexpr int kCallerSpinsBeforeYield = 20000;
// A chunk index no job reaches (n is an int): the counter is closed.
constexpr uint64_t kClosedIndex = 0x7fffffffu;
}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_main(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_seq_cst);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::work(uint32_t gen, int thread) {
  for (;;) {
    uint64_t c = claim_.load(std::memory_order_acquire);
    if (uint32_t(c >> 32) != gen) return;  // that job is over
    const int n = n_.load(std::memory_order_relaxed);
    if (int(uint32_t(c)) >= n) return;
    if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) continue;
    // Claimed with the job still current: the job cannot finish (and its
    // fields cannot change) before this chunk is counted done.
    fn_.load(std::memory_order_relaxed)(ctx_.load(std::memory_order_relaxed), int(uint32_t(c)), thread);
    done_.fetch_add(1, std::memory_order_release);
  }
}

void ThreadPool::worker_main(int index) {
  omp_set_num_threads(1);  // oneDNN inside a chunk runs on this thread only
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = generation_.load(std::memory_order_acquire);
    for (int i = 0; g == seen && i < kSpins; ++i) {
      _mm_pause();
      g = generation_.load(std::memory_order_acquire);
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
  const uint32_t g = ++gen_;
  // Close the counter under the new generation BEFORE the job's fields change.
  // A worker still in work() for the previous job may hold a stale claim word
  // (old generation, index >= the old n); if it read the new n_ it could pass
  // the bound check and, with the counter still on the old generation, win its
  // compare-exchange: it would run a chunk of the new job twice and count it
  // in done_, letting this call return before every chunk finished. After this
  // exchange (acq_rel: the stores below cannot move before it) every such
  // compare-exchange fails, and a worker seeing the closed index returns.
  claim_.exchange((uint64_t(g) << 32) | kClosedIndex, std::memory_order_acq_rel);
  fn_.store(fn, std::memory_order_relaxed);
  ctx_.store(ctx, std::memory_order_relaxed);
  n_.store(n, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  claim_.store(uint64_t(g) << 32, std::memory_order_release);  // open: index 0
  generation_.store(g, std::memory_order_seq_cst);
  if (sleepers_.load(std::memory_order_seq_cst) > 0) generation_.notify_all();
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  work(g, 0);
  omp_set_num_threads(saved);
  for (int i = 0; done_.load(std::memory_order_acquire) < n; ++i) {
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
