// One execution context's CUDA graphs, one per batch size (trtexec's --useCudaGraph, Triton's
// per-batch-size graphs), over any plain enqueue: TensorRT's enqueueV3 in TrtEngine, the
// stand-in engine's copies in the tests.
//
// Per batch size: the first batch runs plainly (it is also TensorRT's warm-up for that shape and
// those addresses); once it has finished, the same enqueue is captured (thread-local capture
// mode) and instantiated, and later batches of that size with the same addresses replay the
// graph (other addresses: captured again). A capture or instantiation that fails is cleaned up
// and turns graphs off for the whole engine (every context shares the flag): plain enqueues from
// then on; the batch had already run, so nothing is lost. A replay that fails without losing the
// context turns that batch size off and runs the batch plainly; a context-fatal one is returned.
//
// Plain C++ over the driver API (cuda_driver.h): no TensorRT header. One thread at a time.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tensorrt/cuda_driver.h"

namespace fm::trt {

class GraphRunner {
 public:
  // The plain, asynchronous enqueue of this context on its stream; false with *error set.
  using Enqueue = std::function<bool(std::string* error)>;

  // enabled: graphs asked for. off: the engine's flag, set by any context whose capture failed.
  GraphRunner(bool enabled, std::atomic<bool>* off) : enabled_(enabled), off_(off) {}
  ~GraphRunner();
  GraphRunner(const GraphRunner&) = delete;
  GraphRunner& operator=(const GraphRunner&) = delete;

  // Runs one batch on `stream` with `addresses` bound: a replay, or `enqueue` (then a capture).
  bool run(int64_t batch, const std::vector<void*>& addresses, cu::Stream stream, const Enqueue& enqueue,
           std::string* error);
  int ready() const;   // batch sizes replaying a graph
  int failed() const;  // batch sizes whose capture or replay failed

 private:
  struct State {
    bool failed = false;
    cu::GraphExec exec = nullptr;
    std::vector<void*> addresses;  // what the graph was captured with
  };
  bool plain(const Enqueue& enqueue, std::string* error);

  bool enabled_;
  std::atomic<bool>* off_;
  std::map<int64_t, State> graphs_;
  bool after_failed_capture_ = false;  // the next plain enqueue may see the failed capture's error
};

}  // namespace fm::trt
