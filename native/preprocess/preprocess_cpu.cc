// CPU preprocessing: py-feat's grid_sample chip, torch's antialiased 256->224 resize and the
// ImageNet normalisation. Sampling coordinates and resize weights are computed exactly as torch
// computes them in float32 (an error there is amplified by the image's gradient); the weighted
// sums are reordered for speed, which changes results by float rounding only (~1e-7). Every step
// is separable: the crop is axis-aligned, so each chip column has one pair of source columns and
// weights, each chip row one pair of source rows.
#include "preprocess.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

namespace fm {
namespace {

constexpr float kMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kStd[3] = {0.229f, 0.224f, 0.225f};

// u8 -> [0,1] exactly as torch's `frame.float() / 255`.
struct ByteToUnit {
  std::array<float, 256> v;
  ByteToUnit() {
    for (int i = 0; i < 256; ++i) v[i] = static_cast<float>(i) / 255.0f;
  }
};
const ByteToUnit kUnit;

// Byte offsets of R, G, B within one pixel.
void channel_offsets(PixelFormat f, int off[3]) {
  switch (f) {
    case PixelFormat::RGB:
    case PixelFormat::RGBA: off[0] = 0; off[1] = 1; off[2] = 2; break;
    case PixelFormat::BGR:
    case PixelFormat::BGRA: off[0] = 2; off[1] = 1; off[2] = 0; break;
    case PixelFormat::GRAY: off[0] = off[1] = off[2] = 0; break;
  }
}

// One bilinear tap pair along an axis: source indices (clamped so loads stay in bounds) and the
// weights of the lower and upper neighbour; a tap outside the frame under zero padding weighs 0.
struct Tap {
  int i0, i1;
  float w0, w1;
};

// torch's reflect_coordinates for align_corners=False (twice_low = -1, twice_high = 2*size-1).
float reflect(float in, int size) {
  const float min = -0.5f;
  const float span = static_cast<float>(size);
  in = std::fabs(in - min);
  const float extra = std::fmod(in, span);
  const int flips = static_cast<int>(std::floor(in / span));
  return (flips % 2 == 0) ? extra + min : span - extra + min;
}

// Taps for the kChip samples along one axis of `size` frame pixels. Each step is one float32
// tensor operation of py-feat's crop function followed by grid_sample's unnormalisation
// ((g + 1) * size / 2 - 0.5), in the same order, so the source coordinates round as torch's do.
// The unnormalisation is one fused multiply-add, as torch's x86 CPU builds compute it: the AVX2
// and AVX512 kernels of GridSamplerKernel.cpp write `(in + 1) * scaling_factor - 0.5` and the
// compiler contracts it to an FMA (measured, torch 2.13: test/fixtures/preprocess-torch.json).
// Torch's CUDA kernel writes `((coord + 1) * size - 1) / 2`; contracted by nvcc (its default,
// not measured here) that is the same single rounding, the /2 being exact. Rounding the product
// and the difference separately (torch's non-FMA DEFAULT build) moves a source coordinate by one
// ulp, ~6e-5 px at x ~ 1000: up to that much per value on sharp edges.
void axis_taps(float origin, float extent, int size, CropMode crop, Tap* taps) {
  const float fsize = static_cast<float>(size);
  const float half = fsize / 2.0f;
  for (int k = 0; k < kChip; ++k) {
    const float u = (static_cast<float>(k) + 0.5f) / static_cast<float>(kChip);
    float g;
    if (crop == CropMode::Square) {
      const float pos = origin + u * extent;    // origin + (xx + 0.5) / face_size * side
      g = 2.0f * (pos + 0.5f) / fsize - 1.0f;   // 2 * (grid_x + 0.5) / W - 1
    } else {
      const float pos = u * extent + origin;    // (xx + 0.5) / face_size * (x2 - x1) + x1
      g = 2.0f * pos / (fsize - 1.0f) - 1.0f;   // 2 * grid_x / (W - 1) - 1
    }
    float x = std::fma(g + 1.0f, half, -0.5f);
    if (crop == CropMode::Square) x = std::min(std::max(reflect(x, size), 0.0f), fsize - 1.0f);
    const float xf = std::floor(x);
    const int i0 = static_cast<int>(xf);
    const float w = x - xf;
    Tap t{i0, i0 + 1, 1.0f - w, w};
    if (t.i0 < 0 || t.i0 >= size) t.w0 = 0.0f;  // zero padding (never under reflection)
    if (t.i1 < 0 || t.i1 >= size) t.w1 = 0.0f;
    t.i0 = std::min(std::max(t.i0, 0), size - 1);
    t.i1 = std::min(std::max(t.i1, 0), size - 1);
    taps[k] = t;
  }
}

// Antialiased bilinear weights of torch's _upsample_bilinear2d_aa for 256 -> 224, in float.
// Each output uses at most 3 inputs; the taps are stored as a fixed 3 starting at `start` (kept
// inside the row) with zero weights where torch has none, so the inner loop has no branches.
struct AaWeights {
  static constexpr int kTaps = 3;
  int start[kInput];
  float w[kInput][kTaps];
  AaWeights() {
    const float scale = static_cast<float>(kChip) / static_cast<float>(kInput);
    const float support = 1.0f * scale;  // bilinear interp_size 2, times the downscale factor
    const float invscale = 1.0f / scale;
    for (int i = 0; i < kInput; ++i) {
      const float center = scale * (i + 0.5f);
      const int lo = std::max(static_cast<int>(center - support + 0.5f), 0);
      const int n = std::min(static_cast<int>(center + support + 0.5f), kChip) - lo;
      float raw[kTaps] = {0.0f, 0.0f, 0.0f};
      float total = 0.0f;
      for (int j = 0; j < n && j < kTaps; ++j) {
        raw[j] = std::max(0.0f, 1.0f - std::fabs((j + lo - center + 0.5f) * invscale));
        total += raw[j];
      }
      start[i] = std::min(lo, kChip - kTaps);
      for (int j = 0; j < kTaps; ++j) w[i][j] = 0.0f;
      for (int j = 0; j < n && j < kTaps; ++j) w[i][j + lo - start[i]] = total != 0.0f ? raw[j] / total : 0.0f;
    }
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
    channel_offsets(frame.format, off_);
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

int channels(PixelFormat f) {
  switch (f) {
    case PixelFormat::RGB:
    case PixelFormat::BGR: return 3;
    case PixelFormat::RGBA:
    case PixelFormat::BGRA: return 4;
    case PixelFormat::GRAY: return 1;
  }
  return 0;
}

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
