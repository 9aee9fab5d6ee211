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
#include "preprocess_kernel.h"

namespace fm {


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
