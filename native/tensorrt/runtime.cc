// Engine deserialization and execution (see runtime.h). NOT YET RUN ON A GPU.
#include "tensorrt/runtime.h"

#include <NvInferRuntime.h>

#include <algorithm>
#include <map>

#include "tensorrt/graph_runner.h"
#include "tensorrt/loader.h"
#include "tensorrt/plan_load_error.h"
#include "tensorrt/trt_logger.h"

namespace fm::trt {

struct TrtEngine::Impl {
  // Declaration order = reverse destruction order: the engine before the runtime. `logger` is
  // the sink of this engine's TensorRT messages (LogScope): TensorRT holds process_logger().
  CollectingLogger logger;
  std::unique_ptr<nvinfer1::IRuntime> runtime;
  std::unique_ptr<nvinfer1::ICudaEngine> engine;
};

// With CUDA graphs, one execution context per batch size, its input shapes set once: changing a
// context's shapes changes internal state a graph captured on it relies on, and NVIDIA's advice
// is one context per captured graph, sharing activation memory across the contexts (user-managed
// memory, setDeviceMemoryV2). The slot's contexts run one at a time on its stream, so they share
// `memory`. Without graphs, `context` runs every batch size, with memory TensorRT allocates.
struct TrtEngine::Slot {
  std::unique_ptr<nvinfer1::IExecutionContext> context;
  std::map<int64_t, std::unique_ptr<nvinfer1::IExecutionContext>> by_batch;  // graphs on: made on first use
  cu::DevicePtr memory = 0;  // graphs on: the activation memory every context of the slot uses
  cu::Stream stream = nullptr;
  std::unique_ptr<GraphRunner> graphs;
  // The sink of TensorRT's messages on the slot's thread, cleared at each enqueue: a failed call
  // reports its own error, never another slot's or an older one.
  CollectingLogger logger;
  ~Slot() {
    graphs.reset();
    by_batch.clear();  // the contexts before their stream and their memory
    context.reset();
    const cu::Api* a = cu::driver();
    if (a != nullptr && stream != nullptr) a->StreamDestroy(stream);
    if (a != nullptr && memory != 0) a->MemFree(memory);
  }
};

namespace {

// The last error TensorRT logged to this thread's sink (LogScope) during the call under way.
std::string logged_error() {
  const CollectingLogger* sink = thread_log_sink();
  const std::string e = sink != nullptr ? sink->last_error() : std::string();
  return e.empty() ? "TensorRT logged no error" : e;
}

// DataType by value, so that older 10.x headers without the newest enumerators compile too.
void describe_type(nvinfer1::DataType t, TensorDesc* d) {
  d->dtype = static_cast<int>(t);
  switch (d->dtype) {
    case 0: d->dtype_name = "float32"; d->element_size = 4; break;   // kFLOAT
    case 1: d->dtype_name = "float16"; d->element_size = 2; break;   // kHALF
    case 2: d->dtype_name = "int8"; d->element_size = 1; break;      // kINT8
    case 3: d->dtype_name = "int32"; d->element_size = 4; break;     // kINT32
    case 4: d->dtype_name = "bool"; d->element_size = 1; break;      // kBOOL
    case 5: d->dtype_name = "uint8"; d->element_size = 1; break;     // kUINT8
    case 6: d->dtype_name = "fp8"; d->element_size = 1; break;       // kFP8
    case 7: d->dtype_name = "bfloat16"; d->element_size = 2; break;  // kBF16
    case 8: d->dtype_name = "int64"; d->element_size = 8; break;     // kINT64
    case 9: d->dtype_name = "int4"; d->element_size = 0; break;      // kINT4
    case 10: d->dtype_name = "fp4"; d->element_size = 0; break;      // kFP4
    default: d->dtype_name = "type " + std::to_string(d->dtype); d->element_size = 0; break;
  }
}

std::string driver_error(const char* what, cu::Result r) { return std::string(what) + ": " + cu::error_text(r); }

}  // namespace

std::unique_ptr<TrtEngine> TrtEngine::load(const void* plan, size_t size, int contexts, int device, std::string* error,
                                     bool cuda_graphs) {
  std::string why;
  const Library* L = library(&why);
  if (L == nullptr) {
    *error = "TensorRT is not available: " + why;
    return nullptr;
  }
  if (contexts < 1) {
    *error = "at least one execution context is needed";
    return nullptr;
  }
  std::unique_ptr<TrtEngine> e(new TrtEngine());
  e->cuda_graphs_ = cuda_graphs;
  if (!e->cuda_.open(device, error) || !e->cuda_.bind(error)) return nullptr;
  const bool plugins = init_plugins(&process_logger());  // plans that use plugins (ROIAlign_TRT) need them registered

  e->impl_ = std::make_unique<Impl>();
  Impl& I = *e->impl_;
  const LogScope log_scope(&I.logger);  // ends before `e` is destroyed on a failure below
  I.runtime.reset(static_cast<nvinfer1::IRuntime*>(L->createInferRuntime(&process_logger(), NV_TENSORRT_VERSION)));
  if (!I.runtime) {
    *error = "createInferRuntime failed: " + I.logger.last_error();
    return nullptr;
  }
  I.engine.reset(I.runtime->deserializeCudaEngine(plan, size));
  if (!I.engine) {
    // A small allocation tells a lost context (or a full GPU) from the plan's own fault; what
    // TensorRT logged tells the rest (plan_load_error.h: only "refused" rebuilds the plan).
    const cu::Api* a = cu::driver();
    cu::DevicePtr probe = 0;
    const cu::Result r = a->MemAlloc(&probe, 1 << 20);
    if (r == cu::kSuccess) a->MemFree(probe);
    *error = plan_load_error(I.logger.messages(), r, plugins);
    return nullptr;
  }

  for (int32_t i = 0; i < I.engine->getNbIOTensors(); ++i) {
    TensorDesc t;
    t.name = I.engine->getIOTensorName(i);
    t.input = I.engine->getTensorIOMode(t.name.c_str()) == nvinfer1::TensorIOMode::kINPUT;
    describe_type(I.engine->getTensorDataType(t.name.c_str()), &t);
    const nvinfer1::Dims d = I.engine->getTensorShape(t.name.c_str());
    t.shape.assign(d.d, d.d + d.nbDims);
    if (t.input && d.nbDims > 0 && d.d[0] < 0) {
      t.min_batch = I.engine->getProfileShape(t.name.c_str(), 0, nvinfer1::OptProfileSelector::kMIN).d[0];
      t.opt_batch = I.engine->getProfileShape(t.name.c_str(), 0, nvinfer1::OptProfileSelector::kOPT).d[0];
      t.max_batch = I.engine->getProfileShape(t.name.c_str(), 0, nvinfer1::OptProfileSelector::kMAX).d[0];
    }
    e->tensors_.push_back(std::move(t));
  }

  const cu::Api* a = cu::driver();
  e->memory_bytes_ = e->cuda_graphs_ ? I.engine->getDeviceMemorySizeV2() : 0;
  for (int k = 0; k < contexts; ++k) {
    auto slot = std::make_unique<Slot>();
    slot->graphs = std::make_unique<GraphRunner>(e->cuda_graphs_, &e->graphs_off_);
    if (e->memory_bytes_ > 0) {
      const cu::Result r = a->MemAlloc(&slot->memory, static_cast<size_t>(e->memory_bytes_));
      if (r != cu::kSuccess) {
        *error = "cuMemAlloc of " + std::to_string(e->memory_bytes_ >> 20) + " MiB of activation memory (context " +
                 std::to_string(k) + "): " + cu::error_text(r);
        return nullptr;
      }
    }
    if (!e->make_context(*slot, &slot->context, error)) {
      *error = "context " + std::to_string(k) + ": " + *error;
      return nullptr;
    }
    const cu::Result r = a->StreamCreate(&slot->stream, cu::kStreamNonBlocking);
    if (r != cu::kSuccess) {
      *error = driver_error("cuStreamCreate", r);
      return nullptr;
    }
    e->slots_.push_back(std::move(slot));
  }
  // The pipeline sizes each output as [batch, the engine's other dimensions]. An output whose
  // first dimension is not the batch (a flattened [N*K] also shows as -1 in the engine) would be
  // sized wrong: check what TensorRT infers at the profile's smallest and largest batch.
  if (!e->check_output_shapes(error)) return nullptr;
  return e;
}

bool TrtEngine::make_context(Slot& s, std::unique_ptr<nvinfer1::IExecutionContext>* out, std::string* error) const {
  nvinfer1::ICudaEngine& engine = *impl_->engine;
  out->reset(cuda_graphs_ ? engine.createExecutionContext(nvinfer1::ExecutionContextAllocationStrategy::kUSER_MANAGED)
                          : engine.createExecutionContext());
  if (!*out) {
    *error = "createExecutionContext failed: " + logged_error();
    return false;
  }
  // nullptr is what TensorRT takes when it needs no activation memory (a size of 0).
  if (cuda_graphs_) (*out)->setDeviceMemoryV2(reinterpret_cast<void*>(static_cast<uintptr_t>(s.memory)), memory_bytes_);
  return true;
}

bool TrtEngine::set_batch(nvinfer1::IExecutionContext& c, int64_t batch, std::string* error) const {
  for (const TensorDesc& t : tensors_) {
    if (!t.input || t.shape.empty() || t.shape[0] >= 0) continue;
    if (batch < t.min_batch || batch > t.max_batch) {
      *error = "batch " + std::to_string(batch) + " is outside the engine's profile [" + std::to_string(t.min_batch) +
               ", " + std::to_string(t.max_batch) + "] for " + t.name;
      return false;
    }
    nvinfer1::Dims d{};
    d.nbDims = static_cast<int32_t>(t.shape.size());
    for (size_t k = 0; k < t.shape.size(); ++k) d.d[k] = t.shape[k] < 0 ? batch : t.shape[k];
    if (!c.setInputShape(t.name.c_str(), d)) {
      *error = "setInputShape(" + t.name + ", batch " + std::to_string(batch) + ") failed: " + logged_error();
      return false;
    }
  }
  return true;
}

bool TrtEngine::check_output_shapes(std::string* error) {
  // Every dynamic input takes the same batch: the first one's profile gives the range.
  const auto in = std::find_if(tensors_.begin(), tensors_.end(),
                               [](const TensorDesc& t) { return t.input && !t.shape.empty() && t.shape[0] < 0; });
  if (in == tensors_.end()) return true;
  nvinfer1::IExecutionContext& c = *slots_[0]->context;
  for (int64_t batch : {in->min_batch, in->max_batch}) {
    if (!set_batch(c, batch, error)) return false;
    for (const TensorDesc& t : tensors_) {
      if (t.input) continue;
      const nvinfer1::Dims d = c.getTensorShape(t.name.c_str());
      bool per_face = d.nbDims >= 1 && d.d[0] == batch;
      for (int32_t k = 1; k < d.nbDims; ++k) per_face = per_face && d.d[k] >= 0 && d.d[k] == t.shape[static_cast<size_t>(k)];
      if (!per_face) {
        std::string dims;
        for (int32_t k = 0; k < d.nbDims; ++k) dims += (k ? "," : "") + std::to_string(d.d[k]);
        *error = "the engine's output " + t.name + " has shape [" + dims + "] at batch " + std::to_string(batch) +
                 ", not [batch, fixed dimensions...]";
        return false;
      }
    }
  }
  return true;
}

TrtEngine::~TrtEngine() {
  // The runtime and engine, destroyed in impl_.reset(), log before the sink (their Impl's first member) goes.
  const LogScope log_scope(impl_ ? &impl_->logger : nullptr);
  std::string ignored;
  if (cuda_.is_open()) cuda_.bind(&ignored);  // TensorRT frees its device memory in this context
  slots_.clear();
  impl_.reset();
}

cu::Stream TrtEngine::stream(int slot) const {
  return slot >= 0 && slot < contexts() ? slots_[static_cast<size_t>(slot)]->stream : nullptr;
}

bool TrtEngine::enqueue(int slot, int64_t batch, const std::vector<void*>& addresses, std::string* error) {
  if (slot < 0 || slot >= contexts()) {
    *error = "no execution context " + std::to_string(slot);
    return false;
  }
  if (addresses.size() != tensors_.size()) {
    *error = "expected " + std::to_string(tensors_.size()) + " tensor addresses, got " + std::to_string(addresses.size());
    return false;
  }
  Slot& s = *slots_[static_cast<size_t>(slot)];
  s.logger.clear_last_error();
  const LogScope log_scope(&s.logger);  // called on the slot's thread
  nvinfer1::IExecutionContext* c = s.context.get();
  // Graphs off (not asked for, or a capture failed engine-wide): a size without its own context
  // runs on the slot's plain one (with graphs: on the slot's memory, same stream) rather than a
  // new context per size, whose creation would be the first TensorRT call after the failed
  // capture (before the retried enqueue that absorbs its stale error).
  const auto own_it = cuda_graphs_ ? s.by_batch.find(batch) : s.by_batch.end();
  if (own_it != s.by_batch.end()) {  // this batch size's own context (see Slot)
    c = own_it->second.get();
  } else if (cuda_graphs_ && !graphs_off_.load()) {  // a new size that may still get a graph
    std::unique_ptr<nvinfer1::IExecutionContext>& own = s.by_batch[batch];
    if (!(make_context(s, &own, error) && set_batch(*own, batch, error))) {
      s.by_batch.erase(batch);
      return false;
    }
    c = own.get();
  } else if (!set_batch(*c, batch, error)) {
    return false;
  }
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const TensorDesc& t = tensors_[i];
    if ((reinterpret_cast<uintptr_t>(addresses[i]) & 255) != 0) {
      *error = "the address for " + t.name + " is not 256-byte aligned";
      return false;
    }
    if (!c->setTensorAddress(t.name.c_str(), addresses[i])) {
      *error = "setTensorAddress(" + t.name + ") failed: " + logged_error();
      return false;
    }
  }
  // cu::Stream is CUstream_st*, i.e. cudaStream_t.
  const auto enqueue = [&](std::string* why) {
    if (c->enqueueV3(s.stream)) return true;
    *why = "enqueueV3 failed: " + logged_error();
    return false;
  };
  return s.graphs->run(batch, addresses, s.stream, enqueue, error);
}

int TrtEngine::graphs_ready(int slot) const {
  return slot >= 0 && slot < contexts() ? slots_[static_cast<size_t>(slot)]->graphs->ready() : 0;
}

int TrtEngine::graphs_failed(int slot) const {
  return slot >= 0 && slot < contexts() ? slots_[static_cast<size_t>(slot)]->graphs->failed() : 0;
}

}  // namespace fm::trt
