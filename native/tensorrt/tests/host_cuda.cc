/* A stand-in libcuda.so.1 whose "device" is host memory, for running the TensorRT pipeline and
 * the preprocessing kernels on a machine without a GPU (ctest kernel_module_host, pipeline_host,
 * pipeline_host_cpu). Memory is malloc'ed, every copy is a synchronous memcpy (so stream ordering
 * is trivially kept and not what this checks), streams and events are tokens, elapsed times
 * 0.01 ms. Built with the CUDA headers (FM_HOST_CUDA_KERNELS), cuModuleLoadData takes the
 * addon's embedded fatbin (its magic number is checked) and cuLaunchKernel runs the kernels'
 * own source (preprocess_cuda.cu) on the CPU through native/tests/cuda_emu.h (preprocess_cuda_host.h),
 * synchronously;
 * FM_HOST_CUDA_NO_KERNELS=1 (or a build without the headers) refuses the module
 * (CUDA_ERROR_INVALID_IMAGE), so the pipeline preprocesses on the CPU. Graph capture records the
 * device-to-device copies a thread issues while capturing (the stand-in engine's "inference"),
 * and a launch replays them; anything else issued then fails the capture. FM_HOST_CUDA_NO_GRAPHS=1
 * refuses capture, FM_HOST_CUDA_GRAPH_LAUNCH_FAIL_AT=n fails the n-th launch (not fatally),
 * FM_HOST_CUDA_CONTAIN_AT (below) injects a context-fatal error, FM_HOST_CUDA_REPORT_AT_EXIT=1 reports
 * device allocations still live when the process ends, FM_HOST_CUDA_SLOW_FREE_MS slows each cuMemFree,
 * FM_HOST_CUDA_SLOW_ALLOC_MS each cuMemAlloc. The current context is kept per
 * thread (cuCtxSetCurrent / cuCtxGetCurrent). One "GPU": "Host stand-in", sm_90.
 * Device memory starts as 0xff bytes (a NaN in float32 and float16), not malloc's zeros, and a
 * device-to-device copy (the engine's read of its input) of bytes still holding that fill fails:
 * compute-sanitizer's initcheck on a GPU, for what the stand-in engine reads. */
#if defined(FM_HOST_CUDA_KERNELS)
#include "cuda_emu.h"
#include "preprocess_cuda_host.h"
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <vector>

extern "C" {

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
static int token;

// FM_HOST_CUDA_CONTAIN_AT=n: the n-th cuMemcpyDtoDAsync (the test engine's "inference", run or
// replayed from a graph) fails with
// CUDA_ERROR_CONTAINED, and so does every stream, event, copy and launch call after it, as on a
// GPU whose context a contained error has made unusable.
static std::atomic<int> g_sticky{0};
static std::atomic<long> g_dtod_calls{0};
static CUresult sticky(void) { return g_sticky.load(); }
static CUresult dtod_fault(void) {
  const char* v = getenv("FM_HOST_CUDA_CONTAIN_AT");
  if (v != nullptr && ++g_dtod_calls == atol(v)) g_sticky = 226;
  return sticky();
}

// A captured graph: the device-to-device copies issued while capturing, replayed by a launch.
struct HostGraph {
  struct Copy {
    CUdeviceptr d, s;
    size_t n;
  };
  std::vector<Copy> copies;
  bool broken = false;  // something not capturable was issued
};
static thread_local HostGraph* g_capturing = nullptr;
static std::atomic<long> g_launches{0};
static bool env_on(const char* name) {
  const char* v = getenv(name);
  return v != nullptr && *v != '\0' && strcmp(v, "0") != 0;
}
// Issued while this thread captures: not capturable here, and the capture fails (as on a GPU
// where an unsupported call invalidates it).
static CUresult not_capturable(void) {
  g_capturing->broken = true;
  return 900;  // CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
}

CUresult cuInit(unsigned flags) { (void)flags; return 0; }
CUresult cuDriverGetVersion(int* v) { *v = 13000; return 0; }
static const struct {
  CUresult code;
  const char* name;
  const char* text;
} kErrors[] = {{1, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
               {200, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
               {226, "CUDA_ERROR_CONTAINED", "a contained error made the context unusable (host stand-in)"},
               {400, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
               {500, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
               {719, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
               {801, "CUDA_ERROR_NOT_SUPPORTED", "not supported by the host stand-in"}};
CUresult cuGetErrorName(CUresult r, const char** s) {
  for (const auto& e : kErrors)
    if (e.code == r) return *s = e.name, 0;
  return 1;
}
CUresult cuGetErrorString(CUresult r, const char** s) {
  for (const auto& e : kErrors)
    if (e.code == r) return *s = e.text, 0;
  return 1;
}
CUresult cuDeviceGetCount(int* n) { *n = 1; return 0; }
CUresult cuDeviceGet(int* d, int i) { *d = i; return 0; }
CUresult cuDeviceGetName(char* name, int len, int d) { (void)d; strncpy(name, "Host stand-in", (size_t)len); return 0; }
CUresult cuDeviceGetAttribute(int* v, int attr, int d) {
  (void)d;
  *v = attr == 75 ? 9 : attr == 76 ? 0 : attr == 16 ? 1 : 0;
  return 0;
}
CUresult cuDeviceTotalMem_v2(size_t* b, int d) { (void)d; *b = (size_t)1 << 30; return 0; }
CUresult cuDevicePrimaryCtxRetain(void** c, int d) { (void)d; *c = &token; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(int d) { (void)d; return 0; }
// The current context per thread, as the driver keeps it (the TensorRT stand-in checks that the
// threads that enqueue have one).
static thread_local void* g_current = nullptr;
CUresult cuCtxSetCurrent(void* c) { g_current = c; return 0; }
CUresult cuCtxGetCurrent(void** c) { *c = g_current; return 0; }
CUresult cuStreamCreate(void** s, unsigned f) { (void)f; *s = &token; return 0; }
CUresult cuStreamDestroy_v2(void* s) { (void)s; return 0; }
CUresult cuStreamSynchronize(void* s) { (void)s; return sticky(); }
CUresult cuStreamQuery(void* s) { (void)s; return sticky(); }
CUresult cuEventCreate(void** e, unsigned f) { (void)f; *e = &token; return 0; }
CUresult cuEventDestroy_v2(void* e) { (void)e; return 0; }
CUresult cuEventSynchronize(void* e) { (void)e; return sticky(); }
// FM_HOST_CUDA_EVENT_FAIL_AT=n: the n-th cuEventRecord fails with CUDA_ERROR_INVALID_VALUE, once
// (an error that leaves the context usable).
static std::atomic<long> g_event_records{0};
CUresult cuEventRecord(void* e, void* s) {
  (void)e;
  (void)s;
  if (g_capturing != nullptr) return not_capturable();
  const char* v = getenv("FM_HOST_CUDA_EVENT_FAIL_AT");
  if (v != nullptr && ++g_event_records == atol(v)) return 1;
  return sticky();
}
CUresult cuEventElapsedTime(float* ms, void* a, void* b) { (void)a; (void)b; *ms = 0.01f; return sticky(); }
static CUresult alloc(void** p, size_t n) { return posix_memalign(p, 256, n ? n : 1) == 0 ? 0 : 2; }
// FM_HOST_CUDA_REPORT_AT_EXIT=1: the process's exit prints to stderr how many device allocations
// are still live ("host-cuda at exit: N device allocations live"): 0 when every pipeline was
// closed before the process ended.
static std::atomic<long> g_device_live{0};
// FM_HOST_CUDA_SLOW_ALLOC_MS=n: each cuMemAlloc takes n ms (a load still going on at exit).
CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t n) {
  const char* slow = getenv("FM_HOST_CUDA_SLOW_ALLOC_MS");
  if (slow != nullptr) usleep((useconds_t)atol(slow) * 1000);
  void* q;
  CUresult r = alloc(&q, n);
  *p = (CUdeviceptr)(uintptr_t)q;
  if (r == 0) {
    memset(q, 0xff, n);
    ++g_device_live;
  }
  return r;
}
CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, void* st) {
  (void)st;
  if (g_capturing != nullptr) return not_capturable();
  if (sticky()) return sticky();
  memset((void*)(uintptr_t)d, v, n);
  return 0;
}
// A device-to-device copy whose source still holds cuMemAlloc's fill: memory never written read
// as if it held data. The 16-bit units at addresses 2 mod 4 are looked at: a float32's high half
// (0xffff there is a NaN), or every other float16 (a NaN too); no preprocessed value is a NaN,
// while a float32's low half may well be 0xffff.
static CUresult dtod(CUdeviceptr d, CUdeviceptr s, size_t n) {
  const unsigned char* src = (const unsigned char*)(uintptr_t)s;
  for (size_t i = (6 - s % 4) % 4; i + 1 < n; i += 4) {
    if (src[i] == 0xff && src[i + 1] == 0xff) {
      fprintf(stderr, "host-cuda: a device-to-device copy reads device memory never written (byte %zu of %zu)\n", i, n);
      return 1;  // CUDA_ERROR_INVALID_VALUE: that batch fails
    }
  }
  memmove((void*)(uintptr_t)d, src, n);
  return 0;
}
// FM_HOST_CUDA_SLOW_FREE_MS=n: each cuMemFree takes n ms (a close that is still going on at exit).
CUresult cuMemFree_v2(CUdeviceptr p) {
  const char* slow = getenv("FM_HOST_CUDA_SLOW_FREE_MS");
  if (slow != nullptr) usleep((useconds_t)atol(slow) * 1000);
  if (p != 0) --g_device_live;
  free((void*)(uintptr_t)p);
  return 0;
}
__attribute__((destructor)) static void report_at_exit() {
  const char* v = getenv("FM_HOST_CUDA_REPORT_AT_EXIT");
  if (v != nullptr && *v != '\0' && strcmp(v, "0") != 0) fprintf(stderr, "host-cuda at exit: %ld device allocations live\n", g_device_live.load());
}
CUresult cuMemHostAlloc(void** p, size_t n, unsigned f) { (void)f; return alloc(p, n); }
CUresult cuMemFreeHost(void* p) { free(p); return 0; }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* s, size_t n, void* st) {
  (void)st;
  if (g_capturing != nullptr) return not_capturable();
  if (sticky()) return sticky();
  memcpy((void*)(uintptr_t)d, s, n);
  return 0;
}
CUresult cuMemcpyDtoHAsync_v2(void* d, CUdeviceptr s, size_t n, void* st) {
  (void)st;
  if (g_capturing != nullptr) return not_capturable();
  if (sticky()) return sticky();
  memcpy(d, (const void*)(uintptr_t)s, n);
  return 0;
}
// CUDA_MEMCPY2D (cuda.h), host or device memory on either side (both are host memory here).
struct HostMemcpy2D {
  size_t srcXInBytes, srcY;
  int srcMemoryType;
  const void* srcHost;
  CUdeviceptr srcDevice;
  void* srcArray;
  size_t srcPitch;
  size_t dstXInBytes, dstY;
  int dstMemoryType;
  void* dstHost;
  CUdeviceptr dstDevice;
  void* dstArray;
  size_t dstPitch;
  size_t WidthInBytes, Height;
};
CUresult cuMemcpy2DAsync_v2(const HostMemcpy2D* c, void* st) {
  (void)st;
  if (g_capturing != nullptr) return not_capturable();
  if (sticky()) return sticky();
  if ((c->srcMemoryType != 1 && c->srcMemoryType != 2) || (c->dstMemoryType != 1 && c->dstMemoryType != 2)) return 1;
  if (c->WidthInBytes > c->srcPitch || c->WidthInBytes > c->dstPitch) return 1;  // as the driver: CUDA_ERROR_INVALID_VALUE
  const unsigned char* s = c->srcMemoryType == 1 ? (const unsigned char*)c->srcHost : (const unsigned char*)(uintptr_t)c->srcDevice;
  unsigned char* d = c->dstMemoryType == 1 ? (unsigned char*)c->dstHost : (unsigned char*)(uintptr_t)c->dstDevice;
  for (size_t y = 0; y < c->Height; ++y)
    memcpy(d + (c->dstY + y) * c->dstPitch + c->dstXInBytes, s + (c->srcY + y) * c->srcPitch + c->srcXInBytes, c->WidthInBytes);
  return 0;
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, void* st) {
  (void)st;
  if (g_capturing != nullptr) {
    g_capturing->copies.push_back({d, s, n});
    return sticky();
  }
  if (dtod_fault()) return sticky();
  return dtod(d, s, n);
}
CUresult cuStreamBeginCapture_v2(void* s, int mode) {
  (void)s;
  (void)mode;
  if (env_on("FM_HOST_CUDA_NO_GRAPHS")) return 801;  // CUDA_ERROR_NOT_SUPPORTED
  if (g_capturing != nullptr) return 900;           // CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
  g_capturing = new HostGraph();
  return sticky();
}
CUresult cuStreamIsCapturing(void* s, int* status) {
  (void)s;
  *status = g_capturing != nullptr ? 1 : 0;  // CU_STREAM_CAPTURE_STATUS_ACTIVE / NONE
  return sticky();
}
CUresult cuStreamEndCapture(void* s, void** graph) {
  (void)s;
  HostGraph* g = g_capturing;
  g_capturing = nullptr;
  if (g == nullptr) return 901;  // CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
  if (g->broken) {
    delete g;
    *graph = nullptr;
    return 901;
  }
  *graph = g;
  return sticky();
}
CUresult cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long flags) {
  (void)flags;
  *exec = new HostGraph(*static_cast<HostGraph*>(graph));
  return sticky();
}
CUresult cuGraphLaunch(void* exec, void* st) {
  (void)st;
  const char* v = getenv("FM_HOST_CUDA_GRAPH_LAUNCH_FAIL_AT");
  if (v != nullptr && ++g_launches == atol(v)) return 1;  // CUDA_ERROR_INVALID_VALUE: not fatal
  if (sticky()) return sticky();
  for (const HostGraph::Copy& c : static_cast<HostGraph*>(exec)->copies) {
    if (dtod_fault()) return sticky();  // FM_HOST_CUDA_CONTAIN_AT counts replayed copies too
    const CUresult r = dtod(c.d, c.s, c.n);
    if (r != 0) return r;
  }
  return 0;
}
CUresult cuGraphExecDestroy(void* exec) { delete static_cast<HostGraph*>(exec); return 0; }
CUresult cuGraphDestroy(void* graph) { delete static_cast<HostGraph*>(graph); return 0; }
#define UNSUPPORTED(name) CUresult name(void) { return 801; }
#if defined(FM_HOST_CUDA_KERNELS)
CUresult cuModuleLoadData(void** m, const void* image) {
  uint32_t magic;
  memcpy(&magic, image, sizeof magic);
  const char* off = getenv("FM_HOST_CUDA_NO_KERNELS");
  if (magic != 0xBA55ED50u || (off != nullptr && *off != '\0' && strcmp(off, "0") != 0)) return 200;  // not a fatbin, or refused
  *m = &token;
  return 0;
}
CUresult cuModuleUnload(void* m) { return m == &token ? 0 : 400; }
CUresult cuModuleGetFunction(void** f, void* m, const char* name) {
  if (m != &token) return 400;  // CUDA_ERROR_INVALID_HANDLE
  fm_emu::PreprocessKernel k = fm_emu::preprocess_kernel(name);
  if (k == nullptr) return 500;  // CUDA_ERROR_NOT_FOUND
  *f = reinterpret_cast<void*>(k);
  return 0;
}
// Every kernel takes (const FaceDesc*, CropMode, Out*), passed by address as the driver API does.
CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared_bytes, void* stream, void** params, void** extra) {
  (void)stream;  // synchronous, like every copy here
  if (sticky()) return sticky();
  if (f == nullptr || params == nullptr || extra != nullptr || shared_bytes != 0) return 1;  // CUDA_ERROR_INVALID_VALUE
  const fm_emu::PreprocessKernel kernel = reinterpret_cast<fm_emu::PreprocessKernel>(f);
  const fm::FaceDesc* faces = *static_cast<const fm::FaceDesc* const*>(params[0]);
  const fm::CropMode crop = *static_cast<const fm::CropMode*>(params[1]);
  void* out = *static_cast<void* const*>(params[2]);
  const char* error = nullptr;
  const bool ok = fm_emu::launch(fm_emu::Dim3{gx, gy, gz}, fm_emu::Dim3{bx, by, bz}, [&] { kernel(faces, crop, out); }, &error);
  if (!ok) fprintf(stderr, "host stand-in: cuLaunchKernel: %s\n", error);
  return ok ? 0 : 719;  // CUDA_ERROR_LAUNCH_FAILED
}
#else
CUresult cuModuleLoadData(void** m, const void* image) { (void)m; (void)image; return 200; }
UNSUPPORTED(cuModuleUnload)
UNSUPPORTED(cuModuleGetFunction)
UNSUPPORTED(cuLaunchKernel)
#endif

}  // extern "C"
