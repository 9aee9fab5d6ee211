// What host code needs to launch the CUDA preprocessing kernels without the CUDA runtime: the
// per-face descriptor, the kernels' names in the module (extern "C", so the driver API finds
// them by name in the fatbin embedded in the addon) and their launch shape. Plain C++, no CUDA
// header: the addon launches them through the dlopen'ed driver API (tensorrt/cuda_driver.h).
#pragma once

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

// Launch shape: one block of kKernelThreads threads per (face, band of kKernelBand output rows).
constexpr int kKernelThreads = kChip;
constexpr int kKernelBand = 8;
constexpr int kKernelBands = kInput / kKernelBand;

// Every kernel takes (const FaceDesc* faces, CropMode crop, <float|__half>* out).
constexpr const char* kernel_name(OutDtype dtype, ResizeMode resize) {
  return dtype == OutDtype::Float32 ? (resize == ResizeMode::AntialiasBilinear ? "fm_preprocess_f32_aa" : "fm_preprocess_f32_cc")
                                    : (resize == ResizeMode::AntialiasBilinear ? "fm_preprocess_f16_aa" : "fm_preprocess_f16_cc");
}

}  // namespace fm
