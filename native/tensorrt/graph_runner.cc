// CUDA graphs per batch size over a plain enqueue (see graph_runner.h).
#include "tensorrt/graph_runner.h"

#include <cstdio>

namespace fm::trt {

GraphRunner::~GraphRunner() {
  const cu::Api* a = cu::driver();
  for (auto& g : graphs_)
    if (a != nullptr && g.second.exec != nullptr) a->GraphExecDestroy(g.second.exec);
}

bool GraphRunner::plain(const Enqueue& enqueue, std::string* error) {
  const bool retry = after_failed_capture_;
  after_failed_capture_ = false;
  if (enqueue(error)) return true;
  // A failed capture can leave an error in the engine's own CUDA runtime that its next call
  // reports once (trtexec and Triton clear it with cudaGetLastError, which is not reachable from
  // here): enqueue once more rather than lose the batch.
  return retry && enqueue(error);
}

bool GraphRunner::run(int64_t batch, const std::vector<void*>& addresses, cu::Stream stream, const Enqueue& enqueue,
                      std::string* error) {
  if (!enabled_ || off_->load()) return plain(enqueue, error);
  const cu::Api* a = cu::driver();
  State& g = graphs_[batch];
  if (g.exec != nullptr && g.addresses == addresses) {
    const cu::Result r = a->GraphLaunch(g.exec, stream);
    if (r == cu::kSuccess) return true;
    if (cu::fatal(r)) {  // the context is gone: the pipeline reports the device lost
      *error = "cuGraphLaunch: " + cu::error_text(r);
      return false;
    }
    // Anything else: this size runs plainly from now on, this batch included.
    std::fprintf(stderr, "face-multitask: CUDA graph replay (batch %lld) failed, plain enqueues for that size: %s\n",
                 static_cast<long long>(batch), cu::error_text(r).c_str());
    a->GraphExecDestroy(g.exec);
    g.exec = nullptr;
    g.failed = true;
    return plain(enqueue, error);
  }
  if (g.exec != nullptr) {  // the buffers moved: capture again
    a->GraphExecDestroy(g.exec);
    g.exec = nullptr;
  }
  // This batch runs plainly. Then, as trtexec and Triton do, the same enqueue (this shape, these
  // addresses) is captured once that plain run has finished, so that none of the engine's set-up
  // work for a new shape lands in the graph; later batches of this size replay it.
  if (!plain(enqueue, error)) return false;
  if (g.failed) return true;
  cu::Result r = a->StreamSynchronize(stream);
  if (r != cu::kSuccess) return true;  // the batch's own error: its collection reports it
  r = a->StreamBeginCapture(stream, cu::kStreamCaptureModeThreadLocal);
  bool captured = false;
  std::string why = r == cu::kSuccess ? "" : "cuStreamBeginCapture: " + cu::error_text(r);
  if (r == cu::kSuccess) {
    std::string enqueue_error;
    cu::Graph graph = nullptr;
    try {
      captured = enqueue(&enqueue_error);
    } catch (...) {  // a failed capture (below); the stream must not stay capturing
      captured = false;
      enqueue_error = "an exception";
    }
    r = a->StreamEndCapture(stream, &graph);  // always: the stream leaves capture mode
    if (!captured) why = "the enqueue under capture: " + enqueue_error;
    else if (r != cu::kSuccess) why = "cuStreamEndCapture: " + cu::error_text(r);
    cu::GraphExec exec = nullptr;             // assigned only on success: a failed call may leave garbage
    if (captured && r == cu::kSuccess && graph != nullptr) {
      r = a->GraphInstantiate(&exec, graph, 0);
      if (r != cu::kSuccess) why = "cuGraphInstantiate: " + cu::error_text(r);
    }
    if (captured && r == cu::kSuccess) g.exec = exec;
    if (captured && r == cu::kSuccess && exec == nullptr) why = "the capture recorded no graph";
    if (graph != nullptr) a->GraphDestroy(graph);
  }
  if (!captured || r != cu::kSuccess || g.exec == nullptr) {
    // Said once per engine (the first runner to turn graphs off): why they are off.
    if (!off_->exchange(true))
      std::fprintf(stderr, "face-multitask: CUDA graph capture (batch %lld) failed, plain enqueues from now on: %s\n",
                   static_cast<long long>(batch), why.c_str());
    // Nothing captured ever runs; the batch already has. Whether an engine's enqueue can be
    // captured does not depend on the batch size: plain enqueues for every size from now on.
    if (g.exec != nullptr) a->GraphExecDestroy(g.exec);
    g.exec = nullptr;
    g.failed = true;
    after_failed_capture_ = true;
    return true;
  }
  g.addresses = addresses;
  return true;
}

int GraphRunner::ready() const {
  // Off (a capture failed on some context): graphs this one captured before no longer replay.
  if (!enabled_ || off_->load()) return 0;
  int n = 0;
  for (const auto& g : graphs_) n += g.second.exec != nullptr;
  return n;
}

int GraphRunner::failed() const {
  int n = 0;
  for (const auto& g : graphs_) n += g.second.failed;
  return n;
}

}  // namespace fm::trt
