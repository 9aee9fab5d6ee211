// ONNX -> TensorRT plan (see builder.h). NOT YET RUN ON A GPU.
#include "tensorrt/builder.h"

#include <NvInfer.h>
#include <NvOnnxParser.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <new>

#include "tensorrt/cuda_driver.h"
#include "tensorrt/file_lock.h"
#include "tensorrt/loader.h"
#include "tensorrt/trt_logger.h"

namespace fm::trt {
namespace {

using nvinfer1::Dims;

// Forwards IProgressMonitor's reports; cancels (stepComplete -> false) when the callback says
// so or the cancel flag is set. Serialised by a mutex in case TensorRT reports from several
// threads.
class ProgressMonitor : public nvinfer1::IProgressMonitor {
 public:
  ProgressMonitor(const std::function<bool(const BuildProgress&)>& cb, const std::atomic<bool>* cancel)
      : cb_(cb), cancel_(cancel) {}

  void phaseStart(char const* phaseName, char const* parentPhase, int32_t nbSteps) noexcept override {
    BuildProgress p{BuildProgress::Kind::PhaseStart, phaseName ? phaseName : "", parentPhase ? parentPhase : "", nbSteps, 0};
    report(p);
  }
  bool stepComplete(char const* phaseName, int32_t step) noexcept override {
    BuildProgress p{BuildProgress::Kind::StepComplete, phaseName ? phaseName : "", "", 0, step};
    const bool go_on = report(p) && !(cancel_ != nullptr && cancel_->load(std::memory_order_relaxed));
    if (!go_on) cancelled_ = true;
    return go_on;
  }
  void phaseFinish(char const* phaseName) noexcept override {
    BuildProgress p{BuildProgress::Kind::PhaseFinish, phaseName ? phaseName : "", "", 0, 0};
    report(p);
  }
  // True only when a stepComplete returned false, TensorRT's one way to stop for a cancel: a build
  // that failed for its own reason (out of memory) while a cancel was pending keeps its error.
  bool cancelled() const { return cancelled_; }

 private:
  bool report(const BuildProgress& p) noexcept {
    if (!cb_) return true;
    std::lock_guard<std::mutex> lock(mutex_);
    try {
      return cb_(p);
    } catch (...) {
      return true;  // a throwing callback does not stop the build
    }
  }
  const std::function<bool(const BuildProgress&)>& cb_;
  const std::atomic<bool>* cancel_;
  std::mutex mutex_;
  std::atomic<bool> cancelled_{false};
};

// Reads a whole file in one allocation (a model's ONNX is hundreds of MB: not byte by byte).
// Throws std::bad_alloc where memory runs out; build_engine turns that into its error.
bool read_file(const std::string& path, std::vector<char>* out) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return false;
  const std::streamoff size = f.tellg();
  if (size < 0) return false;
  out->resize(static_cast<size_t>(size));
  f.seekg(0);
  return static_cast<bool>(f.read(out->data(), size));
}

// Writes `path` through a temp file in the same folder and a rename: readers never see half a
// file, and two processes writing the same cache leave one complete copy. The temp name is this
// process's and this write's: on NFS, flock() is an fcntl lock, which two threads of one process
// share, so two builds in one process may be here at once.
bool write_atomically(const std::string& path, const void* data, size_t size, std::string* error) {
  static std::atomic<unsigned> writes{0};
  const std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(writes++);
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    *error = "cannot write " + tmp;
    return false;
  }
  const bool ok = std::fwrite(data, 1, size, f) == size && std::fflush(f) == 0 && fsync(fileno(f)) == 0;
  if (std::fclose(f) != 0 || !ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    *error = "cannot write " + path;
    return false;
  }
  return true;
}

// Adds this build's timings to the cache file, as trtexec's updateTimingCacheFile: the file as it
// is now, combined with what this build used, written back. Under the file's lock from reading
// to writing, so builders of other engines running at the same time (threads or processes) each
// add their entries instead of the last one overwriting the others'. A file TensorRT cannot
// combine with (another TensorRT build or device) is replaced.
bool save_timing_cache(const std::string& path, nvinfer1::IBuilderConfig& config, const nvinfer1::ITimingCache& used,
                       std::string* error) {
  FileLock lock(path);
  if (!lock.held()) {
    *error = lock.error();
    return false;
  }
  std::vector<char> blob;
  std::unique_ptr<nvinfer1::ITimingCache> now;
  if (read_file(path, &blob) && !blob.empty()) now.reset(config.createTimingCache(blob.data(), blob.size()));
  const nvinfer1::ITimingCache* out = now && now->combine(used, false) ? now.get() : &used;
  std::unique_ptr<nvinfer1::IHostMemory> bytes{out->serialize()};
  if (!bytes || bytes->size() == 0) {
    *error = "TensorRT serialized an empty timing cache";
    return false;
  }
  return write_atomically(path, bytes->data(), bytes->size(), error);
}

std::string dims_text(const Dims& d) {
  std::string s = "[";
  for (int32_t i = 0; i < d.nbDims; ++i) s += (i ? ", " : "") + std::to_string(d.d[i]);
  return s + "]";
}

std::string version_text(int32_t v) {
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
}

// The network flags: strongly typed. TensorRT 11 networks are always strongly typed and its
// kSTRONGLY_TYPED (now bit 0, deprecated and ignored) must not be passed; in 10.x it is bit 1.
nvinfer1::NetworkDefinitionCreationFlags network_flags() {
#if NV_TENSORRT_MAJOR >= 11
  return 0U;
#else
  return 1U << static_cast<uint32_t>(nvinfer1::NetworkDefinitionCreationFlag::kSTRONGLY_TYPED);
#endif
}

BuildResult fail(BuildResult r, const std::string& error, const CollectingLogger* logger = nullptr) {
  r.ok = false;
  r.error = error;
  if (logger != nullptr) {
    r.messages = logger->messages();
    const std::string last = logger->last_error();
    if (!last.empty() && error.find(last) == std::string::npos) r.error += " (TensorRT: " + last + ")";
  }
  return r;
}

// A failed result saying `what`, made without throwing (it may be reporting an exhausted heap:
// the message is then left empty, and the caller says the build failed).
BuildResult failed_with(const char* what) noexcept {
  BuildResult r;
  try {
    r.error = what;
  } catch (...) {
  }
  return r;
}

BuildResult build_engine_or_throw(const BuildOptions& o);

}  // namespace

BuildResult build_engine(const BuildOptions& options) {
  // What may throw is this side's own work (TensorRT's API is noexcept): reading the ONNX, copying
  // the plan, strings. On the build's thread an exception would end the process.
  try {
    return build_engine_or_throw(options);
  } catch (const std::bad_alloc&) {
    return failed_with("the engine build ran out of host memory");
  } catch (const std::exception& e) {
    return failed_with(e.what());
  } catch (...) {
    return failed_with("the engine build failed with an unknown exception");
  }
}

namespace {

BuildResult build_engine_or_throw(const BuildOptions& o) {
  BuildResult r;
  std::string why;
  const Library* L = library(&why);
  if (L == nullptr) return fail(r, "TensorRT is not available: " + why);
  const std::string unavailable = unavailable_on(o.device);  // status() judges device 0's GPU; the build runs on o.device
  if (!unavailable.empty()) return fail(r, "TensorRT is not available: " + unavailable);
  if (L->createNvOnnxParser == nullptr) return fail(r, "the TensorRT ONNX parser library is not loaded");
  r.tensorrt_version = status().tensorrt_version;
  if (!(o.min_batch >= 1 && o.min_batch <= o.opt_batch && o.opt_batch <= o.max_batch))
    return fail(r, "batch sizes must satisfy 1 <= min (" + std::to_string(o.min_batch) + ") <= opt (" +
                       std::to_string(o.opt_batch) + ") <= max (" + std::to_string(o.max_batch) + ")");

  std::vector<char> onnx;
  if (!read_file(o.onnx_path, &onnx) || onnx.empty()) return fail(r, "cannot read the ONNX file " + o.onnx_path);
  // The parser loads external weights from beside this absolute path. Not realpath(): the weights
  // are the files beside the path as given (a folder of symbolic links, as a Hugging Face
  // snapshot's), as the engine's key hashes them and ONNX Runtime reads them.
  char cwd[PATH_MAX];
  const std::string model_path = o.onnx_path.rfind('/', 0) == 0 || getcwd(cwd, sizeof cwd) == nullptr
                                     ? o.onnx_path
                                     : std::string(cwd) + "/" + o.onnx_path;

  cu::PrimaryContext cuda;
  std::string error;
  if (!cuda.open(o.device, &error) || !cuda.bind(&error)) return fail(r, error);

  CollectingLogger logger(o.log);
  // The build runs on this thread, and on TensorRT's own: their messages go to `logger`.
  const BuildLogScope log_scope(&logger);
  // As trtexec: the standard plugins registered before parsing (the parser maps RoiAlign to
  // the ROIAlign_TRT plugin), and the builder resources findable before creating a builder.
  const bool plugins = init_plugins(&process_logger());
  preload_builder_resources();

  // Declared before the builder and its config, so destroyed after them: "the lifetime of the
  // ITimingCache must exceed the lifetime of all builders that use it", and of the
  // IProgressMonitor "all TensorRT objects that use it" (NvInfer.h).
  std::unique_ptr<nvinfer1::ITimingCache> cache;
  ProgressMonitor monitor(o.progress, o.cancel);
  std::unique_ptr<nvinfer1::IBuilder> builder{
      static_cast<nvinfer1::IBuilder*>(L->createInferBuilder(&process_logger(), NV_TENSORRT_VERSION))};
  if (!builder) return fail(r, "createInferBuilder failed", &logger);
  std::unique_ptr<nvinfer1::INetworkDefinition> network{builder->createNetworkV2(network_flags())};
  if (!network) return fail(r, "createNetworkV2 failed", &logger);
  // The parser owns the weights the network points to: it lives until the build is done.
  std::unique_ptr<nvonnxparser::IParser> parser{
      static_cast<nvonnxparser::IParser*>(L->createNvOnnxParser(network.get(), &process_logger(), NV_ONNX_PARSER_VERSION))};
  if (!parser) return fail(r, "createNvOnnxParser failed", &logger);

  if (!parser->parse(onnx.data(), onnx.size(), model_path.c_str())) {
    bool roialign = false;
    for (int i = 0; i < parser->getNbErrors(); ++i) {
      const nvonnxparser::IParserError* e = parser->getError(i);
      if (e == nullptr) continue;
      ParserError pe;
      pe.code = static_cast<int>(e->code());
      pe.desc = e->desc() ? e->desc() : "";
      pe.node = e->node();
      pe.node_name = e->nodeName() ? e->nodeName() : "";
      pe.node_operator = e->nodeOperator() ? e->nodeOperator() : "";
      if (pe.node_operator == "RoiAlign" || pe.desc.find("ROIAlign") != std::string::npos) roialign = true;
      r.parser_errors.push_back(std::move(pe));
    }
    std::string msg = "TensorRT's ONNX parser rejected " + o.onnx_path;
    for (const auto& pe : r.parser_errors) {
      msg += "; ";
      if (pe.node >= 0) msg += "node " + std::to_string(pe.node) + " (" + pe.node_name + ", " + pe.node_operator + "): ";
      msg += pe.desc;
    }
    if (roialign && !plugins)
      msg += "; the model uses RoiAlign, which needs libnvinfer_plugin.so." + std::to_string(NV_TENSORRT_MAJOR) +
             " (not loaded)";
    return fail(r, msg, &logger);
  }

  // The input and its profile: dimension 0 is the batch, every other one must be fixed.
  // The named input first: a model whose one input has another name is told so, not that it has a
  // second dynamic input.
  nvinfer1::ITensor* input = nullptr;
  std::string inputs;
  for (int32_t i = 0; i < network->getNbInputs(); ++i) {
    nvinfer1::ITensor* t = network->getInput(i);
    inputs += (i ? ", " : "") + std::string(t->getName()) + " " + dims_text(t->getDimensions());
    if (t->getName() == o.input_name) input = t;
  }
  if (input == nullptr) return fail(r, "the model has no input named '" + o.input_name + "' (inputs: " + inputs + ")");
  for (int32_t i = 0; i < network->getNbInputs(); ++i) {
    nvinfer1::ITensor* t = network->getInput(i);
    if (t == input) continue;
    const Dims d = t->getDimensions();
    for (int32_t k = 0; k < d.nbDims; ++k)
      if (d.d[k] < 0) return fail(r, "the model has a second dynamic input, " + std::string(t->getName()) + " " + dims_text(d) + ": not supported");
  }
  const Dims dims = input->getDimensions();
  if (dims.nbDims < 1) return fail(r, "input '" + o.input_name + "' is a scalar");
  for (int32_t k = 1; k < dims.nbDims; ++k)
    if (dims.d[k] < 0)
      return fail(r, "input '" + o.input_name + "' " + dims_text(dims) + " has a dynamic dimension other than the batch");
  if (dims.d[0] >= 0 && !(o.min_batch == dims.d[0] && o.max_batch == dims.d[0]))
    return fail(r, "input '" + o.input_name + "' has a fixed batch of " + std::to_string(dims.d[0]) +
                       "; export the model with a dynamic batch dimension");

  std::unique_ptr<nvinfer1::IBuilderConfig> config{builder->createBuilderConfig()};
  if (!config) return fail(r, "createBuilderConfig failed", &logger);
  nvinfer1::IOptimizationProfile* profile = builder->createOptimizationProfile();  // owned by the builder
  Dims d = dims;
  bool ok = profile != nullptr;
  const std::pair<nvinfer1::OptProfileSelector, int64_t> sel[] = {{nvinfer1::OptProfileSelector::kMIN, o.min_batch},
                                                                   {nvinfer1::OptProfileSelector::kOPT, o.opt_batch},
                                                                   {nvinfer1::OptProfileSelector::kMAX, o.max_batch}};
  for (const auto& [which, batch] : sel) {
    if (!ok) break;
    d.d[0] = batch;
    ok = profile->setDimensions(o.input_name.c_str(), which, d);
  }
  if (!ok || config->addOptimizationProfile(profile) < 0) return fail(r, "the optimization profile was refused", &logger);

  // FP32 tensors computed in FP32, as the network types them: TensorRT's default kTF32 rounds a
  // product's inputs to 10-bit mantissas, FP16's, which an FP32 engine (the fallback for a model
  // whose FP16 export is out of tolerance) and an FP16 model's FP32 islands exist to avoid.
  config->clearFlag(nvinfer1::BuilderFlag::kTF32);
  if (o.optimization_level >= 0) config->setBuilderOptimizationLevel(o.optimization_level);
  if (o.workspace_bytes > 0) config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE, o.workspace_bytes);

  // Timing cache: from the file if it is one of this TensorRT build and device, else empty.
  if (!o.timing_cache_path.empty()) {
    std::vector<char> blob;
    if (read_file(o.timing_cache_path, &blob) && !blob.empty()) {
      cache.reset(config->createTimingCache(blob.data(), blob.size()));
      if (cache && !config->setTimingCache(*cache, false)) cache.reset();
      if (!cache) logger.log(nvinfer1::ILogger::Severity::kWARNING, ("ignored the timing cache " + o.timing_cache_path +
                                                                      " (another TensorRT build or device?)").c_str());
    }
    if (!cache) {
      cache.reset(config->createTimingCache(nullptr, 0));
      if (cache) config->setTimingCache(*cache, false);
    }
    logger.clear_last_error();  // a refused cache file is handled: not the reason for a later failure
  }

  config->setProgressMonitor(&monitor);

  std::unique_ptr<nvinfer1::IHostMemory> plan{builder->buildSerializedNetwork(*network, *config)};
  config->setProgressMonitor(nullptr);
  if (!plan || plan->size() == 0) {
    if (!monitor.cancelled()) return fail(r, "buildSerializedNetwork failed", &logger);
    r.cancelled = true;
    return fail(r, "the engine build was cancelled");
  }
  // A cancel that came after TensorRT's last step finds the plan finished: it is returned (the
  // caller keeps it in the cache), not thrown away.
  const auto* bytes = static_cast<const uint8_t*>(plan->data());
  r.plan.assign(bytes, bytes + plan->size());

  if (!o.timing_cache_path.empty()) {
    const nvinfer1::ITimingCache* used = config->getTimingCache();
    std::string werr = used ? "" : "the builder has no timing cache";
    if (used) r.timing_cache_saved = save_timing_cache(o.timing_cache_path, *config, *used, &werr);
    if (!r.timing_cache_saved) logger.log(nvinfer1::ILogger::Severity::kWARNING, ("timing cache not saved: " + werr).c_str());
  }
  r.ok = true;
  r.messages = logger.messages();
  if (r.tensorrt_version.empty() && L->getInferLibVersion) r.tensorrt_version = version_text(L->getInferLibVersion());
  return r;
}

}  // namespace
}  // namespace fm::trt
