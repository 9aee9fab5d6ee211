// CUDA twin of preprocess_cpu.cc: one kernel launch preprocesses every face of a batch (faces
// may come from different frames) straight into the engine's input tensor, float32 or float16.
// Same arithmetic as the CPU path: the sampling coordinates and resize weights come from taps.h,
// compiled for both sides; only the order of the weighted sums differs (float rounding, ~1e-7).
//
// Plain C++ header (no CUDA syntax): callers compiled by a host compiler need only the CUDA
// runtime headers on their include path.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "preprocess.h"

namespace fm {

// The engine input's element type: float32, or IEEE half (__half) for FP16 engines.
enum class OutDtype : int { Float32 = 0, Float16 = 1 };

// One face of a batch, in device memory (an array of these is the kernel's argument).
struct FaceDesc {
  const uint8_t* data;   // device pointer to the frame's first row (the frame may be shared by faces)
  int64_t stride;        // bytes per row, >= width * channels(format)
  int32_t width;
  int32_t height;
  PixelFormat format;
  int32_t has_window;    // 0: the frame itself is the 256x256 chip (window ignored; width, height >= 256)
  CropWindow window;     // as for preprocess_face: float32 origin and extent from lib/crop.ts
};
static_assert(sizeof(FaceDesc) == 48, "FaceDesc: 48 bytes, one layout for host and device code");

// Writes n faces' model inputs, face i at element offset i * kInputFloats of d_out (NCHW,
// 3 x 224 x 224 per face, in `dtype`), exactly what preprocess_face writes on the CPU.
// d_faces: n descriptors in device memory; the frames they point to must stay alive and
// unmodified until the work on `stream` is done. Asynchronous: returns the launch status
// (cudaErrorInvalidValue for bad arguments). A descriptor the kernel cannot read safely (size
// < 1, a chip smaller than 256x256, stride < width * channels, unknown format) gets NaNs
// instead of an out-of-bounds read.
cudaError_t launch_preprocess(const FaceDesc* d_faces, int n, CropMode crop, ResizeMode resize, OutDtype dtype,
                              void* d_out, cudaStream_t stream);

}  // namespace fm
