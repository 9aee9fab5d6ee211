// A deserialized TensorRT engine and its execution contexts: one IExecutionContext per CUDA
// stream (Triton's pattern), each stream created once and reused. (When a batch's inputs may be
// refilled, the pipeline knows from its own event after preprocessing: pipeline.cc.)
//
// CUDA without linking it: streams, events and memory come from the driver API opened with
// dlopen (cuda_driver.h explains why the driver API rather than libcudart.so.<12|13>); the
// engine's own CUDA runtime shares the device's primary context, which each thread that enqueues
// makes current (cu::PrimaryContext::bind).
//
// CUDA graphs (trtexec's --useCudaGraph): per stream and batch size, graph_runner.h (shared
// with the stand-in engine of the tests, so its bookkeeping runs without TensorRT), each batch
// size on an execution context of its own that shares the stream's activation memory.
//
// Plain C++ interface (no TensorRT header needed to include it). Compiled into the addon only
// with FM_HAVE_TENSORRT. NOT YET RUN ON A GPU: compile-checked against the 10.14 and 11.x headers,
// and run over stand-in TensorRT libraries by check-tensorrt.sh (tests/fake_trt_runtime.cc).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tensorrt/cuda_driver.h"
#include "tensorrt/engine.h"

namespace nvinfer1 {
class IExecutionContext;
}

namespace fm::trt {

class TrtEngine final : public Engine {
 public:
  // Deserializes `plan` on CUDA device `device` and creates `contexts` (>= 1) execution
  // contexts, each with its own non-blocking stream. nullptr and *error when TensorRT refuses
  // the plan (another TensorRT build, another GPU, a damaged file): the caller rebuilds it,
  // never trusts it. Binds the calling thread to the device's primary context.
  static std::unique_ptr<TrtEngine> load(const void* plan, size_t size, int contexts, int device, std::string* error,
                                         bool cuda_graphs = true);
  ~TrtEngine() override;
  TrtEngine(const TrtEngine&) = delete;
  TrtEngine& operator=(const TrtEngine&) = delete;

  int contexts() const override { return static_cast<int>(slots_.size()); }
  cu::Stream stream(int slot) const override;
  // Sets every dynamic input's batch, binds `addresses` (one device pointer per tensors()
  // entry, same order, 256-byte aligned, each at least tensor_bytes(i, batch)) and enqueues on
  // the slot's stream. Asynchronous: the results are there once the stream has run. A slot is
  // used by one thread at a time; different slots run concurrently.
  bool enqueue(int slot, int64_t batch, const std::vector<void*>& addresses, std::string* error) override;
  int graphs_ready(int slot) const override;
  int graphs_failed(int slot) const override;

  struct Impl;

 private:
  TrtEngine() = default;
  struct Slot;
  // A new execution context for slot s: with graphs, on the slot's shared activation memory.
  bool make_context(Slot& s, std::unique_ptr<nvinfer1::IExecutionContext>* out, std::string* error) const;
  // Sets every dynamic input's batch on context c (within profile 0), or says why not.
  bool set_batch(nvinfer1::IExecutionContext& c, int64_t batch, std::string* error) const;
  bool check_output_shapes(std::string* error);
  cu::PrimaryContext cuda_;
  std::unique_ptr<Impl> impl_;  // TensorRT objects (logger, runtime, engine)
  std::vector<std::unique_ptr<Slot>> slots_;
  bool cuda_graphs_ = true;
  std::atomic<bool> graphs_off_{false};  // a capture failed on some context
  int64_t memory_bytes_ = 0;              // with graphs: each slot's activation memory
};

}  // namespace fm::trt
