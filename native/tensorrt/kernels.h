// The CUDA preprocessing kernels (native/preprocess/preprocess_cuda.cu) as the addon runs them:
// compiled to a fatbin at build time, embedded in the addon's binary (cmake/embed.cmake), loaded
// into the current context with cuModuleLoadData and launched with cuLaunchKernel through the
// dlopen'ed driver API, so the .node links no CUDA runtime. Builds without nvcc have no kernels
// (embedded() is false): the TensorRT pipeline then preprocesses on the CPU.
// Plain C++ (no CUDA header). kernel_module_test checks it on a GPU (it passed on an H200).
#pragma once

#include <string>

#include "preprocess/preprocess_kernel.h"
#include "tensorrt/cuda_driver.h"

namespace fm::trt {

class PreprocessKernels {
 public:
  // Whether this build carries the kernels.
  static bool embedded();

  PreprocessKernels() = default;
  ~PreprocessKernels();  // unloads the module: its context must be current on this thread
  PreprocessKernels(const PreprocessKernels&) = delete;
  PreprocessKernels& operator=(const PreprocessKernels&) = delete;

  // Loads the module into the current context; false with *error (no kernels in this build, or
  // none for this GPU and driver).
  bool load(std::string* error);
  bool loaded() const { return module_ != nullptr; }

  // launch_preprocess's contract (preprocess_cuda.h) on the driver API: n faces from the device
  // descriptors d_faces into d_out, asynchronously on `stream`.
  cu::Result launch(const FaceDesc* d_faces, int n, CropMode crop, ResizeMode resize, OutDtype dtype, void* d_out,
                    cu::Stream stream) const;

 private:
  cu::Module module_ = nullptr;
  cu::Function fn_[2][2] = {};  // [OutDtype][ResizeMode]
};

}  // namespace fm::trt
