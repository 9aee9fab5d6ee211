/* A stand-in libcuda.so.1 whose "device" is host memory, for running the TensorRT pipeline's
 * bookkeeping on a machine without a GPU (ctest pipeline_host: pipeline_gpu_test against it).
 * Memory is malloc'ed, every copy is a synchronous memcpy (so stream ordering is trivially kept
 * and not what this checks), streams and events are tokens, elapsed times 0.01 ms. The kernel
 * module does not load (CUDA_ERROR_INVALID_IMAGE), so the pipeline preprocesses on the CPU; graph
 * capture is not supported. One "GPU": "Host stand-in", sm_90. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
static int token;

CUresult cuInit(unsigned flags) { (void)flags; return 0; }
CUresult cuDriverGetVersion(int* v) { *v = 13000; return 0; }
CUresult cuGetErrorName(CUresult r, const char** s) { *s = r == 200 ? "CUDA_ERROR_INVALID_IMAGE" : "CUDA_ERROR_NOT_SUPPORTED"; return 0; }
CUresult cuGetErrorString(CUresult r, const char** s) { *s = r == 200 ? "device kernel image is invalid" : "not supported by the host stand-in"; return 0; }
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
CUresult cuCtxSetCurrent(void* c) { (void)c; return 0; }
CUresult cuStreamCreate(void** s, unsigned f) { (void)f; *s = &token; return 0; }
CUresult cuStreamDestroy_v2(void* s) { (void)s; return 0; }
CUresult cuStreamSynchronize(void* s) { (void)s; return 0; }
CUresult cuStreamQuery(void* s) { (void)s; return 0; }
CUresult cuEventCreate(void** e, unsigned f) { (void)f; *e = &token; return 0; }
CUresult cuEventDestroy_v2(void* e) { (void)e; return 0; }
CUresult cuEventSynchronize(void* e) { (void)e; return 0; }
CUresult cuEventRecord(void* e, void* s) { (void)e; (void)s; return 0; }
CUresult cuEventElapsedTime(float* ms, void* a, void* b) { (void)a; (void)b; *ms = 0.01f; return 0; }
static CUresult alloc(void** p, size_t n) { return posix_memalign(p, 256, n ? n : 1) == 0 ? 0 : 2; }
CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t n) { void* q; CUresult r = alloc(&q, n); *p = (CUdeviceptr)(uintptr_t)q; return r; }
CUresult cuMemFree_v2(CUdeviceptr p) { free((void*)(uintptr_t)p); return 0; }
CUresult cuMemHostAlloc(void** p, size_t n, unsigned f) { (void)f; return alloc(p, n); }
CUresult cuMemFreeHost(void* p) { free(p); return 0; }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void* s, size_t n, void* st) { (void)st; memcpy((void*)(uintptr_t)d, s, n); return 0; }
CUresult cuMemcpyDtoHAsync_v2(void* d, CUdeviceptr s, size_t n, void* st) { (void)st; memcpy(d, (const void*)(uintptr_t)s, n); return 0; }
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, void* st) { (void)st; memmove((void*)(uintptr_t)d, (const void*)(uintptr_t)s, n); return 0; }
CUresult cuModuleLoadData(void** m, const void* image) { (void)m; (void)image; return 200; }
#define UNSUPPORTED(name) CUresult name(void) { return 801; }
UNSUPPORTED(cuModuleUnload)
UNSUPPORTED(cuModuleGetFunction)
UNSUPPORTED(cuLaunchKernel)
UNSUPPORTED(cuStreamBeginCapture_v2)
UNSUPPORTED(cuStreamEndCapture)
UNSUPPORTED(cuGraphInstantiateWithFlags)
UNSUPPORTED(cuGraphLaunch)
UNSUPPORTED(cuGraphExecDestroy)
UNSUPPORTED(cuGraphDestroy)
