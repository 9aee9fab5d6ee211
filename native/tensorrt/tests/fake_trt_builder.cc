// The builder half of the stand-in libnvinfer.so.<major> (fake_trt_runtime.cc is the runtime
// half), for scripts/check-tensorrt.sh: builder, network, config, optimization profile, timing
// cache and host memory, so that build_engine() (builder.cc) runs end to end without TensorRT. The
// network is filled by the stand-in parser (fake_trt_parser.cc) through INetworkDefinition, as the
// real parser does. buildSerializedNetwork reports progress (a phase of three steps, a nested phase
// of two inside the second), stops when stepComplete returns false (returning no plan, as
// TensorRT does), adds one entry per build to the timing cache set on the config, and returns a
// FAKE-TRT-PLAN (fake_trt_runtime.cc) with the network's input and its profile, and one output.
//
// What it checks is what TensorRT's headers state, or what this project relies on (see
// tensorrt-notes.md), reported as "FAKE-TRT VIOLATION:" lines (fake_trt.h):
//   - the network strongly typed: kSTRONGLY_TYPED in 10.x; in 11, where every network is, no flag;
//   - one optimization profile, giving every dynamic input min <= opt <= max with the other
//     dimensions as the input's;
//   - the parser that filled the network still alive when it is built (it owns the weights);
//   - a timing cache outliving the configs that use it ("the lifetime of the ITimingCache must
//     exceed the lifetime of all builders that use it");
//   - an optimization level in 0..5.
#include <NvInfer.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "fake_trt.h"
#include "fake_trt_stubs.h"

using namespace nvinfer1;

namespace {

std::string dims_text(const Dims& d) {
  std::string s;
  for (int32_t k = 0; k < d.nbDims; ++k) s += (k ? " " : "") + std::to_string(d.d[k]);
  return s;
}

class HostMemoryImpl final : public apiv::StubVHostMemory {
 public:
  explicit HostMemoryImpl(std::string bytes) : bytes(std::move(bytes)) {}
  std::string bytes;
  void* data() const noexcept override { return const_cast<char*>(bytes.data()); }
  std::size_t size() const noexcept override { return bytes.size(); }
  DataType type() const noexcept override { return DataType::kUINT8; }
};
struct HostMemoryHandle final : IHostMemory {
  explicit HostMemoryHandle(std::string bytes) { mImpl = new HostMemoryImpl(std::move(bytes)); }
  ~HostMemoryHandle() override { delete static_cast<HostMemoryImpl*>(mImpl); }
};

class TimingCacheImpl final : public apiv::StubVTimingCache {
 public:
  std::vector<std::string> entries;
  int users = 0;  // configs it is set on
  IHostMemory* serialize() const noexcept override {
    std::string text = "FAKE-TIMING\n";
    for (const std::string& e : entries) text += e + "\n";
    return new HostMemoryHandle(text);
  }
  bool combine(ITimingCache const& other, bool) noexcept override;
};
struct TimingCacheHandle final : ITimingCache {
  explicit TimingCacheHandle(TimingCacheImpl* impl) { mImpl = impl; }
  TimingCacheImpl* impl() const { return static_cast<TimingCacheImpl*>(mImpl); }
  ~TimingCacheHandle() override {
    if (impl()->users > 0) fake_trt_violation("an ITimingCache destroyed while a builder config still uses it");
    delete impl();
  }
};
bool TimingCacheImpl::combine(ITimingCache const& other, bool) noexcept {
  for (const std::string& e : static_cast<const TimingCacheHandle&>(other).impl()->entries)
    if (std::find(entries.begin(), entries.end(), e) == entries.end()) entries.push_back(e);
  return true;
}

class TensorImpl final : public apiv::StubVTensor {
 public:
  TensorImpl(std::string name, Dims dims) : name(std::move(name)), dims(dims) {}
  std::string name;
  Dims dims;
  char const* getName() const noexcept override { return name.c_str(); }
  Dims getDimensions() const noexcept override { return dims; }
};
struct TensorHandle final : ITensor {
  explicit TensorHandle(TensorImpl* impl) { mImpl = impl; }
  ~TensorHandle() { delete static_cast<TensorImpl*>(mImpl); }
};

class NetworkImpl final : public apiv::StubVNetworkDefinition {
 public:
  explicit NetworkImpl(NetworkDefinitionCreationFlags flags) : flags(flags) {}
  NetworkDefinitionCreationFlags flags;
  std::vector<std::unique_ptr<TensorHandle>> inputs;
  std::vector<std::pair<std::string, std::vector<int64_t>>> outputs;  // marked by the parser
  bool parser_alive = false, parsed = false;
  ITensor* addInput(char const* name, DataType, Dims const& dims) noexcept override {
    inputs.push_back(std::make_unique<TensorHandle>(new TensorImpl(name, dims)));
    return inputs.back().get();
  }
  int32_t getNbInputs() const noexcept override { return static_cast<int32_t>(inputs.size()); }
  ITensor* getInput(int32_t i) const noexcept override {
    return i >= 0 && i < getNbInputs() ? inputs[static_cast<size_t>(i)].get() : nullptr;
  }
  NetworkDefinitionCreationFlags getFlags() const noexcept override { return flags; }
};
struct NetworkHandle final : INetworkDefinition {
  explicit NetworkHandle(NetworkImpl* impl) { mImpl = impl; }
  NetworkImpl* impl() const { return static_cast<NetworkImpl*>(mImpl); }
  ~NetworkHandle() override { delete impl(); }
};

class ProfileImpl final : public apiv::StubVOptimizationProfile {
 public:
  struct Shapes {
    Dims d[3]{};
    bool set[3]{};
  };
  std::map<std::string, Shapes> inputs;
  bool setDimensions(char const* name, OptProfileSelector select, Dims const& dims) noexcept override {
    Shapes& s = inputs[name];
    s.d[static_cast<int>(select)] = dims;
    s.set[static_cast<int>(select)] = true;
    return true;
  }
};
struct ProfileHandle final : IOptimizationProfile {
  explicit ProfileHandle(ProfileImpl* impl) { mImpl = impl; }
  ProfileImpl* impl() const { return static_cast<ProfileImpl*>(mImpl); }
  ~ProfileHandle() { delete impl(); }
};

class ConfigImpl final : public apiv::StubVBuilderConfig {
 public:
  explicit ConfigImpl(ILogger* logger) : logger(logger) {}
  ILogger* logger;
  std::vector<const ProfileHandle*> profiles;
  TimingCacheHandle* cache = nullptr;
  IProgressMonitor* monitor = nullptr;
  int32_t level = 3;
  BuilderFlags flags = 1U << static_cast<uint32_t>(BuilderFlag::kTF32);  // TensorRT's default
  void setFlags(BuilderFlags f) noexcept override { flags = f; }
  BuilderFlags getFlags() const noexcept override { return flags; }
  void clearFlag(BuilderFlag f) noexcept override { flags &= ~(1U << static_cast<uint32_t>(f)); }
  void setFlag(BuilderFlag f) noexcept override { flags |= 1U << static_cast<uint32_t>(f); }
  bool getFlag(BuilderFlag f) const noexcept override { return (flags & (1U << static_cast<uint32_t>(f))) != 0; }
  ~ConfigImpl() override {
    if (cache != nullptr) --cache->impl()->users;
  }
  int32_t addOptimizationProfile(IOptimizationProfile const* p) noexcept override {
    profiles.push_back(static_cast<const ProfileHandle*>(p));
    return static_cast<int32_t>(profiles.size()) - 1;
  }
  ITimingCache* createTimingCache(void const* blob, std::size_t size) const noexcept override {
    auto* impl = new TimingCacheImpl();
    if (size > 0) {
      std::istringstream in(std::string(static_cast<const char*>(blob), size));
      std::string line;
      if (!std::getline(in, line) || line != "FAKE-TIMING") {
        logger->log(ILogger::Severity::kERROR, "fake TensorRT: not a timing cache of this TensorRT build and device");
        delete impl;
        return nullptr;
      }
      while (std::getline(in, line))
        if (!line.empty()) impl->entries.push_back(line);
    }
    return new TimingCacheHandle(impl);
  }
  bool setTimingCache(ITimingCache const& c, bool) noexcept override {
    if (cache != nullptr) --cache->impl()->users;
    cache = const_cast<TimingCacheHandle*>(static_cast<const TimingCacheHandle*>(&c));
    ++cache->impl()->users;
    return true;
  }
  ITimingCache const* getTimingCache() const noexcept override { return cache; }
  void setMemoryPoolLimit(MemoryPoolType, std::size_t) noexcept override {}
  void setBuilderOptimizationLevel(int32_t l) noexcept override {
    if (l < 0 || l > 5) fake_trt_violation("setBuilderOptimizationLevel(" + std::to_string(l) + "): the levels are 0..5");
    level = l;
  }
  void setProgressMonitor(IProgressMonitor* m) noexcept override { monitor = m; }
  IProgressMonitor* getProgressMonitor() const noexcept override { return monitor; }
};
struct ConfigHandle final : IBuilderConfig {
  explicit ConfigHandle(ConfigImpl* impl) { mImpl = impl; }
  ConfigImpl* impl() const { return static_cast<ConfigImpl*>(mImpl); }
  ~ConfigHandle() override { delete impl(); }
};

class BuilderImpl final : public apiv::StubVBuilder {
 public:
  explicit BuilderImpl(ILogger* logger) : logger(logger) {}
  ILogger* logger;
  std::vector<std::unique_ptr<ProfileHandle>> profiles;  // owned by the builder, as TensorRT's
  IBuilderConfig* createBuilderConfig() noexcept override { return new ConfigHandle(new ConfigImpl(logger)); }
  INetworkDefinition* createNetworkV2(NetworkDefinitionCreationFlags flags) noexcept override {
#if NV_TENSORRT_MAJOR >= 11
    if (flags != 0) fake_trt_violation("createNetworkV2(" + std::to_string(flags) + "): TensorRT 11 networks are strongly typed; no flag");
#else
    if ((flags & (1U << static_cast<uint32_t>(NetworkDefinitionCreationFlag::kSTRONGLY_TYPED))) == 0)
      fake_trt_violation("createNetworkV2 without kSTRONGLY_TYPED: the FP16 ONNX is built as a strongly typed network");
#endif
    return new NetworkHandle(new NetworkImpl(flags));
  }
  IOptimizationProfile* createOptimizationProfile() noexcept override {
    profiles.push_back(std::make_unique<ProfileHandle>(new ProfileImpl()));
    return profiles.back().get();
  }
  IHostMemory* buildSerializedNetwork(INetworkDefinition& network, IBuilderConfig& config) noexcept override;
};
struct BuilderHandle final : IBuilder {
  explicit BuilderHandle(BuilderImpl* impl) { mImpl = impl; }
  ~BuilderHandle() override { delete static_cast<BuilderImpl*>(mImpl); }
};

IHostMemory* BuilderImpl::buildSerializedNetwork(INetworkDefinition& network, IBuilderConfig& config) noexcept {
  NetworkImpl& n = *static_cast<NetworkHandle&>(network).impl();
  ConfigImpl& c = *static_cast<ConfigHandle&>(config).impl();
  const auto error = [&](const std::string& what) -> IHostMemory* {
    logger->log(ILogger::Severity::kERROR, ("fake TensorRT: " + what).c_str());
    return nullptr;
  };
  if (!n.parsed) return error("the network is empty");
  // As TensorRT's builder may, a message from a thread of its own (no caller's LogScope there).
  std::thread([this] { logger->log(ILogger::Severity::kWARNING, "fake TensorRT: a warning from a builder thread"); }).join();
  if (!n.parser_alive) fake_trt_violation("buildSerializedNetwork after the parser that filled the network was destroyed (it owns the weights)");
  if (c.profiles.size() != 1) fake_trt_violation("buildSerializedNetwork with " + std::to_string(c.profiles.size()) + " optimization profiles, not one");
  if (c.profiles.empty()) return error("no optimization profile");
  // FAKE_TRT_BUILD_FAIL: the build fails for a reason of its own (out of memory, say), before any step.
  if (const char* why = std::getenv("FAKE_TRT_BUILD_FAIL")) return error(why);
  if (c.getFlag(BuilderFlag::kTF32)) logger->log(ILogger::Severity::kWARNING, "fake TensorRT: FP32 layers may run in TF32 (BuilderFlag::kTF32 set)");
  const ProfileImpl& p = *c.profiles.front()->impl();
  std::string plan = "FAKE-TRT-PLAN 1\n";
  for (const auto& handle : n.inputs) {
    const ITensor& t = *handle;
    const Dims dims = t.getDimensions();
    const bool dynamic = std::any_of(dims.d, dims.d + dims.nbDims, [](int64_t v) { return v < 0; });
    int64_t batch[3] = {dims.d[0], dims.d[0], dims.d[0]};
    if (dynamic) {
      auto it = p.inputs.find(t.getName());
      bool ok = it != p.inputs.end() && it->second.set[0] && it->second.set[1] && it->second.set[2];
      for (int s = 0; ok && s < 3; ++s) {
        const Dims& d = it->second.d[s];
        ok = d.nbDims == dims.nbDims;
        for (int32_t k = 0; ok && k < d.nbDims; ++k) ok = dims.d[k] < 0 ? d.d[k] >= 1 : d.d[k] == dims.d[k];
        batch[s] = d.d[0];
      }
      ok = ok && batch[0] <= batch[1] && batch[1] <= batch[2];
      if (!ok) {
        fake_trt_violation(std::string("the optimization profile does not give input ") + t.getName() + " [" + dims_text(dims) +
                           "] kMIN <= kOPT <= kMAX with its fixed dimensions");
        return error("invalid optimization profile");
      }
    }
    plan += std::string("input ") + t.getName() + " float32 " + dims_text(dims) + " profile " + std::to_string(batch[0]) + " " +
            std::to_string(batch[1]) + " " + std::to_string(batch[2]) + "\n";
  }
  // The network's outputs (an ONNX file's), or one of 16 values; each a copy of a face's first input values.
  if (n.outputs.empty()) plan += "output out float32 -1 16 from 0\n";
  for (const auto& [name, dims] : n.outputs) {
    plan += "output " + name + " float32";
    for (size_t k = 0; k < dims.size(); ++k) plan += " " + std::to_string(k == 0 ? -1 : dims[k]);
    plan += " from 0\n";
  }
  // Progress: "Building" (3 steps), with "Timing" (2 steps) nested in its second. FAKE_TRT_STEP_MS:
  // each step takes that long (a build that can be cancelled from another thread while it runs).
  IProgressMonitor* m = c.monitor;
  const char* step_ms = std::getenv("FAKE_TRT_STEP_MS");
  const auto work = [&] {
    if (step_ms != nullptr) std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(step_ms)));
  };
  bool go = true;
  if (m != nullptr) {
    m->phaseStart("Building", nullptr, 3);
    for (int32_t step = 0; go && step < 3; ++step) {
      if (step == 1) {
        m->phaseStart("Timing", "Building", 2);
        for (int32_t inner = 0; go && inner < 2; ++inner) {
          work();
          go = m->stepComplete("Timing", inner);
        }
        m->phaseFinish("Timing");
      }
      work();
      go = go && m->stepComplete("Building", step);
    }
    m->phaseFinish("Building");
  }
  // FAKE_TRT_REPORT_END: say on stderr that the build came to its end (a check that a process
  // exiting mid-build waited for it).
  if (std::getenv("FAKE_TRT_REPORT_END") != nullptr) std::fprintf(stderr, "fake TensorRT: the build ended%s\n", go ? "" : " (cancelled)");
  if (!go) return error("the build was cancelled by the progress monitor");
  if (c.cache != nullptr) c.cache->impl()->entries.push_back("tactics for " + dims_text(n.inputs.front()->getDimensions()) + " level " + std::to_string(c.level));
  return new HostMemoryHandle(plan);
}

}  // namespace

extern "C" {
void* createInferBuilder_INTERNAL(void* logger, int32_t version) noexcept {
  if (version != NV_TENSORRT_VERSION) fake_trt_violation("createInferBuilder for headers " + std::to_string(version));
  return new BuilderHandle(new BuilderImpl(static_cast<ILogger*>(logger)));
}
// For the stand-in parser (another library, as TensorRT's): the network it fills, its lifetime, and
// the outputs it marks.
void fake_trt_network_output(void* network, const char* name, const int64_t* dims, int nb_dims) {
  static_cast<NetworkHandle*>(static_cast<INetworkDefinition*>(network))->impl()->outputs.emplace_back(name, std::vector<int64_t>(dims, dims + nb_dims));
}
void fake_trt_network_parsed(void* network, int parser_alive) {
  NetworkImpl* n = static_cast<NetworkHandle*>(static_cast<INetworkDefinition*>(network))->impl();
  n->parsed = true;
  n->parser_alive = parser_alive != 0;
}
}
