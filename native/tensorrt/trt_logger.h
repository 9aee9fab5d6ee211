// The nvinfer1::ILogger implementations shared by builder.cc and runtime.cc (internal: needs
// the TensorRT headers, FM_HAVE_TENSORRT builds only).
#pragma once

#include <NvInferRuntime.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace fm::trt {

// TensorRT keeps a single logger pointer for the whole process: while any builder, runtime or
// refitter made with one logger lives, a logger given to a new one is ignored ("TensorRT
// maintains only a single logger pointer at any given time"), and destroying that first logger
// then leaves TensorRT a dangling pointer (a model closed while another builds). So every
// TensorRT object gets process_logger(), made once and never destroyed, as trtexec, Triton and
// onnxruntime do; it hands each message to the sink its calling thread has set with LogScope
// (the build's or the engine's CollectingLogger), and errors and warnings from other threads
// (TensorRT's own) to stderr.

// Keeps TensorRT's errors and warnings (the last `keep` of them) and forwards them to an
// optional callback: a sink of process_logger(), never given to TensorRT itself. TensorRT may
// log from several threads: guarded by a mutex.
class CollectingLogger {
 public:
  using Severity = nvinfer1::ILogger::Severity;

  explicit CollectingLogger(std::function<void(int, const std::string&)> forward = {}, size_t keep = 100)
      : forward_(std::move(forward)), keep_(keep) {}

  void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept {
    if (severity > Severity::kWARNING || msg == nullptr) return;
    const char* tag = severity == Severity::kWARNING ? "warning: " : "error: ";
    std::lock_guard<std::mutex> lock(mutex_);
    // ILogger::log is noexcept: a std::bad_alloc here (TensorRT logs most when memory runs out)
    // would end the process; the message is dropped instead.
    try {
      std::string line = std::string(tag) + msg;
      if (severity != Severity::kWARNING) last_error_ = msg;
      messages_.push_back(std::move(line));  // the last keep_: what explains a failure comes late
      if (messages_.size() > keep_) messages_.pop_front();
      if (forward_) forward_(static_cast<int>(severity), msg);
    } catch (...) {
    }
  }

  std::vector<std::string> messages() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::vector<std::string>(messages_.begin(), messages_.end());
  }
  std::string last_error() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_error_;
  }
  // After an error that was handled (a refused timing cache), so that a later failure's
  // message is not blamed on it.
  void clear_last_error() {
    std::lock_guard<std::mutex> lock(mutex_);
    last_error_.clear();
  }

 private:
  std::function<void(int, const std::string&)> forward_;
  size_t keep_;
  mutable std::mutex mutex_;
  std::deque<std::string> messages_;
  std::string last_error_;
};

// The sink TensorRT's messages from this thread go to (null: errors and warnings to stderr).
inline CollectingLogger*& thread_log_sink() {
  thread_local CollectingLogger* sink = nullptr;
  return sink;
}

// Sends this thread's TensorRT messages to `sink` for the scope's lifetime (scopes nest).
class LogScope {
 public:
  explicit LogScope(CollectingLogger* sink) : previous_(thread_log_sink()) { thread_log_sink() = sink; }
  ~LogScope() { thread_log_sink() = previous_; }
  LogScope(const LogScope&) = delete;
  LogScope& operator=(const LogScope&) = delete;

 private:
  CollectingLogger* previous_;
};

// The builds under way. TensorRT's builder also works, and may log, on threads of its own
// (IProgressMonitor and ILogger are called "from multiple internal threads"), which no LogScope
// covers: their errors and warnings go to every build under way (exactly right while one runs),
// so that a build's failure carries them, as well as to stderr. Never destroyed.
struct BuildSinks {
  std::mutex mutex;
  std::vector<CollectingLogger*> sinks;
};
inline BuildSinks& build_sinks() {
  static BuildSinks* sinks = new BuildSinks();
  return *sinks;
}

// A build's LogScope that also registers its sink for TensorRT's own builder threads.
class BuildLogScope {
 public:
  explicit BuildLogScope(CollectingLogger* sink) : scope_(sink), sink_(sink) {
    std::lock_guard<std::mutex> lock(build_sinks().mutex);
    build_sinks().sinks.push_back(sink);
  }
  ~BuildLogScope() {
    std::lock_guard<std::mutex> lock(build_sinks().mutex);  // a message being handed to the sink ends first
    auto& v = build_sinks().sinks;
    v.erase(std::find(v.begin(), v.end(), sink_));
  }
  BuildLogScope(const BuildLogScope&) = delete;
  BuildLogScope& operator=(const BuildLogScope&) = delete;

 private:
  LogScope scope_;
  CollectingLogger* sink_;
};

// The one logger given to TensorRT (builders, runtimes, the ONNX parser, the plugin library):
// see the top of this file. Never destroyed.
inline nvinfer1::ILogger& process_logger() {
  struct RoutingLogger : nvinfer1::ILogger {
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
      if (msg == nullptr) return;
      if (CollectingLogger* sink = thread_log_sink()) {
        sink->log(severity, msg);
      } else if (severity <= Severity::kWARNING) {  // as trtexec shows them; info and verbose dropped
        std::fprintf(stderr, "face-multitask: TensorRT %s: %s\n", severity == Severity::kWARNING ? "warning" : "error", msg);
        BuildSinks& builds = build_sinks();
        std::lock_guard<std::mutex> lock(builds.mutex);
        for (CollectingLogger* s : builds.sinks) s->log(severity, msg);
      }
    }
  };
  static RoutingLogger* logger = new RoutingLogger();
  return *logger;
}

}  // namespace fm::trt
