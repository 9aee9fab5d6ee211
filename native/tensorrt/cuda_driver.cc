// The CUDA driver API through dlopen (see cuda_driver.h for why the driver API).
#include "tensorrt/cuda_driver.h"

#include <dlfcn.h>

#include <cstddef>

#include <mutex>
#include <string_view>
#include <type_traits>

#if defined(FM_HAVE_CUDA_HEADERS)
// Compile-time check of the hand-written declarations against the toolkit's cuda.h (headers
// only: nothing from it is linked or called directly).
#include <cuda.h>

namespace {
template <class T> struct Abi { using type = T; };
template <> struct Abi<CUresult> { using type = int; };
template <> struct Abi<CUdevice_attribute> { using type = int; };
template <> struct Abi<CUstreamCaptureMode> { using type = int; };
template <> struct Abi<const CUDA_MEMCPY2D*> { using type = const fm::cu::Memcpy2D*; };
template <class R, class... A> struct Abi<R (*)(A...)> {
  using type = typename Abi<R>::type (*)(typename Abi<A>::type...);
};
#define FM_STR2(x) #x
#define FM_STR(x) FM_STR2(x)
// The field's type matches cuda.h's prototype, and the symbol name used below is the one cuda.h
// maps the plain name to (cuMemAlloc -> cuMemAlloc_v2).
#define FM_CHECK(field, sym)                                                                                  \
  static_assert(std::is_same_v<Abi<decltype(&::cu##field)>::type, decltype(fm::cu::Api::field)>, sym ": type"); \
  static_assert(std::string_view(FM_STR(cu##field)) == sym, sym ": symbol name");
FM_CHECK(Init, "cuInit")
FM_CHECK(DriverGetVersion, "cuDriverGetVersion")
FM_CHECK(GetErrorName, "cuGetErrorName")
FM_CHECK(GetErrorString, "cuGetErrorString")
FM_CHECK(DeviceGetCount, "cuDeviceGetCount")
FM_CHECK(DeviceGet, "cuDeviceGet")
FM_CHECK(DeviceGetName, "cuDeviceGetName")
FM_CHECK(DeviceGetAttribute, "cuDeviceGetAttribute")
FM_CHECK(DeviceTotalMem, "cuDeviceTotalMem_v2")
FM_CHECK(DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain")
FM_CHECK(DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2")
FM_CHECK(CtxSetCurrent, "cuCtxSetCurrent")
FM_CHECK(StreamCreate, "cuStreamCreate")
FM_CHECK(StreamDestroy, "cuStreamDestroy_v2")
FM_CHECK(StreamSynchronize, "cuStreamSynchronize")
FM_CHECK(StreamQuery, "cuStreamQuery")
FM_CHECK(EventCreate, "cuEventCreate")
FM_CHECK(EventDestroy, "cuEventDestroy_v2")
FM_CHECK(EventSynchronize, "cuEventSynchronize")
FM_CHECK(MemAlloc, "cuMemAlloc_v2")
FM_CHECK(MemFree, "cuMemFree_v2")
FM_CHECK(MemHostAlloc, "cuMemHostAlloc")
FM_CHECK(MemFreeHost, "cuMemFreeHost")
FM_CHECK(MemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2")
FM_CHECK(MemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2")
FM_CHECK(MemcpyDtoDAsync, "cuMemcpyDtoDAsync_v2")
FM_CHECK(MemsetD8Async, "cuMemsetD8Async")
FM_CHECK(Memcpy2DAsync, "cuMemcpy2DAsync_v2")
// fm::cu::Memcpy2D is CUDA_MEMCPY2D, field for field.
static_assert(sizeof(fm::cu::Memcpy2D) == sizeof(CUDA_MEMCPY2D) && sizeof(CUmemorytype) == sizeof(int), "CUDA_MEMCPY2D: size");
#define FM_FIELD(f) static_assert(offsetof(fm::cu::Memcpy2D, f) == offsetof(CUDA_MEMCPY2D, f), "CUDA_MEMCPY2D: " #f);
FM_FIELD(srcXInBytes) FM_FIELD(srcY) FM_FIELD(srcMemoryType) FM_FIELD(srcHost) FM_FIELD(srcDevice) FM_FIELD(srcArray)
FM_FIELD(srcPitch) FM_FIELD(dstXInBytes) FM_FIELD(dstY) FM_FIELD(dstMemoryType) FM_FIELD(dstHost) FM_FIELD(dstDevice)
FM_FIELD(dstArray) FM_FIELD(dstPitch) FM_FIELD(WidthInBytes) FM_FIELD(Height)
#undef FM_FIELD
static_assert(fm::cu::kMemoryTypeHost == CU_MEMORYTYPE_HOST && fm::cu::kMemoryTypeDevice == CU_MEMORYTYPE_DEVICE, "CUmemorytype");
FM_CHECK(ModuleLoadData, "cuModuleLoadData")
FM_CHECK(ModuleUnload, "cuModuleUnload")
FM_CHECK(ModuleGetFunction, "cuModuleGetFunction")
FM_CHECK(LaunchKernel, "cuLaunchKernel")
FM_CHECK(EventRecord, "cuEventRecord")
FM_CHECK(StreamBeginCapture, "cuStreamBeginCapture_v2")
FM_CHECK(StreamEndCapture, "cuStreamEndCapture")
FM_CHECK(GraphInstantiate, "cuGraphInstantiateWithFlags")
FM_CHECK(GraphLaunch, "cuGraphLaunch")
FM_CHECK(GraphExecDestroy, "cuGraphExecDestroy")
FM_CHECK(GraphDestroy, "cuGraphDestroy")
// CUDA 12.8+ maps cuEventElapsedTime to a _v2 with the same signature; the original symbol is
// resolved so that older drivers load too.
static_assert(std::is_same_v<Abi<decltype(&::cuEventElapsedTime)>::type, decltype(fm::cu::Api::EventElapsedTime)>,
              "cuEventElapsedTime: type");
#undef FM_CHECK
static_assert(std::is_same_v<CUcontext, fm::cu::Context> && std::is_same_v<CUstream, fm::cu::Stream> &&
              std::is_same_v<CUevent, fm::cu::Event> && std::is_same_v<CUdevice, fm::cu::Device> &&
              std::is_same_v<CUdeviceptr, fm::cu::DevicePtr> && std::is_same_v<CUmodule, fm::cu::Module> &&
              std::is_same_v<CUfunction, fm::cu::Function> && std::is_same_v<CUgraph, fm::cu::Graph> &&
              std::is_same_v<CUgraphExec, fm::cu::GraphExec>);
static_assert(CU_STREAM_CAPTURE_MODE_THREAD_LOCAL == fm::cu::kStreamCaptureModeThreadLocal &&
              CU_EVENT_BLOCKING_SYNC == fm::cu::kEventBlockingSync);
constexpr fm::cu::Result kFatalFromHeader[] = {
    CUDA_ERROR_DEINITIALIZED,        CUDA_ERROR_ECC_UNCORRECTABLE,   CUDA_ERROR_NVLINK_UNCORRECTABLE,
    CUDA_ERROR_CONTAINED,            CUDA_ERROR_ILLEGAL_ADDRESS,     CUDA_ERROR_LAUNCH_TIMEOUT,
    CUDA_ERROR_CONTEXT_IS_DESTROYED, CUDA_ERROR_ASSERT,              CUDA_ERROR_HARDWARE_STACK_ERROR,
    CUDA_ERROR_ILLEGAL_INSTRUCTION,  CUDA_ERROR_MISALIGNED_ADDRESS,  CUDA_ERROR_INVALID_ADDRESS_SPACE,
    CUDA_ERROR_INVALID_PC,           CUDA_ERROR_LAUNCH_FAILED,       CUDA_ERROR_TENSOR_MEMORY_LEAK,
    CUDA_ERROR_MPS_CLIENT_TERMINATED, CUDA_ERROR_EXTERNAL_DEVICE,    CUDA_ERROR_UNKNOWN};
constexpr bool same_fatal_list() {
  if (sizeof(kFatalFromHeader) != sizeof(fm::cu::kFatalErrors)) return false;
  for (size_t i = 0; i < sizeof(kFatalFromHeader) / sizeof(kFatalFromHeader[0]); ++i)
    if (kFatalFromHeader[i] != fm::cu::kFatalErrors[i]) return false;
  return true;
}
static_assert(same_fatal_list(), "kFatalErrors: the values cuda.h gives these errors");
static_assert(CUDA_SUCCESS == fm::cu::kSuccess && CUDA_ERROR_NO_DEVICE == fm::cu::kErrorNoDevice && CUDA_ERROR_OUT_OF_MEMORY == fm::cu::kErrorOutOfMemory &&
              CUDA_ERROR_NOT_READY == fm::cu::kErrorNotReady);
static_assert(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT == fm::cu::kAttrMultiprocessorCount &&
              CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR == fm::cu::kAttrComputeCapabilityMajor &&
              CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR == fm::cu::kAttrComputeCapabilityMinor);
static_assert(CU_STREAM_NON_BLOCKING == fm::cu::kStreamNonBlocking &&
              CU_EVENT_DISABLE_TIMING == fm::cu::kEventDisableTiming &&
              CU_MEMHOSTALLOC_PORTABLE == fm::cu::kMemHostAllocPortable);
}  // namespace
#endif  // FM_HAVE_CUDA_HEADERS

namespace fm::cu {
namespace {

// The driver library: installed with the NVIDIA driver, one soname for every CUDA release.
constexpr const char* kDriverLibrary = "libcuda.so.1";

struct Loaded {
  Api api{};
  bool ok = false;
  std::string why;
};

template <class F>
bool resolve(void* handle, const char* symbol, F* out, std::string* why) {
  void* p = dlsym(handle, symbol);
  if (p == nullptr) {
    *why = std::string(kDriverLibrary) + " lacks " + symbol;
    return false;
  }
  *out = reinterpret_cast<F>(p);
  return true;
}

Loaded load() {
  Loaded l;
  void* h = dlopen(kDriverLibrary, RTLD_LAZY | RTLD_LOCAL);
  if (h == nullptr) {
    const char* e = dlerror();
    l.why = std::string(kDriverLibrary) + " not found" + (e ? std::string(": ") + e : std::string());
    return l;
  }
  Api& a = l.api;
  std::string* w = &l.why;
  // Never dlclose'd: the driver stays loaded for the life of the process, as with the runtime.
  l.ok = resolve(h, "cuInit", &a.Init, w) && resolve(h, "cuDriverGetVersion", &a.DriverGetVersion, w) &&
         resolve(h, "cuGetErrorName", &a.GetErrorName, w) && resolve(h, "cuGetErrorString", &a.GetErrorString, w) &&
         resolve(h, "cuDeviceGetCount", &a.DeviceGetCount, w) && resolve(h, "cuDeviceGet", &a.DeviceGet, w) &&
         resolve(h, "cuDeviceGetName", &a.DeviceGetName, w) &&
         resolve(h, "cuDeviceGetAttribute", &a.DeviceGetAttribute, w) &&
         resolve(h, "cuDeviceTotalMem_v2", &a.DeviceTotalMem, w) &&
         resolve(h, "cuDevicePrimaryCtxRetain", &a.DevicePrimaryCtxRetain, w) &&
         resolve(h, "cuDevicePrimaryCtxRelease_v2", &a.DevicePrimaryCtxRelease, w) &&
         resolve(h, "cuCtxSetCurrent", &a.CtxSetCurrent, w) && resolve(h, "cuStreamCreate", &a.StreamCreate, w) &&
         resolve(h, "cuStreamDestroy_v2", &a.StreamDestroy, w) &&
         resolve(h, "cuStreamSynchronize", &a.StreamSynchronize, w) &&
         resolve(h, "cuStreamQuery", &a.StreamQuery, w) && resolve(h, "cuEventCreate", &a.EventCreate, w) &&
         resolve(h, "cuEventDestroy_v2", &a.EventDestroy, w) &&
         resolve(h, "cuEventSynchronize", &a.EventSynchronize, w) && resolve(h, "cuMemAlloc_v2", &a.MemAlloc, w) &&
         resolve(h, "cuMemFree_v2", &a.MemFree, w) && resolve(h, "cuMemHostAlloc", &a.MemHostAlloc, w) &&
         resolve(h, "cuMemFreeHost", &a.MemFreeHost, w) &&
         resolve(h, "cuMemcpyHtoDAsync_v2", &a.MemcpyHtoDAsync, w) &&
         resolve(h, "cuMemcpyDtoHAsync_v2", &a.MemcpyDtoHAsync, w) &&
         resolve(h, "cuMemcpyDtoDAsync_v2", &a.MemcpyDtoDAsync, w) && resolve(h, "cuMemsetD8Async", &a.MemsetD8Async, w) &&
         resolve(h, "cuMemcpy2DAsync_v2", &a.Memcpy2DAsync, w) &&
         resolve(h, "cuModuleLoadData", &a.ModuleLoadData, w) && resolve(h, "cuModuleUnload", &a.ModuleUnload, w) &&
         resolve(h, "cuModuleGetFunction", &a.ModuleGetFunction, w) &&
         resolve(h, "cuLaunchKernel", &a.LaunchKernel, w) && resolve(h, "cuEventRecord", &a.EventRecord, w) &&
         resolve(h, "cuEventElapsedTime", &a.EventElapsedTime, w) &&
         resolve(h, "cuStreamBeginCapture_v2", &a.StreamBeginCapture, w) &&
         resolve(h, "cuStreamEndCapture", &a.StreamEndCapture, w) &&
         resolve(h, "cuGraphInstantiateWithFlags", &a.GraphInstantiate, w) &&
         resolve(h, "cuGraphLaunch", &a.GraphLaunch, w) && resolve(h, "cuGraphExecDestroy", &a.GraphExecDestroy, w) &&
         resolve(h, "cuGraphDestroy", &a.GraphDestroy, w);
  return l;
}

const Loaded& loaded() {
  static const Loaded l = load();  // thread-safe initialisation (C++11 magic statics)
  return l;
}

GpuInfo probe() {
  GpuInfo g;
  std::string why;
  const Api* a = driver(&why);
  if (a == nullptr) {
    g.driver_error = why;
    return g;
  }
  g.driver_loaded = true;
  a->DriverGetVersion(&g.driver_version);
  Result r = a->Init(0);
  g.init_result = r;
  if (r != kSuccess) {
    g.driver_error = "cuInit: " + error_text(r);
    return g;
  }
  g.initialized = true;
  if (a->DeviceGetCount(&g.device_count) != kSuccess || g.device_count <= 0) {
    g.device_count = 0;
    return g;
  }
  Device dev = 0;
  if (a->DeviceGet(&dev, 0) != kSuccess) return g;
  char name[256] = {0};
  if (a->DeviceGetName(name, static_cast<int>(sizeof(name)) - 1, dev) == kSuccess) g.name = name;
  a->DeviceGetAttribute(&g.cc_major, kAttrComputeCapabilityMajor, dev);
  a->DeviceGetAttribute(&g.cc_minor, kAttrComputeCapabilityMinor, dev);
  a->DeviceGetAttribute(&g.sm_count, kAttrMultiprocessorCount, dev);
  a->DeviceTotalMem(&g.total_memory, dev);
  return g;
}

}  // namespace

const Api* driver(std::string* why) {
  const Loaded& l = loaded();
  if (!l.ok && why != nullptr) *why = l.why;
  return l.ok ? &l.api : nullptr;
}

std::string error_text(Result r) {
  const Api* a = driver();
  const char* name = nullptr;
  const char* text = nullptr;
  if (a != nullptr) {
    a->GetErrorName(r, &name);
    a->GetErrorString(r, &text);
  }
  std::string s = name ? name : "CUDA error " + std::to_string(r);
  if (text) s += std::string(": ") + text;
  return s;
}

const GpuInfo& gpu_info() {
  static const GpuInfo g = probe();
  return g;
}

bool compute_capability(int ordinal, int* major, int* minor) {
  const Api* a = driver();
  Device dev = 0;
  return a != nullptr && a->Init(0) == kSuccess && a->DeviceGet(&dev, ordinal) == kSuccess &&
         a->DeviceGetAttribute(major, kAttrComputeCapabilityMajor, dev) == kSuccess &&
         a->DeviceGetAttribute(minor, kAttrComputeCapabilityMinor, dev) == kSuccess;
}

PrimaryContext::~PrimaryContext() {
  if (ctx_ != nullptr) driver()->DevicePrimaryCtxRelease(dev_);
}

bool PrimaryContext::open(int ordinal, std::string* error) {
  std::string why;
  const Api* a = driver(&why);
  if (a == nullptr) {
    *error = why;
    return false;
  }
  Result r = a->Init(0);
  if (r == kSuccess) r = a->DeviceGet(&dev_, ordinal);
  if (r == kSuccess) r = a->DevicePrimaryCtxRetain(&ctx_, dev_);
  if (r != kSuccess) {
    ctx_ = nullptr;
    *error = "CUDA device " + std::to_string(ordinal) + ": " + error_text(r);
    return false;
  }
  return true;
}

bool PrimaryContext::bind(std::string* error) const {
  if (ctx_ == nullptr) {
    *error = "CUDA context not open";
    return false;
  }
  Result r = driver()->CtxSetCurrent(ctx_);
  if (r != kSuccess) {
    *error = "cuCtxSetCurrent: " + error_text(r);
    return false;
  }
  return true;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    ptr_ = o.ptr_;
    size_ = o.size_;
    o.ptr_ = 0;
    o.size_ = 0;
  }
  return *this;
}

bool DeviceBuffer::allocate(size_t bytes, std::string* error) {
  reset();
  const Api* a = driver(error);
  if (a == nullptr) return false;
  Result r = a->MemAlloc(&ptr_, bytes == 0 ? 1 : bytes);
  if (r != kSuccess) {
    ptr_ = 0;
    *error = "cuMemAlloc(" + std::to_string(bytes) + " bytes): " + error_text(r);
    return false;
  }
  size_ = bytes;
  return true;
}

void DeviceBuffer::reset() {
  if (ptr_ != 0) driver()->MemFree(ptr_);
  ptr_ = 0;
  size_ = 0;
}

PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    ptr_ = o.ptr_;
    size_ = o.size_;
    o.ptr_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

bool PinnedBuffer::allocate(size_t bytes, std::string* error) {
  reset();
  const Api* a = driver(error);
  if (a == nullptr) return false;
  Result r = a->MemHostAlloc(&ptr_, bytes == 0 ? 1 : bytes, kMemHostAllocPortable);
  if (r != kSuccess) {
    ptr_ = nullptr;
    *error = "cuMemHostAlloc(" + std::to_string(bytes) + " bytes): " + error_text(r);
    return false;
  }
  size_ = bytes;
  return true;
}

void PinnedBuffer::reset() {
  if (ptr_ != nullptr) driver()->MemFreeHost(ptr_);
  ptr_ = nullptr;
  size_ = 0;
}

}  // namespace fm::cu
