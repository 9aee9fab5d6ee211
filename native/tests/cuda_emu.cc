// CUDA's execution model on the CPU (see cuda_emu.h): blocks dealt to worker threads, a block's
// threads as ucontext fibers switched at __syncthreads().
#include "cuda_emu.h"

#include <ucontext.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

namespace fm_emu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;  // generous: sanitizer builds use far more stack

struct Fiber {
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;
  bool done = false;
  unsigned barriers = 0;  // __syncthreads() calls passed
  Dim3 idx;
};

// One worker: runs whole blocks, one at a time, on its own thread.
struct Worker {
  ucontext_t scheduler;
  std::vector<Fiber> fibers;
  size_t current = 0;
  const std::function<void()>* kernel = nullptr;
};

thread_local Worker* tl_worker = nullptr;

void fiber_entry() {
  Worker* w = tl_worker;
  (*w->kernel)();
  w->fibers[w->current].done = true;  // returning resumes uc_link: the scheduler
}

// A fresh fiber for thread idx, starting at fiber_entry. Its own function: getcontext returns
// twice, which must not clobber a caller's loop variables.
void start_fiber(Worker& w, Fiber& f, Dim3 idx) {
  f.done = false;
  f.barriers = 0;
  f.idx = idx;
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack.get();
  f.ctx.uc_stack.ss_size = kStackBytes;
  f.ctx.uc_link = &w.scheduler;
  makecontext(&f.ctx, fiber_entry, 0);
}

// Runs one block to completion; false when its threads passed different numbers of barriers.
// Its threads take turns in ascending order in one barrier phase and in descending order in the
// next, starting the other way round in every other block: so a thread that reads what another
// wrote in the same phase (a missing __syncthreads()) reads it too early in some blocks, whichever
// of the two threads comes first.
bool run_block(Worker& w, Dim3 block_idx, Dim3 block, size_t linear) {
  blockIdx = block_idx;
  size_t t = 0;
  for (unsigned z = 0; z < block.z; ++z)
    for (unsigned y = 0; y < block.y; ++y)
      for (unsigned x = 0; x < block.x; ++x, ++t) start_fiber(w, w.fibers[t], Dim3{x, y, z});
  // One round per barrier phase: every live thread runs to its next __syncthreads() or its end.
  for (size_t phase = linear & 1; ; ++phase) {
    bool live = false;
    for (size_t k = 0; k < t; ++k) {
      const size_t i = (phase & 1) ? t - 1 - k : k;
      Fiber& f = w.fibers[i];
      if (f.done) continue;
      w.current = i;
      threadIdx = f.idx;
      swapcontext(&w.scheduler, &f.ctx);
      live = live || !f.done;
    }
    if (!live) break;
  }
  for (size_t i = 1; i < t; ++i)
    if (w.fibers[i].barriers != w.fibers[0].barriers) return false;
  return true;
}

}  // namespace

bool launch(Dim3 grid, Dim3 block, const std::function<void()>& kernel, const char** error) {
  const size_t threads = static_cast<size_t>(block.x) * block.y * block.z;
  const size_t blocks = static_cast<size_t>(grid.x) * grid.y * grid.z;
  if (threads == 0 || threads > 1024 || blocks == 0) {
    *error = "invalid launch shape";
    return false;
  }
  std::atomic<size_t> next{0};
  std::atomic<bool> diverged{false};
  auto work = [&] {
    Worker w;
    w.kernel = &kernel;
    w.fibers.resize(threads);
    for (Fiber& f : w.fibers) f.stack.reset(new char[kStackBytes]);
    tl_worker = &w;
    blockDim = block;
    gridDim = grid;
    for (size_t b = next++; b < blocks; b = next++) {
      const Dim3 idx{static_cast<unsigned>(b % grid.x), static_cast<unsigned>(b / grid.x % grid.y),
                     static_cast<unsigned>(b / (static_cast<size_t>(grid.x) * grid.y))};
      if (!run_block(w, idx, block, b)) diverged = true;
    }
    tl_worker = nullptr;
  };
  const size_t n = std::min<size_t>(blocks, std::max(1u, std::min(8u, std::thread::hardware_concurrency())));
  std::vector<std::thread> pool;
  for (size_t i = 1; i < n; ++i) pool.emplace_back(work);
  work();
  for (std::thread& th : pool) th.join();
  if (diverged) {
    *error = "__syncthreads() reached by some of a block's threads only";
    return false;
  }
  return true;
}

}  // namespace fm_emu

void __syncthreads() {
  fm_emu::Worker* w = fm_emu::tl_worker;
  fm_emu::Fiber& f = w->fibers[w->current];
  ++f.barriers;
  swapcontext(&f.ctx, &w->scheduler);
}
