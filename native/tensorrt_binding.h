// The TensorRT backend's exports (tensorrt_binding.cc); present only in builds with
// FM_HAVE_TENSORRT (TensorRT headers found at build time).
#pragma once

#include <napi.h>

namespace fm::trt {

// Adds tensorrtBuild and tensorrtLoad to the module's exports.
void init_tensorrt(Napi::Env env, Napi::Object exports);

}  // namespace fm::trt
