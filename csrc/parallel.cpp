// The work sharing of jeancore's CPU kernels (parallel_chunks in common.h): chunks claimed from a
// shared counter by the caller and by helpers from torch's inter-op pool (at::launch); the
// caller returns when the chunks are done, never waiting for a helper that has not started.
#include "common.h"

#include <c10/util/ParallelGuard.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>

namespace jeancore {

namespace {
thread_local bool tl_in_chunks = false;

struct ChunkJob {
  ChunkJob(int64_t n, c10::function_ref<void(int64_t)> f) : n_chunks(n), run(f) {}
  const int64_t n_chunks;
  // Refers to the caller's work; only called for a claimed chunk c < n_chunks, and the caller
  // does not return before every such chunk is done, so it is alive whenever it is called.
  c10::function_ref<void(int64_t)> run;
  std::atomic<int64_t> next{0}, done{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;  // the first exception of a chunk, rethrown by the caller
};

// Claims and runs chunks until none is left.
void work(ChunkJob& job) {
  const bool outer = tl_in_chunks;
  tl_in_chunks = true;
  c10::ParallelGuard guard(true);  // torch's parallel_for inside a chunk runs inline
  for (int64_t c = job.next.fetch_add(1, std::memory_order_relaxed); c < job.n_chunks;
       c = job.next.fetch_add(1, std::memory_order_relaxed)) {
    if (!job.failed.load(std::memory_order_relaxed)) {
      try {
        job.run(c);
      } catch (...) {
        if (!job.failed.exchange(true)) job.error = std::current_exception();
      }
    }
    if (job.done.fetch_add(1, std::memory_order_acq_rel) + 1 == job.n_chunks) {
      job.done.notify_all();
    }
  }
  tl_in_chunks = outer;
}
}  // namespace

bool in_chunks() { return tl_in_chunks; }

namespace {
// Tasks runnable on the machine now (the 4th field of /proc/loadavg, "running/total"), or -1.
int64_t running_tasks() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return -1;
  double l1 = 0, l5 = 0, l15 = 0;
  long running = 0, total = 0;
  const int got = std::fscanf(f, "%lf %lf %lf %ld/%ld", &l1, &l5, &l15, &running, &total);
  std::fclose(f);
  return got == 5 ? static_cast<int64_t>(running) : -1;
}

std::atomic<int64_t> g_running{-1};
std::atomic<int64_t> g_read_ms{-1000};
}  // namespace

int64_t threads_for_load(int64_t threads) {
  static const bool enabled = [] {
    const char* e = std::getenv("JEANCORE_LOAD_AWARE");
    return e == nullptr || std::strcmp(e, "0") != 0;
  }();
  if (!enabled || threads <= 1) return threads;
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t running = g_running.load(std::memory_order_relaxed);
  if (now - g_read_ms.load(std::memory_order_relaxed) >= 20) {
    running = running_tasks();
    g_running.store(running, std::memory_order_relaxed);
    g_read_ms.store(now, std::memory_order_relaxed);
  }
  if (running < 1) return threads;
  const int64_t others = running - 1;  // the calling thread is one of the running tasks
  return std::clamp<int64_t>(threads - others, 1, threads);
}

void run_chunks(int64_t n_chunks, int64_t threads, c10::function_ref<void(int64_t)> chunk) {
  auto job = std::make_shared<ChunkJob>(n_chunks, chunk);
  for (int64_t h = 1; h < threads; ++h) {
    at::launch([job] { work(*job); });
  }
  work(*job);
  for (int64_t d = job->done.load(std::memory_order_acquire); d < n_chunks;
       d = job->done.load(std::memory_order_acquire)) {
    job->done.wait(d, std::memory_order_acquire);  // sleeps (futex) until a helper's last chunk
  }
  if (job->error) std::rethrow_exception(job->error);
}

}  // namespace jeancore
