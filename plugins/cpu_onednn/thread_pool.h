// The one thread pool of a CPU stage: threads - 1 persistent workers plus the
// calling thread, created with the stage and joined when it is destroyed (no
// thread creation per token).
//
// A job is n chunks handed out from a shared counter; the caller takes part
// and returns once every chunk is done. Unlike an OpenMP parallel region there
// is no barrier on thread *arrival*: a worker that another process kept off
// its core simply finds no chunk left when it wakes, and nobody waits for it
// (on the 2-core machine this project is measured on, a barrier that waits for
// a descheduled thread turns a 10 ms token into 300 ms). oneDNN runs inside
// the chunks with one OpenMP thread, so the pool is the only source of
// parallelism and threads are never oversubscribed.
//
// Idle workers spin briefly (the element-wise work between two products is
// short) and then sleep on a futex (std::atomic::wait).
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

  // (generation << 32) | next chunk: a chunk is claimed by a CAS that also
  // checks the job is still the one the thread saw.
  std::atomic<uint64_t> claim_{0};
  std::atomic<uint32_t> generation_{0};  // workers wait on this
  std::atomic<int> done_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<int> n_{0};
  std::atomic<ChunkFn> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<bool> stop_{false};
  uint32_t gen_ = 0;  // caller side
  std::vector<std::thread> workers_;
};

}  // namespace corvid::cpu
