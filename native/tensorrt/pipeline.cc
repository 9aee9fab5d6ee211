// Batches on a TensorRT engine: staging, GPU preprocessing, enqueue, outputs (see pipeline.h).
// Run on a GPU (an H200) over a stand-in engine only (pipeline_gpu_test); never over TensorRT's.
#include "tensorrt/pipeline.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <new>
#include <mutex>
#include <thread>

#include "preprocess/preprocess_kernel.h"
#include "tensorrt/kernels.h"
#include "tensorrt/slot_loop.h"

namespace fm::trt {
namespace {

constexpr size_t kAlign = 256;  // TensorRT's and the kernel's address alignment
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::string cuda_error(const char* what, cu::Result r) { return std::string(what) + ": " + cu::error_text(r); }

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);  // inf, nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    exp = 113;
    while ((man & 0x400u) == 0) { man <<= 1; --exp; }
    bits = sign | (exp << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even, as __float2half_rn (the CPU-preprocessing fallback for FP16 inputs).
uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | (ax > 0x7f800000u ? 0x7e00u : 0x7c00u);
  if (ax >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: inf
  if (ax < 0x38800000u) {                         // below the smallest normal half: subnormal or 0
    if (ax < 0x33000000u) return sign;
    const uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (r & 1u))) ++r;
    return sign | static_cast<uint16_t>(r);
  }
  uint32_t r = ((ax >> 13) - (112u << 10));
  const uint32_t rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return sign | static_cast<uint16_t>(r);
}

// The alloc_pinned() blocks a queued or running batch reads: each is held (a use count, under
// Shared::m) from submit() until the batch is answered and its Job destroyed, so that a block
// freed meanwhile (its JS buffer collected, or finalized at an environment's teardown while
// batches are still queued) is freed only once the last batch reading it is done.
struct PinnedHolds {
  Pipeline::Shared* s = nullptr;
  std::vector<const uint8_t*> blocks;
  PinnedHolds() = default;
  PinnedHolds(PinnedHolds&& o) noexcept : s(o.s), blocks(std::move(o.blocks)) {
    o.s = nullptr;
    o.blocks.clear();
  }
  // Releases what this one held (so: never assign to a holding one under Shared::m).
  PinnedHolds& operator=(PinnedHolds&& o) noexcept {
    if (this != &o) {
      PinnedHolds old(std::move(*this));
      s = o.s;
      blocks = std::move(o.blocks);
      o.s = nullptr;
      o.blocks.clear();
    }
    return *this;
  }
  // Takes Shared::m: never run under it. Every Job destroyed or assigned to under the lock (in
  // slot_loop, submit) is a moved-from or fresh one, holding nothing: SlotOps::issue moves the
  // one it is given into its own at once.
  ~PinnedHolds();
};

struct Job {
  std::vector<FrameIn> frames;
  std::vector<FaceIn> faces;
  Pipeline::Done done;
  std::vector<char> pinned;  // per frame: wholly inside an alloc_pinned() block (decided at submit)
  PinnedHolds holds;
};

// A batch issued on a context's stream whose outputs are not collected yet.
struct InFlight {
  Job job;
  int set = 0;                 // which of the slot's two output buffers and mark sets it uses
  int n = 0;
  std::vector<size_t> host_at;  // each output's offset in host_outputs[set]
  double host_ms = 0;
  std::chrono::steady_clock::time_point start;
};

// One execution context's buffers, owned by its thread. Device buffers are single: everything on
// the context's stream is ordered. Host outputs and timing marks come in two sets, so that one
// batch can be issued while the previous one still runs.
struct SlotBuffers {
  cu::DeviceBuffer input, descs, frames;
  std::vector<cu::DeviceBuffer> tensors;  // per engine tensor (the input's entry unused)
  cu::PinnedBuffer staging, host_descs, host_input;
  cu::PinnedBuffer host_outputs[2];
  // Timing marks of a batch: start, frames uploaded, preprocessed (the host-side inputs are
  // consumed from here on), inferred, outputs copied (the batch is complete).
  cu::Event marks[2][5] = {};
  SlotBuffers() = default;
  SlotBuffers(const SlotBuffers&) = delete;
  SlotBuffers& operator=(const SlotBuffers&) = delete;
  ~SlotBuffers() {
    const cu::Api* a = cu::driver();
    for (auto& set : marks)
      for (cu::Event e : set)
        if (e != nullptr && a != nullptr) a->EventDestroy(e);
  }
};
constexpr int kMarkConsumed = 2;  // staging, descriptors and host input may be refilled
constexpr int kMarkDone = 4;

}  // namespace

struct Pipeline::Shared {
  Engine* engine = nullptr;
  PipelineOptions options;
  const PreprocessKernels* kernels = nullptr;
  size_t input_index = 0;
  OutDtype input_dtype = OutDtype::Float32;
  // The profile's smallest batch: fewer faces run padded to it (rows past them hold zeros or an
  // earlier batch's faces: every layer works per face, and only the faces' own output rows are
  // copied back).
  int64_t min_batch = 1;
  std::vector<size_t> output_index;  // engine tensor index of each output
  cu::PrimaryContext context;        // retained while any pinned frame or the pipeline lives

  std::mutex m;
  std::condition_variable cv;       // work, frees or stop for the threads
  std::condition_variable started;  // start(): every thread has its buffers (or failed)
  std::deque<Job> queue;
  std::vector<void*> to_free;
  struct PinnedBlock {
    size_t bytes = 0;
    int uses = 0;           // batches queued or running that read it
    bool released = false;  // free_pinned() was called: freed when uses drops to 0
  };
  std::map<const uint8_t*, PinnedBlock> pinned;  // alloc_pinned() blocks by base address
  std::vector<std::thread> threads;
  int ready = 0;
  std::string start_error;
  bool stop = false;
  bool joined = false;
  std::string lost;

  // The block holding [p, p + n) (or, if only p is inside one, that block with *whole false);
  // null if none. Under m.
  const uint8_t* block_of(const uint8_t* p, size_t n, bool* whole) {
    auto it = pinned.upper_bound(p);
    if (it == pinned.begin()) return nullptr;
    --it;
    if (p < it->first || p >= it->first + it->second.bytes) return nullptr;
    *whole = n <= static_cast<size_t>(it->first + it->second.bytes - p);
    return it->first;
  }
  void hold(Job& job);  // under m
  void release(const std::vector<const uint8_t*>& blocks);
  // Under m: a block freed by the caller and read by no batch goes; to a pipeline thread while
  // they run (false), else the caller frees it (true: after close(), host memory only).
  bool retire(const uint8_t* base) {
    pinned.erase(base);
    if (joined) return true;
    to_free.push_back(const_cast<uint8_t*>(base));
    cv.notify_one();
    return false;
  }
  void free_now(void* p) {
    const cu::Api* a = cu::driver();
    if (a != nullptr) a->MemFreeHost(p);
  }
  void free_here(void* p) {  // off the pipeline threads, after close()
    std::string ignored;
    context.bind(&ignored);
    free_now(p);
  }
  void drain_frees(std::unique_lock<std::mutex>& lock) {
    std::vector<void*> list;
    list.swap(to_free);
    lock.unlock();
    for (void* p : list) free_now(p);
    lock.lock();
  }

  PipelineStats stats;  // under m
  std::vector<std::pair<int, int>> graph_counts;  // per slot: graphs replaying, sizes without one

  bool allocate(int slot, SlotBuffers& b, std::string* error);
  // Issues a batch on the slot's stream (uploads, preprocessing, enqueue, output copies) into
  // `flight`; false with *failed set when it could not (the stream is then idle).
  bool issue(int slot, SlotBuffers& b, InFlight& flight, BatchResult* failed);
  // Waits for an issued batch and returns its outputs.
  BatchResult collect(int slot, SlotBuffers& b, InFlight& flight);
  BatchResult failure(int slot, std::string message, cu::Result code);
  void thread_main(int slot);
};

PinnedHolds::~PinnedHolds() {
  if (s != nullptr && !blocks.empty()) s->release(blocks);
}

void Pipeline::Shared::hold(Job& job) {
  // Allocations first, then only what cannot throw: a count taken is always recorded in holds
  // (and so released), even when this throws.
  job.holds.s = this;
  job.holds.blocks.reserve(job.frames.size());
  job.pinned.assign(job.frames.size(), 0);
  for (size_t i = 0; i < job.frames.size(); ++i) {
    const FrameIn& f = job.frames[i];
    if (f.data == nullptr || f.height < 1 || f.width < 1) continue;
    const size_t extent = static_cast<size_t>(f.height - 1) * f.stride + static_cast<size_t>(f.width) * static_cast<size_t>(channels(f.format));
    bool whole = false;
    const uint8_t* base = block_of(f.data, extent, &whole);
    if (base == nullptr) continue;
    job.pinned[i] = whole ? 1 : 0;  // a frame running past its block is staged, but still holds it
    if (std::find(job.holds.blocks.begin(), job.holds.blocks.end(), base) == job.holds.blocks.end()) {
      job.holds.blocks.push_back(base);  // within the reserve: no throw
      ++pinned.find(base)->second.uses;
    }
  }
}

void Pipeline::Shared::release(const std::vector<const uint8_t*>& blocks) {
  std::vector<void*> now;
  {
    std::lock_guard<std::mutex> lock(m);
    for (const uint8_t* base : blocks) {
      auto it = pinned.find(base);
      if (it == pinned.end()) continue;
      if (--it->second.uses == 0 && it->second.released && retire(base)) now.push_back(const_cast<uint8_t*>(base));
    }
  }
  for (void* p : now) free_here(p);
}

bool Pipeline::Shared::allocate(int slot, SlotBuffers& b, std::string* error) {
  const int64_t n = options.max_batch;
  const size_t elem = input_dtype == OutDtype::Float16 ? 2 : 4;
  if (!b.input.allocate(static_cast<size_t>(n) * kInputFloats * elem, error)) return false;
  // Zeroed once, on the slot's stream (ahead of all its work), so that the padding rows the engine
  // reads before any face was written there are finite, not whatever the allocation held (NaN bit
  // patterns; compute-sanitizer's initcheck).
  if (const cu::Result r = cu::driver()->MemsetD8Async(b.input.address(), 0, b.input.size(), engine->stream(slot));
      r != cu::kSuccess) {
    *error = cuda_error("cuMemsetD8Async", r);
    return false;
  }
  if (!b.descs.allocate(sizeof(FaceDesc) * static_cast<size_t>(n), error)) return false;
  if (!b.host_descs.allocate(sizeof(FaceDesc) * static_cast<size_t>(n), error)) return false;
  b.tensors.resize(engine->tensors().size());
  size_t host_bytes = 0;
  for (size_t i : output_index) {
    const size_t bytes = engine->tensor_bytes(i, n);
    if (!b.tensors[i].allocate(std::max<size_t>(bytes, 1), error)) return false;
    host_bytes += align_up(bytes);
  }
  for (cu::PinnedBuffer& h : b.host_outputs)
    if (!h.allocate(std::max<size_t>(host_bytes, 1), error)) return false;
  if (kernels == nullptr && !b.host_input.allocate(static_cast<size_t>(n) * kInputFloats * elem, error)) return false;
  for (auto& set : b.marks) {
    for (cu::Event& e : set) {
      // Timing events that the slot's thread also waits on: blocking sync, so a thread waiting
      // for the GPU sleeps instead of spinning a core (the primary context's default is to spin).
      const cu::Result r = cu::driver()->EventCreate(&e, cu::kEventBlockingSync);
      if (r != cu::kSuccess) {
        *error = cuda_error("cuEventCreate", r);
        return false;
      }
    }
  }
  return true;
}

BatchResult Pipeline::Shared::failure(int slot, std::string message, cu::Result code) {
  // Nothing queued may still use the buffers; and an error that is not the call's own (an
  // enqueue that failed, code 0) may be the context's: the wait reports it.
  if (!cu::fatal(code)) {
    const cu::Result r = cu::driver()->StreamSynchronize(engine->stream(slot));
    if (cu::fatal(r)) {
      message += " (then " + cuda_error("cuStreamSynchronize", r) + ")";
      code = r;
    }
  }
  if (cu::fatal(code)) {  // the context is unusable: the device is lost for this model
    std::lock_guard<std::mutex> lock(m);
    if (lost.empty()) lost = message;
  }
  BatchResult out;
  out.error = std::move(message);
  return out;
}

bool Pipeline::Shared::issue(int slot, SlotBuffers& b, InFlight& f, BatchResult* failed) {
  const cu::Api* a = cu::driver();
  const cu::Stream stream = engine->stream(slot);
  const Job& job = f.job;
  const int n = static_cast<int>(job.faces.size());
  cu::Event* marks = b.marks[f.set];
  auto fail = [&](std::string message, cu::Result code) {
    *failed = failure(slot, std::move(message), code);
    return false;
  };
  if (n < 1 || n > options.max_batch) return fail("a batch of " + std::to_string(n) + " faces (1.." + std::to_string(options.max_batch) + ")", 0);
  // The binding checks these; a caller that does not (C++) gets this batch failed, not a read out of bounds.
  for (int k = 0; k < n; ++k) {
    const FaceIn& face = job.faces[static_cast<size_t>(k)];
    if (face.frame < 0 || static_cast<size_t>(face.frame) >= job.frames.size())
      return fail("faces[" + std::to_string(k) + "].frame " + std::to_string(face.frame) + " is not one of the batch's " + std::to_string(job.frames.size()) + " frames", 0);
    const FrameIn& frame = job.frames[static_cast<size_t>(face.frame)];
    if (!face.has_window && (frame.width != kChip || frame.height != kChip))
      return fail("faces[" + std::to_string(k) + "] has no crop window, but its frame is " + std::to_string(frame.width) + "x" + std::to_string(frame.height) + ", not a " + std::to_string(kChip) + "x" + std::to_string(kChip) + " chip", 0);
  }
  f.n = n;
  f.start = std::chrono::steady_clock::now();
  f.host_ms = 0;  // staging copies and CPU preprocessing, on this thread
  cu::Result r = a->EventRecord(marks[0], stream);
  if (r != cu::kSuccess) return fail(cuda_error("cuEventRecord", r), r);

  if (kernels != nullptr) {
    const UploadPlan plan = plan_uploads(job.frames, job.faces, options.crop, options.upload_blocks);
    const size_t total = plan.total;
    std::string error;
    if (b.frames.size() < total) {
      b.frames.reset();
      if (!b.frames.allocate(total + total / 4, &error)) return fail("device memory for the frames: " + error, 0);
    }
    // Frames from alloc_pinned() go straight to the GPU; the others through this context's pinned
    // staging, packed: a frame copied whole as its span, a block as its rows back to back (its
    // pitch its width), so the staging holds only the bytes copied (four faces on a 1080p frame:
    // about a quarter of its rows' span). Grown before the first copy (an async copy may still
    // read it once issued).
    std::vector<const uint8_t*> src(job.frames.size(), nullptr);
    std::vector<bool> pinned_frame(job.frames.size(), false);
    for (size_t i = 0; i < job.frames.size(); ++i) {
      if (plan.span[i] == 0) continue;
      src[i] = job.frames[i].data + static_cast<size_t>(plan.lo[i]) * job.frames[i].stride;
      pinned_frame[i] = job.pinned[i] != 0;
    }
    size_t staged = 0;  // the staging's bytes in use; each piece from a kUploadAlign boundary
    const auto stage_at = [&](size_t bytes) {
      const size_t at = staged;
      staged += upload_aligned(bytes);
      return at;
    };
    std::vector<size_t> frame_stage(job.frames.size(), 0), block_stage(plan.blocks.size(), 0);
    for (size_t i = 0; i < job.frames.size(); ++i)
      if (plan.span[i] != 0 && plan.whole[i] && !pinned_frame[i]) frame_stage[i] = stage_at(plan.span[i]);
    for (size_t j = 0; j < plan.blocks.size(); ++j) {
      const UploadBlock& k = plan.blocks[j];
      if (!pinned_frame[static_cast<size_t>(k.frame)]) block_stage[j] = stage_at(static_cast<size_t>(k.last - k.first + 1) * k.bytes);
    }
    if (b.staging.size() < staged) {
      b.staging.reset();
      if (!b.staging.allocate(staged + staged / 4, &error)) return fail("pinned staging memory: " + error, 0);
    }
    uint8_t* const staging = static_cast<uint8_t*>(b.staging.get());
    // Frames copied whole: their span, staged if need be, in one linear copy.
    for (size_t i = 0; i < job.frames.size(); ++i) {
      const size_t span = plan.span[i], offset = plan.offset[i];
      if (span == 0 || !plan.whole[i]) continue;
      const uint8_t* from = src[i];
      if (!pinned_frame[i]) {
        uint8_t* stage = staging + frame_stage[i];
        const auto t = std::chrono::steady_clock::now();
        std::memcpy(stage, from, span);
        f.host_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
        from = stage;
      }
      r = a->MemcpyHtoDAsync(b.frames.address() + offset, from, span, stream);
      if (r != cu::kSuccess) return fail(cuda_error("cuMemcpyHtoDAsync (frame)", r), r);
    }
    // The others: only the blocks their crops read, each in one 2D copy into the frame's layout on
    // the GPU (its stride); ordinary frames' blocks all staged before any copy is issued.
    const auto place = [&](const UploadBlock& k, size_t* at, size_t* rows) {
      const size_t i = static_cast<size_t>(k.frame);
      *at = static_cast<size_t>(k.first - plan.lo[i]) * job.frames[i].stride + k.column;  // from the span's start
      *rows = static_cast<size_t>(k.last - k.first + 1);
    };
    const auto t_blocks = std::chrono::steady_clock::now();
    for (size_t j = 0; j < plan.blocks.size(); ++j) {
      const UploadBlock& k = plan.blocks[j];
      const size_t i = static_cast<size_t>(k.frame), stride = job.frames[i].stride;
      if (pinned_frame[i]) continue;
      size_t at = 0, rows = 0;
      place(k, &at, &rows);
      uint8_t* stage = staging + block_stage[j];
      for (size_t y = 0; y < rows; ++y) std::memcpy(stage + y * k.bytes, src[i] + at + y * stride, k.bytes);
    }
    f.host_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_blocks).count();
    for (size_t j = 0; j < plan.blocks.size(); ++j) {
      const UploadBlock& k = plan.blocks[j];
      const size_t i = static_cast<size_t>(k.frame), stride = job.frames[i].stride;
      size_t at = 0, rows = 0;
      place(k, &at, &rows);
      cu::Memcpy2D c;
      c.srcMemoryType = cu::kMemoryTypeHost;
      c.srcHost = pinned_frame[i] ? src[i] + at : staging + block_stage[j];
      c.srcPitch = pinned_frame[i] ? stride : k.bytes;
      c.dstMemoryType = cu::kMemoryTypeDevice;
      c.dstDevice = b.frames.address() + plan.offset[i] + at;
      c.dstPitch = stride;
      c.WidthInBytes = k.bytes;
      c.Height = rows;
      r = a->Memcpy2DAsync(&c, stream);
      if (r != cu::kSuccess) return fail(cuda_error("cuMemcpy2DAsync (frame)", r), r);
    }
    auto* descs = static_cast<FaceDesc*>(b.host_descs.get());
    for (int k = 0; k < n; ++k) {
      const FaceIn& face = job.faces[static_cast<size_t>(k)];
      const FrameIn& fr = job.frames[static_cast<size_t>(face.frame)];
      // Row i of the frame is at base + i * stride, for the rows uploaded (lo..hi) only.
      const size_t i = static_cast<size_t>(face.frame);
      const cu::DevicePtr base = b.frames.address() + plan.offset[i] - static_cast<cu::DevicePtr>(plan.lo[i]) * fr.stride;
      descs[k] = FaceDesc{reinterpret_cast<const uint8_t*>(static_cast<uintptr_t>(base)), static_cast<int64_t>(fr.stride),
                          fr.width, fr.height, fr.format, face.has_window ? 1 : 0, face.window};
    }
    r = a->MemcpyHtoDAsync(b.descs.address(), descs, sizeof(FaceDesc) * static_cast<size_t>(n), stream);
    if (r != cu::kSuccess) return fail(cuda_error("cuMemcpyHtoDAsync (faces)", r), r);
    if ((r = a->EventRecord(marks[1], stream)) != cu::kSuccess) return fail(cuda_error("cuEventRecord", r), r);
    const FaceDesc* d_descs = reinterpret_cast<const FaceDesc*>(static_cast<uintptr_t>(b.descs.address()));
    r = kernels->launch(d_descs, n, options.crop, options.resize, input_dtype, b.input.get(), stream);
    if (r != cu::kSuccess) return fail(cuda_error("cuLaunchKernel (preprocessing)", r), r);
  } else {
    // CPU preprocessing into pinned memory, then one upload (counted as the upload stage).
    const auto t = std::chrono::steady_clock::now();
    std::vector<float> face(input_dtype == OutDtype::Float16 ? kInputFloats : 0);
    for (int k = 0; k < n; ++k) {
      const FaceIn& fi = job.faces[static_cast<size_t>(k)];
      const FrameIn& fr = job.frames[static_cast<size_t>(fi.frame)];
      const Frame frame{fr.data, fr.width, fr.height, fr.stride, fr.format};
      if (input_dtype == OutDtype::Float32) {
        preprocess_face(frame, fi.has_window ? &fi.window : nullptr, options.crop, options.resize,
                        static_cast<float*>(b.host_input.get()) + static_cast<size_t>(k) * kInputFloats);
      } else {
        preprocess_face(frame, fi.has_window ? &fi.window : nullptr, options.crop, options.resize, face.data());
        uint16_t* dst = static_cast<uint16_t*>(b.host_input.get()) + static_cast<size_t>(k) * kInputFloats;
        for (int j = 0; j < kInputFloats; ++j) dst[j] = float_to_half(face[static_cast<size_t>(j)]);
      }
    }
    f.host_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
    const size_t bytes = static_cast<size_t>(n) * kInputFloats * (input_dtype == OutDtype::Float16 ? 2 : 4);
    r = a->MemcpyHtoDAsync(b.input.address(), b.host_input.get(), bytes, stream);
    if (r != cu::kSuccess) return fail(cuda_error("cuMemcpyHtoDAsync (input)", r), r);
    if ((r = a->EventRecord(marks[1], stream)) != cu::kSuccess) return fail(cuda_error("cuEventRecord", r), r);
  }
  // The next batch refills staging and the descriptors once this one has passed: unrecorded, a
  // wait on it would return on an older record.
  if ((r = a->EventRecord(marks[kMarkConsumed], stream)) != cu::kSuccess) return fail(cuda_error("cuEventRecord", r), r);

  std::vector<void*> addresses(engine->tensors().size(), nullptr);
  addresses[input_index] = b.input.get();
  for (size_t i : output_index) addresses[i] = b.tensors[i].get();
  std::string error;
  if (!engine->enqueue(slot, std::max<int64_t>(n, min_batch), addresses, &error)) return fail(error, 0);
  if ((r = a->EventRecord(marks[3], stream)) != cu::kSuccess) return fail(cuda_error("cuEventRecord", r), r);
  size_t host_offset = 0;
  f.host_at.clear();
  for (size_t i : output_index) {
    const size_t bytes = engine->tensor_bytes(i, n);
    r = a->MemcpyDtoHAsync(static_cast<uint8_t*>(b.host_outputs[f.set].get()) + host_offset, b.tensors[i].address(), bytes, stream);
    if (r != cu::kSuccess) return fail(cuda_error("cuMemcpyDtoHAsync (outputs)", r), r);
    f.host_at.push_back(host_offset);
    host_offset += align_up(bytes);
  }
  r = a->EventRecord(marks[kMarkDone], stream);
  if (r != cu::kSuccess) return fail(cuda_error("cuEventRecord", r), r);
  return true;
}

BatchResult Pipeline::Shared::collect(int slot, SlotBuffers& b, InFlight& f) {
  const cu::Api* a = cu::driver();
  cu::Event* marks = b.marks[f.set];
  const cu::Result r = a->EventSynchronize(marks[kMarkDone]);
  if (r != cu::kSuccess) return failure(slot, cuda_error("cuEventSynchronize (batch)", r), r);
  {
    float ms[4] = {0, 0, 0, 0};
    for (int k = 0; k < 4; ++k) a->EventElapsedTime(&ms[k], marks[k], marks[k + 1]);
    const int ready = engine->graphs_ready(slot), failed = engine->graphs_failed(slot);
    std::lock_guard<std::mutex> lock(m);
    stats.batches += 1;
    stats.faces += static_cast<uint64_t>(f.n);
    stats.upload_ms += ms[0];
    stats.preprocess_ms += ms[1];
    stats.infer_ms += ms[2];
    stats.download_ms += ms[3];
    stats.host_ms += f.host_ms;
    stats.wall_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - f.start).count();
    if (slot < static_cast<int>(graph_counts.size())) graph_counts[static_cast<size_t>(slot)] = {ready, failed};
  }

  BatchResult out;
  out.outputs.resize(output_index.size());
  for (size_t o = 0; o < output_index.size(); ++o) {
    const TensorDesc& t = engine->tensors()[output_index[o]];
    const size_t count = engine->tensor_bytes(output_index[o], f.n) / t.element_size;
    const uint8_t* src = static_cast<const uint8_t*>(b.host_outputs[f.set].get()) + f.host_at[o];
    std::vector<float>& v = out.outputs[o];
    v.resize(count);
    if (t.dtype == 0) {
      std::memcpy(v.data(), src, count * 4);
    } else if (t.dtype == 1) {
      for (size_t j = 0; j < count; ++j) {
        uint16_t h;
        std::memcpy(&h, src + 2 * j, 2);
        v[j] = half_to_float(h);
      }
    } else {  // bfloat16 (start() admits nothing else)
      for (size_t j = 0; j < count; ++j) {
        uint32_t u = 0;
        std::memcpy(reinterpret_cast<uint8_t*>(&u) + 2, src + 2 * j, 2);  // little-endian: the high half
        std::memcpy(&v[j], &u, 4);
      }
    }
  }
  out.ok = true;
  return out;
}

namespace {

// The GPU side of slot_loop for one context (see slot_loop.h).
struct SlotOps {
  Pipeline::Shared& s;
  int slot;
  SlotBuffers& b;

  bool chores() const { return !s.to_free.empty(); }
  void do_chores(std::unique_lock<std::mutex>& lock) { s.drain_frees(lock); }

  // Any exception (host memory exhausted, or thrown by the engine) fails that batch alone: out
  // of a pipeline thread it would end the process.
  std::unique_ptr<InFlight> issue(Job&& taken, int set, const InFlight* running) {
    // This function's own: refused, it is destroyed (its pinned holds released, which takes
    // Shared::m) on return, not with slot_loop's variable under the lock.
    Job job(std::move(taken));
    std::unique_ptr<InFlight> f;
    BatchResult refused;
    try {
      std::string gone;
      {
        std::lock_guard<std::mutex> lock(s.m);
        gone = s.lost;
      }
      f = std::make_unique<InFlight>();
      f->job = std::move(job);
      f->set = set;
      if (!gone.empty()) {
        refused.error = "the GPU is lost for this model: " + gone;
      } else {
        // The running batch must have consumed the staging, descriptors and host input first.
        const cu::Result r = running ? cu::driver()->EventSynchronize(b.marks[running->set][kMarkConsumed]) : cu::kSuccess;
        if (r != cu::kSuccess) refused = s.failure(slot, cuda_error("cuEventSynchronize (inputs consumed)", r), r);
        else if (s.issue(slot, b, *f, &refused)) return f;
      }
    } catch (...) {
      refused = thrown("issuing the batch");
    }
    (f ? f->job : job).done(std::move(refused));  // the job moves into f only once f exists
    return nullptr;
  }

  void collect(std::unique_ptr<InFlight> f) {
    BatchResult result;
    try {
      result = s.collect(slot, b, *f);
    } catch (...) {
      result = thrown("collecting the batch");
    }
    f->job.done(std::move(result));
  }

  // The batch's error for the exception being handled, after the stream has finished what it
  // issued (nothing may still use the buffers). Cannot throw: if even the message cannot be
  // made, a short one that needs no allocation.
  BatchResult thrown(const char* when) noexcept {
    try {
      std::string why;
      try {
        throw;
      } catch (const std::bad_alloc&) {
        why = "out of host memory (std::bad_alloc)";
      } catch (const std::exception& e) {
        why = e.what();
      } catch (...) {
        why = "an exception that is not a std::exception";
      }
      return s.failure(slot, std::string(when) + ": " + why, 0);
    } catch (...) {
      cu::driver()->StreamSynchronize(s.engine->stream(slot));
      BatchResult r;
      r.error = "out of memory";  // within the short-string buffer: no allocation
      return r;
    }
  }
};

}  // namespace

void Pipeline::Shared::thread_main(int slot) {
  std::unique_ptr<SlotBuffers> owned;
  std::string error;
  bool ok = false;
  try {
    owned = std::make_unique<SlotBuffers>();
    ok = context.bind(&error) && allocate(slot, *owned, &error);
  } catch (const std::bad_alloc&) {
    error = "out of host memory allocating its buffers";
  } catch (const std::exception& e) {
    error = std::string("allocating its buffers: ") + e.what();
  } catch (...) {
    error = "an exception allocating its buffers";
  }
  {
    std::lock_guard<std::mutex> lock(m);
    if (!ok && start_error.empty()) start_error = "execution context " + std::to_string(slot) + ": " + error;
    ++ready;
  }
  started.notify_all();
  if (!owned) return;  // start() fails and joins
  SlotBuffers& b = *owned;
  SlotOps ops{*this, slot, b};
  slot_loop<Job, InFlight>(m, cv, queue, stop, ok, ops);
  owned.reset();  // device and pinned memory freed here, on this thread, context bound
}

std::shared_ptr<Pipeline> Pipeline::start(std::unique_ptr<Engine> engine, const PipelineOptions& o, std::string* error) {
  if (o.streams < 1 || o.streams > engine->contexts()) {
    *error = "streams must be 1.." + std::to_string(engine->contexts()) + " (the engine's execution contexts)";
    return nullptr;
  }
  std::shared_ptr<Pipeline> p(new Pipeline());
  p->shared_ = std::make_unique<Shared>();
  Shared& s = *p->shared_;
  s.options = o;
  bool found = false;
  for (size_t i = 0; i < engine->tensors().size(); ++i) {
    const TensorDesc& t = engine->tensors()[i];
    if (t.input) {
      const bool shape = t.shape.size() == 4 && t.shape[1] == 3 && t.shape[2] == kInput && t.shape[3] == kInput;
      if (t.name != "input" || !shape || (t.dtype != 0 && t.dtype != 1)) {
        *error = "the engine's input " + t.name + " is not input: float32 or float16 [N,3,224,224] (" + t.dtype_name + ")";
        return nullptr;
      }
      if (t.shape[0] >= 0) {
        *error = "the engine's input has a fixed batch of " + std::to_string(t.shape[0]) +
                 ": build it from an ONNX whose batch axis is dynamic (face-multitask export writes one)";
        return nullptr;
      }
      if (o.max_batch < 1 || o.max_batch > t.max_batch || o.max_batch < t.min_batch) {
        *error = "maxBatch " + std::to_string(o.max_batch) + " is outside the engine's profile [" + std::to_string(t.min_batch) +
                 ", " + std::to_string(t.max_batch) + "]";
        return nullptr;
      }
      s.min_batch = std::max<int64_t>(t.min_batch, 1);
      found = true;
      s.input_index = i;
      s.input_dtype = t.dtype == 1 ? OutDtype::Float16 : OutDtype::Float32;
    } else {
      if (t.dtype != 0 && t.dtype != 1 && t.dtype != 7) {
        *error = "the engine's output " + t.name + " is " + t.dtype_name + ", not a float type";
        return nullptr;
      }
      // Output buffers are sized as [batch, fixed...]: anything else (a flattened or
      // data-dependent dimension, which the engine also shows as -1) would be sized wrong.
      bool per_face = !t.shape.empty() && t.shape[0] == -1;
      for (size_t k = 1; k < t.shape.size(); ++k) per_face = per_face && t.shape[k] >= 0;
      if (!per_face) {
        std::string dims;
        for (int64_t v : t.shape) dims += (dims.empty() ? "" : ",") + std::to_string(v);
        *error = "the engine's output " + t.name + " has shape [" + dims + "], not [batch, fixed dimensions...]";
        return nullptr;
      }
      s.output_index.push_back(i);
      p->output_names_.push_back(t.name);
    }
  }
  if (!found) {
    *error = "the engine has no input named input";
    return nullptr;
  }
  if (!s.context.open(o.device, error) || !s.context.bind(error)) return nullptr;
  if (PreprocessKernels::embedded()) {
    // Kernels that do not load (a GPU newer than every cubin with a driver older than the PTX)
    // leave the CPU preprocessing: slower, same values, and said in preprocessing_note().
    auto k = std::make_unique<PreprocessKernels>();
    std::string why;
    if (k->load(&why)) p->kernels_ = std::move(k);
    else p->preprocessing_note_ = why;
  } else {
    p->preprocessing_note_ = "this build has no CUDA kernels (nvcc was not found when it was built)";
  }
  s.kernels = p->kernels_.get();
  p->cuda_preprocessing_ = p->kernels_ != nullptr;
  p->tensors_ = engine->tensors();
  p->options_ = o;
  s.engine = engine.get();
  p->engine_ = std::move(engine);
  s.graph_counts.assign(static_cast<size_t>(o.streams), {0, 0});
  std::string failed;
  try {
    for (int k = 0; k < o.streams; ++k) s.threads.emplace_back([&s, k] { s.thread_main(k); });
  } catch (const std::exception& e) {  // no thread could be made (a process at its limit)
    failed = std::string("starting execution context ") + std::to_string(s.threads.size()) + "'s thread: " + e.what();
  }
  {
    std::unique_lock<std::mutex> lock(s.m);
    s.started.wait(lock, [&] { return s.ready == static_cast<int>(s.threads.size()); });
    if (failed.empty()) failed = s.start_error;
  }
  if (!failed.empty()) {
    p->close();
    *error = failed;
    return nullptr;
  }
  return p;
}

Pipeline::~Pipeline() { close(); }

void Pipeline::submit(std::vector<FrameIn> frames, std::vector<FaceIn> faces, Done done) {
  // Made before the lock, so that if queueing fails it is destroyed (its holds released, which
  // takes the lock) after it; std::deque::push_back leaves it intact when it throws.
  Job job{std::move(frames), std::move(faces), std::move(done), {}, {}};
  BatchResult refused;
  try {
    std::lock_guard<std::mutex> lock(shared_->m);
    if (shared_->stop) {
      refused.error = "the model is closed";
    } else if (!shared_->lost.empty()) {
      refused.error = "the GPU is lost for this model: " + shared_->lost;
    } else {
      shared_->hold(job);
      shared_->queue.push_back(std::move(job));
    }
  } catch (...) {
    refused = BatchResult{};
    refused.error = "out of memory";  // within the short-string buffer: no allocation
  }
  if (!refused.error.empty()) {
    job.done(std::move(refused));
    return;
  }
  shared_->cv.notify_one();
}

void Pipeline::cancel_queued(const std::string& why) {
  std::deque<Job> dropped;
  {
    std::lock_guard<std::mutex> lock(shared_->m);
    dropped.swap(shared_->queue);
  }
  for (Job& job : dropped) {
    BatchResult r;
    r.error = why;
    job.done(std::move(r));
  }
}  // the jobs' pinned holds are released here, off the lock

void* Pipeline::alloc_pinned(size_t bytes, std::string* error) {
  const cu::Api* a = cu::driver();
  if (!shared_->context.bind(error)) return nullptr;
  void* p = nullptr;
  const cu::Result r = a->MemHostAlloc(&p, std::max<size_t>(bytes, 1), cu::kMemHostAllocPortable);
  if (r != cu::kSuccess) {
    *error = cuda_error("cuMemHostAlloc", r);
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(shared_->m);
  shared_->pinned[static_cast<const uint8_t*>(p)].bytes = std::max<size_t>(bytes, 1);
  return p;
}

void Pipeline::free_pinned(void* p) {
  if (p == nullptr) return;
  const auto* base = static_cast<const uint8_t*>(p);
  {
    std::lock_guard<std::mutex> lock(shared_->m);
    auto it = shared_->pinned.find(base);
    if (it == shared_->pinned.end() || it->second.released) return;  // not alloc_pinned()'s, or freed already
    it->second.released = true;
    if (it->second.uses > 0) return;  // the last batch reading it frees it
    if (!shared_->retire(base)) return;
  }
  shared_->free_here(p);
}

void Pipeline::close() {
  if (!shared_) return;
  std::lock_guard<std::mutex> closing(close_m_);
  Shared& s = *shared_;
  {
    std::lock_guard<std::mutex> lock(s.m);
    if (s.joined) return;
    s.stop = true;
  }
  s.cv.notify_all();
  for (std::thread& t : s.threads) t.join();
  std::vector<void*> leftover;
  {
    std::lock_guard<std::mutex> lock(s.m);
    s.joined = true;
    leftover.swap(s.to_free);
  }
  std::string ignored;
  s.context.bind(&ignored);
  for (void* p : leftover) s.free_now(p);
  s.kernels = nullptr;
  kernels_.reset();  // unloads the module, context bound
  engine_.reset();
}

PipelineStats Pipeline::stats() const {
  std::lock_guard<std::mutex> lock(shared_->m);
  PipelineStats st = shared_->stats;
  for (const auto& g : shared_->graph_counts) {
    st.graphs_ready += g.first;
    st.graphs_failed += g.second;
  }
  return st;
}

std::string Pipeline::lost() const {
  std::lock_guard<std::mutex> lock(shared_->m);
  return shared_->lost;
}

}  // namespace fm::trt
