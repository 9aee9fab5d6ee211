// Reading arguments from JS values, shared by the N-API entry points (addon.cc and
// tensorrt_binding.cc): the JS layer validates first; these checks only keep a wrong call from
// reading out of bounds.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <cmath>
#include <limits>
#include <string>

#include "preprocess/preprocess.h"

namespace fm::napi {

// Bytes of a TypedArray / Buffer / DataView, honouring byteOffset and byteLength. Both through
// the info call's data pointer, which (unlike ArrayBuffer().Data(), which fails with 'Invalid
// argument' there) also serves a view over a SharedArrayBuffer.
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
    size_t byte_length = 0, offset = 0;
    void* base = nullptr;  // already at byteOffset
    if (napi_get_dataview_info(v.Env(), v, &byte_length, &base, nullptr, &offset) != napi_ok) return false;
    *data = static_cast<const uint8_t*>(base);
    *length = base ? byte_length : 0;  // detached: no address, nothing to read
    return true;
  }
  return false;
}

inline double number_field(const Napi::Object& o, const char* key, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), where + "." + key + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

// An 8-bit frame {data, width, height, stride, format} read in place, in two steps. First every
// property is read (a getter may run JS there) and the numbers checked; then, once the caller has
// read everything it needs and no JS can run any more before the bytes are used, resolve_frame
// takes the data's address and checks its length: a getter run in between cannot leave a pointer
// into a buffer it detached or shrank.
struct FrameArgs {
  Napi::Value data;  // the caller keeps it referenced while the frame is in use
  Frame frame;       // everything but the data pointer
  std::string where;
};

inline FrameArgs read_frame(const Napi::Object& f, const std::string& where) {
  Napi::Env env = f.Env();
  FrameArgs a{f.Get("data"), Frame{}, where};
  const double w = number_field(f, "width", where), h = number_field(f, "height", where);
  const double stride = number_field(f, "stride", where), format = number_field(f, "format", where);
  if (!(format >= 0 && format <= 4) || format != static_cast<int>(format))
    throw Napi::RangeError::New(env, where + ".format is not a known pixel format");
  a.frame.format = static_cast<PixelFormat>(static_cast<int>(format));
  const int nc = channels(a.frame.format);
  if (!(w >= 1 && h >= 1 && w <= 1 << 20 && h <= 1 << 20) || w != static_cast<int>(w) || h != static_cast<int>(h))
    throw Napi::RangeError::New(env, where + " has an invalid width or height");
  if (!(stride >= w * nc && stride <= 9007199254740992.0) || stride != std::floor(stride))
    throw Napi::RangeError::New(env, where + ".stride is smaller than width * channels");
  a.frame.width = static_cast<int>(w);
  a.frame.height = static_cast<int>(h);
  a.frame.stride = static_cast<size_t>(stride);
  return a;
}

inline Frame resolve_frame(Napi::Env env, const FrameArgs& a) {
  Frame frame = a.frame;
  size_t length = 0;
  if (!bytes_of(a.data, &frame.data, &length)) throw Napi::TypeError::New(env, a.where + ".data must be a TypedArray");
  // The last row needs its pixels only (every reader stops at width * channels in a row). A
  // stride * (height - 1) past size_t (stride may reach 2^53) would wrap to a small number.
  const size_t row = static_cast<size_t>(frame.width) * channels(frame.format);
  const size_t rows = static_cast<size_t>(frame.height - 1);
  const bool overflows = rows > 0 && frame.stride > (SIZE_MAX - row) / rows;
  const size_t needed = overflows ? SIZE_MAX : frame.stride * rows + row;
  if (length < needed)
    throw Napi::RangeError::New(env, a.where + ".data is shorter than stride * (height - 1) + width * channels");
  return frame;
}

// o.window: [x, y, width, height] (true, *window set), or null / undefined for a 256x256 chip
// (false; the frame must then be 256x256). Anything else is refused, not taken for "no window".
inline bool window_field(const Napi::Object& o, const Frame& frame, const std::string& where, CropWindow* window) {
  // frame: its size only (read_frame's; the data need not be resolved yet).
  Napi::Env env = o.Env();
  Napi::Value win = o.Get("window");
  if (win.IsNull() || win.IsUndefined()) {
    if (frame.width != kChip || frame.height != kChip)
      throw Napi::RangeError::New(env, where + " has no window and is not a 256x256 chip");
    return false;
  }
  if (!win.IsArray() || win.As<Napi::Array>().Length() != 4)
    throw Napi::TypeError::New(env, where + ".window must be [x, y, width, height] or null (a 256x256 chip)");
  auto a = win.As<Napi::Array>();
  double v[4];
  for (uint32_t k = 0; k < 4; ++k) {
    Napi::Value e = a.Get(k);
    if (!e.IsNumber()) throw Napi::TypeError::New(env, where + ".window must hold 4 numbers");
    v[k] = e.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(v[k])) throw Napi::RangeError::New(env, where + ".window must be finite");
    // Checked before the conversion (a double beyond float's range has no float value: converting
    // it is undefined behaviour): 1e39 is finite as a double only.
    if (std::fabs(v[k]) > static_cast<double>(std::numeric_limits<float>::max()))
      throw Napi::RangeError::New(env, where + ".window must be finite in float32");
  }
  *window = {static_cast<float>(v[0]), static_cast<float>(v[1]), static_cast<float>(v[2]), static_cast<float>(v[3])};
  // As the kernels get it, in float32: 1e-50 is positive as a double only.
  if (!(window->width > 0 && window->height > 0)) throw Napi::RangeError::New(env, where + ".window must have a positive size in float32");
  return true;
}

}  // namespace fm::napi
