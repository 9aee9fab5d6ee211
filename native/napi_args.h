// Reading arguments from JS values, shared by the N-API entry points (addon.cc and
// tensorrt_binding.cc): the JS layer validates first; these checks only keep a wrong call from
// reading out of bounds.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <cmath>
#include <string>

#include "preprocess/preprocess.h"

namespace fm::napi {

// Bytes of a TypedArray / Buffer / DataView, honouring byteOffset and byteLength. A typed array
// through napi_get_typedarray_info's data pointer, which (unlike ArrayBuffer().Data()) also
// serves one over a SharedArrayBuffer.
inline bool bytes_of(const Napi::Value& v, const uint8_t** data, size_t* length) {
  if (v.IsTypedArray()) {
    napi_typedarray_type type;
    size_t count = 0, offset = 0;
    void* base = nullptr;
    if (napi_get_typedarray_info(v.Env(), v, &type, &count, &base, nullptr, &offset) != napi_ok) return false;
    *data = static_cast<const uint8_t*>(base);
    *length = v.As<Napi::TypedArray>().ByteLength();
    return true;
  }
  if (v.IsDataView()) {
    auto d = v.As<Napi::DataView>();
    *data = static_cast<const uint8_t*>(d.ArrayBuffer().Data()) + d.ByteOffset();
    *length = d.ByteLength();
    return true;
  }
  return false;
}

inline double number_field(const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), where + "." + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

// An 8-bit frame {data, width, height, stride, format} read in place; *data gets the JS value of
// its bytes (the caller keeps it referenced while the frame is in use).
inline Frame frame_field(const Napi::Object& f, const std::string& where, Napi::Value* data) {
  Napi::Env env = f.Env();
  Frame frame{};
  size_t length = 0;
  *data = f.Get("data");
  if (!bytes_of(*data, &frame.data, &length)) throw Napi::TypeError::New(env, where + ".data must be a TypedArray");
  const double w = number_field(f, "width", where), h = number_field(f, "height", where);
  const double stride = number_field(f, "stride", where), format = number_field(f, "format", where);
  if (!(format >= 0 && format <= 4) || format != static_cast<int>(format))
    throw Napi::RangeError::New(env, where + ".format is not a known pixel format");
  frame.format = static_cast<PixelFormat>(static_cast<int>(format));
  const int nc = channels(frame.format);
  if (!(w >= 1 && h >= 1 && w <= 1 << 20 && h <= 1 << 20) || w != static_cast<int>(w) || h != static_cast<int>(h))
    throw Napi::RangeError::New(env, where + " has an invalid width or height");
  if (!(stride >= w * nc && stride <= 9007199254740992.0) || stride != std::floor(stride))
    throw Napi::RangeError::New(env, where + ".stride is smaller than width * channels");
  // The last row needs its pixels only (every reader stops at width * channels in a row).
  if (static_cast<double>(length) < stride * (h - 1) + w * nc)
    throw Napi::RangeError::New(env, where + ".data is shorter than stride * (height - 1) + width * channels");
  frame.width = static_cast<int>(w);
  frame.height = static_cast<int>(h);
  frame.stride = static_cast<size_t>(stride);
  return frame;
}

// o.window: [x, y, width, height] (true, *window set), or anything else for a 256x256 chip
// (false; the frame must then be 256x256).
inline bool window_field(const Napi::Object& o, const Frame& frame, const std::string& where, CropWindow* window) {
  Napi::Env env = o.Env();
  Napi::Value win = o.Get("window");
  if (!win.IsArray()) {
    if (frame.width != kChip || frame.height != kChip)
      throw Napi::RangeError::New(env, where + " has no window and is not a 256x256 chip");
    return false;
  }
  auto a = win.As<Napi::Array>();
  double v[4];
  for (uint32_t k = 0; k < 4; ++k) {
    Napi::Value e = a.Get(k);
    if (!e.IsNumber()) throw Napi::TypeError::New(env, where + ".window must hold 4 numbers");
    v[k] = e.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(v[k])) throw Napi::RangeError::New(env, where + ".window must be finite");
  }
  *window = {static_cast<float>(v[0]), static_cast<float>(v[1]), static_cast<float>(v[2]), static_cast<float>(v[3])};
  // Checked as the kernels get it, in float32: 1e39 is finite as a double only, 1e-50 positive.
  const float fv[4] = {window->x, window->y, window->width, window->height};
  for (int k = 0; k < 4; ++k)
    if (!std::isfinite(fv[k])) throw Napi::RangeError::New(env, where + ".window must be finite in float32");
  if (!(window->width > 0 && window->height > 0)) throw Napi::RangeError::New(env, where + ".window must have a positive size in float32");
  return true;
}

}  // namespace fm::napi
