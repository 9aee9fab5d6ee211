// The preprocessing kernels compiled for the host emulation (preprocess_cuda_host.cc), by the names
// the embedded fatbin gives them: what the host stand-in libcuda.so.1 runs for cuLaunchKernel.
// Plain C++: no CUDA header.
#pragma once

#include "preprocess/preprocess_kernel.h"

namespace fm_emu {

// A kernel's body for one thread (blockIdx/threadIdx set by fm_emu::launch); `out` is float* or
// __half* by the kernel's name.
using PreprocessKernel = void (*)(const fm::FaceDesc* faces, fm::CropMode crop, void* out);

// The kernel named `name` (kernel_name() in preprocess_kernel.h), or nullptr.
PreprocessKernel preprocess_kernel(const char* name);

}  // namespace fm_emu
