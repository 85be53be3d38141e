// The one thread pool of a CPU stage: threads - 1 persistent workers plus the
// calling thread, created with the stage and joined when it is destroyed (no
// thread creation per token).
//
// A job is n chunks. Each thread owns one contiguous range of them (thread t
// of P: chunks [t n/P, (t+1) n/P)), takes its own chunks from the front and,
// when its range is empty, steals from the back of the others' ranges. So on a
// quiet machine every thread streams one contiguous part of the weights (the
// hardware prefetchers follow one stream per core; a shared counter handed the
// two cores alternating 64 KiB pieces and cost about 9% of a 2-thread int8
// decode), and a thread that another process keeps off its core loses its
// chunks to the others instead of holding everyone up. The caller takes part
// as thread 0 and returns once every chunk is done. Unlike an OpenMP parallel
// region there is no barrier on thread *arrival*: a worker that wakes late
// finds its range taken and nobody waits for it (on the 2-core machine this
// project is measured on, a barrier that waits for a descheduled thread turns
// a 10 ms token into 300 ms). oneDNN runs inside the chunks with one OpenMP
// thread, so the pool is the only source of parallelism and threads are never
// oversubscribed.
//
// Idle workers spin for up to 0.3 ms (the element-wise work between two
// products is short) and then sleep on a futex (std::atomic::wait).
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace corvid::cpu {

// Physical cores of this machine (distinct package:core pairs in sysfs; SMT
// siblings count once), the default thread count of a CPU stage.
int physical_cores();

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  // fn(ctx, chunk, thread) for chunk in [0, n); thread in [0, size()) is the
  // index of the thread running it (0 = the caller), for per-thread scratch.
  using ChunkFn = void (*)(void* ctx, int chunk, int thread);
  void run(int n, ChunkFn fn, void* ctx);

  template <typename F>
  void for_chunks(int n, F&& f) {
    if (n <= 0) return;
    if (n == 1 || workers_.empty()) {
      for (int i = 0; i < n; ++i) f(i, 0);
      return;
    }
    run(n, [](void* c, int i, int t) { (*static_cast<F*>(c))(i, t); }, &f);
  }

 private:
  void worker_main(int index);
  void work(uint32_t gen, int thread);
  bool claim_front(uint32_t gen, int range, int& unit);
  bool claim_back(uint32_t gen, int range, int& unit);

  // One range of claim units per thread, as one word (generation << 32) |
  // (front << 16) | back, front and back relative to the range's first unit:
  // a claim is a compare-exchange that also checks the job is still the one
  // the thread saw. A range holds at most 65535 units; jobs with more chunks
  // group several chunks into one unit.
  struct alignas(64) Range {
    std::atomic<uint64_t> word{0};
    std::atomic<int> first{0};  // first unit of the range (set before the range opens)
  };
  std::vector<Range> ranges_;
  std::atomic<uint32_t> generation_{0};  // workers wait on this
  alignas(64) std::atomic<int> done_{0};   // units finished
  std::atomic<int> sleepers_{0};
  std::atomic<int> n_{0};     // chunks
  std::atomic<int> unit_{1};  // chunks per unit
  std::atomic<ChunkFn> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<bool> stop_{false};
  uint32_t gen_ = 0;  // caller side
  std::vector<std::thread> workers_;
};

}  // namespace corvid::cpu
