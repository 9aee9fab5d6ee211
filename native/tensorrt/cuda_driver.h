// The CUDA driver API, opened at run time (dlopen of libcuda.so.1): the addon links no CUDA
// library, so the same .node loads on machines without a driver or a GPU.
//
// Why the driver API and not libcudart: libcuda.so.1 ships with the NVIDIA driver and keeps its
// soname across CUDA releases, while libcudart.so.<12|13> must match a toolkit major, is not
// installed with the driver, and may differ from the CUDA that TensorRT itself was built with
// (TensorRT carries its own CUDA runtime). The runtime and driver APIs interoperate: the CUDA
// runtime (inside TensorRT) uses the device's primary context, which `bind()` makes current
// here, and a CUstream / CUevent is a cudaStream_t / cudaEvent_t (the same `CUstream_st*` /
// `CUevent_st*` types).
//
// Plain C++: no CUDA header is needed to include this file. Where cuda.h is available
// (FM_HAVE_CUDA_HEADERS), cuda_driver.cc checks these declarations against it at compile time.
//
// Run on a GPU (an H200) by kernel_module_test and pipeline_gpu_test, not yet beside TensorRT.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

struct CUctx_st;
struct CUstream_st;
struct CUevent_st;
struct CUmod_st;
struct CUfunc_st;
struct CUgraph_st;
struct CUgraphExec_st;

namespace fm::cu {

using Result = int;            // CUresult
using Device = int;            // CUdevice
using Context = CUctx_st*;     // CUcontext
using Stream = CUstream_st*;   // CUstream == cudaStream_t
using Event = CUevent_st*;     // CUevent == cudaEvent_t
using Module = CUmod_st*;      // CUmodule
using Function = CUfunc_st*;   // CUfunction
using Graph = CUgraph_st*;     // CUgraph
using GraphExec = CUgraphExec_st*;  // CUgraphExec
using DevicePtr = unsigned long long;  // CUdeviceptr (64-bit builds)

constexpr Result kSuccess = 0;              // CUDA_SUCCESS
constexpr Result kErrorOutOfMemory = 2;     // CUDA_ERROR_OUT_OF_MEMORY
constexpr Result kErrorNoDevice = 100;      // CUDA_ERROR_NO_DEVICE
constexpr Result kErrorNotReady = 600;      // CUDA_ERROR_NOT_READY
constexpr int kAttrMultiprocessorCount = 16;  // CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
constexpr int kAttrComputeCapabilityMajor = 75;
constexpr int kAttrComputeCapabilityMinor = 76;
constexpr unsigned kStreamNonBlocking = 0x1;  // CU_STREAM_NON_BLOCKING
constexpr unsigned kEventDisableTiming = 0x2;  // CU_EVENT_DISABLE_TIMING
constexpr unsigned kMemHostAllocPortable = 0x1;  // CU_MEMHOSTALLOC_PORTABLE
constexpr int kStreamCaptureModeThreadLocal = 1;  // CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
constexpr unsigned kEventBlockingSync = 0x1;     // CU_EVENT_BLOCKING_SYNC: waiting threads sleep, not spin
constexpr int kMemoryTypeHost = 1;               // CU_MEMORYTYPE_HOST
constexpr int kMemoryTypeDevice = 2;             // CU_MEMORYTYPE_DEVICE

// cuda.h's CUDA_MEMCPY2D (cuda_driver.cc checks its layout against cuda.h): a copy of Height rows
// of WidthInBytes bytes, each side with its own pitch.
struct Memcpy2D {
  size_t srcXInBytes = 0, srcY = 0;
  int srcMemoryType = 0;  // CUmemorytype
  const void* srcHost = nullptr;
  DevicePtr srcDevice = 0;
  void* srcArray = nullptr;  // CUarray
  size_t srcPitch = 0;
  size_t dstXInBytes = 0, dstY = 0;
  int dstMemoryType = 0;
  void* dstHost = nullptr;
  DevicePtr dstDevice = 0;
  void* dstArray = nullptr;
  size_t dstPitch = 0;
  size_t WidthInBytes = 0, Height = 0;
};

// Errors after which the context cannot be used again (cuda.h: "the process must be terminated
// and relaunched"): deinitialized, uncorrectable ECC / NVLink, contained (Hopper's error
// containment), illegal address, launch timeout, context destroyed, device assert, hardware
// stack, illegal instruction, misaligned address, invalid address space / PC, launch failed,
// tensor memory leak, MPS client terminated, external device, unknown. cuda_driver.cc checks
// the values against cuda.h.
inline constexpr Result kFatalErrors[] = {4, 214, 220, 226, 700, 702, 709, 710, 714, 715, 716, 717, 718, 719, 721, 810, 911, 999};
constexpr bool fatal(Result r) {
  for (Result f : kFatalErrors)
    if (f == r) return true;
  return false;
}

// The entry points used, resolved once by driver(): field X is the driver's cuX, resolved under
// the versioned symbol cuda.h maps cuX to (cuMemAlloc -> cuMemAlloc_v2; cuda_driver.cc checks the
// names and types against cuda.h where it is available). The fields drop the `cu` prefix so that
// cuda.h's renaming macros never touch them.
struct Api {
  Result (*Init)(unsigned int);
  Result (*DriverGetVersion)(int*);
  Result (*GetErrorName)(Result, const char**);
  Result (*GetErrorString)(Result, const char**);
  Result (*DeviceGetCount)(int*);
  Result (*DeviceGet)(Device*, int);
  Result (*DeviceGetName)(char*, int, Device);
  Result (*DeviceGetAttribute)(int*, int, Device);
  Result (*DeviceTotalMem)(size_t*, Device);                 // cuDeviceTotalMem_v2
  Result (*DevicePrimaryCtxRetain)(Context*, Device);
  Result (*DevicePrimaryCtxRelease)(Device);                 // cuDevicePrimaryCtxRelease_v2
  Result (*CtxSetCurrent)(Context);
  Result (*StreamCreate)(Stream*, unsigned int);
  Result (*StreamDestroy)(Stream);                           // cuStreamDestroy_v2
  Result (*StreamSynchronize)(Stream);
  Result (*StreamQuery)(Stream);
  Result (*EventCreate)(Event*, unsigned int);
  Result (*EventDestroy)(Event);                             // cuEventDestroy_v2
  Result (*EventSynchronize)(Event);
  Result (*MemAlloc)(DevicePtr*, size_t);                    // cuMemAlloc_v2
  Result (*MemFree)(DevicePtr);                              // cuMemFree_v2
  Result (*MemHostAlloc)(void**, size_t, unsigned int);
  Result (*MemFreeHost)(void*);
  Result (*MemcpyHtoDAsync)(DevicePtr, const void*, size_t, Stream);  // cuMemcpyHtoDAsync_v2
  Result (*MemcpyDtoHAsync)(void*, DevicePtr, size_t, Stream);        // cuMemcpyDtoHAsync_v2
  Result (*MemcpyDtoDAsync)(DevicePtr, DevicePtr, size_t, Stream);    // cuMemcpyDtoDAsync_v2
  Result (*MemsetD8Async)(DevicePtr, unsigned char, size_t, Stream);
  Result (*Memcpy2DAsync)(const Memcpy2D*, Stream);                   // cuMemcpy2DAsync_v2
  // The preprocessing kernels: an embedded fatbin loaded into the context, launched by name.
  Result (*ModuleLoadData)(Module*, const void*);
  Result (*ModuleUnload)(Module);
  Result (*ModuleGetFunction)(Function*, Module, const char*);
  Result (*LaunchKernel)(Function, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, Stream, void**,
                         void**);
  // Per-stage timing of a batch.
  Result (*EventRecord)(Event, Stream);
  Result (*EventElapsedTime)(float*, Event, Event);  // the original cuEventElapsedTime: every driver has it
  // CUDA graphs of enqueueV3, one per batch size (trtexec's --useCudaGraph).
  Result (*StreamBeginCapture)(Stream, int);                          // cuStreamBeginCapture_v2
  Result (*StreamEndCapture)(Stream, Graph*);
  Result (*GraphInstantiate)(GraphExec*, Graph, unsigned long long);  // cuGraphInstantiateWithFlags
  Result (*GraphLaunch)(GraphExec, Stream);
  Result (*GraphExecDestroy)(GraphExec);
  Result (*GraphDestroy)(Graph);
};

// libcuda.so.1 opened and every entry point resolved, or nullptr (then *why says which step
// failed: "libcuda.so.1 not found: <dlerror>" or "libcuda.so.1 lacks <symbol>"). Thread-safe;
// tried once per process. Does not call cuInit.
const Api* driver(std::string* why = nullptr);

// "CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected" (or the bare number).
std::string error_text(Result r);

// What the availability probe reports about the GPU (device 0 as the driver numbers them,
// i.e. after CUDA_VISIBLE_DEVICES).
struct GpuInfo {
  bool driver_loaded = false;  // libcuda.so.1 opened and resolved
  bool initialized = false;    // cuInit(0) succeeded
  Result init_result = -1;     // what cuInit(0) returned (kErrorNoDevice: a driver but no GPU)
  std::string driver_error;    // why not (dlopen / cuInit error), empty if initialized
  int driver_version = 0;      // cuDriverGetVersion: 1000 * major + 10 * minor (13000 = 13.0)
  int device_count = 0;
  std::string name;            // device 0
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  size_t total_memory = 0;
};
// Probes once per process (cuInit, device 0's name, compute capability, SM count) and caches.
const GpuInfo& gpu_info();

// The compute capability of device `ordinal` (any device, where gpu_info() is device 0's); false
// when the driver does not answer or has no such device.
bool compute_capability(int ordinal, int* major, int* minor);

// The primary context of one device, retained for this object's lifetime. bind() makes it
// current on the calling thread: call it on every thread before TensorRT or driver calls
// (TensorRT's CUDA runtime then uses this context).
class PrimaryContext {
 public:
  PrimaryContext() = default;
  ~PrimaryContext();
  PrimaryContext(const PrimaryContext&) = delete;
  PrimaryContext& operator=(const PrimaryContext&) = delete;
  // cuInit + retain the device's primary context; false with *error on failure.
  bool open(int ordinal, std::string* error);
  bool bind(std::string* error) const;
  bool is_open() const { return ctx_ != nullptr; }
  Device device() const { return dev_; }

 private:
  Device dev_ = 0;
  Context ctx_ = nullptr;
};

// Device memory (cuMemAlloc: aligned to at least 256 bytes, as TensorRT wants its addresses).
// The owning PrimaryContext must be bound on the calling thread when allocating and freeing.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), size_(o.size_) { o.ptr_ = 0; o.size_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  bool allocate(size_t bytes, std::string* error);
  void reset();
  void* get() const { return reinterpret_cast<void*>(static_cast<uintptr_t>(ptr_)); }
  DevicePtr address() const { return ptr_; }
  size_t size() const { return size_; }

 private:
  DevicePtr ptr_ = 0;
  size_t size_ = 0;
};

// Page-locked host memory (cuMemHostAlloc, portable): the target of output copies, so that
// device-to-host copies are truly asynchronous (never pageable memory).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() { reset(); }
  PinnedBuffer(PinnedBuffer&& o) noexcept : ptr_(o.ptr_), size_(o.size_) { o.ptr_ = nullptr; o.size_ = 0; }
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  bool allocate(size_t bytes, std::string* error);
  void reset();
  void* get() const { return ptr_; }
  size_t size() const { return size_; }

 private:
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace fm::cu
