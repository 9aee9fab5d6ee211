// The TensorRT backend's exports (tensorrt_binding.cc); present only in builds with
// FM_HAVE_TENSORRT (TensorRT headers found at build time) or FM_ENGINE_STANDIN (a test build whose
// engine is a TensorRT-free stand-in).
#pragma once

#include <napi.h>

namespace fm::trt {

// Adds tensorrtBuild and tensorrtLoad (or tensorrtLoadStandIn) to the module's exports.
void init_tensorrt(Napi::Env env, Napi::Object exports);

}  // namespace fm::trt
