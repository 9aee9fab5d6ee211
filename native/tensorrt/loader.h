// TensorRT, opened at run time the way trtexec and NVIDIA's samples do it: compiled against the
// headers, `dlopen` of libnvinfer.so.<major> / libnvonnxparser.so.<major> /
// libnvinfer_plugin.so.<major>, the entry points resolved with dlsym. Nothing of TensorRT or
// CUDA is linked: the same .node loads everywhere and status() says why the GPU backend is not
// available. Plain C++: this header needs no TensorRT or CUDA header.
//
// Library search, in order, for each library (<major> = NV_TENSORRT_MAJOR of the headers):
//   1. $TENSORRT_LIB_DIR (a directory, or several separated by ':'), then $TENSORRT_ROOT/lib
//      and /usr/local/tensorrt/lib (the tar-file layout);
//   2. the default library path (dlopen of the bare soname: LD_LIBRARY_PATH, the ldconfig
//      cache, /usr/lib/<triplet> where the Debian packages put it);
//   3. the `tensorrt_libs` folder of a pip install (`pip install tensorrt-cu12` / `-cu13`), in
//      the site-packages folders of $TENSORRT_PYTHON_SITE (':'-separated; a site-packages
//      folder or the tensorrt_libs folder itself), $VIRTUAL_ENV, $CONDA_PREFIX, ./.venv and the
//      project's .venv (beside the addon), ~/.local, /usr/local/lib/python3*, /usr/lib/python3*.
// The parser and plugin libraries are looked for in the folder libnvinfer came from first.
//
// NOT YET RUN against a real TensorRT installation: compile-checked against the 10.14 and 11.x
// headers (scripts/check-tensorrt.sh) and run against stand-in libraries only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fm::trt {

// TensorRT's minimum compute capability (10.x and 11.x: Turing, sm_75).
constexpr int kMinComputeCapability = 75;

struct Status {
  bool available = false;
  // Empty when available, otherwise exactly one of (the first that applies, in this order):
  //   "headers absent at build time"
  //   "no TensorRT library (searched: <what>)"
  //   "wrong TensorRT major (library X.Y, built for Z)"
  //   "no CUDA driver"
  //   "no GPU"
  //   "GPU too old (sm_XY; TensorRT Z needs ≥ sm_75)"
  std::string reason;
  std::string detail;            // the finer print: dlerror text, cuInit's error, a version warning
  std::string built_for;         // "10.14.1": headers compiled against; empty without headers
  std::string tensorrt_version;  // "10.14.1": getInferLibVersion() of the library found; empty if none
  std::string parser_version;    // getNvOnnxParserVersion() of the parser library, or empty: the parser's
  std::string tensorrt_build;     // getInferLibBuildVersion(): the library's build number ("48"), empty if absent
                                 // own API version ("0.1.0" throughout TensorRT 10 and 11), not TensorRT's
  std::string library_path;      // where libnvinfer was loaded from
  bool parser = false;           // libnvonnxparser loaded (needed to build engines)
  bool plugins = false;          // libnvinfer_plugin loaded (needed for RoiAlign models: v2.6+)
  std::vector<std::string> searched;  // every place looked in, in order
  // The GPU (device 0 as CUDA numbers them), filled whenever the driver answers:
  std::string gpu_name;
  std::string compute_capability;  // "8.6"; empty if unknown
  int sm_count = 0;
  int gpu_count = 0;
  uint64_t gpu_memory = 0;       // bytes
  std::string cuda_driver_version;  // "13.0": the newest CUDA the driver supports; empty if no driver
};

// Probes once per process (loads the libraries, initialises the CUDA driver) and caches the
// answer. Thread-safe; never throws.
const Status& status();

// Why TensorRT cannot build or run on CUDA device `device`, or "" when it can: status()'s reason,
// except that the compute capability judged is that device's, not device 0's (a build on device 1
// is neither refused because device 0 is old nor let through because device 0 is new). An
// ordinal the driver does not have is left to opening the device, which says so.
std::string unavailable_on(int device);

// The resolved entry points (valid only when status().available, or at least when the
// library part of the status passed). Signatures as declared in NvInfer.h / NvOnnxParser.h /
// NvInferPlugin.h; loader.cc checks them against the headers at compile time.
struct Library {
  void* (*createInferBuilder)(void* logger, int32_t version) noexcept = nullptr;  // createInferBuilder_INTERNAL
  void* (*createInferRuntime)(void* logger, int32_t version) noexcept = nullptr;  // createInferRuntime_INTERNAL
  int32_t (*getInferLibVersion)() noexcept = nullptr;
  int32_t (*getInferLibBuildVersion)() noexcept = nullptr;  // may be null
  void* (*createNvOnnxParser)(void* network, void* logger, int version) noexcept = nullptr;  // may be null
  int (*getNvOnnxParserVersion)() noexcept = nullptr;                                   // may be null
  bool (*initLibNvInferPlugins)(void* logger, const char* libNamespace) = nullptr;      // may be null
};

// The library if libnvinfer of the right major was loaded, else nullptr (and *why, if given,
// says why: the status reason).
const Library* library(std::string* why = nullptr);

// Registers TensorRT's standard plugins (ROIAlign_TRT, ...) once per process, as trtexec does
// before parsing or deserializing anything. `logger` must be an nvinfer1::ILogger that lives
// for the rest of the process. Returns whether the plugin library is loaded and its
// initialisation succeeded (false: models without plugins still build and run).
bool init_plugins(void* logger);

// Loads the builder resource libraries (libnvinfer_builder_resource*.so*) that sit beside
// libnvinfer when it came from a folder outside the default library path (a pip
// tensorrt_libs folder, $TENSORRT_LIB_DIR): libnvinfer dlopens them by soname when a builder
// is created, and would not find them there otherwise. This is what the pip package's own
// tensorrt_libs/__init__.py does (it loads every library of its folder). Idempotent.
void preload_builder_resources();

}  // namespace fm::trt
