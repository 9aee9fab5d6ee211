// The arithmetic the CPU (preprocess_cpu.cc) and CUDA (preprocess_cuda.cu) preprocessing share:
// where each chip sample lands in the frame (axis_tap), torch's antialiased 256 -> 224 weights
// (aa_weights), pixel-format layout and the normalisation constants. One definition compiled for
// both sides, so the two implementations cannot drift apart.
//
// Float32 rounding is part of the contract: an error of one ulp in a source coordinate moves a
// value by up to ~6e-5 on sharp edges at x ~ 1000. So every operation whose rounding matters goes
// through the helpers below: on the device they are the explicitly rounded intrinsics, which nvcc
// never contracts into FMAs and which --use_fast_math does not approximate; on the host they are
// plain operators, and the project compiles host code with -ffp-contract=off (CMakeLists.txt).
// The one fused multiply-add torch itself performs is written as fmaf on both sides.
#pragma once

#include <math.h>

#include "preprocess.h"

#if defined(__CUDACC__)
#define FM_HD __host__ __device__ __forceinline__
#else
#define FM_HD inline
#endif

namespace fm {
namespace taps {

FM_HD float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
FM_HD float fsub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
FM_HD float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
FM_HD float fdiv(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
// One rounding of a * b + c (torch's contracted grid_sample unnormalisation).
FM_HD float ffma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return ::fmaf(a, b, c);
#endif
}
// std::min / std::max semantics (the first argument wins ties), on both sides.
FM_HD float fmin_(float a, float b) { return (b < a) ? b : a; }
FM_HD float fmax_(float a, float b) { return (a < b) ? b : a; }
FM_HD int imin(int a, int b) { return (b < a) ? b : a; }
FM_HD int imax(int a, int b) { return (a < b) ? b : a; }

// ImageNet normalisation, per RGB channel.
FM_HD constexpr float norm_mean(int c) { return c == 0 ? 0.485f : (c == 1 ? 0.456f : 0.406f); }
FM_HD constexpr float norm_std(int c) { return c == 0 ? 0.229f : (c == 1 ? 0.224f : 0.225f); }

FM_HD int format_channels(PixelFormat f) {
  switch (f) {
    case PixelFormat::RGB:
    case PixelFormat::BGR: return 3;
    case PixelFormat::RGBA:
    case PixelFormat::BGRA: return 4;
    case PixelFormat::GRAY: return 1;
  }
  return 0;
}

// Byte offsets of R, G, B within one pixel.
FM_HD void format_offsets(PixelFormat f, int off[3]) {
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
FM_HD float reflect(float in, int size) {
  const float min = -0.5f;
  const float span = static_cast<float>(size);
  in = fabsf(fsub(in, min));
  const float extra = fmodf(in, span);  // exact on both sides
  // torch's CUDA formula (GridSampler.h). Its CPU kernel folds with a truncating product
  // instead, which rounds differently once coordinates pass 2^24 px: lib/image-input.ts refuses
  // windows that reach that far, so the two agree on every window that runs. The flips count is
  // read only below 2^24 (from there every float is even; past 2^31 the cast is undefined in C++
  // while the GPU saturates to an odd INT_MAX).
  const float flips = floorf(fdiv(in, span));
  const bool odd = flips < 16777216.0f && (static_cast<int>(flips) & 1) != 0;
  return odd ? fadd(fsub(span, extra), min) : fadd(extra, min);
}

// The tap of chip sample k (0..kChip-1) along one axis of `size` frame pixels, the window
// covering [origin, origin + extent) of that axis. Each step is one float32 tensor operation of
// py-feat's crop function followed by grid_sample's unnormalisation ((g + 1) * size / 2 - 0.5),
// in the same order, so the source coordinates round as torch's do. The unnormalisation is one
// fused multiply-add, as torch's x86 CPU builds compute it: the AVX2 and AVX512 kernels of
// GridSamplerKernel.cpp write `(in + 1) * scaling_factor - 0.5` and the compiler contracts it to
// an FMA (measured, torch 2.13: test/fixtures/preprocess-torch.json). Torch's CUDA kernel writes
// `((coord + 1) * size - 1) / 2`; contracted by nvcc (its default, not measured here) that is the
// same single rounding, the /2 being exact. Rounding the product and the difference separately
// (torch's non-FMA DEFAULT build) moves a source coordinate by one ulp, ~6e-5 px at x ~ 1000: up
// to that much per value on sharp edges.
FM_HD Tap axis_tap(float origin, float extent, int size, CropMode crop, int k) {
  const float fsize = static_cast<float>(size);
  const float half = fdiv(fsize, 2.0f);
  const float u = fdiv(fadd(static_cast<float>(k), 0.5f), static_cast<float>(kChip));
  float g;
  if (crop == CropMode::Square) {
    const float pos = fadd(origin, fmul(u, extent));               // origin + (xx + 0.5) / face_size * side
    g = fsub(fdiv(fmul(2.0f, fadd(pos, 0.5f)), fsize), 1.0f);     // 2 * (grid_x + 0.5) / W - 1
  } else {
    const float pos = fadd(fmul(u, extent), origin);               // (xx + 0.5) / face_size * (x2 - x1) + x1
    g = fsub(fdiv(fmul(2.0f, pos), fsub(fsize, 1.0f)), 1.0f);     // 2 * grid_x / (W - 1) - 1
  }
  float x = ffma(fadd(g, 1.0f), half, -0.5f);
  if (crop == CropMode::Square) x = fmin_(fmax_(reflect(x, size), 0.0f), fsub(fsize, 1.0f));
  // Beyond [-1, size] both taps lie outside the frame and weigh 0 whatever x is: clamping there
  // changes no output and keeps the int conversion below defined (a huge window's x is past
  // INT_MAX, where host and GPU would convert differently and the upload plan would miss rows).
  if (!(x >= -1.0f)) x = -1.0f;  // NaN too
  if (x > fsize) x = fsize;
  const float xf = floorf(x);
  const int i0 = static_cast<int>(xf);
  const float w = fsub(x, xf);
  Tap t{i0, i0 + 1, fsub(1.0f, w), w};
  if (t.i0 < 0 || t.i0 >= size) t.w0 = 0.0f;  // zero padding (never under reflection)
  if (t.i1 < 0 || t.i1 >= size) t.w1 = 0.0f;
  t.i0 = imin(imax(t.i0, 0), size - 1);
  t.i1 = imin(imax(t.i1, 0), size - 1);
  return t;
}

// Antialiased bilinear weights of torch's _upsample_bilinear2d_aa for 256 -> 224, in float, for
// output index i (0..kInput-1). Each output uses at most 3 inputs; the taps are returned as a
// fixed 3 starting at *start (kept inside the row) with zero weights where torch has none, so
// the inner loops have no branches.
constexpr int kAaTaps = 3;
FM_HD void aa_weights(int i, int* start, float w[kAaTaps]) {
  const float scale = fdiv(static_cast<float>(kChip), static_cast<float>(kInput));
  const float support = fmul(1.0f, scale);  // bilinear interp_size 2, times the downscale factor
  const float invscale = fdiv(1.0f, scale);
  const float center = fmul(scale, fadd(static_cast<float>(i), 0.5f));
  const int lo = imax(static_cast<int>(fadd(fsub(center, support), 0.5f)), 0);
  const int n = imin(static_cast<int>(fadd(fadd(center, support), 0.5f)), kChip) - lo;
  // Written with constant indices only (no local-memory array on the device); the values are
  // those of the loop `for j < n: raw[j] = ...; total += raw[j]` (adding a 0 changes nothing).
  float raw[kAaTaps];
  float total = 0.0f;
  for (int j = 0; j < kAaTaps; ++j) {
    raw[j] = j < n ? fmax_(0.0f, fsub(1.0f, fabsf(fmul(fadd(fsub(static_cast<float>(j + lo), center), 0.5f), invscale))))
                   : 0.0f;
    total = fadd(total, raw[j]);
  }
  *start = imin(lo, kChip - kAaTaps);
  const int shift = lo - *start;  // 0, or 1 at the row's end
  for (int m = 0; m < kAaTaps; ++m) {
    const int j = m - shift;  // torch's tap j lands in slot m
    const float r = j == 0 ? raw[0] : (j == 1 ? raw[1] : raw[2]);
    w[m] = (j >= 0 && j < n && total != 0.0f) ? fdiv(r, total) : 0.0f;
  }
}

}  // namespace taps
}  // namespace fm
