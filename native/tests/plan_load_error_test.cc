// Why a plan did not load, told from what TensorRT logged (plan_load_error.h). Only a plan
// TensorRT refuses may be called "refused the plan", which makes the engine cache delete it and
// build again. The messages are TensorRT's own wording, as users have reported them
// (NVIDIA/TensorRT#4258 for 10.x running out of memory, #1913 and #3327 for a missing plugin).
#include <string>
#include <vector>

#include "tensorrt/plan_load_error.h"
#include "test_support.h"

using fm::trt::plan_load_error;
using fm_test::check;

namespace {

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

void expect(const std::string& name, const std::string& got, const std::string& start, const std::string& part, bool refused) {
  check(got.rfind(start, 0) == 0, name + ": says " + start, got);
  check(has(got, part), name + ": quotes " + part, got);
  check(has(got, "refused the plan") == refused, name + (refused ? ": the plan is rebuilt" : ": the plan is kept"), got);
}

}  // namespace

int main() {
  const std::vector<std::string> oom = {
      "error: 1: [defaultAllocator.cpp::allocate::19] Error Code 1: Cuda Runtime (out of memory)",
      "warning: Requested amount of GPU memory (1048576000 bytes) could not be allocated. There may not be enough free memory for allocation to succeed.",
      "error: 2: [safeDeserialize.cpp::load::269] Error Code 2: OutOfMemory (no further information)",
  };
  // The small probe allocation succeeds (TensorRT asked for much more): the messages tell.
  expect("out of memory, probe fine", plan_load_error(oom, fm::cu::kSuccess, true), "out of GPU memory while loading the plan",
         "Cuda Runtime (out of memory)", false);
  // Only the last error, in TensorRT's capitalisation.
  expect("OutOfMemory alone", plan_load_error({oom[2]}, fm::cu::kSuccess, true), "out of GPU memory", "OutOfMemory", false);
  expect("the probe itself out of memory", plan_load_error({"error: Engine deserialization failed."}, fm::cu::kErrorOutOfMemory, true),
         "out of GPU memory", "Engine deserialization failed.", false);

  const std::vector<std::string> plugin = {
      "error: 1: [pluginV2Runner.cpp::load::300] Error Code 1: Serialization (Serialization assertion creator failed.Cannot deserialize "
      "plugin since corresponding IPluginCreator not found in Plugin Registry)",
      "error: 4: [runtime.cpp::deserializeCudaEngine::66] Error Code 4: Internal Error (Engine deserialization failed.)",
  };
  const std::string missing = plan_load_error(plugin, fm::cu::kSuccess, false);
  expect("plugin library absent", missing, "TensorRT could not find the plugin", "IPluginCreator not found", false);
  check(has(missing, "could not be loaded"), "plugin library absent: says it could not be loaded", missing);
  const std::string other = plan_load_error({"error: INVALID_ARGUMENT: getPluginCreator could not find plugin ROIAlign_TRT version 1"},
                                            fm::cu::kSuccess, true);
  expect("plugin loaded but not found", other, "TensorRT could not find the plugin", "ROIAlign_TRT version 1", false);
  check(has(other, "which is loaded"), "plugin loaded but not found: says the library is loaded", other);
  // Any error naming a plugin not found (the IPluginV3 path's wording is not known from reports).
  expect("a plugin creator not found, other words", plan_load_error({"error: 1: Plugin creator ROIAlign_TRT version 3 not found"}, fm::cu::kSuccess, true),
         "TensorRT could not find the plugin", "ROIAlign_TRT version 3", false);
  expect("a plugin mentioned, nothing missing", plan_load_error({"error: 1: Serialization (plugin field count mismatch)"}, fm::cu::kSuccess, true),
         "TensorRT refused the plan", "plugin field count mismatch", true);

  // Another TensorRT's plan, or a damaged file: the first error explains, not the last.
  const std::vector<std::string> version = {
      "error: 1: [stdArchiveReader.cpp::StdArchiveReaderInitCommon::46] Error Code 1: Serialization (Serialization assertion "
      "stdVersionRead == kSERIALIZATION_VERSION failed.Version tag does not match. Note: Current Version: 239, Serialized Engine Version: 236)",
      "error: 4: [runtime.cpp::deserializeCudaEngine::66] Error Code 4: Internal Error (Engine deserialization failed.)",
  };
  expect("another TensorRT's plan", plan_load_error(version, fm::cu::kSuccess, true), "TensorRT refused the plan", "Version tag does not match", true);
  expect("nothing logged", plan_load_error({"warning: something unrelated"}, fm::cu::kSuccess, true), "TensorRT refused the plan",
         "TensorRT logged no error", true);

  // A context-fatal error on the probe: the GPU, not the plan (even with memory messages logged).
  const std::string lost = plan_load_error(oom, 700, true);  // CUDA_ERROR_ILLEGAL_ADDRESS
  expect("GPU lost", lost, "the GPU is lost (cuMemAlloc: ", "Cuda Runtime (out of memory)", false);

  std::printf("plan_load_error: %d passed, %d failed\n", fm_test::g_passed, fm_test::g_failed);
  return fm_test::g_failed == 0 ? 0 : 1;
}
