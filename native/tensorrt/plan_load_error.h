// Why TensorRT could not deserialize a plan, in words, from what it logged and a probe of the GPU.
// Plain C++ (no TensorRT header): tested without TensorRT (native/tests/plan_load_error_test.cc).
//
// Only a plan TensorRT itself refuses (another TensorRT build or GPU, a damaged file) is called
// "refused the plan", which makes the engine cache delete it and build it again: minutes, and
// useless when the plan is fine and the GPU is full or the plugin library missing. TensorRT's last
// error does not tell these apart ("Engine deserialization failed." follows them all; an
// allocation that failed ends in "OutOfMemory (no further information)"), so every error it
// logged during the load is read.
#pragma once

#include <string>
#include <vector>

#include "tensorrt/cuda_driver.h"

namespace fm::trt {

// `messages`: what the load logged, as CollectingLogger keeps it ("error: ...", "warning: ...").
// `probe`: a small cuMemAlloc made after the failure. `plugins_loaded`: libnvinfer_plugin's
// initLibNvInferPlugins succeeded.
std::string plan_load_error(const std::vector<std::string>& messages, cu::Result probe, bool plugins_loaded);

}  // namespace fm::trt
