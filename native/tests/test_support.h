// What the native tests share: pass/fail counting, a seedable hash for noise frames, and the
// tests' copy of lib/crop.ts faceCrop's window in float32 steps (built with -ffp-contract=off).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>

#include "preprocess/preprocess.h"

namespace fm_test {

inline int g_passed = 0, g_failed = 0;

inline void check(bool ok, const std::string& name, const std::string& detail = "") {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAIL %s%s%s\n", name.c_str(), detail.empty() ? "" : ": ", detail.c_str());
  }
}

// A small integer hash (lowbias32): deterministic noise pixels on every platform.
inline uint32_t lowbias32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

inline fm::CropWindow face_crop(fm::CropMode mode, float x1, float y1, float x2, float y2, int width, int height) {
  const float expand = 1.2f;
  const float cx = (x1 + x2) / 2.0f;
  const float cy = (y1 + y2) / 2.0f;
  if (mode == fm::CropMode::Square) {
    const float side = std::max(std::max(x2 - x1, y2 - y1) * expand, 1.0f);
    return fm::CropWindow{cx - side / 2.0f, cy - side / 2.0f, side, side};
  }
  const float w = (x2 - x1) * expand;
  const float h = (y2 - y1) * expand;
  const float nx1 = std::max(cx - w / 2.0f, 0.0f);
  const float ny1 = std::max(cy - h / 2.0f, 0.0f);
  const float nx2 = std::min(cx + w / 2.0f, static_cast<float>(width));
  const float ny2 = std::min(cy + h / 2.0f, static_cast<float>(height));
  return fm::CropWindow{nx1, ny1, nx2 - nx1, ny2 - ny1};
}

}  // namespace fm_test
