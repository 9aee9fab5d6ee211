// Benchmark of what the TensorRT pipeline (tensorrt/pipeline.h) costs around the engine, on a GPU
// without TensorRT: the pipeline over the stand-in engine (copy_engine.h, whose "inference" is
// three 64-byte copies a face, replayed from a CUDA graph), so each batch makes the whole trip
// but the network: the frame bytes its crops read uploaded (straight from an alloc_pinned()
// frame, or through the context's pinned staging from an ordinary one), one preprocessing
// launch, the engine's enqueue, the outputs into pinned memory, `done` on the context's thread.
// TensorRT's own time adds to these figures.
// A batch's faces come four to a 1920x1080 RGB frame (as from several cameras: each frame is
// uploaded on its own, and on a GPU each is a buffer of its own, so an ordinary frame's staging
// copies read memory, not the CPU's cache, as a camera's would), 120-300 px boxes at random places; a
// batch of 1 is one face in one frame. Prints, for pinned and ordinary frames, uploading the
// blocks the crops read (the default) and whole rows (the baseline, a second pipeline in the same
// process): the bytes uploaded a face (batch 1, and batches of 8-128 together), batch-1 latency
// from submit() to `done` (p50 / p99 of batches run one at a time), and faces/s at batch 1, 8,
// 32, 64 and 128 with four batches in flight (two contexts, two batches each), each size for
// about a second; plus the stages' mean GPU times. The stand-in's copies (three a face) bound the
// large batches' rate where the uploads do not.
// Also runs on the host stand-in driver (numbers meaningless there). Without a CUDA device:
// 'SKIPPED: no CUDA device (<reason>)' and exit code 77.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "preprocess/preprocess.h"
#include "tensorrt/cuda_driver.h"
#include "tensorrt/pipeline.h"
#include "tensorrt/upload_plan.h"
#include "copy_engine.h"
#include "frame_support.h"

using namespace fm;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kW = 1920, kH = 1080, kMaxBatch = 128, kInFlight = 4, kFacesPerFrame = 4;

// n faces, four to a frame, 120-300 px boxes at random places.
std::vector<trt::FaceIn> faces_of(int n) {
  std::vector<trt::FaceIn> faces;
  for (int k = 0; k < n; ++k) {
    const uint32_t r = fm_test::lowbias32(static_cast<uint32_t>(k) + 17u);
    const float side = 120.0f + static_cast<float>(r % 181u);
    const float x = static_cast<float>((r >> 8) % static_cast<uint32_t>(kW - 300));
    const float y = static_cast<float>((r >> 20) % static_cast<uint32_t>(kH - 330));
    trt::FaceIn f;
    f.frame = k / kFacesPerFrame;
    f.has_window = true;
    f.window = fm_test::face_crop(CropMode::Square, x, y, x + side, y + side * 1.1f, kW, kH);
    faces.push_back(f);
  }
  return faces;
}

// The frames n faces of faces_of() refer to: one of `pool` for each four, in turn.
std::vector<trt::FrameIn> frames_of(const std::vector<trt::FrameIn>& pool, int n) {
  std::vector<trt::FrameIn> frames;
  for (int i = 0; i < (n + kFacesPerFrame - 1) / kFacesPerFrame; ++i) frames.push_back(pool[static_cast<size_t>(i) % pool.size()]);
  return frames;
}

// The bytes the plan uploads.
size_t moved(const trt::UploadPlan& plan) {
  size_t n = 0;
  for (size_t i = 0; i < plan.span.size(); ++i)
    if (plan.whole[i]) n += plan.span[i];
  for (const trt::UploadBlock& b : plan.blocks) n += static_cast<size_t>(b.last - b.first + 1) * b.bytes;
  return n;
}

// Runs batches of `faces`, at most `depth` in flight, at least `count` of them and until
// `seconds` have passed since the first was submitted; the submit-to-done time of each, and how
// many ran. False (with the error printed) if any batch failed.
bool run(trt::Pipeline& p, const std::vector<trt::FrameIn>& frames, const std::vector<trt::FaceIn>& faces, int count, int depth,
         std::vector<double>* latencies_us, double seconds = 0, int* ran = nullptr) {
  std::mutex m;
  std::condition_variable cv;
  int in_flight = 0;
  bool ok = true;
  const Clock::time_point start = Clock::now();
  int i = 0;
  for (; i < count || std::chrono::duration<double>(Clock::now() - start).count() < seconds; ++i) {
    {
      std::unique_lock<std::mutex> l(m);
      cv.wait(l, [&] { return in_flight < depth; });
      ++in_flight;
    }
    const Clock::time_point t0 = Clock::now();
    p.submit(frames, faces, [&, t0](trt::BatchResult&& r) {
      const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      std::lock_guard<std::mutex> l(m);
      if (!r.ok && ok) std::printf("  batch failed: %s\n", r.error.c_str());
      ok = ok && r.ok;
      if (latencies_us != nullptr) latencies_us->push_back(us);
      --in_flight;
      cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> l(m);
  cv.wait(l, [&] { return in_flight == 0; });
  if (ran != nullptr) *ran = i;
  return ok;
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

}  // namespace

int main() {
  const cu::GpuInfo& g = cu::gpu_info();
  if (!g.initialized || g.device_count < 1) {
    std::printf("SKIPPED: no CUDA device (%s)\n", g.driver_error.empty() ? "cuInit failed" : g.driver_error.c_str());
    return 77;
  }
  cu::PrimaryContext ctx;
  std::string error;
  if (!ctx.open(0, &error) || !ctx.bind(&error)) {
    std::printf("FAIL: %s\n", error.c_str());
    return 1;
  }
  const size_t bytes = static_cast<size_t>(kW) * kH * 3, stride = static_cast<size_t>(kW) * 3;
  const int batches[] = {1, 8, 32, 64, 128};
  const bool host = g.name == "Host stand-in";
  // A buffer of each kind for each frame of the largest batch (on the host stand-in, one).
  const int frame_count = host ? 1 : kMaxBatch / kFacesPerFrame;
  std::vector<std::vector<uint8_t>> ordinary(static_cast<size_t>(frame_count), std::vector<uint8_t>(bytes));
  for (int i = 0; i < frame_count; ++i) fm_test::fill_noise(ordinary[static_cast<size_t>(i)].data(), bytes, static_cast<uint32_t>(i) + 1);
  const int latency_runs = host ? 20 : 2000, warm = host ? 2 : 16;
  const double seconds = host ? 0 : 1.0;  // of each batch size's faces/s (the host: a few batches)
  bool ok = true;
  // Each upload plan in its own pipeline, one after the other: the blocks the crops read where
  // they are at most half of the rows' bytes (the default), and whole rows (the baseline).
  for (const bool blocks : {true, false}) {
    trt::PipelineOptions o;
    o.streams = 2;
    o.max_batch = kMaxBatch;
    o.upload_blocks = blocks;
    auto p = trt::Pipeline::start(std::make_unique<fm_test::CopyEngine>(2, kMaxBatch, /*half=*/true, 1, /*graphs=*/true), o, &error);
    if (!p) {
      std::printf("FAIL: pipeline start: %s\n", error.c_str());
      return 1;
    }
    if (blocks) {  // the first pipeline: the header
      std::printf("pipeline on %s (sm_%d%d), preprocessing: %s; stand-in engine (float16 input, CUDA graphs), 2 contexts; four faces a 1920x1080 frame\n\n",
                  g.name.c_str(), g.cc_major, g.cc_minor, p->preprocessing());
      std::printf("%-34s %11s %11s %10s %10s", "frame, upload", "KB/face b1", "KB/face b8+", "b1 p50 us", "b1 p99 us");
      for (int b : batches) std::printf(" %13s", ("faces/s b" + std::to_string(b)).c_str());
      std::printf("\n");
    }
    std::vector<uint8_t*> pinned;
    std::vector<trt::FrameIn> kinds[2];  // pinned frames, ordinary frames
    for (int i = 0; i < frame_count; ++i) {
      pinned.push_back(static_cast<uint8_t*>(p->alloc_pinned(bytes, &error)));
      if (pinned.back() == nullptr) {
        std::printf("FAIL: alloc_pinned: %s\n", error.c_str());
        return 1;
      }
      fm_test::fill_noise(pinned.back(), bytes, static_cast<uint32_t>(i) + 1);
      kinds[0].push_back({pinned.back(), kW, kH, stride, PixelFormat::RGB});
      kinds[1].push_back({ordinary[static_cast<size_t>(i)].data(), kW, kH, stride, PixelFormat::RGB});
    }
    for (int fi = 0; fi < 2 && ok; ++fi) {
      const std::vector<trt::FaceIn> one = faces_of(1);
      const std::vector<trt::FrameIn> single = frames_of(kinds[fi], 1);
      const double b1_kb = static_cast<double>(moved(trt::plan_uploads(single, one, CropMode::Square, blocks))) / 1024;
      size_t larger_bytes = 0, larger_faces = 0;
      for (int b : batches) {
        if (b == 1) continue;
        larger_bytes += moved(trt::plan_uploads(frames_of(kinds[fi], b), faces_of(b), CropMode::Square, blocks));
        larger_faces += static_cast<size_t>(b);
      }
      ok = run(*p, single, one, 10 * warm, 1, nullptr);  // warm-up: graphs captured, buffers grown
      std::vector<double> lat;
      ok = ok && run(*p, single, one, latency_runs, 1, &lat);
      const std::string name = std::string(fi == 0 ? "pinned (allocFrame)" : "ordinary") + (blocks ? ", crop blocks" : ", whole rows");
      std::printf("%-34s %11.0f %11.0f %10.1f %10.1f", name.c_str(), b1_kb, static_cast<double>(larger_bytes) / 1024 / static_cast<double>(larger_faces),
                  percentile(lat, 0.5), percentile(lat, 0.99));
      for (int b : batches) {
        const std::vector<trt::FaceIn> faces = faces_of(b);
        const std::vector<trt::FrameIn> frames = frames_of(kinds[fi], b);
        ok = ok && run(*p, frames, faces, warm, kInFlight, nullptr);  // warm-up at this size
        const Clock::time_point t0 = Clock::now();
        int count = 0;
        ok = ok && run(*p, frames, faces, std::max(2, 64 / b), kInFlight, nullptr, seconds, &count);
        const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
        std::printf(" %13.0f", static_cast<double>(count) * b / sec);
      }
      std::printf("\n");
    }
    const trt::PipelineStats st = p->stats();
    if (st.batches > 0 && blocks) {
      const double n = static_cast<double>(st.batches);
      std::printf("  mean a batch over every batch of the crop-blocks pipeline (CUDA events): upload %.1f us, preprocess %.1f us, engine %.1f us, download %.1f us; "
                  "host work on the contexts' threads %.1f us; batch start to outputs %.1f us\n",
                  1000 * st.upload_ms / n, 1000 * st.preprocess_ms / n, 1000 * st.infer_ms / n, 1000 * st.download_ms / n,
                  1000 * st.host_ms / n, 1000 * st.wall_ms / n);
    }
    p->close();
    for (uint8_t* frame : pinned) p->free_pinned(frame);
    if (!ok) break;
  }
  if (!ok) std::printf("FAIL: a batch failed\n");
  return ok ? 0 : 1;
}
