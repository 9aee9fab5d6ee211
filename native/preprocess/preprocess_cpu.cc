// CPU preprocessing: py-feat's grid_sample chip, torch's antialiased 256->224 resize and the
// ImageNet normalisation. Sampling coordinates and resize weights are computed exactly as torch
// computes them in float32 (an error there is amplified by the image's gradient); the weighted
// sums are reordered for speed, which changes results by float rounding only (~1e-7). Every step
// is separable: the crop is axis-aligned, so each chip column has one pair of source columns and
// weights, each chip row one pair of source rows.
//
// A face streams through four passes, a chip row at a time; neither the chip nor the resized
// image is ever stored whole:
//   1. blend: the chip row's two source rows, weighted, over the source columns the chip reads;
//   2. gather: each chip column from its two source columns of the blended row;
//   3. vertical resize: output rows from the (up to) 3 chip rows each reads, kept in a ring;
//   4. horizontal resize of those rows, normalised, written to the output planes.
// Each value is one fixed expression of its inputs, without FMA (the project compiles with
// -ffp-contract=off), and the two implementations below evaluate the same expressions, so they
// produce identical bits:
//  - AVX2 (x86 CPUs that have it, chosen at run time): the blended row is deinterleaved into one
//    plane per channel, and the gathers (2 and 4) are vectorised with in-register permutes: a run
//    of neighbouring outputs reads at most 8 neighbouring inputs per tap, one 8-float load. For
//    windows over ~1.5x the chip's width, where the chip reads only some of the source columns,
//    passes 1 and 2 are fused instead: each chip column's two source pixels are loaded as one
//    word per source row and blended and gathered in registers, eight chip columns at a time;
//  - portable (everything else, any compiler): the blended row stays interleaved, the gather is
//    scalar, and the resize makes four output rows at once, one per lane, which compilers
//    vectorise.
#include "preprocess.h"
#include "taps.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <vector>

#if !defined(FM_PREPROCESS_PORTABLE_ONLY) && !defined(_M_ARM64EC) && \
    (defined(__x86_64__) || defined(__i386__) || defined(_M_X64) || defined(_M_IX86))
#define FM_HAVE_AVX2_KERNELS 1
#include <immintrin.h>
#if defined(_MSC_VER)
#include <intrin.h>
#endif
// GCC and Clang compile AVX2 intrinsics only in functions built for it; MSVC takes them anywhere.
// Only the functions marked so use AVX2, and they run only after a CPU check (avx2_usable). The
// target is AVX2 alone, not FMA: the compiler has no fused multiply-add to contract into there.
#if defined(__GNUC__) || defined(__clang__)
#define FM_AVX2 __attribute__((target("avx2")))
#else
#define FM_AVX2
#endif
#else
#define FM_HAVE_AVX2_KERNELS 0
#endif

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

constexpr int kLanes = 8;                     // floats per AVX2 vector
constexpr int kAaBlock = 7;                   // outputs per vector in the AVX2 horizontal resize
constexpr int kAaBlocks = kInput / kAaBlock;  // 32
constexpr int kPad = kLanes;                  // spare floats after each plane of a row
constexpr int kPlane = kChip + kPad;          // distance between the planes of a chip row
constexpr int kRowFloats = 3 * kPlane;        // one chip row: R, G and B planes
// The AVX2 code fuses blend and gather (pairs_planar) when the blend would cover more than this
// many source columns per chip column: past it, the chip reads few of the columns blended
// (measured: the fused path is the slower at 1.4, 300 px faces' 360 px windows, the faster from
// 1.6).
constexpr float kPairRatio = 1.5f;
static_assert(kInput % kAaBlock == 0, "the horizontal resize is whole blocks");

// torch's antialiased 256 -> 224 weights for every output index (taps.h, shared with CUDA), and
// for the AVX2 resize the same taps per block of 7 outputs: 7 outputs read 8 neighbouring inputs
// (the resize takes 8 inputs to 7), so tap j of block b is lane idx[b][l] of the 8 inputs from
// base[b] + j, with weight wv[b][j][l]. Lane 7 is a dummy (weight 0).
struct AaWeights {
  static constexpr int kTaps = taps::kAaTaps;
  int start[kInput];
  float w[kInput][kTaps];
  int base[kAaBlocks];
  bool fits[kAaBlocks];  // every idx < 8 (so with torch's weights; checked, not assumed)
  alignas(32) int32_t idx[kAaBlocks][kLanes];
  alignas(32) float wv[kAaBlocks][kTaps][kLanes];
  AaWeights() {
    for (int i = 0; i < kInput; ++i) taps::aa_weights(i, &start[i], w[i]);
    for (int b = 0; b < kAaBlocks; ++b) {
      const int x0 = b * kAaBlock;
      base[b] = start[x0];
      for (int l = 1; l < kAaBlock; ++l) base[b] = std::min(base[b], start[x0 + l]);
      fits[b] = true;
      for (int l = 0; l < kLanes; ++l) {
        idx[b][l] = l < kAaBlock ? start[x0 + l] - base[b] : 0;
        fits[b] = fits[b] && idx[b][l] < kLanes;
        for (int j = 0; j < kTaps; ++j) wv[b][j][l] = l < kAaBlock ? w[x0 + l][j] : 0.0f;
      }
    }
  }
};
const AaWeights kAa;

// The horizontal chip taps of one face, relative to the first blended source column, per chip
// column and, for the AVX2 gather, as runs: up to 8 consecutive chip columns whose lower taps lie
// within 8 source columns from base0 and whose upper taps within 8 from base1, so that each tap
// is one load and one permute. Lanes past a run's length are dummies (weight 0) whose results
// land where the next run, or the plane's padding, takes them.
struct ColumnTaps {
  int32_t i0[kChip], i1[kChip];  // source column - the first blended column
  float w0[kChip], w1[kChip];
  // For the AVX2 pair path: byte offset in a frame row of each chip column's lower source pixel,
  // and per group of 8 chip columns whether all of them read two adjacent pixels whose 8 bytes
  // from there lie inside the row (read straight from the frame) or not (copied first).
  int32_t pb[kChip];
  bool direct[kChip / kLanes];
  struct Run {
    int x, n, base0, base1;
    bool last;
  };
  int runs = 0;
  Run run[kChip];
  int32_t d0[kChip][kLanes], d1[kChip][kLanes];  // per run: lane -> offset from base0 / base1
  float v0[kChip][kLanes], v1[kChip][kLanes];    // per run: the weights by lane

  // Splits chip columns [x0, x1) into runs.
  void make_runs(int x0, int x1) {
    runs = 0;
    for (int x = x0; x < x1;) {
      int lo0 = i0[x], hi0 = i0[x], lo1 = i1[x], hi1 = i1[x], n = 1;
      for (; n < kLanes && x + n < x1; ++n) {
        const int a = i0[x + n], b = i1[x + n];
        if (std::max(hi0, a) - std::min(lo0, a) >= kLanes || std::max(hi1, b) - std::min(lo1, b) >= kLanes) break;
        lo0 = std::min(lo0, a);
        hi0 = std::max(hi0, a);
        lo1 = std::min(lo1, b);
        hi1 = std::max(hi1, b);
      }
      const int r = runs++;
      run[r] = {x, n, lo0, lo1, x + n == x1};
      for (int l = 0; l < kLanes; ++l) {
        d0[r][l] = l < n ? i0[x + l] - lo0 : 0;
        d1[r][l] = l < n ? i1[x + l] - lo1 : 0;
        v0[r][l] = l < n ? w0[x + l] : 0.0f;
        v1[r][l] = l < n ? w1[x + l] : 0.0f;
      }
      x += n;
    }
  }
};

// ---------------------------------------------------------------- portable kernels
//
// The expressions every implementation evaluates:
//   blend:  m = a * src0 + b * src1, a and b the row weights / 255 (the 1/255 of torch's
//           `frame / 255` folded in: the products differ from torch's by float rounding only);
//   gather: chip = w0 * m[i0] + w1 * m[i1];
//   resize: v = (chip[s] * w0 + chip[s+1] * w1) + chip[s+2] * w2 down the columns, then
//           ((v[s] * w0 + v[s+1] * w1 + v[s+2] * w2) - mean) * (1 / sd) along the rows
//           (x * (1/sd) is within 1 ulp of torch's x / sd);
//   centre crop: (chip - mean) / sd.

// Pass 1, interleaved: m[k] = a * src0[k] + b * src1[k] over the bytes of source columns
// [lo, lo + n), all NC channels (contiguous, so compilers vectorise it).
template <int NC>
void blend_interleaved(const uint8_t* __restrict r0, const uint8_t* __restrict r1, float a, float b, int lo, int n,
                       float* __restrict m, int) {
  r0 += static_cast<size_t>(lo) * NC;
  r1 += static_cast<size_t>(lo) * NC;
  for (int k = 0; k < n * NC; ++k) m[k] = a * static_cast<float>(r0[k]) + b * static_cast<float>(r1[k]);
}

// Pass 2 from the interleaved blend: chip columns [x0, x1) to row[c * kPlane + x].
template <int NC, int R, int G, int B>
void gather_interleaved(const ColumnTaps& t, const float* __restrict m, int, int x0, int x1, float* __restrict row) {
  const int32_t* __restrict i0 = t.i0;
  const int32_t* __restrict i1 = t.i1;
  const float* __restrict w0 = t.w0;
  const float* __restrict w1 = t.w1;
  for (int x = x0; x < x1; ++x) {
    const float* p0 = m + i0[x] * NC;
    const float* p1 = m + i1[x] * NC;
    row[x] = w0[x] * p0[R] + w1[x] * p1[R];
    row[kPlane + x] = w0[x] * p0[G] + w1[x] * p1[G];
    row[2 * kPlane + x] = w0[x] * p0[B] + w1[x] * p1[B];
  }
}

// Centre crop: the middle 224 columns of a chip row, normalised.
void center_portable(const float* row, float* out) {
  constexpr int o = (kChip - kInput) / 2;
  for (int c = 0; c < 3; ++c) {
    const float* src = row + c * kPlane + o;
    const float mean = kMean[c], sd = kStd[c];
    float* dst = out + c * kInputPlane;
    for (int x = 0; x < kInput; ++x) dst[x] = (src[x] - mean) / sd;
  }
}

// ---------------------------------------------------------------- AVX2 kernels

#if FM_HAVE_AVX2_KERNELS

// 8 pixels' channel bytes as 8 int32 lanes each: c[k] = byte k of each pixel.
template <int NC>
FM_AVX2 inline void load8(const uint8_t* p, __m256i c[3]) {
  if (NC == 1) {
    c[0] = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    return;
  }
  if (NC == 4) {
    const __m256i low = _mm256_set1_epi32(0xff);
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    c[0] = _mm256_and_si256(v, low);
    c[1] = _mm256_and_si256(_mm256_srli_epi32(v, 8), low);
    c[2] = _mm256_and_si256(_mm256_srli_epi32(v, 16), low);
    return;
  }
  // Bytes 0..15 and 8..23 (exactly the 24 bytes of 8 pixels); byte k of pixel i to lane i: pixels
  // 0..3 from the low half (bytes 3i + k), pixels 4..7 from the high half (bytes 3i + k - 8).
  const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8));
  const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1);
  const __m256i s0 = _mm256_setr_epi8(0, -1, -1, -1, 3, -1, -1, -1, 6, -1, -1, -1, 9, -1, -1, -1,  //
                                      4, -1, -1, -1, 7, -1, -1, -1, 10, -1, -1, -1, 13, -1, -1, -1);
  const __m256i s1 = _mm256_setr_epi8(1, -1, -1, -1, 4, -1, -1, -1, 7, -1, -1, -1, 10, -1, -1, -1,  //
                                      5, -1, -1, -1, 8, -1, -1, -1, 11, -1, -1, -1, 14, -1, -1, -1);
  const __m256i s2 = _mm256_setr_epi8(2, -1, -1, -1, 5, -1, -1, -1, 8, -1, -1, -1, 11, -1, -1, -1,  //
                                      6, -1, -1, -1, 9, -1, -1, -1, 12, -1, -1, -1, 15, -1, -1, -1);
  c[0] = _mm256_shuffle_epi8(v, s0);
  c[1] = _mm256_shuffle_epi8(v, s1);
  c[2] = _mm256_shuffle_epi8(v, s2);
}

// Pass 1, planar: channel c to the plane at m + c * stride (GRAY: stride 0, one plane).
template <int NC, int R, int G, int B>
FM_AVX2 void blend_planar(const uint8_t* r0, const uint8_t* r1, float a, float b, int lo, int n, float* m, int stride) {
  constexpr int nplanes = NC == 1 ? 1 : 3;
  float* plane[3] = {m, m, m};  // plane[k]: where byte k of a pixel goes
  if (NC != 1) {
    plane[R] = m;
    plane[G] = m + stride;
    plane[B] = m + 2 * stride;
  }
  const uint8_t* p0 = r0 + static_cast<size_t>(lo) * NC;
  const uint8_t* p1 = r1 + static_cast<size_t>(lo) * NC;
  if (n < kLanes) {
    for (int k = 0; k < n; ++k)
      for (int q = 0; q < nplanes; ++q)
        plane[q][k] = a * static_cast<float>(p0[k * NC + q]) + b * static_cast<float>(p1[k * NC + q]);
    return;
  }
  const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
  for (int k = 0;; k += kLanes) {
    if (k > n - kLanes) {
      if (k == n) break;
      k = n - kLanes;  // the last 8 columns, overlapping the previous block: the same values again
    }
    __m256i c0[3], c1[3];
    load8<NC>(p0 + k * NC, c0);
    load8<NC>(p1 + k * NC, c1);
    for (int q = 0; q < nplanes; ++q) {
      const __m256 x = _mm256_mul_ps(va, _mm256_cvtepi32_ps(c0[q]));
      const __m256 y = _mm256_mul_ps(vb, _mm256_cvtepi32_ps(c1[q]));
      _mm256_storeu_ps(plane[q] + k, _mm256_add_ps(x, y));
    }
  }
}

// Pass 2 from the planar blend, run by run.
FM_AVX2 void gather_planar(const ColumnTaps& t, const float* m, int stride, int, int, float* row) {
  const float* const plane[3] = {m, m + stride, m + 2 * stride};
  for (int r = 0; r < t.runs; ++r) {
    const ColumnTaps::Run& run = t.run[r];
    float* dst = row + run.x;
    if (run.n < 3 && !run.last) {  // sparse taps (a window over ~3.5x the chip): column by column
      for (int c = 0; c < 3; ++c)
        for (int l = 0; l < run.n; ++l)
          dst[c * kPlane + l] = t.w0[run.x + l] * plane[c][t.i0[run.x + l]] + t.w1[run.x + l] * plane[c][t.i1[run.x + l]];
      continue;
    }
    const __m256i d0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.d0[r]));
    const __m256i d1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.d1[r]));
    const __m256 w0 = _mm256_loadu_ps(t.v0[r]), w1 = _mm256_loadu_ps(t.v1[r]);
    const int base0 = run.base0, base1 = run.base1;
    for (int c = 0; c < 3; ++c) {
      const __m256 p = _mm256_mul_ps(w0, _mm256_permutevar8x32_ps(_mm256_loadu_ps(plane[c] + base0), d0));
      const __m256 q = _mm256_mul_ps(w1, _mm256_permutevar8x32_ps(_mm256_loadu_ps(plane[c] + base1), d1));
      _mm256_storeu_ps(dst + c * kPlane, _mm256_add_ps(p, q));  // lanes >= n: overwritten later
    }
  }
}

// Four 8-byte words, at base + off[i] for i = j0..j3, as the 64-bit lanes of a vector.
FM_AVX2 inline __m256i load_words(const uint8_t* base, const int32_t* off, int j0, int j1, int j2, int j3) {
  int64_t a, b, c, d;
  std::memcpy(&a, base + off[j0], 8);
  std::memcpy(&b, base + off[j1], 8);
  std::memcpy(&c, base + off[j2], 8);
  std::memcpy(&d, base + off[j3], 8);
  return _mm256_set_epi64x(d, c, b, a);
}

// Passes 1 and 2 fused, for chips that read few of the window's source columns (a window over
// ~1.5x the chip's width or more): each chip column's two source pixels, in both source rows,
// are loaded as one 8-byte word (the lower pixel's bytes, then the upper's), eight chip columns
// at a time, and blended and gathered in registers: only the pixels the chip reads are touched,
// and the blended values, the same expressions as blend_planar's, are never stored.
template <int NC, int R, int G, int B>
FM_AVX2 void pairs_planar(const uint8_t* r0, const uint8_t* r1, float a, float b, const ColumnTaps& t, int x0, int x1,
                          float* row) {
  constexpr int nplanes = NC == 1 ? 1 : 3;
  constexpr int at[3] = {R, G, B};  // plane c takes byte at[c] of a pixel
  static constexpr int32_t kTmpOff[kLanes] = {0, 8, 16, 24, 32, 40, 48, 56};
  const __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
  const __m256i low = _mm256_set1_epi32(0xff);
  alignas(32) uint8_t tmp[2][kLanes * 8];  // a group's words, copied where they can't be loaded
  for (int x = x0; x < x1; x += kLanes) {
    const uint8_t* base[2] = {r0, r1};
    const int32_t* off = t.pb + x;
    if (!t.direct[x / kLanes]) {
      for (int l = 0; l < kLanes; ++l) {
        const int o0 = t.pb[x + l];
        const int o1 = o0 + (t.i1[x + l] - t.i0[x + l]) * NC;
        for (int s = 0; s < 2; ++s) {
          std::memset(tmp[s] + 8 * l, 0, 8);
          std::memcpy(tmp[s] + 8 * l, base[s] + o0, NC);
          std::memcpy(tmp[s] + 8 * l + NC, base[s] + o1, NC);
        }
      }
      base[0] = tmp[0];
      base[1] = tmp[1];
      off = kTmpOff;
    }
    // Per source row: lo / hi, the lower / upper pixel's bytes in the low bytes of each 32-bit lane,
    // lane l for chip column x + l (the words in the order that shuffle_ps puts back in order).
    __m256i lo[2], hi[2];
    for (int s = 0; s < 2; ++s) {
      const __m256i u = load_words(base[s], off, 0, 1, 4, 5);
      const __m256i v = load_words(base[s], off, 2, 3, 6, 7);
      lo[s] = _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(u), _mm256_castsi256_ps(v), 0x88));
      hi[s] = _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(_mm256_srli_epi64(u, 8 * NC)),
                                                    _mm256_castsi256_ps(_mm256_srli_epi64(v, 8 * NC)), 0x88));
    }
    const __m256 w0 = _mm256_loadu_ps(t.w0 + x), w1 = _mm256_loadu_ps(t.w1 + x);
    for (int c = 0; c < nplanes; ++c) {
      const int k = at[c];
      const __m256 s00 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(lo[0], 8 * k), low));
      const __m256 s01 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(lo[1], 8 * k), low));
      const __m256 s10 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(hi[0], 8 * k), low));
      const __m256 s11 = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(hi[1], 8 * k), low));
      const __m256 m0 = _mm256_add_ps(_mm256_mul_ps(va, s00), _mm256_mul_ps(vb, s01));  // blended, lower pixel
      const __m256 m1 = _mm256_add_ps(_mm256_mul_ps(va, s10), _mm256_mul_ps(vb, s11));  // blended, upper pixel
      const __m256 y = _mm256_add_ps(_mm256_mul_ps(w0, m0), _mm256_mul_ps(w1, m1));
      if (NC == 1) {
        for (int q = 0; q < 3; ++q) _mm256_storeu_ps(row + q * kPlane + x, y);
      } else {
        _mm256_storeu_ps(row + c * kPlane + x, y);
      }
    }
  }
}

// Pass 3, one output row: v = (c0 * w0 + c1 * w1) + c2 * w2 over the planes of three chip rows.
FM_AVX2 void resize_v_avx2(const float* c0, const float* c1, const float* c2, const float* w, float* v) {
  const __m256 w0 = _mm256_set1_ps(w[0]), w1 = _mm256_set1_ps(w[1]), w2 = _mm256_set1_ps(w[2]);
  for (int c = 0; c < 3; ++c)
    for (int k = c * kPlane; k < c * kPlane + kChip; k += kLanes) {
      const __m256 s = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(c0 + k), w0), _mm256_mul_ps(_mm256_loadu_ps(c1 + k), w1));
      _mm256_storeu_ps(v + k, _mm256_add_ps(s, _mm256_mul_ps(_mm256_loadu_ps(c2 + k), w2)));
    }
}

// Pass 4, one output row, block by block of 7 outputs.
FM_AVX2 void resize_h_avx2(const float* v, float* out) {
  __m256 mean[3], inv_sd[3];
  for (int c = 0; c < 3; ++c) {
    mean[c] = _mm256_set1_ps(kMean[c]);
    inv_sd[c] = _mm256_set1_ps(1.0f / kStd[c]);
  }
  for (int b = 0; b < kAaBlocks; ++b) {
    const int x0 = b * kAaBlock;
    if (!kAa.fits[b]) {
      for (int c = 0; c < 3; ++c)
        for (int x = x0; x < x0 + kAaBlock; ++x) {
          const float* s = v + c * kPlane + kAa.start[x];
          const float* wx = kAa.w[x];
          out[c * kInputPlane + x] = (s[0] * wx[0] + s[1] * wx[1] + s[2] * wx[2] - kMean[c]) * (1.0f / kStd[c]);
        }
      continue;
    }
    const __m256i idx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kAa.idx[b]));
    const __m256 w0 = _mm256_loadu_ps(kAa.wv[b][0]), w1 = _mm256_loadu_ps(kAa.wv[b][1]), w2 = _mm256_loadu_ps(kAa.wv[b][2]);
    for (int c = 0; c < 3; ++c) {
      const float* s = v + c * kPlane + kAa.base[b];
      const __m256 t0 = _mm256_mul_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(s), idx), w0);
      const __m256 t1 = _mm256_mul_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(s + 1), idx), w1);
      const __m256 t2 = _mm256_mul_ps(_mm256_permutevar8x32_ps(_mm256_loadu_ps(s + 2), idx), w2);
      const __m256 y = _mm256_mul_ps(_mm256_sub_ps(_mm256_add_ps(_mm256_add_ps(t0, t1), t2), mean[c]), inv_sd[c]);
      float* dst = out + c * kInputPlane + x0;
      if (b + 1 < kAaBlocks) {
        _mm256_storeu_ps(dst, y);  // lane 7 lands on the next block's first output, written next
      } else {                     // the row's last 7 outputs: lanes 0..3, 4..5, 6
        const __m128 hi = _mm256_extractf128_ps(y, 1);
        _mm_storeu_ps(dst, _mm256_castps256_ps128(y));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + 4), _mm_castps_si128(hi));
        _mm_store_ss(dst + 6, _mm_movehl_ps(hi, hi));
      }
    }
  }
}

FM_AVX2 void center_avx2(const float* row, float* out) {
  constexpr int o = (kChip - kInput) / 2;
  for (int c = 0; c < 3; ++c) {
    const float* src = row + c * kPlane + o;
    const __m256 mean = _mm256_set1_ps(kMean[c]), sd = _mm256_set1_ps(kStd[c]);
    float* dst = out + c * kInputPlane;
    for (int x = 0; x < kInput; x += kLanes)
      _mm256_storeu_ps(dst + x, _mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(src + x), mean), sd));
  }
}

// AVX2 usable: the CPU has it and the OS saves the YMM registers.
#if defined(_MSC_VER) && defined(__clang__)
__attribute__((target("xsave")))
#endif
bool avx2_usable() {
#if defined(_MSC_VER)
  int r[4];
  __cpuid(r, 0);
  if (r[0] < 7) return false;
  __cpuid(r, 1);
  const bool osxsave = (r[2] & (1 << 27)) != 0, avx = (r[2] & (1 << 28)) != 0;
  if (!osxsave || !avx || (_xgetbv(0) & 6) != 6) return false;
  __cpuidex(r, 7, 0);
  return (r[1] & (1 << 5)) != 0;
#else
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") != 0;  // libgcc / compiler-rt also check the OS's YMM support
#endif
}

#endif  // FM_HAVE_AVX2_KERNELS

// ---------------------------------------------------------------- kernel sets

// blend(row0, row1, a, b, lo, n, m, stride) and gather(taps, m, stride, x0, x1, row) agree on the
// layout of m: interleaved (portable) or planes `stride` floats apart (AVX2).
using BlendFn = void (*)(const uint8_t*, const uint8_t*, float, float, int, int, float*, int);
using GatherFn = void (*)(const ColumnTaps&, const float*, int, int, int, float*);
// pairs(row0, row1, a, b, taps, x0, x1, row): blend and gather fused (AVX2 only).
using PairsFn = void (*)(const uint8_t*, const uint8_t*, float, float, const ColumnTaps&, int, int, float*);

struct Kernels {
  BlendFn blend[5];  // by PixelFormat
  GatherFn gather[5];
  PairsFn pairs[5];
  bool avx2;  // planar blend, and the AVX2 resize and centre crop
};

const Kernels kPortable = {
    {blend_interleaved<3>, blend_interleaved<4>, blend_interleaved<3>, blend_interleaved<4>, blend_interleaved<1>},
    {gather_interleaved<3, 0, 1, 2>, gather_interleaved<4, 0, 1, 2>, gather_interleaved<3, 2, 1, 0>,
     gather_interleaved<4, 2, 1, 0>, gather_interleaved<1, 0, 0, 0>},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
    false};

#if FM_HAVE_AVX2_KERNELS
const Kernels kAvx2 = {
    {blend_planar<3, 0, 1, 2>, blend_planar<4, 0, 1, 2>, blend_planar<3, 2, 1, 0>, blend_planar<4, 2, 1, 0>,
     blend_planar<1, 0, 0, 0>},
    {gather_planar, gather_planar, gather_planar, gather_planar, gather_planar},
    {pairs_planar<3, 0, 1, 2>, pairs_planar<4, 0, 1, 2>, pairs_planar<3, 2, 1, 0>, pairs_planar<4, 2, 1, 0>,
     pairs_planar<1, 0, 0, 0>},
    true};
#endif

const Kernels& kernels() {
#if FM_HAVE_AVX2_KERNELS
  static const Kernels& k = avx2_usable() ? kAvx2 : kPortable;
  return k;
#else
  return kPortable;
#endif
}

}  // namespace

const char* preprocess_kernel_set() { return kernels().avx2 ? "avx2" : "portable"; }

namespace {

// Taps for the kChip samples along one axis (taps.h: the coordinate arithmetic shared with the
// CUDA kernel, float32 rounded as torch rounds it).
void axis_taps(float origin, float extent, int size, CropMode crop, Tap* out) {
  for (int k = 0; k < kChip; ++k) out[k] = taps::axis_tap(origin, extent, size, crop, k);
}

// Produces chip rows (3 planes of 256 floats in [0,1], kPlane apart), columns [x0, x1).
class ChipRows {
 public:
  ChipRows(const Frame& frame, const CropWindow* window, CropMode crop, int x0, int x1)
      : frame_(frame), window_(window), k_(kernels()), x0_(x0), x1_(x1) {
    taps::format_offsets(frame.format, off_);
    nc_ = channels(frame.format);
    if (!window) return;
    Tap tx[kChip];
    axis_taps(window->x, window->width, frame.width, crop, tx);
    axis_taps(window->y, window->height, frame.height, crop, ty_);
    // The source columns the chip columns read: [lo, lo + n).
    int lo = frame.width, hi = 0;
    for (int x = x0; x < x1; ++x) {
      lo = std::min(lo, std::min(tx[x].i0, tx[x].i1));
      hi = std::max(hi, std::max(tx[x].i0, tx[x].i1) + 1);
    }
    lo_ = lo;
    n_ = hi - lo;
    cols_.reset(new ColumnTaps);
    for (int x = x0; x < x1; ++x) {
      cols_->i0[x] = tx[x].i0 - lo;
      cols_->i1[x] = tx[x].i1 - lo;
      cols_->w0[x] = tx[x].w0;
      cols_->w1[x] = tx[x].w1;
    }
    if (k_.avx2 && n_ > kPairRatio * (x1 - x0) && (x1 - x0) % kLanes == 0 && x0 % kLanes == 0) {
      // Sparse: blend and gather fused, pixel pair by pixel pair, straight from the frame where
      // a pair's 8 bytes lie in the row.
      pairs_ = true;
      const int row_bytes = frame.width * nc_;
      for (int x = x0; x < x1; ++x) cols_->pb[x] = tx[x].i0 * nc_;
      for (int g = x0 / kLanes; g < x1 / kLanes; ++g) {
        bool direct = true;
        for (int x = g * kLanes; x < (g + 1) * kLanes; ++x)
          direct = direct && tx[x].i1 == tx[x].i0 + 1 && cols_->pb[x] + 8 <= row_bytes;
        cols_->direct[g] = direct;
      }
    } else if (k_.avx2) {
      // One plane per channel (GRAY: one for all three), kPad readable floats past each's end.
      cols_->make_runs(x0, x1);
      stride_ = nc_ == 1 ? 0 : n_ + kPad;
      blend_.assign(static_cast<size_t>(nc_ == 1 ? 1 : 3) * (n_ + kPad), 0.0f);
    } else {
      blend_.assign(static_cast<size_t>(n_) * nc_, 0.0f);
    }
  }

  // Writes chip row y, columns [x0, x1), to row[c * kPlane + x] (and may write other columns).
  void row(int y, float* row) {
    if (!window_) {  // the frame is the chip
      const float* unit = kUnit.v.data();
      const uint8_t* src = frame_.data + static_cast<size_t>(y) * frame_.stride;
      for (int c = 0; c < 3; ++c)
        for (int x = x0_; x < x1_; ++x) row[c * kPlane + x] = unit[src[x * nc_ + off_[c]]];
      return;
    }
    const Tap& t = ty_[y];
    const float a = t.w0 / 255.0f, b = t.w1 / 255.0f;
    const int f = static_cast<int>(frame_.format);
    if (pairs_) {
      k_.pairs[f](frame_.data + static_cast<size_t>(t.i0) * frame_.stride, frame_.data + static_cast<size_t>(t.i1) * frame_.stride,
                  a, b, *cols_, x0_, x1_, row);
      return;
    }
    k_.blend[f](frame_.data + static_cast<size_t>(t.i0) * frame_.stride, frame_.data + static_cast<size_t>(t.i1) * frame_.stride,
                a, b, lo_, n_, blend_.data(), stride_);
    k_.gather[f](*cols_, blend_.data(), stride_, x0_, x1_, row);
  }

  const Kernels& kernels_used() const { return k_; }

 private:
  const Frame& frame_;
  const CropWindow* window_;
  const Kernels& k_;
  int x0_, x1_;
  int off_[3] = {0, 1, 2};
  int nc_ = 3;
  Tap ty_[kChip];
  std::unique_ptr<ColumnTaps> cols_;  // ~40 KB: on the heap, not on a pool thread's stack
  int lo_ = 0, n_ = 0, stride_ = 0;
  bool pairs_ = false;  // the fused AVX2 path (pairs_planar)
  std::vector<float> blend_;  // one blended source row
};

// Four floats, one per output row of the portable resize: a GCC / Clang vector (SSE, NEON, ...),
// or for other compilers a struct with the few operators the resize uses.
#if defined(__GNUC__) || defined(__clang__)
typedef float Lane4 __attribute__((vector_size(16)));
#else
struct Lane4 {
  float v[4];
  float& operator[](int i) { return v[i]; }
  float operator[](int i) const { return v[i]; }
};
inline Lane4 operator*(const Lane4& a, float b) { return {{a[0] * b, a[1] * b, a[2] * b, a[3] * b}}; }
inline Lane4 operator*(float a, const Lane4& b) { return {{a * b[0], a * b[1], a * b[2], a * b[3]}}; }
inline Lane4 operator+(const Lane4& a, const Lane4& b) { return {{a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]}}; }
inline Lane4 operator-(const Lane4& a, float b) { return {{a[0] - b, a[1] - b, a[2] - b, a[3] - b}}; }
inline Lane4& operator+=(Lane4& a, const Lane4& b) { return a = a + b; }
#endif

// The antialiased resize, portable: four output rows at a time, one per lane of lanes[k], each
// lane summing the chip rows its output row reads (weight 0 for the others: adding 0 * x >= 0
// changes nothing), from a ring of the last 16 chip rows. The horizontal pass gathers at
// irregular offsets, which only vectorises across rows.
void resize_portable(ChipRows& rows, float* out) {
  constexpr int kRing = 16;  // > the 8 chip rows four output rows can read
  constexpr int kL = 4;
  static_assert(kInput % kL == 0, "four output rows per step");
  float ring[kRing][kRowFloats];
  int ring_row[kRing];
  std::fill(ring_row, ring_row + kRing, -1);
  Lane4 lanes[kRowFloats];  // lanes[c * kPlane + k][l]: chip column k for output row y0 + l
  for (int y0 = 0; y0 < kInput; y0 += kL) {
    for (int r = kAa.start[y0]; r <= kAa.start[y0 + kL - 1] + 2; ++r) {
      Lane4 wr;  // chip row r's weight in each of the four output rows (0 where it has none)
      for (int l = 0; l < kL; ++l) {
        const int j = r - kAa.start[y0 + l];
        wr[l] = (j >= 0 && j < AaWeights::kTaps) ? kAa.w[y0 + l][j] : 0.0f;
      }
      float* src = ring[r % kRing];
      if (ring_row[r % kRing] != r) {
        rows.row(r, src);
        ring_row[r % kRing] = r;
      }
      const bool first = r == kAa.start[y0];
      for (int c = 0; c < 3; ++c) {
        Lane4* dst = lanes + c * kPlane;
        const float* s = src + c * kPlane;
        if (first)
          for (int k = 0; k < kChip; ++k) dst[k] = s[k] * wr;
        else
          for (int k = 0; k < kChip; ++k) dst[k] += s[k] * wr;
      }
    }
    for (int c = 0; c < 3; ++c) {
      const Lane4* src = lanes + c * kPlane;
      const float mean = kMean[c], inv_sd = 1.0f / kStd[c];
      float* dst = out + c * kInputPlane + y0 * kInput;
      for (int x = 0; x < kInput; ++x) {
        const Lane4* s = src + kAa.start[x];
        const float* wx = kAa.w[x];
        const Lane4 acc = (s[0] * wx[0] + s[1] * wx[1] + s[2] * wx[2] - mean) * inv_sd;
        for (int l = 0; l < kL; ++l) dst[l * kInput + x] = acc[l];
      }
    }
  }
}

#if FM_HAVE_AVX2_KERNELS
// The antialiased resize, AVX2: one output row at a time from a ring of the last 4 chip rows.
FM_AVX2 void resize_avx2(ChipRows& rows, float* out) {
  constexpr int kRing = 4;  // > the 3 chip rows an output row reads
  alignas(32) float ring[kRing][kRowFloats];
  alignas(32) float v[kRowFloats] = {};  // one vertically resized row (the planes' padding stays 0)
  int made = 0;                          // chip rows [0, made) are made
  for (int y = 0; y < kInput; ++y) {
    const int s = kAa.start[y];
    for (; made < s + AaWeights::kTaps; ++made) rows.row(made, ring[made % kRing]);
    resize_v_avx2(ring[s % kRing], ring[(s + 1) % kRing], ring[(s + 2) % kRing], kAa.w[y], v);
    resize_h_avx2(v, out + static_cast<size_t>(y) * kInput);
  }
}
#endif

}  // namespace

int channels(PixelFormat f) { return taps::format_channels(f); }

void make_chip(const Frame& frame, const CropWindow* window, CropMode crop, float* chip) {
  ChipRows rows(frame, window, crop, 0, kChip);
  std::vector<float> row(kRowFloats);
  for (int y = 0; y < kChip; ++y) {
    rows.row(y, row.data());
    for (int c = 0; c < 3; ++c)
      std::copy(row.begin() + c * kPlane, row.begin() + c * kPlane + kChip, chip + c * kChip * kChip + y * kChip);
  }
}

void preprocess_face(const Frame& frame, const CropWindow* window, CropMode crop, ResizeMode resize, float* out) {
  if (resize == ResizeMode::CenterCrop) {
    constexpr int o = (kChip - kInput) / 2;
    ChipRows rows(frame, window, crop, o, o + kInput);
    alignas(32) float row[kRowFloats];
    for (int y = 0; y < kInput; ++y) {
      rows.row(y + o, row);
#if FM_HAVE_AVX2_KERNELS
      if (rows.kernels_used().avx2) {
        center_avx2(row, out + static_cast<size_t>(y) * kInput);
        continue;
      }
#endif
      center_portable(row, out + static_cast<size_t>(y) * kInput);
    }
    return;
  }
  // Antialiased resize. torch runs the horizontal pass and then the vertical one; here the
  // vertical pass comes first, streaming, then the horizontal one. The passes commute up to float
  // rounding (~1e-7).
  ChipRows rows(frame, window, crop, 0, kChip);
#if FM_HAVE_AVX2_KERNELS
  if (rows.kernels_used().avx2) {
    resize_avx2(rows, out);
    return;
  }
#endif
  resize_portable(rows, out);
}

}  // namespace fm
