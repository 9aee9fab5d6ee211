// What the pipeline (pipeline.h) needs from an engine: its I/O tensors, one CUDA stream per
// execution context, and enqueueing a batch on one. TrtEngine (runtime.h) is the TensorRT one;
// CopyEngine (tests/copy_engine.h) is a stand-in that needs no TensorRT. Plain C++.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tensorrt/cuda_driver.h"

namespace fm::trt {

struct TensorDesc {
  std::string name;
  bool input = false;
  int dtype = 0;               // nvinfer1::DataType's value (0 float32, 1 float16, 7 bfloat16, ...)
  std::string dtype_name;      // "float32", "float16", "bfloat16", "int32", ...
  size_t element_size = 0;     // bytes; 0 for sub-byte types
  std::vector<int64_t> shape;  // as the engine has it; -1 where dynamic (the batch)
  int64_t min_batch = 0, opt_batch = 0, max_batch = 0;  // inputs with a dynamic batch: profile 0
};

class Engine {
 public:
  virtual ~Engine() = default;

  const std::vector<TensorDesc>& tensors() const { return tensors_; }
  // Bytes of tensors()[i] with the dynamic dimension(s) set to `batch` (0 for sub-byte types).
  size_t tensor_bytes(size_t i, int64_t batch) const {
    if (i >= tensors_.size()) return 0;
    size_t n = tensors_[i].element_size;
    for (int64_t v : tensors_[i].shape) n *= static_cast<size_t>(v < 0 ? batch : v);
    return n;
  }

  virtual int contexts() const = 0;
  virtual cu::Stream stream(int slot) const = 0;
  // Binds `addresses` (one device pointer per tensors() entry, same order, 256-byte aligned, each
  // at least tensor_bytes(i, batch)) and enqueues a batch on the slot's stream. Asynchronous.
  // A slot is used by one thread at a time; different slots run concurrently.
  virtual bool enqueue(int slot, int64_t batch, const std::vector<void*>& addresses, std::string* error) = 0;
  // Batch sizes of a slot that replay a CUDA graph, and those that fell back to plain enqueues.
  virtual int graphs_ready(int /*slot*/) const { return 0; }
  virtual int graphs_failed(int /*slot*/) const { return 0; }

 protected:
  std::vector<TensorDesc> tensors_;
};

}  // namespace fm::trt
