// A stand-in for a TensorRT engine (tensorrt/engine.h) that needs no TensorRT: its "inference"
// copies three 16-float slices of each face's preprocessed input into its outputs "head", "mid"
// and "tail" ([N,16] each, of the input's type: float32, or float16, for which the pipeline
// writes a half input and converts half outputs). The slices are then compared with the CPU
// preprocessing of the same faces. Used by pipeline_gpu_test and by the addon's stand-in build
// (FM_ENGINE_STANDIN: test/tensorrt-binding.test.ts). With `graphs`, its enqueues go through
// the CUDA-graph runner TensorRT's engine uses (tensorrt/graph_runner.h). The device's primary
// context must be bound when it is made and destroyed.
// FM_COPY_ENGINE_THROW_AT=n: the n-th enqueue throws std::bad_alloc; FM_COPY_ENGINE_THROW_COLLECT_AT=n:
// the n-th graphs_ready() (read when a batch is collected) does; FM_COPY_ENGINE_THROW_COPIES_AT=n:
// the n-th run of its copies (with graphs, the 2nd is the first capture); what a pipeline thread
// must survive (pipeline_host_throw*).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <memory>
#include <string>
#include <vector>

#include "preprocess/preprocess.h"
#include "tensorrt/cuda_driver.h"
#include "tensorrt/engine.h"
#include "tensorrt/graph_runner.h"

namespace fm_test {

constexpr int kSlice = 16;
// Where each output's slice starts in a face's input: its first values (red plane, first row), in
// the green plane, and its last values (blue plane, last row: the grid's last block writes them).
constexpr int kSliceAt[] = {0, fm::kInputFloats / 2 + 1000, fm::kInputFloats - kSlice};
constexpr int kOutputs = 3;

class CopyEngine : public fm::trt::Engine {
 public:
  CopyEngine(int contexts, int64_t max_batch, bool half = false, int64_t min_batch = 1, bool graphs = false)
      : elem_(half ? 2 : 4) {
    namespace cu = fm::cu;
    const cu::Api* a = cu::driver();
    streams_.resize(static_cast<size_t>(contexts), nullptr);
    for (cu::Stream& s : streams_) a->StreamCreate(&s, cu::kStreamNonBlocking);
    for (int k = 0; k < contexts; ++k) runners_.push_back(std::make_unique<fm::trt::GraphRunner>(graphs, &graphs_off_));
    const int dtype = half ? 1 : 0;
    const char* type = half ? "float16" : "float32";
    tensors_ = {fm::trt::TensorDesc{"input", true, dtype, type, elem_, {-1, 3, fm::kInput, fm::kInput}, min_batch, 8, max_batch}};
    for (const char* name : {"head", "mid", "tail"})
      tensors_.push_back(fm::trt::TensorDesc{name, false, dtype, type, elem_, {-1, kSlice}, 0, 0, 0});
  }
  ~CopyEngine() override {
    runners_.clear();  // graphs before their streams
    for (fm::cu::Stream s : streams_)
      if (s != nullptr) fm::cu::driver()->StreamDestroy(s);
  }
  void reshape(size_t tensor, std::vector<int64_t> shape) { tensors_[tensor].shape = std::move(shape); }
  int contexts() const override { return static_cast<int>(streams_.size()); }
  fm::cu::Stream stream(int slot) const override { return streams_[static_cast<size_t>(slot)]; }
  bool enqueue(int slot, int64_t batch, const std::vector<void*>& addr, std::string* error) override {
    throw_at("FM_COPY_ENGINE_THROW_AT", enqueues_);
    const fm::trt::TensorDesc& input = tensors_[0];
    if (batch < input.min_batch || batch > input.max_batch) {  // as TrtEngine (setInputShape) refuses it
      *error = "batch " + std::to_string(batch) + " is outside the engine's profile [" + std::to_string(input.min_batch) + ", " +
               std::to_string(input.max_batch) + "]";
      return false;
    }
    const auto copy = [&](std::string* why) { return copies(slot, batch, addr, why); };
    return runners_[static_cast<size_t>(slot)]->run(batch, addr, stream(slot), copy, error);
  }
  int graphs_ready(int slot) const override {
    throw_at("FM_COPY_ENGINE_THROW_COLLECT_AT", collects_);
    return runners_[static_cast<size_t>(slot)]->ready();
  }
  int graphs_failed(int slot) const override { return runners_[static_cast<size_t>(slot)]->failed(); }

 private:
  static void throw_at(const char* variable, std::atomic<long>& calls) {
    const char* v = std::getenv(variable);
    if (v != nullptr && ++calls == std::atol(v)) throw std::bad_alloc();
  }
  mutable std::atomic<long> enqueues_{0}, collects_{0}, copies_{0};

  // The "inference": each face's three slices of its input into the outputs.
  bool copies(int slot, int64_t batch, const std::vector<void*>& addr, std::string* error) {
    throw_at("FM_COPY_ENGINE_THROW_COPIES_AT", copies_);
    namespace cu = fm::cu;
    const cu::Api* a = cu::driver();
    const auto in = reinterpret_cast<cu::DevicePtr>(addr[0]);
    for (int64_t k = 0; k < batch; ++k) {
      const cu::DevicePtr face = in + static_cast<cu::DevicePtr>(k) * fm::kInputFloats * elem_;
      for (int o = 0; o < kOutputs; ++o) {
        const cu::Result r = a->MemcpyDtoDAsync(reinterpret_cast<cu::DevicePtr>(addr[o + 1]) + k * kSlice * elem_,
                                                face + kSliceAt[o] * elem_, kSlice * elem_, stream(slot));
        if (r != cu::kSuccess) {
          *error = "cuMemcpyDtoDAsync: " + cu::error_text(r);
          return false;
        }
      }
    }
    return true;
  }

  size_t elem_;
  std::vector<fm::cu::Stream> streams_;
  std::atomic<bool> graphs_off_{false};
  std::vector<std::unique_ptr<fm::trt::GraphRunner>> runners_;
};

}  // namespace fm_test
