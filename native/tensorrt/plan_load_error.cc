#include "tensorrt/plan_load_error.h"

#include <algorithm>
#include <cctype>
#include <initializer_list>

namespace fm::trt {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool has_any(const std::string& text, std::initializer_list<const char*> needles) {
  return std::any_of(needles.begin(), needles.end(), [&](const char* n) { return text.find(n) != std::string::npos; });
}

// TensorRT 10's wording (defaultAllocator / safeDeserialize), and 8's.
bool says_out_of_memory(const std::string& m) { return has_any(lower(m), {"out of memory", "outofmemory", "could not be allocated"}); }

// IPluginV2's reported wordings, and any error naming a plugin it cannot find: RoiAlign is an
// IPluginV3 (ROIAlignV3) in 10.x and 11.x, whose wording no report shows yet. Called refused
// instead, the plan would be deleted and rebuilt for minutes, only to fail again.
bool says_plugin_missing(const std::string& m) {
  const std::string l = lower(m);
  return has_any(l, {"cannot deserialize plugin"}) ||
         (l.find("plugin") != std::string::npos && has_any(l, {"not found", "could not find", "cannot find", "not registered"}));
}

bool is_error(const std::string& m) { return m.rfind("error: ", 0) == 0; }

// The first error that says `pred` (any error when null): what explains comes first, and
// "Engine deserialization failed." last.
std::string detail(const std::vector<std::string>& messages, bool (*pred)(const std::string&)) {
  for (const std::string& m : messages) {
    if (is_error(m) && (pred == nullptr || pred(m))) return m.substr(7);
  }
  return pred == nullptr ? "TensorRT logged no error" : detail(messages, nullptr);
}

}  // namespace

std::string plan_load_error(const std::vector<std::string>& messages, cu::Result probe, bool plugins_loaded) {
  auto any = [&](bool (*pred)(const std::string&)) { return std::any_of(messages.begin(), messages.end(), pred); };
  if (cu::fatal(probe)) {
    return "the GPU is lost (cuMemAlloc: " + cu::error_text(probe) + "); TensorRT could not load the plan: " + detail(messages, nullptr);
  }
  if (probe == cu::kErrorOutOfMemory || any(says_out_of_memory)) {
    return "out of GPU memory while loading the plan (other processes or models hold it; the plan is kept): " +
           detail(messages, says_out_of_memory);
  }
  if (any(says_plugin_missing)) {
    return std::string("TensorRT could not find the plugin a layer of the plan uses (ROIAlign_TRT, from libnvinfer_plugin") +
           (plugins_loaded ? ", which is loaded: is it of the TensorRT that built the plan?" : ", which could not be loaded: put it beside libnvinfer") +
           "; the plan is kept): " + detail(messages, says_plugin_missing);
  }
  return "TensorRT refused the plan (another TensorRT build or GPU, or a damaged file): " + detail(messages, nullptr);
}

}  // namespace fm::trt
