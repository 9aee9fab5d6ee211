// For scripts/check-tensorrt.sh: drives build_engine() and TrtEngine::load() against the stand-in
// TensorRT (whose factories print the logger they are given and return NULL) and prints their
// errors: the call sequence up to TensorRT's factories runs, and a refusal comes back as an error,
// not a crash. Also checks how process_logger() routes messages to the threads' sinks.
// Arguments: [model.onnx] [CUDA device the builds run on, 0 if not given].
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "tensorrt/builder.h"
#include "tensorrt/runtime.h"
#include "tensorrt/trt_logger.h"

namespace {

// "routing: ok", or what went wrong: a message reaches the sink of the thread that logged it
// (innermost scope), no other; with no scope it reaches no sink (errors and warnings go to
// stderr, which check-tensorrt.sh reads).
std::string check_routing() {
  using S = nvinfer1::ILogger::Severity;
  nvinfer1::ILogger& trt = fm::trt::process_logger();
  fm::trt::CollectingLogger a, b;
  {
    const fm::trt::LogScope outer(&a);
    trt.log(S::kERROR, "to a");
    {
      const fm::trt::LogScope inner(&b);
      trt.log(S::kERROR, "to b");
    }
    trt.log(S::kWARNING, "to a again");
    std::thread other([&] {
      trt.log(S::kERROR, "unscoped error");
      trt.log(S::kWARNING, "unscoped warning");
      trt.log(S::kINFO, "unscoped info");
    });
    other.join();
  }
  trt.log(S::kINFO, "after the scopes: dropped");
  const auto am = a.messages(), bm = b.messages();
  if (a.last_error() != "to a" || am.size() != 2 || am[1] != "warning: to a again") return "sink a got the wrong messages";
  if (b.last_error() != "to b" || bm.size() != 1) return "sink b got the wrong messages";
  if (fm::trt::thread_log_sink() != nullptr) return "a scope was not undone";
  return "ok";
}

}  // namespace

int main(int argc, char** argv) {
  std::printf("routing: %s\n", check_routing().c_str());
  std::printf("process logger %p\n", static_cast<void*>(&fm::trt::process_logger()));
  std::fflush(stdout);
  fm::trt::BuildOptions o;
  o.onnx_path = argc > 1 ? argv[1] : "/nonexistent.onnx";
  o.device = argc > 2 ? std::atoi(argv[2]) : 0;
  fm::trt::BuildResult r = fm::trt::build_engine(o);
  std::printf("build: %s\n", r.ok ? "ok" : r.error.c_str());
  o.min_batch = 4;
  o.opt_batch = 2;
  r = fm::trt::build_engine(o);
  std::printf("build with min > opt: %s\n", r.ok ? "ok" : r.error.c_str());
  const char plan[64] = {0};
  std::string error;
  auto engine = fm::trt::TrtEngine::load(plan, sizeof plan, 2, 0, &error);
  std::printf("load: %s\n", engine ? "ok" : error.c_str());
  return 0;
}
