// Module entry: exposes the preprocessing to JS. Inputs are read in place and the model input is
// written straight into the caller's Float32Array; the async form runs on libuv's pool so the
// event loop stays free. The JS arrays are referenced until the work is done, which keeps them
// from being collected, not their memory from being detached: as for Node's own async calls on
// buffers (fs.write), a buffer transferred away (postMessage, structuredClone) and freed, or a
// resizable one shrunk, while the work runs is read after it is gone. The package's callers
// check the frames just before (lib/image-input.ts checkStillWhole) and copy resizable ones.
#include <napi.h>

#include <exception>
#include <string>
#include <vector>

#include "napi_args.h"
#include "napi_settle.h"
#include "preprocess/preprocess.h"
#include "tensorrt/loader.h"
#if defined(FM_HAVE_TENSORRT) || defined(FM_ENGINE_STANDIN)
#include "tensorrt_binding.h"
#endif

namespace {

struct FaceJob {
  fm::Frame frame;
  bool has_window;
  fm::CropWindow window;
};

struct Batch {
  std::vector<FaceJob> faces;
  fm::CropMode crop;
  fm::ResizeMode resize;
  float* out;
};

// Parses (faces, crop, resize, out). The JS layer validates first; these checks only keep a
// wrong call from reading or writing out of bounds.
Batch parse_batch(const Napi::CallbackInfo& info, std::vector<Napi::Value>* keep) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsArray() || !info[1].IsNumber() || !info[2].IsNumber() || !info[3].IsTypedArray())
    throw Napi::TypeError::New(env, "preprocess(faces, crop, resize, out) expects an array, two numbers and a Float32Array");
  Batch b;
  // Exactly 0 or 1: Int32Value() would turn NaN, 1.9 or 2^32 + 1 into a valid mode.
  const double crop = info[1].As<Napi::Number>().DoubleValue();
  const double resize = info[2].As<Napi::Number>().DoubleValue();
  if (crop != 0 && crop != 1) throw Napi::RangeError::New(env, "crop must be 0 (stretch) or 1 (square)");
  if (resize != 0 && resize != 1) throw Napi::RangeError::New(env, "resize must be 0 (center crop) or 1 (antialiased bilinear)");
  b.crop = static_cast<fm::CropMode>(crop);
  b.resize = static_cast<fm::ResizeMode>(resize);
  auto out = info[3].As<Napi::TypedArray>();
  if (out.TypedArrayType() != napi_float32_array) throw Napi::TypeError::New(env, "out must be a Float32Array");
  auto faces = info[0].As<Napi::Array>();
  const uint32_t n = faces.Length();
  const auto out_too_small = [&](size_t floats) {
    return Napi::RangeError::New(env, "out holds " + std::to_string(floats) + " floats; " + std::to_string(n) + " faces need " +
                                          std::to_string(static_cast<size_t>(n) * fm::kInputFloats));
  };
  if (out.ElementLength() < static_cast<size_t>(n) * fm::kInputFloats) throw out_too_small(out.ElementLength());
  // Every property first (getters may run JS), then the addresses (napi_args.h, read_frame).
  std::vector<fm::napi::FrameArgs> frames;
  for (uint32_t i = 0; i < n; ++i) {
    const std::string where = "faces[" + std::to_string(i) + "]";
    Napi::Value fv = faces.Get(i);
    if (!fv.IsObject()) throw Napi::TypeError::New(env, where + " must be an object");
    auto f = fv.As<Napi::Object>();
    FaceJob job{};
    frames.push_back(fm::napi::read_frame(f, where));
    job.has_window = fm::napi::window_field(f, frames.back().frame, where, &job.window);
    b.faces.push_back(job);
  }
  for (uint32_t i = 0; i < n; ++i) {
    b.faces[i].frame = fm::napi::resolve_frame(env, frames[i]);
    keep->push_back(frames[i].data);
  }
  const uint8_t* out_bytes = nullptr;
  size_t out_length = 0;
  if (!fm::napi::bytes_of(out, &out_bytes, &out_length) || out_length / sizeof(float) < static_cast<size_t>(n) * fm::kInputFloats)
    throw out_too_small(out_length / sizeof(float));  // again: a getter may have detached it meanwhile
  b.out = reinterpret_cast<float*>(const_cast<uint8_t*>(out_bytes));
  keep->push_back(out);
  return b;
}

void run_batch(const Batch& b) {
  for (size_t i = 0; i < b.faces.size(); ++i) {
    const FaceJob& f = b.faces[i];
    fm::preprocess_face(f.frame, f.has_window ? &f.window : nullptr, b.crop, b.resize, b.out + i * fm::kInputFloats);
  }
}

class PreprocessWorker : public Napi::AsyncWorker {
 public:
  PreprocessWorker(Napi::Env env, Batch batch, const std::vector<Napi::Value>& keep)
      : Napi::AsyncWorker(env, "face-multitask:preprocess"), deferred_(Napi::Promise::Deferred::New(env)), batch_(std::move(batch)) {
    for (const auto& v : keep) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { run_batch(batch_); }
  void OnOK() override { fm::napi::settle(deferred_, [&] { deferred_.Resolve(Env().Undefined()); }); }
  void OnError(const Napi::Error& e) override { fm::napi::settle(deferred_, [&] { deferred_.Reject(e.Value()); }); }

 private:
  Napi::Promise::Deferred deferred_;
  Batch batch_;
  std::vector<Napi::ObjectReference> refs_;  // keeps the frames and the output alive
};

// node-addon-api turns a Napi::Error thrown by a callback into a JS exception, but lets any other
// C++ exception through into N-API, where it ends the process (std::terminate): a std::bad_alloc
// from run_batch (ChipRows' buffers) or parse_batch under memory pressure. Those become an Error.
// (The async form's Execute is covered by AsyncWorker, which catches std::exception there.)
template <typename F>
Napi::Value guarded(Napi::Env env, F&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("face-multitask: native preprocessing failed: ") + e.what());
  }
}

Napi::Value Preprocess(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    std::vector<Napi::Value> keep;
    Batch b = parse_batch(info, &keep);
    auto* w = new PreprocessWorker(info.Env(), std::move(b), keep);
    Napi::Promise p = w->Promise();
    w->Queue();
    return p;
  });
}

Napi::Value PreprocessSync(const Napi::CallbackInfo& info) {
  return guarded(info.Env(), [&]() -> Napi::Value {
    std::vector<Napi::Value> keep;
    run_batch(parse_batch(info, &keep));
    return info.Env().Undefined();
  });
}

// tensorrtStatus(): whether the TensorRT backend can run here, and if not, why (the first
// reason that applies: see native/tensorrt/loader.h). Probes once per process (dlopen of the
// TensorRT libraries and libcuda.so.1, cuInit) and never throws.
Napi::Value TensorrtStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const fm::trt::Status& s = fm::trt::status();
  auto text = [&](const std::string& v) -> Napi::Value {
    return v.empty() ? env.Null() : Napi::String::New(env, v);
  };
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", Napi::Boolean::New(env, s.available));
  o.Set("reason", text(s.reason));
  o.Set("detail", text(s.detail));
  o.Set("builtFor", text(s.built_for));
  o.Set("tensorrtVersion", text(s.tensorrt_version));
  o.Set("tensorrtBuild", text(s.tensorrt_build));
  o.Set("parserVersion", text(s.parser_version));
  o.Set("libraryPath", text(s.library_path));
  o.Set("parser", Napi::Boolean::New(env, s.parser));
  o.Set("plugins", Napi::Boolean::New(env, s.plugins));
  o.Set("gpuName", text(s.gpu_name));
  o.Set("computeCapability", text(s.compute_capability));
  o.Set("smCount", Napi::Number::New(env, s.sm_count));
  o.Set("gpuCount", Napi::Number::New(env, s.gpu_count));
  o.Set("gpuMemory", Napi::Number::New(env, static_cast<double>(s.gpu_memory)));
  o.Set("cudaDriverVersion", text(s.cuda_driver_version));
  Napi::Array searched = Napi::Array::New(env, s.searched.size());
  for (size_t i = 0; i < s.searched.size(); ++i) searched.Set(static_cast<uint32_t>(i), Napi::String::New(env, s.searched[i]));
  o.Set("searched", searched);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("preprocess", Napi::Function::New(env, Preprocess, "preprocess"));
  exports.Set("preprocessSync", Napi::Function::New(env, PreprocessSync, "preprocessSync"));
  exports.Set("inputFloats", Napi::Number::New(env, fm::kInputFloats));
  exports.Set("tensorrtStatus", Napi::Function::New(env, TensorrtStatus, "tensorrtStatus"));
#if defined(FM_HAVE_TENSORRT) || defined(FM_ENGINE_STANDIN)
  fm::trt::init_tensorrt(env, exports);  // tensorrtBuild, tensorrtLoad (tensorrtLoadStandIn)
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(face_multitask, Init)
