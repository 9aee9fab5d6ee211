// The nvinfer1::ILogger implementations shared by builder.cc and runtime.cc (internal: needs
// the TensorRT headers, FM_HAVE_TENSORRT builds only).
#pragma once

#include <NvInferRuntime.h>

#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace fm::trt {

// Keeps TensorRT's errors and warnings (the last `keep` of them) and forwards them to an
// optional callback. TensorRT may log from several threads: guarded by a mutex.
class CollectingLogger : public nvinfer1::ILogger {
 public:
  explicit CollectingLogger(std::function<void(int, const std::string&)> forward = {}, size_t keep = 100)
      : forward_(std::move(forward)), keep_(keep) {}

  void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
    if (severity > Severity::kWARNING || msg == nullptr) return;
    const char* tag = severity == Severity::kWARNING ? "warning: " : "error: ";
    std::lock_guard<std::mutex> lock(mutex_);
    std::string line = std::string(tag) + msg;
    if (severity != Severity::kWARNING) last_error_ = msg;
    messages_.push_back(line);  // the last keep_: what explains a failure comes late
    if (messages_.size() > keep_) messages_.pop_front();
    if (forward_) {
      try {
        forward_(static_cast<int>(severity), msg);
      } catch (...) {
      }
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

// For the plugin library, which keeps the logger it was initialised with for the rest of the
// process: errors to stderr, the rest dropped. Never destroyed.
inline nvinfer1::ILogger& process_logger() {
  struct StderrLogger : nvinfer1::ILogger {
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
      if (severity <= Severity::kERROR && msg != nullptr) std::fprintf(stderr, "face-multitask: TensorRT: %s\n", msg);
    }
  };
  static StderrLogger* logger = new StderrLogger();
  return *logger;
}

}  // namespace fm::trt
