// Benchmark of the CUDA preprocessing kernel (launch_preprocess): batches of 1, 8, 32 and 128
// faces cut from one 1920x1080 RGB frame, float32 and half output, for both generations'
// pipelines (py-feat 2.x: square crop + antialiased resize; v2.4: stretch crop + centre crop).
// Prints a table: time per launch back to back (throughput) and of one launch alone (latency,
// median), faces/s, and effective GB/s = (bytes written + frame bytes under the face windows,
// clipped to the frame) / time per launch. One single-threaded CPU figure for scale.
// Without a CUDA device: prints 'SKIPPED: no CUDA device (<reason>)' and exits 77.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "test_support.h"
#include "preprocess/preprocess.h"
#include "preprocess/preprocess_cuda.h"

using namespace fm;

#define CUDA_OK(call)                                                                        \
  do {                                                                                       \
    const cudaError_t e_ = (call);                                                           \
    if (e_ != cudaSuccess) {                                                                 \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      std::exit(1);                                                                          \
    }                                                                                        \
  } while (0)

namespace {

constexpr int kW = 1920, kH = 1080, kBatches[] = {1, 8, 32, 128};
constexpr int kMaxFaces = 128;

using fm_test::lowbias32;

// lib/crop.ts faceCrop's window (float32 steps).
CropWindow face_crop(CropMode mode, float x1, float y1, float x2, float y2) {
  const float cx = (x1 + x2) / 2.0f, cy = (y1 + y2) / 2.0f;
  if (mode == CropMode::Square) {
    const float side = std::max(std::max(x2 - x1, y2 - y1) * 1.2f, 1.0f);
    return CropWindow{cx - side / 2.0f, cy - side / 2.0f, side, side};
  }
  const float w = (x2 - x1) * 1.2f, h = (y2 - y1) * 1.2f;
  const float nx1 = std::max(cx - w / 2.0f, 0.0f), ny1 = std::max(cy - h / 2.0f, 0.0f);
  const float nx2 = std::min(cx + w / 2.0f, static_cast<float>(kW)), ny2 = std::min(cy + h / 2.0f, static_cast<float>(kH));
  return CropWindow{nx1, ny1, nx2 - nx1, ny2 - ny1};
}

double frame_bytes_under(const CropWindow& w) {
  const double x0 = std::max(0.0, static_cast<double>(w.x)), x1 = std::min(static_cast<double>(kW), static_cast<double>(w.x) + w.width);
  const double y0 = std::max(0.0, static_cast<double>(w.y)), y1 = std::min(static_cast<double>(kH), static_cast<double>(w.y) + w.height);
  return std::max(0.0, x1 - x0) * std::max(0.0, y1 - y0) * 3;
}

}  // namespace

int main() {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess || count == 0) {
    std::printf("SKIPPED: no CUDA device (%s)\n",
                err != cudaSuccess ? cudaGetErrorString(err) : "cudaGetDeviceCount found 0 devices");
    return 77;
  }
  cudaDeviceProp prop{};
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device 0: %s, compute capability %d.%d, %d SMs, %.0f GiB\n", prop.name, prop.major, prop.minor,
              prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0);

  // The frame: noise, so caches see real bytes.
  const size_t stride = static_cast<size_t>(kW) * 3;
  std::vector<uint8_t> frame(stride * kH);
  for (size_t i = 0; i < frame.size(); ++i) frame[i] = static_cast<uint8_t>(lowbias32(static_cast<uint32_t>(i)) >> 24);
  uint8_t* d_frame = nullptr;
  CUDA_OK(cudaMalloc(&d_frame, frame.size()));
  CUDA_OK(cudaMemcpy(d_frame, frame.data(), frame.size(), cudaMemcpyHostToDevice));

  // 128 face boxes, 80..400 px, spread over the frame (some over its edges).
  float boxes[kMaxFaces][4];
  uint32_t s = 7;
  auto rnd = [&s]() { s = lowbias32(s + 0x9e3779b9u); return (s >> 8) / 16777216.0f; };
  for (auto& b : boxes) {
    const float side = 80 + 320 * rnd(), x = -40 + (kW - side) * rnd(), y = -40 + (kH - side) * rnd();
    b[0] = x;
    b[1] = y;
    b[2] = x + side * (0.75f + 0.25f * rnd());
    b[3] = y + side;
  }

  struct Pipeline {
    const char* name;
    CropMode crop;
    ResizeMode resize;
  } pipelines[] = {{"square+antialias (2.x)", CropMode::Square, ResizeMode::AntialiasBilinear},
                   {"stretch+centre crop (v2.4)", CropMode::Stretch, ResizeMode::CenterCrop}};

  FaceDesc* d_desc = nullptr;
  void* d_out = nullptr;
  CUDA_OK(cudaMalloc(&d_desc, sizeof(FaceDesc) * kMaxFaces));
  CUDA_OK(cudaMalloc(&d_out, sizeof(float) * kInputFloats * kMaxFaces));
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  CUDA_OK(cudaEventCreate(&e0));
  CUDA_OK(cudaEventCreate(&e1));

  std::printf("\n%-28s %-5s %6s %14s %14s %12s %10s\n", "pipeline", "out", "batch", "us/launch b2b", "us latency", "faces/s",
              "GB/s");
  for (const Pipeline& p : pipelines) {
    std::vector<FaceDesc> desc(kMaxFaces);
    std::vector<double> in_bytes(kMaxFaces + 1, 0.0);  // prefix sums
    for (int i = 0; i < kMaxFaces; ++i) {
      const CropWindow w = face_crop(p.crop, boxes[i][0], boxes[i][1], boxes[i][2], boxes[i][3]);
      desc[i] = FaceDesc{d_frame, static_cast<int64_t>(stride), kW, kH, PixelFormat::RGB, 1, w};
      in_bytes[i + 1] = in_bytes[i] + frame_bytes_under(w);
    }
    CUDA_OK(cudaMemcpy(d_desc, desc.data(), sizeof(FaceDesc) * kMaxFaces, cudaMemcpyHostToDevice));
    CUDA_OK(cudaStreamSynchronize(0));  // the launches are on a non-blocking stream
    for (OutDtype dtype : {OutDtype::Float32, OutDtype::Float16}) {
      const size_t elem = dtype == OutDtype::Float32 ? 4 : 2;
      for (int batch : kBatches) {
        auto launch = [&]() { CUDA_OK(launch_preprocess(d_desc, batch, p.crop, p.resize, dtype, d_out, stream)); };
        for (int i = 0; i < 20; ++i) launch();  // warm-up
        CUDA_OK(cudaStreamSynchronize(stream));
        // Back to back: enough launches for ~200 ms.
        CUDA_OK(cudaEventRecord(e0, stream));
        for (int i = 0; i < 20; ++i) launch();
        CUDA_OK(cudaEventRecord(e1, stream));
        CUDA_OK(cudaEventSynchronize(e1));
        float ms = 0;
        CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
        const int iters = std::max(20, std::min(20000, static_cast<int>(200.0 / std::max(ms / 20, 1e-3f))));
        CUDA_OK(cudaEventRecord(e0, stream));
        for (int i = 0; i < iters; ++i) launch();
        CUDA_OK(cudaEventRecord(e1, stream));
        CUDA_OK(cudaEventSynchronize(e1));
        CUDA_OK(cudaEventElapsedTime(&ms, e0, e1));
        const double us = 1000.0 * ms / iters;
        // Alone: one launch between events, the median of 51.
        std::vector<float> alone;
        for (int i = 0; i < 51; ++i) {
          CUDA_OK(cudaEventRecord(e0, stream));
          launch();
          CUDA_OK(cudaEventRecord(e1, stream));
          CUDA_OK(cudaEventSynchronize(e1));
          float a = 0;
          CUDA_OK(cudaEventElapsedTime(&a, e0, e1));
          alone.push_back(a * 1000.0f);
        }
        std::nth_element(alone.begin(), alone.begin() + 25, alone.end());
        const double bytes = static_cast<double>(batch) * kInputFloats * elem + in_bytes[batch];
        std::printf("%-28s %-5s %6d %14.2f %14.2f %12.0f %10.1f\n", p.name, dtype == OutDtype::Float32 ? "fp32" : "fp16", batch,
                    us, alone[25], batch / (us * 1e-6), bytes / (us * 1e-6) / 1e9);
      }
    }
  }

  // For scale: the CPU path, one thread, square + antialias, 32 faces of the same frame.
  {
    std::vector<float> out(kInputFloats);
    const Frame f{frame.data(), kW, kH, stride, PixelFormat::RGB};
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 32; ++i) {
      const CropWindow w = face_crop(CropMode::Square, boxes[i][0], boxes[i][1], boxes[i][2], boxes[i][3]);
      preprocess_face(f, &w, CropMode::Square, ResizeMode::AntialiasBilinear, out.data());
    }
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("\nCPU (preprocess_face, 1 thread, square+antialias, fp32): %.0f faces/s\n", 32 / sec);
  }

  CUDA_OK(cudaEventDestroy(e0));
  CUDA_OK(cudaEventDestroy(e1));
  CUDA_OK(cudaStreamDestroy(stream));
  CUDA_OK(cudaFree(d_desc));
  CUDA_OK(cudaFree(d_out));
  CUDA_OK(cudaFree(d_frame));
  return 0;
}
