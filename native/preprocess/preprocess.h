// Face-chip preprocessing: frame bytes + face box -> one normalised NCHW 3x224x224 float tensor,
// the model's input. The CPU implementation here is the reference twin of the CUDA kernel.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fm {

enum class PixelFormat : int { RGB = 0, RGBA = 1, BGR = 2, BGRA = 3, GRAY = 4 };
// How the chip's sampling grid is laid over the window, as each py-feat generation does it:
//  Stretch (v2.4 dev code, extract_face_from_bbox_torch): grid normalised by (W - 1) although
//    grid_sample runs with align_corners=False, zero padding;
//  Square (py-feat 2.x, extract_face_square_pad_torch): pixel-centre grid, reflection padding.
enum class CropMode : int { Stretch = 0, Square = 1 };
enum class ResizeMode : int { CenterCrop = 0, AntialiasBilinear = 1 };

constexpr int kChip = 256;   // the chip py-feat cuts from the frame
constexpr int kInput = 224;  // the network's input side
constexpr int kInputPlane = kInput * kInput;
constexpr int kInputFloats = 3 * kInputPlane;

int channels(PixelFormat f);

struct Frame {
  const uint8_t* data;
  int width;
  int height;
  size_t stride;  // bytes per row
  PixelFormat format;
};

// The frame region the 256x256 chip samples: origin and extent in pixel index coordinates,
// float32 values (lib/crop.ts computes them from the face box with torch's float32 rounding).
struct CropWindow {
  float x, y, width, height;
};

// Writes one face's model input (3 planes of 224x224, RGB, ImageNet-normalised) to `out`.
// With window == nullptr the frame itself is a 256x256 chip.
void preprocess_face(const Frame& frame, const CropWindow* window, CropMode crop, ResizeMode resize, float* out);

// The 256x256 chip in [0,1], planar RGB (3 * 256 * 256 floats); exposed for tests.
void make_chip(const Frame& frame, const CropWindow* window, CropMode crop, float* chip);

// Which kernels this process runs: "avx2" (x86 with AVX2) or "portable" (other CPUs, or a build
// with FM_PREPROCESS_PORTABLE_ONLY). Both give the same bits; exposed for tests.
const char* preprocess_kernel_set();

}  // namespace fm
