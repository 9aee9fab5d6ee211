// The bookkeeping of a context's thread (tensorrt/slot_loop.h) with the GPU work replaced by
// fakes: several threads share one queue; every batch is handed back exactly once, failed issues
// included; each thread has at most two batches issued, collects them in the order it issued
// them, and never issues into the buffer set of the batch still running; queued chores (freeing
// pinned frames) all get done; stop drains the queue; a thread that could not start takes nothing.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tensorrt/slot_loop.h"
#include "test_support.h"

using fm_test::check;

namespace {

struct TJob {
  int id = -1;
};

struct TFlight {
  int id;
  int set;
};

struct Shared {
  std::mutex m;
  std::condition_variable cv;
  std::deque<TJob> queue;
  bool stop = false;
  int chores = 0;  // under m
  std::mutex log_m;
  std::map<int, int> handed_back;  // id -> times
  std::map<int, std::string> how;  // id -> "ok" / "failed"
  std::atomic<int> violations{0};
};

struct FakeOps {
  Shared& s;
  int thread;
  std::vector<int> issued, collected;  // this thread's order
  int in_flight = 0;
  std::mt19937 rng;

  bool chores() const { return s.chores > 0; }
  void do_chores(std::unique_lock<std::mutex>& lock) {
    const int n = s.chores;
    s.chores = 0;
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::microseconds(10 * n));
    lock.lock();
  }
  void hand_back(int id, const char* what) {
    std::lock_guard<std::mutex> l(s.log_m);
    s.handed_back[id] += 1;
    s.how[id] = what;
  }
  std::unique_ptr<TFlight> issue(TJob&& job, int set, const TFlight* running) {
    if (set != 0 && set != 1) ++s.violations;
    if (running && running->set == set) ++s.violations;  // would overwrite the running batch's buffers
    if (in_flight > 1) ++s.violations;  // two already issued and not collected
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
    if (job.id % 7 == 3) {  // a failed issue: handed back at once
      hand_back(job.id, "failed");
      return nullptr;
    }
    ++in_flight;
    issued.push_back(job.id);
    return std::make_unique<TFlight>(TFlight{job.id, set});
  }
  void collect(std::unique_ptr<TFlight> f) {
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
    --in_flight;
    collected.push_back(f->id);
    hand_back(f->id, "ok");
  }
};

}  // namespace

int main() {
  Shared s;
  constexpr int kThreads = 3, kJobs = 1500;
  std::vector<FakeOps> ops;
  for (int t = 0; t < kThreads; ++t) ops.push_back(FakeOps{s, t, {}, {}, 0, std::mt19937(static_cast<unsigned>(t + 1))});
  FakeOps broken{s, 99, {}, {}, 0, std::mt19937(7)};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] { fm::trt::slot_loop<TJob, TFlight>(s.m, s.cv, s.queue, s.stop, true, ops[static_cast<size_t>(t)]); });
  // A context whose buffers could not be allocated: it must take no work.
  threads.emplace_back([&] { fm::trt::slot_loop<TJob, TFlight>(s.m, s.cv, s.queue, s.stop, false, broken); });

  std::mt19937 rng(42);
  for (int i = 0; i < kJobs; ++i) {
    {
      std::lock_guard<std::mutex> l(s.m);
      s.queue.push_back(TJob{i});
      if (i % 10 == 0) s.chores += 1;
    }
    s.cv.notify_one();
    if (rng() % 4 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 400));
  }
  {
    std::lock_guard<std::mutex> l(s.m);
    s.stop = true;
  }
  s.cv.notify_all();
  for (auto& t : threads) t.join();

  int missing = 0, twice = 0, failed = 0;
  for (int i = 0; i < kJobs; ++i) {
    const int n = s.handed_back.count(i) ? s.handed_back[i] : 0;
    missing += n == 0;
    twice += n > 1;
    failed += s.how[i] == "failed";
  }
  check(missing == 0, "every batch is handed back", std::to_string(missing) + " never were");
  check(twice == 0, "no batch is handed back twice", std::to_string(twice) + " were");
  check(failed == (kJobs + 3) / 7, "failed issues are handed back as failures", std::to_string(failed));
  check(s.violations == 0, "at most two issued per thread, never into the running batch's set",
        std::to_string(s.violations.load()) + " violations");
  int taken = 0;
  for (const FakeOps& o : ops) {
    check(o.issued == o.collected, "thread " + std::to_string(o.thread) + " collects in the order it issued");
    check(o.in_flight == 0, "thread " + std::to_string(o.thread) + " ends with nothing in flight");
    taken += static_cast<int>(o.issued.size());
  }
  check(taken > 0 && taken == kJobs - failed, "the issued batches are all the others", std::to_string(taken));
  check(broken.issued.empty(), "a context that could not start takes no work");
  check(s.queue.empty() && s.chores == 0, "stop drains the queue and the chores");
  std::printf("slot loop: %d passed, %d failed\n", fm_test::g_passed, fm_test::g_failed);
  return fm_test::g_failed == 0 ? 0 : 1;
}
