// Prints fm::trt::status() (what the addon's tensorrtStatus() returns) without Node: for the
// GPU machine (ctest: tensorrt_status) and for scripts/check-tensorrt.sh, which runs it against
// stand-in libraries. Exit code 0 when the status is self-consistent (unavailable with a reason,
// or available with a library version and a GPU); with --expect-available, 0 only if available.
#include <cstdio>
#include <cstring>

#include "tensorrt/loader.h"

int main(int argc, char** argv) {
  const fm::trt::Status& s = fm::trt::status();
  std::printf("available: %s\n", s.available ? "true" : "false");
  std::printf("reason: %s\n", s.reason.c_str());
  std::printf("detail: %s\n", s.detail.c_str());
  std::printf("builtFor: %s\n", s.built_for.c_str());
  std::printf("tensorrtVersion: %s\n", s.tensorrt_version.c_str());
  std::printf("tensorrtBuild: %s\n", s.tensorrt_build.c_str());
  std::printf("parserVersion: %s\n", s.parser_version.c_str());
  std::printf("libraryPath: %s\n", s.library_path.c_str());
  std::printf("parser: %s\n", s.parser ? "true" : "false");
  std::printf("plugins: %s\n", s.plugins ? "true" : "false");
  std::printf("gpuName: %s\n", s.gpu_name.c_str());
  std::printf("computeCapability: %s\n", s.compute_capability.c_str());
  std::printf("smCount: %d\n", s.sm_count);
  std::printf("gpuCount: %d\n", s.gpu_count);
  std::printf("gpuMemory: %llu\n", static_cast<unsigned long long>(s.gpu_memory));
  std::printf("cudaDriverVersion: %s\n", s.cuda_driver_version.c_str());
  for (const auto& p : s.searched) std::printf("searched: %s\n", p.c_str());
  if (argc > 1 && std::strcmp(argv[1], "--expect-available") == 0) return s.available ? 0 : 1;
  const bool consistent = s.available ? (!s.tensorrt_version.empty() && !s.gpu_name.empty() && s.reason.empty())
                                      : !s.reason.empty();
  if (!consistent) std::printf("FAILED: the status is not self-consistent\n");
  return consistent ? 0 : 1;
}
