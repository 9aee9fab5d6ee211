// CUDA preprocessing: py-feat's grid_sample chip, torch's antialiased 256->224 resize (or the
// v2.4 centre crop) and the ImageNet normalisation for a whole batch in one launch, written
// straight into the engine's input tensor (float32 or half). The twin of preprocess_cpu.cc:
// sampling coordinates and resize weights come from taps.h (the same float32 arithmetic, compiled
// for the device with explicitly rounded intrinsics); the weighted sums are ordered as the CPU
// orders them (vertical source blend with 1/255 folded in, horizontal gather; for the resize the
// vertical pass, then the horizontal one), so the two differ by float rounding only (~1e-7; nvcc
// may fuse the sums' multiply-adds, the CPU does not).
//
// Work split: one block of 256 threads per (face, band of kBand output rows); blockIdx.x = face *
// kBands + band. Thread t owns chip column t (its column tap lives in registers); the band's chip
// row taps (source row pointers, weights with 1/255 folded in) and vertical resize weights are
// computed once per block into shared memory.
//  - antialiased resize: the band reads chip rows [r0, r0 + nrows) (<= 12). For each, thread t
//    samples chip pixel (r, t) from the frame (2x2 source pixels, 3 channels) and accumulates it
//    into its kBand x 3 vertical-pass registers; these go to shared memory (kBand x 3 x 256), and
//    threads 0..223 then apply the horizontal 3-tap weights of output column t and write
//    kBand x 3 outputs each. A warp's stores are 32 consecutive elements: coalesced.
//  - centre crop: threads 0..223 sample chip pixel (y + 16, t + 16) for the band's rows and write.
// Frame reads: a warp's 32 chip columns map to a contiguous run of source pixels, so each byte
// load instruction touches one or two 128-byte lines (through the read-only cache); 4-byte pixels
// (RGBA/BGRA) are read as one 32-bit word when the frame and stride are 4-byte aligned. The frame
// region a band reads is small and shared by neighbouring bands through L2.
//
// The file also compiles as host code under native/tests/cuda_emu.h, which runs the kernels on the
// CPU for the native tests without a GPU (FM_LAUNCH is the one place that differs).
#include "preprocess_cuda.h"

#include <cuda_fp16.h>

#include <climits>

#include "taps.h"

// kernel<<<grid, block, 0, stream>>>(args...), or the same launch in the host emulation.
#if defined(FM_CUDA_HOST_EMULATION)
#define FM_LAUNCH(kernel, grid, block, stream) fm_emu::launch_kernel(kernel, grid, block, stream)
#else
#define FM_LAUNCH(kernel, grid, block, stream) kernel<<<grid, block, 0, stream>>>
#endif

namespace fm {
namespace {

constexpr int kThreads = kKernelThreads;  // one thread per chip column
constexpr int kBand = kKernelBand;        // output rows per block
constexpr int kBands = kKernelBands;
constexpr int kMaxBandRows = 16;  // chip rows one band reads: <= 12 for the resize (checked by the
                                  // CUDA test), kBand for the centre crop
constexpr int kCropOffset = (kChip - kInput) / 2;
static_assert(kInput % kBand == 0, "bands tile the output");
static_assert(kBand <= kMaxBandRows, "centre-crop rows fit the row taps");

// One chip row's vertical tap: the two source rows and their weights with the 1/255 folded in.
struct RowTap {
  const uint8_t* r0;
  const uint8_t* r1;
  float a, b;
};

struct Source {
  int nc;
  int off[3];
  bool word;  // 4-byte pixels, 4-byte aligned rows: one 32-bit load per pixel
};

__device__ __forceinline__ void load_px(const Source& s, const uint8_t* row, int i, float v[3]) {
  if (s.word) {
    const unsigned p = __ldg(reinterpret_cast<const unsigned*>(row) + i);
#pragma unroll
    for (int k = 0; k < 3; ++k) v[k] = static_cast<float>((p >> (8 * s.off[k])) & 0xffu);
  } else {
    const uint8_t* q = row + i * s.nc;
#pragma unroll
    for (int k = 0; k < 3; ++k) v[k] = static_cast<float>(__ldg(q + s.off[k]));
  }
}

// Chip pixel (row tap r, column tap tx) in [0,1], RGB.
__device__ __forceinline__ void chip_px(const Source& s, const RowTap& r, const taps::Tap& tx, bool window, float c[3]) {
  if (!window) {  // the frame is the chip: torch's frame / 255
    float p[3];
    load_px(s, r.r0, tx.i0, p);
#pragma unroll
    for (int k = 0; k < 3; ++k) c[k] = taps::fdiv(p[k], 255.0f);
    return;
  }
  float p00[3], p01[3], p10[3], p11[3];
  load_px(s, r.r0, tx.i0, p00);
  load_px(s, r.r0, tx.i1, p01);
  load_px(s, r.r1, tx.i0, p10);
  load_px(s, r.r1, tx.i1, p11);
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    const float m0 = r.a * p00[k] + r.b * p10[k];
    const float m1 = r.a * p01[k] + r.b * p11[k];
    c[k] = tx.w0 * m0 + tx.w1 * m1;
  }
}

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }

template <typename Out, ResizeMode kResize>
__device__ __forceinline__ void preprocess_body(const FaceDesc* __restrict__ faces, CropMode crop, Out* __restrict__ out) {
  __shared__ RowTap s_rows[kMaxBandRows];
  __shared__ float s_wr[kMaxBandRows][kBand];  // resize: weight of band chip row rr in output row y0 + yy
  __shared__ float s_v[kBand][3][kChip];       // resize: vertical pass, per output row, channel, chip column

  const int face = blockIdx.x / kBands;
  const int y0 = (blockIdx.x % kBands) * kBand;
  const int t = threadIdx.x;
  const FaceDesc f = faces[face];
  Out* dst = out + static_cast<size_t>(face) * kInputFloats + static_cast<size_t>(y0) * kInput;

  Source src;
  src.nc = taps::format_channels(f.format);
  taps::format_offsets(f.format, src.off);
  const bool window = f.has_window != 0;
  const bool valid = src.nc > 0 && f.data != nullptr && f.width >= 1 && f.height >= 1 &&
                     f.stride >= static_cast<int64_t>(f.width) * src.nc && (window || (f.width >= kChip && f.height >= kChip));
  if (!valid) {  // uniform per block: no barrier is skipped by some threads only
    if (t < kInput)
      for (int yy = 0; yy < kBand; ++yy)
        for (int k = 0; k < 3; ++k) store(dst + k * kInputPlane + yy * kInput + t, __int_as_float(0x7fc00000));
    return;
  }
  src.word = src.nc == 4 && (reinterpret_cast<uintptr_t>(f.data) % 4 == 0) && (f.stride % 4 == 0);

  // The chip rows this band reads.
  int r0, nrows;
  if (kResize == ResizeMode::AntialiasBilinear) {
    int s_first, s_last;
    float w[taps::kAaTaps];
    taps::aa_weights(y0, &s_first, w);
    taps::aa_weights(y0 + kBand - 1, &s_last, w);
    r0 = s_first;
    nrows = s_last + taps::kAaTaps - s_first;
  } else {
    r0 = y0 + kCropOffset;
    nrows = kBand;
  }

  if (t < nrows) {
    const int r = r0 + t;
    const taps::Tap ty = window ? taps::axis_tap(f.window.y, f.window.height, f.height, crop, r) : taps::Tap{r, r, 1.0f, 0.0f};
    s_rows[t] = RowTap{f.data + static_cast<int64_t>(ty.i0) * f.stride, f.data + static_cast<int64_t>(ty.i1) * f.stride,
                       taps::fdiv(ty.w0, 255.0f), taps::fdiv(ty.w1, 255.0f)};
  }
  if (kResize == ResizeMode::AntialiasBilinear && t < kBand) {
    int s;
    float w[taps::kAaTaps];
    taps::aa_weights(y0 + t, &s, w);
    for (int rr = 0; rr < kMaxBandRows; ++rr) {
      const int j = r0 + rr - s;
      s_wr[rr][t] = j == 0 ? w[0] : (j == 1 ? w[1] : (j == 2 ? w[2] : 0.0f));  // constant indices: no local memory
    }
  }
  __syncthreads();

  if (kResize == ResizeMode::CenterCrop) {
    if (t >= kInput) return;
    const int x = t + kCropOffset;
    const taps::Tap tx = window ? taps::axis_tap(f.window.x, f.window.width, f.width, crop, x) : taps::Tap{x, x, 1.0f, 0.0f};
    for (int yy = 0; yy < kBand; ++yy) {
      float c[3];
      chip_px(src, s_rows[yy], tx, window, c);
#pragma unroll
      for (int k = 0; k < 3; ++k)
        store(dst + k * kInputPlane + yy * kInput + t, taps::fdiv(taps::fsub(c[k], taps::norm_mean(k)), taps::norm_std(k)));
    }
    return;
  }

  // Vertical pass: chip column t of the band's chip rows, weighted into each output row.
  const taps::Tap tx = window ? taps::axis_tap(f.window.x, f.window.width, f.width, crop, t) : taps::Tap{t, t, 1.0f, 0.0f};
  float acc[kBand][3];
#pragma unroll
  for (int yy = 0; yy < kBand; ++yy)
#pragma unroll
    for (int k = 0; k < 3; ++k) acc[yy][k] = 0.0f;
  for (int rr = 0; rr < nrows; ++rr) {
    float c[3];
    chip_px(src, s_rows[rr], tx, window, c);
#pragma unroll
    for (int yy = 0; yy < kBand; ++yy) {
      const float w = s_wr[rr][yy];
#pragma unroll
      for (int k = 0; k < 3; ++k) acc[yy][k] += c[k] * w;
    }
  }
#pragma unroll
  for (int yy = 0; yy < kBand; ++yy)
#pragma unroll
    for (int k = 0; k < 3; ++k) s_v[yy][k][t] = acc[yy][k];
  __syncthreads();

  // Horizontal pass: output column t, 3 taps, then the normalisation.
  if (t >= kInput) return;
  int sx;
  float wx[taps::kAaTaps];
  taps::aa_weights(t, &sx, wx);
#pragma unroll
  for (int k = 0; k < 3; ++k) {
    const float mean = taps::norm_mean(k);
    const float inv_sd = taps::fdiv(1.0f, taps::norm_std(k));  // as the CPU: x * (1/sd)
#pragma unroll
    for (int yy = 0; yy < kBand; ++yy) {
      const float* v = &s_v[yy][k][sx];
      store(dst + k * kInputPlane + yy * kInput + t, ((v[0] * wx[0] + v[1] * wx[1] + v[2] * wx[2]) - mean) * inv_sd);
    }
  }
}

}  // namespace
}  // namespace fm

// The kernels, by the names kernel_name() gives: extern "C" so that the addon finds them in the
// embedded fatbin with cuModuleGetFunction.
#define FM_KERNEL(name, Out, resize)                                                                        \
  extern "C" __global__ void __launch_bounds__(fm::kKernelThreads)                                          \
      name(const fm::FaceDesc* __restrict__ faces, fm::CropMode crop, Out* __restrict__ out) {              \
    fm::preprocess_body<Out, resize>(faces, crop, out);                                                      \
  }
FM_KERNEL(fm_preprocess_f32_aa, float, fm::ResizeMode::AntialiasBilinear)
FM_KERNEL(fm_preprocess_f32_cc, float, fm::ResizeMode::CenterCrop)
FM_KERNEL(fm_preprocess_f16_aa, __half, fm::ResizeMode::AntialiasBilinear)
FM_KERNEL(fm_preprocess_f16_cc, __half, fm::ResizeMode::CenterCrop)
#undef FM_KERNEL

namespace fm {
namespace {

template <typename Out> struct Kernels;
template <> struct Kernels<float> {
  static constexpr auto aa = fm_preprocess_f32_aa;
  static constexpr auto cc = fm_preprocess_f32_cc;
};
template <> struct Kernels<__half> {
  static constexpr auto aa = fm_preprocess_f16_aa;
  static constexpr auto cc = fm_preprocess_f16_cc;
};

template <typename Out>
cudaError_t launch_typed(const FaceDesc* d_faces, int n, CropMode crop, ResizeMode resize, Out* out, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>(n) * kBands);
  if (resize == ResizeMode::AntialiasBilinear)
    FM_LAUNCH(Kernels<Out>::aa, grid, kThreads, stream)(d_faces, crop, out);
  else
    FM_LAUNCH(Kernels<Out>::cc, grid, kThreads, stream)(d_faces, crop, out);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_preprocess(const FaceDesc* d_faces, int n, CropMode crop, ResizeMode resize, OutDtype dtype,
                              void* d_out, cudaStream_t stream) {
  if (n < 0 || n > INT_MAX / kBands) return cudaErrorInvalidValue;
  if (crop != CropMode::Stretch && crop != CropMode::Square) return cudaErrorInvalidValue;
  if (resize != ResizeMode::CenterCrop && resize != ResizeMode::AntialiasBilinear) return cudaErrorInvalidValue;
  if (dtype != OutDtype::Float32 && dtype != OutDtype::Float16) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (d_faces == nullptr || d_out == nullptr) return cudaErrorInvalidValue;
  switch (dtype) {
    case OutDtype::Float32: return launch_typed(d_faces, n, crop, resize, static_cast<float*>(d_out), stream);
    case OutDtype::Float16: return launch_typed(d_faces, n, crop, resize, static_cast<__half*>(d_out), stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace fm
