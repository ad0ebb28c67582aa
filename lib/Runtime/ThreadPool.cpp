//===- ThreadPool.cpp - the pool compiled models run their loops on -------===//
//
// Part of moe-mlir's runtime.
//
//===----------------------------------------------------------------------===//

#include "moe-mlir/Runtime/ThreadPool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace moe_rt {
namespace {

thread_local bool insideTask = false;

/// Workers wait for a new generation, run their chunk, and count down.
/// Waiting spins briefly before blocking: the loops of one model step come
/// in quick succession.
class Pool {
public:
  explicit Pool(int threads) : threads_(std::max(threads, 1)) {
    for (int i = 1; i < threads_; ++i)
      workers_.emplace_back([this, i] { work(i); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (std::thread &t : workers_)
      t.join();
  }
  int threads() const { return threads_; }

  void run(ParallelTask task, void *closure, int64_t n) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = task;
      closure_ = closure;
      n_ = n;
      remaining_.store(threads_ - 1);
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    runChunk(0);
    while (remaining_.load(std::memory_order_acquire) != 0)
      std::this_thread::yield();
  }

private:
  void runChunk(int index) {
    int64_t begin = n_ * index / threads_, end = n_ * (index + 1) / threads_;
    if (begin < end) {
      insideTask = true;
      task_(closure_, begin, end);
      insideTask = false;
    }
  }

  void work(int index) {
    uint64_t seen = 0;
    for (;;) {
      uint64_t now = generation_.load(std::memory_order_acquire);
      for (int spin = 0; now == seen && spin < 20000; ++spin) {
        std::this_thread::yield();
        now = generation_.load(std::memory_order_acquire);
      }
      if (now == seen) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
        now = generation_.load();
      }
      seen = now;
      if (stop_)
        return;
      runChunk(index);
      remaining_.fetch_sub(1, std::memory_order_release);
    }
  }

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> remaining_{0};
  bool stop_ = false;
  ParallelTask task_ = nullptr;
  void *closure_ = nullptr;
  int64_t n_ = 0;
};

int defaultThreads() {
  if (const char *env = std::getenv("MOE_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0)
      return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

std::mutex poolMutex;
std::unique_ptr<Pool> pool;
int requestedThreads = 0;

/// Held by the one caller whose loop the pool runs. Pool::run serves one
/// caller at a time; the pool is only created or replaced under it.
std::mutex runMutex;

int wantedThreads() {
  std::lock_guard<std::mutex> lock(poolMutex);
  return requestedThreads ? requestedThreads : defaultThreads();
}

/// The pool, (re)created with the wanted size; the caller holds runMutex.
Pool &thePool() {
  int want = wantedThreads();
  std::lock_guard<std::mutex> lock(poolMutex);
  if (!pool || pool->threads() != want)
    pool = std::make_unique<Pool>(want);
  return *pool;
}

/// Runs the whole loop on the calling thread, as a task (its nested loops
/// too).
void runInline(ParallelTask task, void *closure, int64_t n) {
  bool outer = !insideTask;
  insideTask = true;
  task(closure, 0, n);
  if (outer)
    insideTask = false;
}

} // namespace

void parallelFor(ParallelTask task, void *closure, int64_t n) {
  if (n <= 0)
    return;
  if (insideTask || n == 1) {
    task(closure, 0, n);
    return;
  }
  // Several threads may run models at once (the ranks of an in-process
  // expert-parallel group): one gets the pool, the others run their loops
  // on their own threads. Iterations are independent, so the results are
  // the same either way.
  std::unique_lock<std::mutex> busy(runMutex, std::try_to_lock);
  if (!busy.owns_lock()) {
    runInline(task, closure, n);
    return;
  }
  Pool &p = thePool();
  if (p.threads() == 1) {
    busy.unlock();
    runInline(task, closure, n);
    return;
  }
  p.run(task, closure, n);
}

int numThreads() { return wantedThreads(); }

void setNumThreads(int threads) {
  std::lock_guard<std::mutex> lock(poolMutex);
  requestedThreads = std::max(threads, 1);
}

} // namespace moe_rt

extern "C" void moe_rt_parallel_for(moe_rt::ParallelTask task, void *closure,
                                    int64_t n) {
  moe_rt::parallelFor(task, closure, n);
}
