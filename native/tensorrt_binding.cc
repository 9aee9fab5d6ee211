// The TensorRT backend's N-API surface (compiled with FM_HAVE_TENSORRT, or FM_ENGINE_STANDIN):
//   tensorrtBuild(options, onProgress) -> { promise, cancel }   an engine build on a thread of its own
//   tensorrtLoad(plan, options) -> Promise<TensorRtEngine>      deserialize + start the pipeline
//   tensorrtLoadStandIn(options) -> Promise<TensorRtEngine>     stand-in builds only (FM_ENGINE_STANDIN):
//                                                                the same over CopyEngine, no TensorRT
//   engine.run(frames, faces) -> Promise<{ [output]: Float32Array }>
//   engine.allocFrame(bytes) -> Uint8Array over pinned memory (zero-copy frames)
//   engine.close() -> Promise<void>
//   tensorrtCloseAll()                                          stops builds, closes engines in place (the process's 'exit' event)
// Long work never runs on the JS thread: builds on their own thread, loads and close() on
// libuv's pool, batches on the pipeline's threads; results come back through thread-safe
// functions. The exceptions: the environment's teardown and the process's exit (tensorrtCloseAll),
// which close in place, and a collected engine when no thread can be made for its close.
// lib/backends/tensorrt.ts is the only caller. NOT YET RUN ON A GPU.
#include "tensorrt_binding.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "napi_args.h"
#include "napi_settle.h"
#include "tensorrt/pipeline.h"
#if defined(FM_HAVE_TENSORRT)
#include "tensorrt/builder.h"
#include "tensorrt/runtime.h"
#endif
#if defined(FM_ENGINE_STANDIN)
#include "copy_engine.h"
#endif

namespace fm::trt {
namespace {

constexpr int64_t kMaxBatchOption = int64_t{1} << 20;

// An integer option in [lo, hi] (the JS layer validates first; this keeps a wrong call from
// narrowing or wrapping).
int64_t int_option(const Napi::Object& o, const char* key, int64_t fallback, int64_t lo, int64_t hi) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("options.") + key + " must be a number");
  // A safe integer, not Int64Value()'s coercion (NaN to 0, fractions truncated).
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || d != std::floor(d))
    throw Napi::RangeError::New(o.Env(), std::string("options.") + key + " must be an integer from " + std::to_string(lo) +
                                             " to " + std::to_string(hi));
  return static_cast<int64_t>(d);
}

#if defined(FM_HAVE_TENSORRT)
std::string string_option(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return "";
  if (!v.IsString()) throw Napi::TypeError::New(o.Env(), std::string("options.") + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

// ---------------------------------------------------------------------------------------------
// Builds under way, per environment: the process's exit (tensorrtCloseAll) stops those of the
// main thread's, since process.exit() there runs no environment teardown (BuildTask::AtExit).
class RunningBuilds {
 public:
  static RunningBuilds& get() {
    static RunningBuilds* r = new RunningBuilds();  // never destroyed: outlives every environment
    return *r;
  }
  void add(napi_env env, void* key, std::function<void()> stop) {
    std::lock_guard<std::mutex> lock(m_);
    list_.push_back({env, key, std::move(stop)});
  }
  void remove(void* key) {
    std::lock_guard<std::mutex> lock(m_);
    list_.erase(std::remove_if(list_.begin(), list_.end(), [key](const Entry& e) { return e.key == key; }), list_.end());
  }
  // Cancels each build of `env` and waits for TensorRT to stop at its next step. On env's own
  // thread: the tasks are deleted there too, so none goes while this runs.
  void stop_all(napi_env env) {
    std::vector<std::function<void()>> stops;
    {
      std::lock_guard<std::mutex> lock(m_);
      for (const Entry& e : list_)
        if (e.env == env) stops.push_back(e.stop);
    }
    for (const std::function<void()>& stop : stops) stop();
  }

 private:
  struct Entry {
    napi_env env;
    void* key;
    std::function<void()> stop;
  };
  std::mutex m_;
  std::vector<Entry> list_;
};

// ---------------------------------------------------------------------------------------------
// Builds

struct BuildEvent {
  bool final = false;
  BuildProgress progress;
  BuildResult result;
};

// Owned by the build's thread-safe function: deleted by its finalizer, on the JS thread, after
// the final call ran (the deferred and the listener are JS-thread objects).
struct BuildTask {
  BuildOptions options;
  std::shared_ptr<std::atomic<bool>> cancel = std::make_shared<std::atomic<bool>>(false);
  Napi::Promise::Deferred deferred;
  Napi::FunctionReference on_progress;
  std::thread thread;  // the build; it has released the thread-safe function when the finalizer runs
  napi_env env = nullptr;
  bool hooked = false;  // AtExit registered
  explicit BuildTask(Napi::Env e) : deferred(Napi::Promise::Deferred::New(e)), env(e) {}
  ~BuildTask() {
    RunningBuilds::get().remove(this);
    if (hooked) napi_remove_env_cleanup_hook(env, &BuildTask::AtExit, this);
    stop();
  }
  void stop() {
    *cancel = true;
    if (thread.joinable()) thread.join();
  }
  // The environment is going away mid-build (a worker ending; on the main thread the process's
  // exit event does this through RunningBuilds): cancel the build and wait for TensorRT to stop
  // at its next step, rather than leave a thread running inside libnvinfer while the process's
  // static destructors and the driver's teardown run. Registered after the thread-safe function,
  // so it runs before that is torn down.
  static void AtExit(void* arg) {
    auto* t = static_cast<BuildTask*>(arg);
    t->hooked = false;
    t->stop();
  }
};

Napi::Object progress_object(Napi::Env env, const BuildProgress& p) {
  Napi::Object o = Napi::Object::New(env);
  switch (p.kind) {
    case BuildProgress::Kind::PhaseStart:
      o.Set("type", "phase-start");
      if (!p.parent.empty()) o.Set("parent", p.parent);
      o.Set("steps", p.steps);
      break;
    case BuildProgress::Kind::StepComplete:
      o.Set("type", "step");
      o.Set("step", p.step);
      break;
    case BuildProgress::Kind::PhaseFinish: o.Set("type", "phase-end"); break;
  }
  o.Set("phase", p.phase);
  return o;
}

void build_call_js(Napi::Env env, Napi::Function, BuildTask* task, BuildEvent* event) {
  std::unique_ptr<BuildEvent> e(event);
  if (env == nullptr || task == nullptr) return;
  fm::napi::settle(task->deferred, [&] {
    Napi::HandleScope scope(env);
    if (!e->final) {
      if (task->on_progress.IsEmpty()) return;
      try {
        task->on_progress.Call({progress_object(env, e->progress)});
      } catch (const Napi::Error&) {
        // a progress listener's bug must not break the build (the JS side guards it as well)
      }
      return;
    }
    BuildResult& r = e->result;
    Napi::Array messages = Napi::Array::New(env, r.messages.size());
    for (size_t i = 0; i < r.messages.size(); ++i) messages.Set(static_cast<uint32_t>(i), r.messages[i]);
    if (!r.ok) {
      // r.error lists the parser's errors, each with its node; empty only where memory ran out.
      Napi::Error err = Napi::Error::New(env, r.error.empty() ? "the engine build failed" : r.error);
      err.Set("name", r.cancelled ? "AbortError" : "Error");
      err.Set("messages", messages);
      task->deferred.Reject(err.Value());
      return;
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("plan", Napi::Buffer<uint8_t>::Copy(env, r.plan.data(), r.plan.size()));
    out.Set("messages", messages);
    out.Set("tensorrtVersion", r.tensorrt_version);
    out.Set("timingCacheSaved", r.timing_cache_saved);
    task->deferred.Resolve(out);
  });
}

using BuildTsfn = Napi::TypedThreadSafeFunction<BuildTask, BuildEvent, build_call_js>;

Napi::Value Build(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "tensorrtBuild(options, onProgress?) expects an options object");
  auto o = info[0].As<Napi::Object>();
  // The options first: the task's deferred is released only by settling it, so one made for a
  // call refused here stayed behind (a global handle and the promise) with every refusal.
  BuildOptions b;
  b.onnx_path = string_option(o, "onnx");
  if (b.onnx_path.empty()) throw Napi::TypeError::New(env, "options.onnx must be the ONNX file's path");
  b.min_batch = int_option(o, "minBatch", 1, 1, kMaxBatchOption);
  b.opt_batch = int_option(o, "optBatch", 8, 1, kMaxBatchOption);
  b.max_batch = int_option(o, "maxBatch", 64, 1, kMaxBatchOption);
  b.optimization_level = static_cast<int>(int_option(o, "optimizationLevel", -1, -1, 5));
  b.workspace_bytes = static_cast<size_t>(int_option(o, "workspaceBytes", 0, 0, int64_t{1} << 53));
  b.timing_cache_path = string_option(o, "timingCache");
  b.device = static_cast<int>(int_option(o, "device", 0, 0, 1023));
  auto owned = std::make_unique<BuildTask>(env);
  owned->options = std::move(b);
  if (info.Length() > 1 && info[1].IsFunction()) owned->on_progress = Napi::Persistent(info[1].As<Napi::Function>());
  std::shared_ptr<std::atomic<bool>> cancel = owned->cancel;
  owned->options.cancel = cancel.get();
  Napi::Promise promise = owned->deferred.Promise();

  // The final event is made here: the build's thread must not fail to report (nor throw).
  auto final_event = std::make_unique<BuildEvent>();
  final_event->final = true;
  BuildTask* task = owned.get();
  BuildTsfn tsfn = BuildTsfn::New(env, "face-multitask:tensorrt-build", 0, 1, task,
                                  [](Napi::Env, void*, BuildTask* t) { delete t; });
  owned.release();  // the thread-safe function's finalizer deletes it
  try {
    task->options.progress = [tsfn](const BuildProgress& p) mutable {
      auto* e = new BuildEvent();
      e->progress = p;
      if (tsfn.NonBlockingCall(e) != napi_ok) delete e;
      return true;  // cancellation goes through the flag
    };
    RunningBuilds::get().add(env, task, [task] { task->stop(); });
    task->thread = std::thread([task, tsfn, cancel, e = final_event.get()]() mutable {
      e->result = build_engine(task->options);  // never throws
      if (tsfn.BlockingCall(e) != napi_ok) delete e;
      tsfn.Release();  // the finalizer deletes the task once the final call has run
    });
    final_event.release();  // the thread's now
  } catch (const std::exception& e) {
    // No thread (the process is out of threads or memory): released here, or the thread-safe
    // function would keep the event loop alive for ever; the finalizer deletes the task.
    tsfn.Release();
    throw Napi::Error::New(env, std::string("cannot start the engine build: ") + e.what());
  }
  task->hooked = napi_add_env_cleanup_hook(env, &BuildTask::AtExit, task) == napi_ok;

  Napi::Object handle = Napi::Object::New(env);
  handle.Set("promise", promise);
  handle.Set("cancel", Napi::Function::New(env, [cancel](const Napi::CallbackInfo&) { *cancel = true; }, "cancel"));
  return handle;
}

#endif  // FM_HAVE_TENSORRT

// ---------------------------------------------------------------------------------------------
// Engines

class EngineWrap;

// Pipelines of engines collected without close() are closed on threads of their own (device
// memory is never freed on the JS thread); an environment's teardown waits for those still at
// it, so none runs on into the process's static destructors and the driver's teardown. It also
// knows every engine's pipeline, for the process's exit (close_all_at_exit).
class Closers {
 public:
  static Closers& get() {
    static Closers* c = new Closers();  // never destroyed: outlives every environment
    return *c;
  }
  // A load (Loader::Execute, on libuv's pool) begins in `env`; false once the process is exiting
  // (none starts then). The exit waits for the loads under way: one cannot be stopped inside
  // TensorRT's deserialization, and must not run on into the process's teardown.
  bool load_starting(napi_env env) {
    std::lock_guard<std::mutex> lock(m_);
    if (exiting_) return false;
    ++loading_[env];
    return true;
  }
  // The load is done: its pipeline (if it made one) is known from here, for the exit; or, the
  // exit having begun meanwhile, closed at once and not handed out (*p reset, and why returned).
  const char* load_finished(napi_env env, std::shared_ptr<Pipeline>* p) noexcept {
    std::unique_lock<std::mutex> lock(m_);
    const char* dropped = *p && exiting_ ? "the process is exiting" : nullptr;
    if (*p && !exiting_) {
      try {
        live_.erase(std::remove_if(live_.begin(), live_.end(), [](const Live& l) { return l.pipeline.expired(); }), live_.end());
        live_.push_back({env, *p});
      } catch (...) {
        dropped = "out of memory";  // not handed out unknown to the exit
      }
    }
    if (dropped != nullptr) {
      lock.unlock();
      (*p)->close();
      p->reset();
      lock.lock();
    }
    if (--loading_.find(env)->second == 0) loading_.erase(env);
    loaded_.notify_all();
    return dropped;
  }
  void close(std::shared_ptr<Pipeline> p) {
    std::unique_lock<std::mutex> lock(m_);
    reap();
    if (!exiting_) {
      auto done = std::make_shared<std::atomic<bool>>(false);
      try {
        threads_.reserve(threads_.size() + 1);  // so that the push_back below cannot throw
        threads_.push_back({std::thread([p, done]() {
                              p->close();
                              *done = true;
                            }),
                            done});
        return;
      } catch (const std::exception&) {
        // No thread to be had (a process at its limit): close here, on the JS thread, rather
        // than end the process with an exception out of a finalizer.
      }
    }
    lock.unlock();
    p->close();  // after close_all_at_exit: nothing may be left running past the exit
  }
  // `token`: one per registration (Node refuses the same hook and argument twice in one environment).
  static void AtExit(void* token) {
    delete static_cast<char*>(token);
    get().join_all();
  }
  // The process is exiting (the main thread's 'exit' event: process.exit() there runs no
  // environment teardown, so neither AtExit nor the engines' own hooks would run): closes here
  // every pipeline of `env` still open, collected or not (batches not yet started are dropped,
  // those running finish), waits for the closes under way, and from now on closes in place.
  void close_all_at_exit(napi_env env) {
    std::vector<std::shared_ptr<Pipeline>> mine;
    {
      std::unique_lock<std::mutex> lock(m_);
      exiting_ = true;
      // Loads under way finish first (each closing what it made); bounded, should the pool be
      // held up by work that waits on this thread.
      loaded_.wait_for(lock, std::chrono::minutes(2), [&] { return loading_.count(env) == 0; });
      for (const Live& l : live_)
        if (l.env == env)
          if (std::shared_ptr<Pipeline> p = l.pipeline.lock()) mine.push_back(std::move(p));
    }
    for (const std::shared_ptr<Pipeline>& p : mine) {
      p->cancel_queued("the process is exiting");
      p->close();
    }
    join_all();
  }
  void join_all() {
    std::vector<Entry> all;
    {
      std::lock_guard<std::mutex> lock(m_);
      all.swap(threads_);
    }
    for (Entry& e : all) e.thread.join();
  }

 private:
  struct Entry {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  struct Live {
    napi_env env;
    std::weak_ptr<Pipeline> pipeline;
  };
  void reap() {  // joins the finished ones (under m_)
    for (auto it = threads_.begin(); it != threads_.end();) {
      if (*it->done) {
        it->thread.join();
        it = threads_.erase(it);
      } else {
        ++it;
      }
    }
  }
  std::vector<Live> live_;
  std::map<napi_env, int> loading_;  // loads under way, per environment
  std::condition_variable loaded_;
  bool exiting_ = false;
  std::mutex m_;
  std::vector<Entry> threads_;
};

struct Completion {
  Napi::Promise::Deferred deferred;
  std::vector<Napi::Reference<Napi::Value>> keep;  // the frames' memory, until the GPU is done with it
  Napi::ObjectReference engine;                     // the engine object, while the batch runs
  BatchResult result;
  explicit Completion(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

void run_call_js(Napi::Env env, Napi::Function, EngineWrap* wrap, Completion* c);
using RunTsfn = Napi::TypedThreadSafeFunction<EngineWrap, Completion, run_call_js>;

class EngineWrap : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TensorRtEngine",
                       {InstanceMethod("run", &EngineWrap::Run), InstanceMethod("allocFrame", &EngineWrap::AllocFrame),
                        InstanceMethod("close", &EngineWrap::Close), InstanceMethod("info", &EngineWrap::Info)});
  }

  // Made by tensorrtLoad only: the JS constructor takes an External holding the pipeline.
  explicit EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
    if (info.Length() < 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "TensorRtEngine is made by tensorrtLoad(), not constructed directly");
    auto* p = info[0].As<Napi::External<std::shared_ptr<Pipeline>>>().Data();
    pipeline_ = *p;
    tsfn_ = RunTsfn::New(info.Env(), "face-multitask:tensorrt-run", 0, 1, this);
    tsfn_.Unref(info.Env());  // an idle model does not keep the process alive
    env_ = info.Env();
    napi_add_env_cleanup_hook(env_, &EngineWrap::AtExit, this);
  }

  ~EngineWrap() override {
    // After AtExit (the environment's teardown, which then runs this finalizer) the hook is gone
    // and the thread-safe function was released there: it may be freed by now, and releasing it
    // again crashed the process at exit with two engines loaded.
    if (at_exit_) return;
    napi_remove_env_cleanup_hook(env_, &EngineWrap::AtExit, this);
    // Collected without close(): stop the pipeline off the JS thread (device memory is freed by
    // its threads and the closing thread; Closers says when it cannot be).
    if (!closed_ && pipeline_) Closers::get().close(pipeline_);
    tsfn_.Release();
  }

  // The environment is going away (process exit, a worker thread ending) with the model open:
  // close it here, before the process's static destructors and the driver's teardown run,
  // rather than on a thread that could outlive them. Waits for a close() already under way.
  // Registered after the thread-safe function was made, so it runs while that still exists.
  static void AtExit(void* arg) {
    auto* w = static_cast<EngineWrap*>(arg);
    w->closed_ = true;
    if (w->pipeline_) {
      // Nothing can reach JS now: the batches not yet started are dropped, not run.
      w->pipeline_->cancel_queued("the environment is shutting down");
      w->pipeline_->close();
    }
    w->close_done_ = true;
    w->at_exit_ = true;
    w->tsfn_.Release();
  }

  // A batch's promise has settled.
  void finished(Napi::Env env) {
    if (--inflight_ > 0) return;
    tsfn_.Unref(env);
    settle_close(env);
  }
  const std::vector<std::string>& outputs() const { return pipeline_->outputs(); }

 private:
  Napi::Value Run(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) throw Napi::Error::New(env, "the TensorRT engine is closed");
    if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsArray())
      throw Napi::TypeError::New(env, "run(frames, faces) expects two arrays");
    auto frames_js = info[0].As<Napi::Array>();
    auto faces_js = info[1].As<Napi::Array>();
    // Every property first (getters may run JS), then the frames' addresses (napi_args.h).
    // Lengths read once: a getter that grows an array must not make this loop run for ever.
    const uint32_t frame_count = frames_js.Length(), face_count = faces_js.Length();
    if (face_count == 0 || static_cast<int64_t>(face_count) > pipeline_->max_batch())
      throw Napi::RangeError::New(env, "a batch holds 1.." + std::to_string(pipeline_->max_batch()) + " faces, got " + std::to_string(face_count));
    std::vector<napi::FrameArgs> args;
    for (uint32_t i = 0; i < frame_count; ++i) {
      const std::string where = "frames[" + std::to_string(i) + "]";
      Napi::Value v = frames_js.Get(i);
      if (!v.IsObject()) throw Napi::TypeError::New(env, where + " must be an object");
      args.push_back(napi::read_frame(v.As<Napi::Object>(), where));
    }
    std::vector<FaceIn> faces;
    for (uint32_t i = 0; i < face_count; ++i) {
      const std::string where = "faces[" + std::to_string(i) + "]";
      Napi::Value v = faces_js.Get(i);
      if (!v.IsObject()) throw Napi::TypeError::New(env, where + " must be an object");
      auto o = v.As<Napi::Object>();
      const double k = napi::number_field(o, "frame", where);
      if (!(k >= 0 && k < args.size()) || k != static_cast<uint32_t>(k))
        throw Napi::RangeError::New(env, where + ".frame is not an index into frames");
      FaceIn face;
      face.frame = static_cast<int>(k);
      face.has_window = napi::window_field(o, args[static_cast<size_t>(k)].frame, where, &face.window);
      faces.push_back(face);
    }
    std::vector<FrameIn> frames;
    for (const napi::FrameArgs& a : args) {
      const Frame f = napi::resolve_frame(env, a);
      frames.push_back(FrameIn{f.data, f.width, f.height, f.stride, f.format});
    }
    // Made once the arguments are accepted: a promise's deferred is released only by settling
    // it, so one made for a call refused above stayed behind (a global handle and the promise)
    // with every refusal.
    auto* c = new Completion(env);
    std::unique_ptr<Completion> guard(c);
    for (const napi::FrameArgs& a : args) c->keep.push_back(Napi::Persistent(a.data));
    c->engine = Napi::Persistent(Value());
    Napi::Promise promise = c->deferred.Promise();
    RunTsfn tsfn = tsfn_;
    Pipeline::Done done = [tsfn, c](BatchResult&& r) mutable {
      c->result = std::move(r);
      // Refused only while the environment shuts down: the completion's JS references then die
      // with it (never released off the JS thread).
      tsfn.NonBlockingCall(c);
    };
    if (inflight_++ == 0) tsfn_.Ref(env);
    guard.release();  // from here, `done` (which submit always calls, exactly once) owns it
    pipeline_->submit(std::move(frames), std::move(faces), std::move(done));
    return promise;
  }

  Napi::Value AllocFrame(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (closed_) throw Napi::Error::New(env, "the TensorRT engine is closed");
    if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "allocFrame(bytes) expects a number");
    const double bytes = info[0].As<Napi::Number>().DoubleValue();
    if (!(bytes >= 1 && bytes <= 4294967296.0) || bytes != static_cast<double>(static_cast<size_t>(bytes)))
      throw Napi::RangeError::New(env, "allocFrame: bytes must be an integer from 1 to 2^32");
    std::string error;
    void* p = pipeline_->alloc_pinned(static_cast<size_t>(bytes), &error);
    if (p == nullptr) throw Napi::Error::New(env, "pinned memory for the frame: " + error);
    std::memset(p, 0, static_cast<size_t>(bytes));
    auto* owner = new std::shared_ptr<Pipeline>(pipeline_);
    Napi::ArrayBuffer buffer;
    try {
      buffer = Napi::ArrayBuffer::New(
          env, p, static_cast<size_t>(bytes),
          [](Napi::Env, void* data, std::shared_ptr<Pipeline>* hint) {
            (*hint)->free_pinned(data);  // queued to a pipeline thread while it runs
            delete hint;
          },
          owner);
    } catch (const Napi::Error& e) {
      // Runtimes that refuse external buffers (napi_no_external_buffers_allowed: Electron's memory
      // cage) cannot hand pinned memory to JS: say so, and free the block no one will own.
      pipeline_->free_pinned(p);
      delete owner;
      throw Napi::Error::New(env, std::string("allocFrame: this runtime refuses external buffers (") + e.Message() +
                                      "); pass ordinary frames instead, which are copied once into pinned staging");
    }
    return Napi::Uint8Array::New(env, static_cast<size_t>(bytes), buffer, 0);
  }

  // Resolves once the pipeline is closed (on libuv's pool: it waits for the batches issued and
  // queued) and every batch's promise has settled: their completions come through the
  // thread-safe function, which libuv may serve after the close's own completion.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    class Closer : public Napi::AsyncWorker {
     public:
      Closer(Napi::Env env, EngineWrap* wrap)
          : Napi::AsyncWorker(env, "face-multitask:tensorrt-close"), wrap_(wrap), p_(wrap->pipeline_),
            keep_(Napi::Persistent(wrap->Value())) {}
      void Execute() override { p_->close(); }
      void OnOK() override { done(); }
      void OnError(const Napi::Error&) override { done(); }  // close() reports nothing

     private:
      void done() {
        wrap_->close_done_ = true;
        wrap_->settle_close(Env());
      }
      EngineWrap* wrap_;
      std::shared_ptr<Pipeline> p_;
      Napi::ObjectReference keep_;  // the engine object, until then
    };
    auto d = Napi::Promise::Deferred::New(env);
    close_waiters_.push_back(d);
    if (!closed_) {
      closed_ = true;
      (new Closer(env, this))->Queue();
    } else {
      settle_close(env);  // closed already (or at exit): resolves once no batch is outstanding
    }
    return d.Promise();
  }

  void settle_close(Napi::Env env) {
    if (!close_done_ || inflight_ > 0 || close_waiters_.empty()) return;
    std::vector<Napi::Promise::Deferred> waiters;
    waiters.swap(close_waiters_);
    for (Napi::Promise::Deferred& d : waiters) fm::napi::settle(d, [&] { d.Resolve(env.Undefined()); });
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("preprocessing", pipeline_->preprocessing());
    o.Set("preprocessingNote", pipeline_->preprocessing_note());
    o.Set("maxBatch", static_cast<double>(pipeline_->max_batch()));
    o.Set("lost", pipeline_->lost());
    Napi::Array tensors = Napi::Array::New(env);
    uint32_t k = 0;
    for (const TensorDesc& t : pipeline_->tensors()) {
      Napi::Object d = Napi::Object::New(env);
      d.Set("name", t.name);
      d.Set("input", t.input);
      d.Set("dtype", t.dtype_name);
      Napi::Array shape = Napi::Array::New(env, t.shape.size());
      for (size_t i = 0; i < t.shape.size(); ++i) shape.Set(static_cast<uint32_t>(i), static_cast<double>(t.shape[i]));
      d.Set("shape", shape);
      if (t.input) {
        d.Set("minBatch", static_cast<double>(t.min_batch));
        d.Set("optBatch", static_cast<double>(t.opt_batch));
        d.Set("maxBatch", static_cast<double>(t.max_batch));
      }
      tensors.Set(k++, d);
    }
    o.Set("tensors", tensors);
    const PipelineStats st = pipeline_->stats();
    Napi::Object stages = Napi::Object::New(env);
    stages.Set("batches", static_cast<double>(st.batches));
    stages.Set("faces", static_cast<double>(st.faces));
    stages.Set("uploadMs", st.upload_ms);
    stages.Set("preprocessMs", st.preprocess_ms);
    stages.Set("inferMs", st.infer_ms);
    stages.Set("downloadMs", st.download_ms);
    stages.Set("hostMs", st.host_ms);
    stages.Set("wallMs", st.wall_ms);
    stages.Set("cudaGraphs", st.graphs_ready);
    stages.Set("cudaGraphFallbacks", st.graphs_failed);
    o.Set("stages", stages);
    return o;
  }

  std::shared_ptr<Pipeline> pipeline_;
  RunTsfn tsfn_;
  napi_env env_ = nullptr;
  int inflight_ = 0;
  bool closed_ = false;
  bool close_done_ = false;  // the pipeline is closed
  std::vector<Napi::Promise::Deferred> close_waiters_;  // close() calls, until close_done_ and no batch outstanding
  bool at_exit_ = false;  // AtExit ran: the environment is being torn down
};

void run_call_js(Napi::Env env, Napi::Function, EngineWrap* wrap, Completion* c) {
  std::unique_ptr<Completion> done(c);
  if (env == nullptr) return;
  Napi::HandleScope scope(env);
  fm::napi::settle(c->deferred, [&] {
    BatchResult& r = c->result;
    if (!r.ok) {
      c->deferred.Reject(Napi::Error::New(env, "TensorRT: " + r.error).Value());
      return;
    }
    Napi::Object out = Napi::Object::New(env);
    const std::vector<std::string>& names = wrap->outputs();
    for (size_t i = 0; i < names.size() && i < r.outputs.size(); ++i) {
      Napi::Float32Array a = Napi::Float32Array::New(env, r.outputs[i].size());
      std::memcpy(a.Data(), r.outputs[i].data(), r.outputs[i].size() * sizeof(float));
      out.Set(names[i], a);
    }
    c->deferred.Resolve(out);
  });
  wrap->finished(env);  // after: a close() waiting for this batch resolves behind it
}

// Makes the engine on libuv's pool and starts the pipeline on it: TensorRT's (tensorrtLoad) or,
// in the stand-in build, CopyEngine (tensorrtLoadStandIn).
class Loader : public Napi::AsyncWorker {
 public:
  // Returns the engine, or nullptr with *error (and *refused when a cached plan must be rebuilt).
  using Factory = std::function<std::unique_ptr<Engine>(std::string* error, bool* refused)>;
  Loader(Napi::Env env, Factory factory, PipelineOptions options)
      : Napi::AsyncWorker(env, "face-multitask:tensorrt-load"), deferred_(Napi::Promise::Deferred::New(env)),
        factory_(std::move(factory)), options_(options), env_(env) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    if (!Closers::get().load_starting(env_)) {
      error_ = "the process is exiting";
      return;
    }
    // Told in every case (an exception included): the process's exit waits for it.
    try {
      std::unique_ptr<Engine> engine = factory_(&error_, &refused_);
      factory_ = nullptr;  // frees the plan it holds
      if (engine) pipeline_ = Pipeline::start(std::move(engine), options_, &error_);
    } catch (...) {
      Closers::get().load_finished(env_, &pipeline_);
      throw;  // the promise rejects with it (node-addon-api's AsyncWorker)
    }
    if (const char* dropped = Closers::get().load_finished(env_, &pipeline_)) error_ = dropped;
  }
  void OnOK() override {
    Napi::Env env = Env();
    fm::napi::settle(deferred_, [&] {
      if (!pipeline_) {
        Napi::Error e = Napi::Error::New(env, error_);
        // The JS side rebuilds a cached plan that TensorRT refuses, instead of trusting it.
        if (refused_) e.Set("code", "FM_PLAN_REFUSED");
        deferred_.Reject(e.Value());
        return;
      }
      auto holder = std::make_unique<std::shared_ptr<Pipeline>>(pipeline_);
      Napi::FunctionReference* ctor = env.GetInstanceData<Napi::FunctionReference>();
      deferred_.Resolve(ctor->New({Napi::External<std::shared_ptr<Pipeline>>::New(env, holder.get())}));
    });
  }
  void OnError(const Napi::Error& e) override { fm::napi::settle(deferred_, [&] { deferred_.Reject(e.Value()); }); }

 private:
  Napi::Promise::Deferred deferred_;
  Factory factory_;
  PipelineOptions options_;
  std::shared_ptr<Pipeline> pipeline_;
  std::string error_;
  bool refused_ = false;
  napi_env env_;
};

// options.cudaGraphs: true unless false is given.
bool cuda_graphs_option(const Napi::Object& o) {
  Napi::Value graphs = o.Get("cudaGraphs");
  return graphs.IsBoolean() ? graphs.As<Napi::Boolean>().Value() : true;
}

// The pipeline's options: streams, device, maxBatch, crop, resize.
PipelineOptions pipeline_options(const Napi::Object& o) {
  PipelineOptions p;
  p.streams = static_cast<int>(int_option(o, "streams", 2, 1, 16));
  p.device = static_cast<int>(int_option(o, "device", 0, 0, 1023));
  p.max_batch = int_option(o, "maxBatch", 64, 1, kMaxBatchOption);
  p.crop = static_cast<CropMode>(int_option(o, "crop", 1, 0, 1));
  p.resize = static_cast<ResizeMode>(int_option(o, "resize", 1, 0, 1));
  return p;
}

#if defined(FM_HAVE_TENSORRT)
// tensorrtLoad(plan, options): deserializes on libuv's pool and starts the pipeline.
Napi::Value Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, "tensorrtLoad(plan, options) expects a plan and an options object");
  const uint8_t* data = nullptr;
  size_t size = 0;
  if (!napi::bytes_of(info[0], &data, &size) || size == 0) throw Napi::TypeError::New(env, "plan must be a non-empty Uint8Array");
  auto o = info[1].As<Napi::Object>();
  const PipelineOptions p = pipeline_options(o);
  const bool cuda_graphs = cuda_graphs_option(o);
  auto plan = std::make_shared<std::vector<uint8_t>>(data, data + size);
  auto factory = [plan, p, cuda_graphs](std::string* error, bool* refused) -> std::unique_ptr<Engine> {
    std::unique_ptr<Engine> engine = TrtEngine::load(plan->data(), plan->size(), p.streams, p.device, error, cuda_graphs);
    *refused = !engine && error->find("refused the plan") != std::string::npos;
    return engine;
  };
  auto* w = new Loader(env, factory, p);
  Napi::Promise promise = w->Promise();
  w->Queue();
  return promise;
}
#endif

#if defined(FM_ENGINE_STANDIN)
// tensorrtLoadStandIn(options): the pipeline and this binding over CopyEngine (no TensorRT);
// options.half makes it a float16 engine. Test builds only.
Napi::Value LoadStandIn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "tensorrtLoadStandIn(options) expects an options object");
  auto o = info[0].As<Napi::Object>();
  const PipelineOptions p = pipeline_options(o);
  const bool half = o.Get("half").ToBoolean().Value();
  const bool graphs = cuda_graphs_option(o);
  auto factory = [p, half, graphs](std::string* error, bool*) -> std::unique_ptr<Engine> {
    cu::PrimaryContext context;  // bound for the streams' creation; the pipeline retains its own
    if (!context.open(p.device, error) || !context.bind(error)) return nullptr;
    return std::make_unique<fm_test::CopyEngine>(p.streams, p.max_batch, half, 1, graphs);
  };
  auto* w = new Loader(env, factory, p);
  Napi::Promise promise = w->Promise();
  w->Queue();
  return promise;
}
#endif

// tensorrtCloseAll(): from the main thread's 'exit' event (lib/backends/close-at-exit.ts).
Napi::Value CloseAll(const Napi::CallbackInfo& info) {
#if defined(FM_HAVE_TENSORRT)
  RunningBuilds::get().stop_all(info.Env());
#endif
  Closers::get().close_all_at_exit(info.Env());
  return info.Env().Undefined();
}

}  // namespace

void init_tensorrt(Napi::Env env, Napi::Object exports) {
  napi_add_env_cleanup_hook(env, &Closers::AtExit, new char(0));
  exports.Set("tensorrtCloseAll", Napi::Function::New(env, CloseAll, "tensorrtCloseAll"));
  Napi::Function engine = EngineWrap::Define(env);
  env.SetInstanceData(new Napi::FunctionReference(Napi::Persistent(engine)));
#if defined(FM_HAVE_TENSORRT)
  exports.Set("tensorrtBuild", Napi::Function::New(env, Build, "tensorrtBuild"));
  exports.Set("tensorrtLoad", Napi::Function::New(env, Load, "tensorrtLoad"));
#endif
#if defined(FM_ENGINE_STANDIN)
  exports.Set("tensorrtLoadStandIn", Napi::Function::New(env, LoadStandIn, "tensorrtLoadStandIn"));
#endif
}

}  // namespace fm::trt
