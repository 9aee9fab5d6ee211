// CUDA's execution model on the CPU, enough to run this project's kernels without a GPU: the
// host stand-in driver (tensorrt/tests/host_cuda.cc) launches the preprocessing kernels'
// own source through it, so CI runs the kernel code, its launch through the driver API and the
// pipeline around it, not only the CPU twin. What it does not show: device float rounding (the
// kernel's taps.h arithmetic compiles to its host form here, as the CPU path's does), warp
// scheduling and memory-model effects; preprocess_cuda_test and kernel_module_test on a GPU do.
//
// Also a small part of the CUDA runtime over host memory (cuda_emu_runtime.cc: allocation, copies,
// memset, streams, device properties, errors), so the runtime-API kernel test builds for the host.
//
// A block's threads are fibers (ucontext) on one worker thread, each run until it reaches
// __syncthreads() or returns; a round of them is one barrier phase. So __shared__ is
// `static thread_local` (one block per worker at a time) and blocks run on several workers.
//
// Include this before any CUDA header: the qualifiers below take precedence over
// crt/host_defines.h's (which defines each only when it is not defined yet).
#pragma once

#define __global__
#define __device__
#define __host__
#define __shared__ static thread_local
#define __launch_bounds__(...)
#define FM_CUDA_HOST_EMULATION 1

#include <cstdint>
#include <cstring>
#include <functional>

namespace fm_emu {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// Runs grid.x * grid.y * grid.z blocks of block.x * block.y * block.z threads of `kernel` (a
// call of the kernel with its arguments bound) and returns when all are done. Returns false,
// with *error, for a launch CUDA would refuse (more than 1024 threads per block, an empty grid)
// or a barrier reached by some of a block's threads while others returned.
bool launch(Dim3 grid, Dim3 block, const std::function<void()>& kernel, const char** error);

// What cudaGetLastError() returns next (cuda_emu_runtime.cc): a launch error, or none.
void record_launch(bool ok, const char* error);

template <typename D>
Dim3 dim(const D& d) {
  return Dim3{static_cast<unsigned>(d.x), static_cast<unsigned>(d.y), static_cast<unsigned>(d.z)};
}
inline Dim3 dim(int n) { return Dim3{static_cast<unsigned>(n), 1, 1}; }
inline Dim3 dim(unsigned n) { return Dim3{n, 1, 1}; }

// kernel<<<grid, block, 0, stream>>>(args...) as launch_kernel(kernel, grid, block, stream)(args...):
// runs to completion before it returns (every stream is synchronous here).
template <typename Kernel, typename Grid, typename Block, typename Stream>
auto launch_kernel(Kernel kernel, const Grid& grid, const Block& block, Stream) {
  return [kernel, g = dim(grid), b = dim(block)](auto... args) {
    const char* error = nullptr;
    const bool ok = launch(g, b, [&] { kernel(args...); }, &error);
    record_launch(ok, error);
  };
}

}  // namespace fm_emu

inline thread_local fm_emu::Dim3 threadIdx, blockIdx, blockDim, gridDim;

void __syncthreads();

template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}
