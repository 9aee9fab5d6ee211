// What the TensorRT pipeline's native tests share: noise frames as the pipeline takes them
// (trt::FrameIn over owned bytes) and a face from a box, cropped as lib/crop.ts does.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "preprocess/preprocess.h"
#include "tensorrt/upload_plan.h"
#include "test_support.h"

namespace fm_test {

// Deterministic noise bytes (every byte random: the hard case for sampling).
inline void fill_noise(uint8_t* p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(lowbias32(seed * 7919u + static_cast<uint32_t>(i)) >> 24);
}

struct NoiseFrame {
  std::vector<uint8_t> bytes;
  fm::trt::FrameIn in;
};

// A width x height frame of `format`, rows `pad` bytes longer than the pixels.
inline NoiseFrame noise_frame(int width, int height, fm::PixelFormat format, int pad, uint32_t seed) {
  NoiseFrame o;
  o.in = fm::trt::FrameIn{nullptr, width, height, static_cast<size_t>(width) * fm::channels(format) + pad, format};
  o.bytes.resize(o.in.stride * height);
  fill_noise(o.bytes.data(), o.bytes.size(), seed);
  o.in.data = o.bytes.data();
  return o;
}

// The face of box [x1, y1, x2, y2] in frames[frame] (o), its window as lib/crop.ts computes it.
inline fm::trt::FaceIn box_face(const NoiseFrame& o, int frame, fm::CropMode crop, float x1, float y1, float x2, float y2) {
  fm::trt::FaceIn f;
  f.frame = frame;
  f.has_window = true;
  f.window = face_crop(crop, x1, y1, x2, y2, o.in.width, o.in.height);
  return f;
}

}  // namespace fm_test
