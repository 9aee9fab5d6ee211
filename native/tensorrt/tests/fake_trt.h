// What the stand-in TensorRT libraries (fake_trt_runtime.cc, fake_trt_builder.cc,
// fake_trt_parser.cc) share: how they report a call that breaks what TensorRT's headers state.
// Each includes, after this, the stubs of the interfaces it implements, which fake_trt_stubs.py
// generates from the headers (fake_trt_stubs.h for libnvinfer's, fake_trt_parser_stubs.h for the
// parser's).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

[[noreturn]] inline void fake_trt_unimplemented(const char* what) {
  std::fprintf(stderr, "FAKE-TRT VIOLATION: the addon called %s, which this stand-in does not implement\n", what);
  std::abort();
}

// A call that breaks TensorRT's stated rules: a line check-tensorrt.sh fails on.
inline void fake_trt_violation(const std::string& what) {
  std::fprintf(stderr, "FAKE-TRT VIOLATION: %s\n", what.c_str());
  std::fflush(stderr);
}
