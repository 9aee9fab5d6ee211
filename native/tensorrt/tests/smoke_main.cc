// For scripts/check-tensorrt.sh: drives build_engine() and TrtEngine::load() against the stand-in
// TensorRT (whose factories return NULL) and prints their errors: the call sequence up to
// TensorRT's factories runs, and a refusal comes back as an error, not a crash.
#include <cstdio>
#include <string>

#include "tensorrt/builder.h"
#include "tensorrt/runtime.h"

int main(int argc, char** argv) {
  fm::trt::BuildOptions o;
  o.onnx_path = argc > 1 ? argv[1] : "/nonexistent.onnx";
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
