// ONNX -> serialized TensorRT engine (a "plan"), built as a strongly typed network: the
// precision comes from the ONNX itself (an FP16 or BF16 export with FP32 islands), the one
// recipe that works on TensorRT 10 and 11 alike (11 removed kFP16 and every other precision
// flag). The steps follow trtexec: builder, network, ONNX parser (every error reported), one
// optimization profile, builder config (optimization level, workspace, timing cache, progress
// monitor), buildSerializedNetwork.
//
// Plain C++ interface (no TensorRT header needed to include it). Compiled into the addon only
// with FM_HAVE_TENSORRT. NOT YET RUN ON A GPU: compile-checked against the 10.14 and 11.x
// headers, and run over stand-in TensorRT libraries by check-tensorrt.sh (tests/build_over_fake_test.cc).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace fm::trt {

// One report of TensorRT's IProgressMonitor. Phases nest (parent names the enclosing phase,
// empty for a top-level one); names are English and may change between TensorRT versions.
struct BuildProgress {
  enum class Kind { PhaseStart, StepComplete, PhaseFinish };
  Kind kind;
  std::string phase;
  std::string parent;  // PhaseStart only
  int32_t steps = 0;   // PhaseStart: the number of steps of the phase
  int32_t step = 0;    // StepComplete: the step just completed, in [0, steps)
};

struct BuildOptions {
  std::string onnx_path;            // read whole; external-data files are looked up beside it
  std::string input_name = "input";
  int64_t min_batch = 1;            // the optimization profile on input dimension 0
  int64_t opt_batch = 8;            // kernels are tuned for this one
  int64_t max_batch = 32;
  int optimization_level = -1;      // 0..5; < 0 keeps TensorRT's default (3)
  size_t workspace_bytes = 0;       // MemoryPoolType::kWORKSPACE limit; 0 keeps TensorRT's default
  // Timing cache file: loaded if it exists and is readable (a cache from another TensorRT
  // build or device is ignored, with a warning). After a successful build, this build's timings
  // are combined with the file as it is then and written back atomically (temp + rename), under
  // a lock on <path>.lock. Empty: no timing cache file.
  std::string timing_cache_path;
  int device = 0;                   // CUDA device ordinal
  // Called from the building thread for every phase start / step / finish. Return false to
  // cancel: TensorRT stops at its next step (stepComplete returns false). May be empty.
  std::function<bool(const BuildProgress&)> progress;
  // Cancellation from another thread, checked at every step. May be null. A cancel that comes
  // after TensorRT's last step still returns the finished plan (ok, not cancelled).
  const std::atomic<bool>* cancel = nullptr;
  // TensorRT's log lines at kWARNING and above (severity: 0 internal error, 1 error,
  // 2 warning), from whichever thread TensorRT logs on. May be empty.
  std::function<void(int severity, const std::string& message)> log;
};

struct ParserError {
  int code = 0;            // nvonnxparser::ErrorCode
  std::string desc;
  int node = -1;           // node index, -1 if none
  std::string node_name;
  std::string node_operator;
};

struct BuildResult {
  bool ok = false;
  bool cancelled = false;
  std::string error;                       // one message saying what failed (empty if ok)
  std::vector<ParserError> parser_errors;  // every getError(i) of a failed parse
  std::vector<std::string> messages;       // TensorRT's errors and warnings during the build
  std::vector<uint8_t> plan;               // the serialized engine
  std::string tensorrt_version;            // of the library that built it
  bool timing_cache_saved = false;
};

// Builds on the calling thread (minutes for a large model): run it on a thread of its own.
// Never throws.
BuildResult build_engine(const BuildOptions& options);

}  // namespace fm::trt
