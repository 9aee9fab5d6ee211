// Runs batches of faces on a TensorRT engine: one thread per execution context (its own CUDA
// stream, device buffers and pinned host buffers), so batches on different contexts overlap
// copies and compute. Per batch: upload the frame bytes the crops read (upload_plan.h; straight
// from pinned memory when the frame is an alloc_pinned() one, else through the context's pinned
// staging, which holds only those bytes), one launch of the preprocessing kernel for every face
// (written into the engine's input in its dtype), enqueueV3, outputs copied into pinned memory,
// then `done` on the context's thread.
// Each context keeps two batches going: as soon as the running one's inputs are consumed (an
// event recorded after its preprocessing), the next one's staging copies and launches are made,
// so its uploads queue behind the running batch instead of waiting for the host.
// Device memory is allocated and freed only on these threads, never on the caller's.
//
// Without the embedded CUDA kernels (the addon built where nvcc was absent) the faces are
// preprocessed on the context's thread by the CPU path (preprocess_cpu.cc) into pinned memory
// and uploaded: same values, more bytes over PCIe.
//
// Plain C++ (no TensorRT or CUDA header): it drives an Engine (engine.h), TrtEngine in the addon
// and a TensorRT-free stand-in, CopyEngine (tests/copy_engine.h). Run on a GPU (an H200) over the
// stand-in only (pipeline_gpu_test, pipeline_gpu_bench, with the block uploads and the packed
// staging; clean under compute-sanitizer); never over TrtEngine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "preprocess/preprocess.h"
#include "tensorrt/kernels.h"
#include "tensorrt/engine.h"
#include "tensorrt/upload_plan.h"

namespace fm::trt {

struct PipelineOptions {
  int streams = 2;           // execution contexts, each with a thread, a stream and its buffers
  int device = 0;            // CUDA ordinal
  CropMode crop = CropMode::Square;
  ResizeMode resize = ResizeMode::AntialiasBilinear;
  int64_t max_batch = 64;    // buffers are sized for it; at most the engine profile's kMAX
  bool upload_blocks = true;  // false: whole frame rows always (pipeline_gpu_bench's baseline)
};

// One float32 array per engine output (outputs() order), batch-major; or an error.
struct BatchResult {
  bool ok = false;
  std::string error;
  std::vector<std::vector<float>> outputs;
};

// What the batches cost so far (sums over every batch and context). GPU stages are measured
// with CUDA events on each context's stream.
struct PipelineStats {
  uint64_t batches = 0, faces = 0;
  double upload_ms = 0;      // frames (or, without the kernels, the CPU-made input) to the GPU
  double preprocess_ms = 0;  // the preprocessing kernel
  double infer_ms = 0;       // enqueueV3 (a CUDA graph where one was captured)
  double download_ms = 0;    // outputs to pinned memory
  double host_ms = 0;        // staging copies and CPU preprocessing on the contexts' threads
  double wall_ms = 0;        // each batch from its start on a context's thread to its outputs
  int graphs_ready = 0;      // (context, batch size) pairs replaying a CUDA graph
  int graphs_failed = 0;     // ... that fell back to plain enqueueV3
};

class Pipeline {
 public:
  using Done = std::function<void(BatchResult&&)>;

  // Starts the threads, each allocating its buffers for max_batch; fails (nullptr, *error) if
  // any cannot, or if the engine has no float input "input" of shape [N,3,224,224].
  static std::shared_ptr<Pipeline> start(std::unique_ptr<Engine> engine, const PipelineOptions& options,
                                         std::string* error);
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // The engine's outputs, in BatchResult::outputs order.
  const std::vector<std::string>& outputs() const { return output_names_; }
  // The engine's I/O tensors (kept after close(), which releases the engine).
  const std::vector<TensorDesc>& tensors() const { return tensors_; }
  // "cuda": the embedded kernels preprocess on the GPU; "cpu": the CPU path fills pinned memory
  // (a build without nvcc, or kernels that do not load on this GPU and driver: preprocessing_note()
  // then says why).
  const char* preprocessing() const { return cuda_preprocessing_ ? "cuda" : "cpu"; }
  const std::string& preprocessing_note() const { return preprocessing_note_; }
  int64_t max_batch() const { return options_.max_batch; }

  // Queues one batch (1..max_batch faces); `done` runs exactly once: on a pipeline thread, or on
  // the calling thread when the batch is refused here or dropped by cancel_queued(). The
  // frames' memory must stay valid and unchanged until then (alloc_pinned() frames are held by
  // the pipeline itself until then). After close() or a lost device,
  // `done` runs at once (on the calling thread) with the error.
  void submit(std::vector<FrameIn> frames, std::vector<FaceIn> faces, Done done);

  // Page-locked host memory for a frame the caller fills (a camera decoder): the GPU copies from
  // it directly. Freed by free_pinned (on a pipeline thread while they run), but only once no
  // batch submitted before still reads it: a block freed under queued batches (its JS buffer
  // finalized at a worker's teardown) stays until the last of them is answered. Free each block
  // once: a pointer alloc_pinned() did not return is ignored, but a freed block's address may be
  // handed out again.
  void* alloc_pinned(size_t bytes, std::string* error);
  void free_pinned(void* p);

  // Answers every batch still queued (not yet issued to a context) with `why`, at once, on the
  // calling thread; the batches issued finish as usual. For an environment's teardown, where no
  // result can reach JS any more: close() then waits for two batches per context, not the queue.
  void cancel_queued(const std::string& why);

  // Finishes what is queued, stops the threads (each frees its device memory), releases the
  // engine. Blocks; idempotent; safe to call from any thread but a pipeline thread, and from
  // several at once (a second call returns once the first has finished).
  void close();

  PipelineStats stats() const;

  // Why the model cannot run any more (a sticky CUDA error: the device or context is lost), or "".
  std::string lost() const;

  struct Shared;  // queue, threads, pinned registry (pipeline.cc)

 private:
  Pipeline() = default;
  std::unique_ptr<Engine> engine_;
  PipelineOptions options_;
  std::vector<std::string> output_names_;
  std::vector<TensorDesc> tensors_;
  bool cuda_preprocessing_ = false;
  std::mutex close_m_;
  std::unique_ptr<PreprocessKernels> kernels_;  // null: CPU preprocessing
  std::string preprocessing_note_;
  std::unique_ptr<Shared> shared_;
};

}  // namespace fm::trt
