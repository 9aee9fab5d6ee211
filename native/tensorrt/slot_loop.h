// The loop of one execution context's thread (pipeline.cc): take batches from the queue all
// contexts share and keep up to two of them issued, so that the next batch's host-side work and
// launches happen while the previous one runs on the GPU; collect them in the order issued, so
// every batch is handed back exactly once. Plain C++ with the GPU work behind `ops`, so that
// slot_loop_test checks the bookkeeping on the CPU.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>

namespace fm::trt {

// `ops` provides, for a batch type Job and an issued-batch type Flight:
//   bool chores() const                        — housekeeping waiting (under the lock)
//   void do_chores(std::unique_lock<...>&)     — does it (may unlock and relock)
//   std::unique_ptr<Flight> issue(Job&&, int set, const Flight* running)
//       issues the batch with buffer set `set` (0 or 1, never the running one's), after
//       waiting until `running` (if any) has consumed its host-side inputs. On failure it hands
//       the job back with the error itself and returns nullptr.
//   void collect(std::unique_ptr<Flight>)      — waits for it and hands it back
// Returns when `stop` is set and nothing is queued or running; `ok` false (the context could
// not start) returns at the first wake-up without taking work.
template <class Job, class Flight, class Ops>
void slot_loop(std::mutex& m, std::condition_variable& cv, std::deque<Job>& queue, const bool& stop, bool ok, Ops& ops) {
  std::unique_ptr<Flight> running;  // issued, not collected
  int running_set = 1;
  std::unique_lock<std::mutex> lock(m);
  for (;;) {
    if (!running) cv.wait(lock, [&] { return stop || !queue.empty() || ops.chores(); });
    if (ops.chores()) ops.do_chores(lock);
    bool have = false;
    Job job;
    if (!queue.empty() && ok) {
      job = std::move(queue.front());
      queue.pop_front();
      have = true;
    } else if (!running && (stop || !ok || queue.empty())) {
      if (stop || !ok) break;
      continue;  // woken for chores only
    }
    lock.unlock();
    std::unique_ptr<Flight> next;
    int next_set = running_set;
    if (have) {
      next_set = running ? 1 - running_set : 0;
      next = ops.issue(std::move(job), next_set, running.get());
    }
    if (running) ops.collect(std::move(running));
    if (next) {
      running = std::move(next);
      running_set = next_set;
    }
    lock.lock();
  }
}

}  // namespace fm::trt
