// The TensorRT pipeline (tensorrt/pipeline.h) on a GPU, without TensorRT (and, as ctest
// pipeline_host and pipeline_host_cpu, against a host-memory stand-in libcuda.so.1 on any machine,
// which runs the kernels' source on the CPU or refuses them): a stand-in engine whose
// "inference" copies two 16-float slices of each face's preprocessed input into its two outputs.
// So every batch goes through the real data path (the upload plan, pinned staging and
// alloc_pinned frames, the embedded kernels through the driver API, two batches issued per
// context, output copies into pinned memory, the stage timings) and the slices are compared with
// the CPU preprocessing of the same faces (max abs <= 1e-5). Batches from several frames at once,
// more batches than contexts, an oversized batch refused alone, both crops and resizes, batches
// below the profile's smallest padded to it.
// Without a CUDA device: 'SKIPPED: ...' and exit code 77.
//
// Built with FM_TEST_TENSORRT_ENGINE (scripts/check-tensorrt.sh, against TensorRT headers), the
// same tests run over TensorRT's TrtEngine (runtime.cc) instead: it loads a plan for the stand-in
// libnvinfer (tests/fake_trt_runtime.cc) describing CopyEngine's tensors and copies, so
// deserialization, contexts, shapes, addresses, enqueueV3 and its CUDA-graph capture run through
// TensorRT's own API, and the stand-in reports any call that breaks what TensorRT states.
#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "preprocess/preprocess.h"
#include "tensorrt/cuda_driver.h"
#include "tensorrt/engine.h"
#include "tensorrt/kernels.h"
#include "tensorrt/pipeline.h"
#include "copy_engine.h"
#include "frame_support.h"
#if defined(FM_TEST_TENSORRT_ENGINE)
#include "tensorrt/runtime.h"
#endif

using namespace fm;
using fm::trt::FaceIn;
using fm::trt::FrameIn;
using fm_test::check;
using fm_test::CopyEngine;
using fm_test::kOutputs;
using fm_test::kSlice;
using fm_test::kSliceAt;
using fm_test::face_crop;
using fm_test::fill_noise;

namespace {

constexpr int kSkip = 77;

#if defined(FM_TEST_TENSORRT_ENGINE)
// A plan for the stand-in libnvinfer (fake_trt_runtime.cc) with these tensors; each output's rows
// come from CopyEngine's slice of the input.
std::string fake_plan(const std::vector<trt::TensorDesc>& tensors) {
  std::string plan = "FAKE-TRT-PLAN 1\n";
  for (size_t i = 0; i < tensors.size(); ++i) {
    const trt::TensorDesc& t = tensors[i];
    plan += std::string(t.input ? "input " : "output ") + t.name + " " + t.dtype_name;
    for (int64_t d : t.shape) plan += " " + std::to_string(d);
    plan += t.input ? " profile " + std::to_string(t.min_batch) + " " + std::to_string(t.opt_batch) + " " + std::to_string(t.max_batch)
                    : " from " + std::to_string(kSliceAt[i - 1]);
    plan += "\n";
  }
  return plan;
}
#endif

// The engine under test: CopyEngine (with one tensor's shape changed, for the refusals); with
// FM_TEST_TENSORRT_ENGINE, TensorRT's TrtEngine loading a stand-in plan of the same tensors. Null,
// with *error (or a failed check when error is null), if it cannot be made.
std::unique_ptr<trt::Engine> make_engine(int contexts, int64_t max_batch, bool half = false, int64_t min_batch = 1, bool graphs = false,
                                        int reshape = -1, std::vector<int64_t> shape = {}, std::string* error = nullptr) {
  auto e = std::make_unique<CopyEngine>(contexts, max_batch, half, min_batch, graphs);
  if (reshape >= 0) e->reshape(static_cast<size_t>(reshape), std::move(shape));
#if defined(FM_TEST_TENSORRT_ENGINE)
  const std::string plan = fake_plan(e->tensors());
  e.reset();
  std::string why;
  std::unique_ptr<trt::Engine> t = trt::TrtEngine::load(plan.data(), plan.size(), contexts, 0, &why, graphs);
  if (!t) {
    if (error != nullptr) *error = why;
    else check(false, "TrtEngine::load of the stand-in plan", why);
  }
  return t;
#else
  (void)error;
  return e;
#endif
}
struct Frames {
  std::vector<uint8_t> hd, gray, chip;
  uint8_t* pinned = nullptr;
  std::vector<FrameIn> in;
};

// min_batch > 1: an engine whose profile starts above 1; smaller batches run padded to it.
// graphs: the engine's enqueues go through the CUDA-graph runner (replays after each size's first
// batch; on the host stand-in, captures of its copies), whose fallbacks the environment can force.
void run_pipeline(CropMode crop, ResizeMode resize, bool half, int64_t min_batch = 1, bool graphs = false) {
  const std::string name = std::string(crop == CropMode::Square ? "square" : "stretch") + (resize == ResizeMode::CenterCrop ? "/centre crop" : "/antialias") +
                           (half ? " (float16 engine)" : "") + (min_batch > 1 ? " (minBatch " + std::to_string(min_batch) + ")" : "") +
                           (graphs ? " (CUDA graphs)" : "");
  constexpr int64_t kMax = 16;
  std::string error;
  trt::PipelineOptions o;
  o.streams = 2;
  o.crop = crop;
  o.resize = resize;
  o.max_batch = kMax;
  auto engine = make_engine(2, kMax, half, min_batch, graphs);
  if (!engine) return;
  auto p = trt::Pipeline::start(std::move(engine), o, &error);
  if (!p) {
    check(false, name + ": pipeline starts", error);
    return;
  }
  // The embedded kernels run (on the host stand-in: their source on the CPU) unless the stand-in
  // is told to refuse them: then CPU preprocessing, with the reason.
  const char* refuse = std::getenv("FM_HOST_CUDA_NO_KERNELS");
  const bool refused = cu::gpu_info().name == "Host stand-in" && refuse != nullptr && *refuse != '\0' && std::strcmp(refuse, "0") != 0;
  const bool cuda = trt::PreprocessKernels::embedded() && !refused;
  check(std::string(p->preprocessing()) == (cuda ? "cuda" : "cpu"), name + ": preprocessing where expected",
        std::string(p->preprocessing()) + " " + p->preprocessing_note());
  check(cuda == p->preprocessing_note().empty(), name + ": CPU preprocessing says why");
  Frames f;
  f.hd.resize(1920 * 1080 * 3);
  fill_noise(f.hd.data(), f.hd.size(), 1);
  f.gray.resize(333 * 211 + 211 * 5);
  fill_noise(f.gray.data(), f.gray.size(), 2);
  f.chip.resize(256 * 256 * 3);
  fill_noise(f.chip.data(), f.chip.size(), 3);
  const size_t pinned_bytes = 640 * 4 * 360;
  f.pinned = static_cast<uint8_t*>(p->alloc_pinned(pinned_bytes, &error));
  check(f.pinned != nullptr, name + ": alloc_pinned", error);
  if (!f.pinned) return;
  fill_noise(f.pinned, pinned_bytes, 4);
  f.in = {FrameIn{f.hd.data(), 1920, 1080, 1920 * 3, PixelFormat::RGB}, FrameIn{f.gray.data(), 333, 211, 338, PixelFormat::GRAY},
          FrameIn{f.chip.data(), 256, 256, 768, PixelFormat::BGR}, FrameIn{f.pinned, 640, 360, 2560, PixelFormat::BGRA}};

  std::mt19937 rng(11);
  struct Expect {
    std::vector<float> slice[kOutputs];
  };
  std::mutex m;
  std::condition_variable cv;
  int pending = 0, worst_batch = -1;
  double worst = 0;
  int refused_ok = 0;
  constexpr int kBatches = 40;
  for (int bi = 0; bi <= kBatches; ++bi) {
    const bool oversized = bi == kBatches / 2;
    const int n = oversized ? static_cast<int>(kMax) + 1 : 1 + static_cast<int>(rng() % kMax);
    std::vector<FaceIn> faces;
    auto want = std::make_shared<std::vector<Expect>>();
    for (int k = 0; k < n; ++k) {
      FaceIn face;
      face.frame = static_cast<int>(rng() % 4);
      const FrameIn& fr = f.in[static_cast<size_t>(face.frame)];
      if (face.frame == 2) {
        face.has_window = false;
      } else {
        const float side = 20.0f + static_cast<float>(rng() % 400);
        const float x = -60.0f + static_cast<float>(rng() % static_cast<unsigned>(fr.width + 60));
        const float y = -60.0f + static_cast<float>(rng() % static_cast<unsigned>(fr.height + 60));
        face.has_window = true;
        face.window = face_crop(crop, x, y, x + side, y + side * 1.1f, fr.width, fr.height);
      }
      std::vector<float> full(kInputFloats);
      preprocess_face(Frame{fr.data, fr.width, fr.height, fr.stride, fr.format}, face.has_window ? &face.window : nullptr, crop, resize, full.data());
      Expect e;
      for (int o = 0; o < kOutputs; ++o) e.slice[o].assign(full.begin() + kSliceAt[o], full.begin() + kSliceAt[o] + kSlice);
      want->push_back(std::move(e));
      faces.push_back(face);
    }
    {
      std::lock_guard<std::mutex> l(m);
      ++pending;
    }
    p->submit(f.in, faces, [&, want, n, bi, oversized](trt::BatchResult&& r) {
      std::lock_guard<std::mutex> l(m);
      if (oversized) {
        refused_ok += !r.ok && r.error.find("a batch of " + std::to_string(n)) != std::string::npos;
      } else if (!r.ok || r.outputs.size() != kOutputs || r.outputs[0].size() != static_cast<size_t>(n) * kSlice) {
        worst = INFINITY;
        worst_batch = bi;
        std::printf("  batch %d: %s\n", bi, r.ok ? "wrong output sizes" : r.error.c_str());
      } else {
        for (int k = 0; k < n; ++k)
          for (int o = 0; o < kOutputs; ++o)
            for (int j = 0; j < kSlice; ++j) {
              const double d = std::fabs(r.outputs[o][static_cast<size_t>(k * kSlice + j)] - (*want)[static_cast<size_t>(k)].slice[o][static_cast<size_t>(j)]);
              if (std::isnan(d) || d > worst) {
                worst = std::isnan(d) ? INFINITY : d;
                worst_batch = bi;
              }
            }
      }
      --pending;
      cv.notify_all();
    });
  }
  {
    std::unique_lock<std::mutex> l(m);
    cv.wait(l, [&] { return pending == 0; });
  }
  // Half: the CPU value rounded to float16 (at most 2^-11 relative, < 1e-3 for |v| < 2.7). Float32
  // on the host stand-in (the kernels' source, or the CPU path itself): bit for bit.
  const bool host = cu::gpu_info().name == "Host stand-in";
  check(worst <= (half ? 1e-3 : (host ? 0.0 : 1e-5)), name + ": every face's slices equal the CPU path's", "max |GPU - CPU| = " + std::to_string(worst) + " (batch " + std::to_string(worst_batch) + ")");
  std::printf("  %-60s max |GPU - CPU| = %.3g\n", name.c_str(), worst);
  check(refused_ok == 1, name + ": an oversized batch is refused alone");
  const trt::PipelineStats st = p->stats();
  check(st.batches == kBatches, name + ": stats count the batches", std::to_string(st.batches));
  check(st.upload_ms > 0 && st.infer_ms > 0, name + ": stage times recorded");
  if (graphs) {
    const std::string counts = std::to_string(st.graphs_ready) + " replaying, " + std::to_string(st.graphs_failed) + " fell back";
    if (std::getenv("FM_HOST_CUDA_NO_GRAPHS") != nullptr) {
      check(st.graphs_ready == 0 && st.graphs_failed >= 1, name + ": a refused capture turns graphs off, nothing lost", counts);
    } else if (std::getenv("FM_HOST_CUDA_GRAPH_LAUNCH_FAIL_AT") != nullptr) {
      check(st.graphs_ready >= 1 && st.graphs_failed >= 1, name + ": a failed replay turns its batch size off, nothing lost", counts);
    } else {
      check(st.graphs_ready >= 1 && st.graphs_failed == 0, name + ": batch sizes seen twice replay a graph", counts);
    }
  }
  p->close();
  p->free_pinned(f.pinned);
}

// Engines whose tensors the pipeline cannot size are refused at start, with the reason.
void refuses_unservable_engines() {
  // The pipeline refuses them at start; TrtEngine already at load the outputs it cannot size (it
  // asks the context for their shapes at a batch: [1,-1] there).
  struct Case {
    const char* what;
    int tensor;
    std::vector<int64_t> shape;
    std::vector<const char*> says;
  };
  const Case cases[] = {{"a fixed batch", 0, {4, 3, kInput, kInput}, {"fixed batch of 4"}},
                        {"an output without the batch axis", 1, {16, kSlice}, {"has shape [16,16]", "not [batch"}},
                        {"a data-dependent output dimension", 2, {-1, -1}, {"has shape [", "-1]", "not [batch"}}};
  for (const Case& c : cases) {
    trt::PipelineOptions o;
    o.streams = 1;
    o.max_batch = 8;
    std::string error;
    auto e = make_engine(1, 8, false, 1, false, c.tensor, c.shape, &error);
    auto p = e ? trt::Pipeline::start(std::move(e), o, &error) : nullptr;
    bool says = true;
    for (const char* s : c.says) says = says && error.find(s) != std::string::npos;
    check(!p && says, std::string("an engine with ") + c.what + " is refused", error);
  }
  // A maxBatch below the profile's smallest batch could not be padded within its buffers.
  trt::PipelineOptions o;
  o.streams = 1;
  o.max_batch = 2;
  std::string error;
  auto e = make_engine(1, 8, false, 4);
  auto p = e ? trt::Pipeline::start(std::move(e), o, &error) : nullptr;
  check(!p && error.find("maxBatch 2 is outside the engine's profile [4, 8]") != std::string::npos, "a maxBatch below the profile's minimum is refused", error);
}

// A context-fatal error surfacing in an enqueue (the host stand-in's FM_HOST_CUDA_CONTAIN_AT=37:
// the 4th batch's first "inference" copy fails with CUDA_ERROR_CONTAINED; batches of 4 faces make
// 12 copies each). Batches go one at a time, so only the failed batch's own clean-up can find the
// context unusable: it must say why, the model must say it is lost, and later batches are refused
// at once. Every batch is answered exactly once.
// `count` batches of 4 chips, each submitted once the one before it is answered: each one's
// outcome ("ok" or its error), and the number of answers.
std::vector<std::string> one_at_a_time(trt::Pipeline& p, int count, int* answers) {
  std::vector<uint8_t> chip(256 * 256 * 3);
  fill_noise(chip.data(), chip.size(), 5);
  const std::vector<FrameIn> frames = {FrameIn{chip.data(), 256, 256, 768, PixelFormat::RGB}};
  std::vector<std::string> outcome;
  for (int bi = 0; bi < count; ++bi) {
    std::mutex m;
    std::condition_variable cv;
    int calls = 0;
    std::string got;
    p.submit(frames, std::vector<FaceIn>(4), [&](trt::BatchResult&& r) {
      std::lock_guard<std::mutex> l(m);
      got = r.ok ? "ok" : r.error;
      ++calls;
      cv.notify_all();
    });
    std::unique_lock<std::mutex> l(m);
    cv.wait(l, [&] { return calls > 0; });
    *answers += calls;
    outcome.push_back(got);
  }
  return outcome;
}

// A pipeline over a float32 CopyEngine of `streams` contexts, batches of up to 8 (null, and a
// failed check, if it does not start).
std::shared_ptr<trt::Pipeline> copy_pipeline(int streams, const std::string& what) {
  trt::PipelineOptions o;
  o.streams = streams;
  o.max_batch = 8;
  std::string error;
  auto e = make_engine(streams, 8);
  auto p = e ? trt::Pipeline::start(std::move(e), o, &error) : nullptr;
  if (!p) check(false, what + ": pipeline starts", error);
  return p;
}

// Faces a caller did not check (the binding does; a C++ caller may not): a frame index past the
// batch's frames, a face without a window on a frame that is not a 256x256 chip. Each fails its
// batch, saying which face; the pipeline serves the next.
void refuses_bad_faces() {
  const std::string what = "faces the binding would refuse";
  auto p = copy_pipeline(1, what);
  if (!p) return;
  std::vector<uint8_t> chip(256 * 256 * 3, 90), small(100 * 100 * 3, 90);
  const FrameIn chip_frame{chip.data(), 256, 256, 768, PixelFormat::RGB}, small_frame{small.data(), 100, 100, 300, PixelFormat::RGB};
  const auto outcome = [&](std::vector<FrameIn> frames, std::vector<FaceIn> faces) {
    std::promise<std::string> got;
    p->submit(std::move(frames), std::move(faces), [&](trt::BatchResult&& r) { got.set_value(r.ok ? "ok" : r.error); });
    return got.get_future().get();
  };
  FaceIn past;
  past.frame = 1;
  std::string r = outcome({chip_frame}, {FaceIn{}, past});
  check(r.find("faces[1].frame 1 is not one of the batch's 1 frames") != std::string::npos, what + ": a frame index past the frames", r);
  r = outcome({small_frame}, {FaceIn{}});
  check(r.find("faces[0] has no crop window, but its frame is 100x100, not a 256x256 chip") != std::string::npos, what + ": no window on a frame that is not a chip", r);
  r = outcome({chip_frame}, {FaceIn{}});
  check(r == "ok", what + ": the next batch runs", r);
  p->close();
}

// A pinned frame freed while batches that read it are still queued (its JS buffer finalized at a
// worker's teardown, say) stays until the last of them is answered: each still equals the CPU
// path. 35 MB: past glibc's largest mmap threshold, so on the host stand-in the free unmaps it
// and a batch reading it afterwards faults.
void frees_pinned_under_queued_batches() {
  const std::string what = "pinned frame freed under queued batches";
  auto p = copy_pipeline(2, what);
  if (!p) return;
  constexpr int kW = 4096, kH = 2160, kBatches = 24;
  const size_t bytes = static_cast<size_t>(kW) * kH * 4;
  std::string error;
  auto* px = static_cast<uint8_t*>(p->alloc_pinned(bytes, &error));
  check(px != nullptr, what + ": alloc_pinned", error);
  if (px == nullptr) return;
  fill_noise(px, bytes, 6);
  const FrameIn frame{px, kW, kH, static_cast<size_t>(kW) * 4, PixelFormat::BGRA};
  std::vector<FaceIn> faces(8);
  std::vector<std::vector<float>> want(faces.size());
  for (size_t k = 0; k < faces.size(); ++k) {
    const float x = 100.0f + 450.0f * static_cast<float>(k), y = 80.0f + 230.0f * static_cast<float>(k);
    faces[k].has_window = true;
    faces[k].window = face_crop(CropMode::Square, x, y, x + 300.0f, y + 340.0f, kW, kH);
    std::vector<float> full(kInputFloats);
    preprocess_face(Frame{px, kW, kH, frame.stride, frame.format}, &faces[k].window, CropMode::Square, ResizeMode::AntialiasBilinear, full.data());
    for (int o = 0; o < kOutputs; ++o) want[k].insert(want[k].end(), full.begin() + kSliceAt[o], full.begin() + kSliceAt[o] + kSlice);
  }
  std::mutex m;
  std::condition_variable cv;
  int answered = 0, ok = 0;
  double worst = 0;
  for (int bi = 0; bi < kBatches; ++bi) {
    p->submit({frame}, faces, [&](trt::BatchResult&& r) {
      std::lock_guard<std::mutex> l(m);
      if (r.ok && r.outputs.size() == kOutputs) {
        ++ok;
        for (size_t k = 0; k < faces.size(); ++k)
          for (int o = 0; o < kOutputs; ++o)
            for (int j = 0; j < kSlice; ++j) {
              const double d = std::fabs(r.outputs[o][k * kSlice + j] - want[k][static_cast<size_t>(o * kSlice + j)]);
              worst = std::isnan(d) ? INFINITY : std::max(worst, d);
            }
      }
      ++answered;
      cv.notify_all();
    });
  }
  p->free_pinned(px);  // the batches above are queued, not yet run
  p->free_pinned(px);  // twice: ignored
  {
    std::unique_lock<std::mutex> l(m);
    cv.wait(l, [&] { return answered == kBatches; });
  }
  const bool host = cu::gpu_info().name == "Host stand-in";
  check(ok == kBatches, what + ": every batch succeeds", std::to_string(ok) + " of " + std::to_string(kBatches));
  check(worst <= (host ? 0.0 : 1e-5), what + ": every face equals the CPU path", "max |GPU - CPU| = " + std::to_string(worst));
  p->close();
}

// cancel_queued() (an environment's teardown): the batches not yet issued are answered at once
// with the reason, those issued finish; each exactly once.
void cancels_the_queue() {
  auto p = copy_pipeline(1, "cancelled queue");
  if (!p) return;
  std::vector<uint8_t> chip(256 * 256 * 3);
  fill_noise(chip.data(), chip.size(), 7);
  const std::vector<FrameIn> frames = {FrameIn{chip.data(), 256, 256, 768, PixelFormat::RGB}};
  constexpr int kBatches = 30;
  std::mutex m;
  std::condition_variable cv;
  int answered = 0, ok = 0, cancelled = 0, other = 0;
  bool gate_open = false;
  for (int bi = 0; bi < kBatches; ++bi) {
    p->submit(frames, std::vector<FaceIn>(8), [&, bi](trt::BatchResult&& r) {
      std::unique_lock<std::mutex> l(m);
      ++answered;
      if (r.ok) ++ok;
      else if (r.error == "shutting down") ++cancelled;
      else ++other;
      cv.notify_all();
      // The first answer holds the context's thread (a pipeline thread runs `done`) until the
      // queue is cancelled: whatever the GPU's speed, the batches after the (at most) two issued
      // are still queued then.
      if (bi == 0) cv.wait(l, [&] { return gate_open; });
    });
  }
  {
    std::unique_lock<std::mutex> l(m);
    cv.wait(l, [&] { return answered >= 1; });
  }
  p->cancel_queued("shutting down");
  {
    std::unique_lock<std::mutex> l(m);
    gate_open = true;
    cv.notify_all();
    cv.wait(l, [&] { return answered >= kBatches; });
  }
  p->close();
  const std::string counts = std::to_string(ok) + " ran, " + std::to_string(cancelled) + " cancelled, " + std::to_string(other) + " other";
  check(answered == kBatches && other == 0, "cancelled queue: every batch answered once, run or cancelled", counts);
  check(ok >= 1 && ok <= 2, "cancelled queue: only the batches already issued ran (one context issues two at most)", counts);
}

void loses_the_device() {
  auto p = copy_pipeline(2, "lost device");
  if (!p) return;
  int answers = 0;
  const std::vector<std::string> outcome = one_at_a_time(*p, 6, &answers);
  check(answers == 6, "lost device: every batch answered once");
  check(outcome[0] == "ok" && outcome[1] == "ok" && outcome[2] == "ok", "lost device: the batches before the error succeed");
  check(outcome[3].find("CUDA_ERROR_CONTAINED") != std::string::npos, "lost device: the failing batch says why", outcome[3]);
#if defined(FM_TEST_TENSORRT_ENGINE)
  // TensorRT's own error for the failed call, from the slot's logger (TrtEngine::enqueue).
  check(outcome[3].find("enqueueV3 failed: fake TensorRT: enqueueV3: cuMemcpyDtoDAsync failed") != std::string::npos,
        "lost device: the failing batch carries what TensorRT logged for that call", outcome[3]);
#endif
  check(p->lost().find("CUDA_ERROR_CONTAINED") != std::string::npos, "lost device: the model says it is lost", p->lost());
  check(outcome[4].find("the GPU is lost for this model") != std::string::npos && outcome[5] == outcome[4],
        "lost device: later batches are refused at once", outcome[4]);
  p->close();
  check(p->tensors().size() == 4 && std::string(p->preprocessing()) == "cpu", "after close(): tensors and preprocessing still described");
}

// An event that cannot be recorded (the host stand-in's FM_HOST_CUDA_EVENT_FAIL_AT=13: with CPU
// preprocessing a batch records 5 events, so the 3rd batch's 3rd, the one after its uploads,
// which says when staging may be refilled) fails that batch alone; the model stays usable.
void an_event_fails() {
  auto p = copy_pipeline(1, "failed event");
  if (!p) return;
  int answers = 0;
  const std::vector<std::string> outcome = one_at_a_time(*p, 5, &answers);
  check(answers == 5, "failed event: every batch answered once");
  check(outcome[2].find("cuEventRecord") != std::string::npos && outcome[2].find("CUDA_ERROR_INVALID_VALUE") != std::string::npos,
        "failed event: the batch whose event failed says why", outcome[2]);
  check(outcome[0] == "ok" && outcome[1] == "ok" && outcome[3] == "ok" && outcome[4] == "ok", "failed event: the other batches succeed",
        outcome[3]);
  check(p->lost().empty(), "failed event: the model is not lost", p->lost());
  p->close();
}

// An exception on a pipeline thread (host memory exhausted; the stand-in engine's
// FM_COPY_ENGINE_THROW_AT / _COLLECT_AT throw std::bad_alloc in the 3rd batch's enqueue or
// collection) fails that batch alone, with the reason; the model stays usable. One thrown in a
// CUDA-graph capture (_COPIES_AT=2: the first capture, after batch 1 ran plainly) is a failed
// capture: every batch succeeds, graphs off, the stream out of capture mode.
void a_call_throws() {
  const bool at_collect = std::getenv("FM_COPY_ENGINE_THROW_COLLECT_AT") != nullptr;
  const bool at_capture = std::getenv("FM_COPY_ENGINE_THROW_COPIES_AT") != nullptr;
  const std::string what = std::string("exception while ") + (at_collect ? "collecting" : at_capture ? "capturing a graph" : "issuing");
  trt::PipelineOptions o;
  o.streams = 1;
  o.max_batch = 8;
  std::string error;
  auto e = make_engine(1, 8, false, 1, at_capture);
  auto p = e ? trt::Pipeline::start(std::move(e), o, &error) : nullptr;
  check(p != nullptr, what + ": pipeline starts", error);
  if (!p) return;
  int answers = 0;
  const std::vector<std::string> outcome = one_at_a_time(*p, 5, &answers);
  check(answers == 5, what + ": every batch answered once");
  if (at_capture) {
    const trt::PipelineStats st = p->stats();
    bool all = true;
    for (const std::string& o : outcome) all = all && o == "ok";
    check(all, what + ": every batch succeeds", outcome[0] + " / " + outcome[1]);
    check(st.graphs_ready == 0 && st.graphs_failed >= 1, what + ": graphs turned off", std::to_string(st.graphs_failed));
    p->close();
    return;
  }
  const size_t hit = 2;
  const std::string want = std::string(at_collect ? "collecting" : "issuing") + " the batch: out of host memory (std::bad_alloc)";
  check(outcome[hit] == want, what + ": the batch it hit says why", outcome[hit]);
  bool others = true;
  for (size_t k = 0; k < outcome.size(); ++k) others = others && (k == hit || outcome[k] == "ok");
  check(others, what + ": the other batches succeed", outcome[0]);
  check(p->lost().empty(), what + ": the model is not lost", p->lost());
  p->close();
}

}  // namespace

int main() {
  const cu::GpuInfo& g = cu::gpu_info();
  if (!g.initialized || g.device_count < 1) {
    std::printf("SKIPPED: no CUDA device (%s)\n", g.driver_error.empty() ? "cuInit failed" : g.driver_error.c_str());
    return kSkip;
  }
  cu::PrimaryContext ctx;
  std::string why;
  if (!ctx.open(0, &why) || !ctx.bind(&why)) {
    std::printf("FAIL: %s\n", why.c_str());
    return 1;
  }
  std::printf("pipeline on %s (sm_%d%d), CUDA kernels %s, engine: %s\n", g.name.c_str(), g.cc_major, g.cc_minor,
              trt::PreprocessKernels::embedded() ? "embedded" : "not built",
#if defined(FM_TEST_TENSORRT_ENGINE)
              "TrtEngine over the stand-in libnvinfer"
#else
              "CopyEngine"
#endif
  );
  if (std::getenv("FM_HOST_CUDA_CONTAIN_AT") != nullptr) {  // ctest pipeline_host_lost (host stand-in only)
    loses_the_device();
  } else if (std::getenv("FM_HOST_CUDA_EVENT_FAIL_AT") != nullptr) {  // ctest pipeline_host_event (the same)
    an_event_fails();
  } else if (std::getenv("FM_COPY_ENGINE_THROW_AT") != nullptr || std::getenv("FM_COPY_ENGINE_THROW_COLLECT_AT") != nullptr ||
             std::getenv("FM_COPY_ENGINE_THROW_COPIES_AT") != nullptr) {
    a_call_throws();  // ctest pipeline_host_throw*
  } else if (std::getenv("FM_HOST_CUDA_NO_GRAPHS") != nullptr || std::getenv("FM_HOST_CUDA_GRAPH_LAUNCH_FAIL_AT") != nullptr) {
    run_pipeline(CropMode::Square, ResizeMode::AntialiasBilinear, false, 1, true);  // ctest pipeline_host_graph_*
  } else {
    refuses_unservable_engines();
    refuses_bad_faces();
    frees_pinned_under_queued_batches();
    cancels_the_queue();
    for (CropMode crop : {CropMode::Square, CropMode::Stretch})
      for (ResizeMode resize : {ResizeMode::AntialiasBilinear, ResizeMode::CenterCrop}) run_pipeline(crop, resize, false);
    run_pipeline(CropMode::Square, ResizeMode::AntialiasBilinear, true);
    run_pipeline(CropMode::Stretch, ResizeMode::CenterCrop, true);
    run_pipeline(CropMode::Square, ResizeMode::AntialiasBilinear, false, 5);
    run_pipeline(CropMode::Square, ResizeMode::AntialiasBilinear, false, 1, true);
    run_pipeline(CropMode::Stretch, ResizeMode::CenterCrop, true, 3, true);
  }
  std::printf("pipeline: %d passed, %d failed\n", fm_test::g_passed, fm_test::g_failed);
  return fm_test::g_failed == 0 ? 0 : 1;
}
