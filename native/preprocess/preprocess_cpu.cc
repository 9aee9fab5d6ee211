// CPU preprocessing: py-feat's grid_sample chip, torch's antialiased 256->224 resize and the
// ImageNet normalisation. Sampling coordinates and resize weights are computed exactly as torch
// computes them in float32 (an error there is amplified by the image's gradient); the weighted
// sums are reordered for speed, which changes results by float rounding only (~1e-7). Every step
// is separable: the crop is axis-aligned, so each chip column has one pair of source columns and
// weights, each chip row one pair of source rows.
#include "preprocess.h"
#include "taps.h"

#include <algorithm>
#include <array>
#include <vector>

namespace fm {
namespace {

constexpr float kMean[3] = {taps::norm_mean(0), taps::norm_mean(1), taps::norm_mean(2)};
constexpr float kStd[3] = {taps::norm_std(0), taps::norm_std(1), taps::norm_std(2)};

// u8 -> [0,1] exactly as torch's `frame.float() / 255`.
struct ByteToUnit {
  std::array<float, 256> v;
  ByteToUnit() {
    for (int i = 0; i < 256; ++i) v[i] = static_cast<float>(i) / 255.0f;
  }
};
const ByteToUnit kUnit;

using taps::Tap;

// Taps for the kChip samples along one axis (taps.h: the coordinate arithmetic shared with the
// CUDA kernel, float32 rounded as torch rounds it).
void axis_taps(float origin, float extent, int size, CropMode crop, Tap* out) {
  for (int k = 0; k < kChip; ++k) out[k] = taps::axis_tap(origin, extent, size, crop, k);
}

// torch's antialiased 256 -> 224 weights for every output index (taps.h, shared with CUDA).
struct AaWeights {
  static constexpr int kTaps = taps::kAaTaps;
  int start[kInput];
  float w[kInput][kTaps];
  AaWeights() {
    for (int i = 0; i < kInput; ++i) taps::aa_weights(i, &start[i], w[i]);
  }
};
const AaWeights kAa;

// Produces the chip one row at a time (3 planar rows of 256 floats in [0,1]). Sampling is split
// into a vertical blend of the two source rows over the columns the chip needs (contiguous, so
// the compiler vectorises it) and a horizontal gather of two blended columns per chip pixel. The
// 1/255 of torch's `frame / 255` is folded into the vertical weights: the products differ from
// torch's by float rounding only (~1e-7).
class ChipRows {
 public:
  ChipRows(const Frame& frame, const CropWindow* window, CropMode crop) : frame_(frame), window_(window) {
    taps::format_offsets(frame.format, off_);
    nc_ = channels(frame.format);
    if (window) {
      axis_taps(window->x, window->width, frame.width, crop, tx_);
      axis_taps(window->y, window->height, frame.height, crop, ty_);
      blend_.resize(static_cast<size_t>(frame.width) * nc_);
    }
  }

  // Writes chip row y, columns [x0, x1), to row[c * kChip + x].
  void row(int y, int x0, int x1, float* row) {
    if (!window_) {
      const float* unit = kUnit.v.data();
      const uint8_t* src = frame_.data + static_cast<size_t>(y) * frame_.stride;
      for (int c = 0; c < 3; ++c)
        for (int x = x0; x < x1; ++x) row[c * kChip + x] = unit[src[x * nc_ + off_[c]]];
      return;
    }
    if (x0 != span_x0_ || x1 != span_x1_) {  // source columns these chip columns read
      span_x0_ = x0;
      span_x1_ = x1;
      lo_ = frame_.width;
      hi_ = 0;
      for (int x = x0; x < x1; ++x) {
        lo_ = std::min(lo_, std::min(tx_[x].i0, tx_[x].i1));
        hi_ = std::max(hi_, std::max(tx_[x].i0, tx_[x].i1) + 1);
      }
    }
    const Tap& t = ty_[y];
    const float a = t.w0 / 255.0f, b = t.w1 / 255.0f;
    blend(frame_.data + static_cast<size_t>(t.i0) * frame_.stride, frame_.data + static_cast<size_t>(t.i1) * frame_.stride,
          a, b, lo_ * nc_, hi_ * nc_, blend_.data());
    switch (frame_.format) {
      case PixelFormat::RGB: gather<3, 0, 1, 2>(x0, x1, row); break;
      case PixelFormat::RGBA: gather<4, 0, 1, 2>(x0, x1, row); break;
      case PixelFormat::BGR: gather<3, 2, 1, 0>(x0, x1, row); break;
      case PixelFormat::BGRA: gather<4, 2, 1, 0>(x0, x1, row); break;
      case PixelFormat::GRAY: gather<1, 0, 0, 0>(x0, x1, row); break;
    }
  }

 private:
  // __restrict: bytes may alias anything, and without it the compiler will not vectorise.
  static void blend(const uint8_t* __restrict r0, const uint8_t* __restrict r1, float a, float b, int begin, int end,
                    float* __restrict m) {
    for (int k = begin; k < end; ++k) m[k] = a * static_cast<float>(r0[k]) + b * static_cast<float>(r1[k]);
  }

  template <int NC, int R, int G, int B>
  void gather(int x0, int x1, float* row) const {
    const float* m = blend_.data();
    for (int x = x0; x < x1; ++x) {
      const Tap& t = tx_[x];
      const float* p0 = m + t.i0 * NC;
      const float* p1 = m + t.i1 * NC;
      row[x] = t.w0 * p0[R] + t.w1 * p1[R];
      row[kChip + x] = t.w0 * p0[G] + t.w1 * p1[G];
      row[2 * kChip + x] = t.w0 * p0[B] + t.w1 * p1[B];
    }
  }

  const Frame& frame_;
  const CropWindow* window_;
  int off_[3] = {0, 1, 2};
  int nc_ = 3;
  Tap tx_[kChip], ty_[kChip];
  std::vector<float> blend_;  // the vertical blend of one chip row's two source rows, interleaved
  int span_x0_ = -1, span_x1_ = -1, lo_ = 0, hi_ = 0;
};

}  // namespace

int channels(PixelFormat f) { return taps::format_channels(f); }

void make_chip(const Frame& frame, const CropWindow* window, CropMode crop, float* chip) {
  ChipRows rows(frame, window, crop);
  float row[3 * kChip];
  for (int y = 0; y < kChip; ++y) {
    rows.row(y, 0, kChip, row);
    for (int c = 0; c < 3; ++c) std::copy(row + c * kChip, row + (c + 1) * kChip, chip + c * kChip * kChip + y * kChip);
  }
}

void preprocess_face(const Frame& frame, const CropWindow* window, CropMode crop, ResizeMode resize, float* out) {
  ChipRows rows(frame, window, crop);
  float row[3 * kChip];
  if (resize == ResizeMode::CenterCrop) {
    const int o = (kChip - kInput) / 2;
    for (int y = 0; y < kInput; ++y) {
      rows.row(y + o, o, o + kInput, row);
      for (int c = 0; c < 3; ++c) {
        float* dst = out + c * kInputPlane + y * kInput;
        for (int x = 0; x < kInput; ++x) dst[x] = (row[c * kChip + o + x] - kMean[c]) / kStd[c];
      }
    }
    return;
  }
  // Antialiased resize. torch runs the horizontal pass and then the vertical one; here the
  // vertical pass comes first, streaming (output rows blend chip rows from a small ring, so the
  // chip is never stored whole), then the horizontal one. The passes commute up to float rounding
  // (~1e-7). Four output rows are made at once, one per SIMD lane: the horizontal pass gathers
  // at irregular offsets, which only vectorises across rows.
  typedef float v4 __attribute__((vector_size(16)));
  constexpr int kRing = 16;  // > the 8 chip rows four output rows can read
  float ring[kRing][3 * kChip];
  int ring_row[kRing];
  std::fill(ring_row, ring_row + kRing, -1);
  auto chip_row = [&](int r) -> const float* {
    float* slot = ring[r % kRing];
    if (ring_row[r % kRing] != r) {
      rows.row(r, 0, kChip, slot);
      ring_row[r % kRing] = r;
    }
    return slot;
  };
  static_assert(kInput % 4 == 0, "four output rows per step");
  v4 lanes[3 * kChip];  // lanes[k][l]: chip column k blended for output row y0 + l
  for (int y0 = 0; y0 < kInput; y0 += 4) {
    for (int r = kAa.start[y0]; r <= kAa.start[y0 + 3] + 2; ++r) {
      v4 wr;  // chip row r's weight in each of the four output rows (0 where it has none)
      for (int l = 0; l < 4; ++l) {
        const int j = r - kAa.start[y0 + l];
        wr[l] = (j >= 0 && j < AaWeights::kTaps) ? kAa.w[y0 + l][j] : 0.0f;
      }
      const float* src = chip_row(r);
      if (r == kAa.start[y0])
        for (int k = 0; k < 3 * kChip; ++k) lanes[k] = src[k] * wr;
      else
        for (int k = 0; k < 3 * kChip; ++k) lanes[k] += src[k] * wr;
    }
    for (int c = 0; c < 3; ++c) {
      const v4* src = lanes + c * kChip;
      const float mean = kMean[c], inv_sd = 1.0f / kStd[c];  // x * (1/sd): within 1 ulp of torch's x / sd
      float* dst = out + c * kInputPlane + y0 * kInput;
      for (int x = 0; x < kInput; ++x) {
        const v4* s = src + kAa.start[x];
        const float* wx = kAa.w[x];
        const v4 acc = ((s[0] * wx[0] + s[1] * wx[1] + s[2] * wx[2]) - mean) * inv_sd;
        for (int l = 0; l < 4; ++l) dst[l * kInput + x] = acc[l];
      }
    }
  }
}

}  // namespace fm
