/* A stand-in libcuda.so.1 for scripts/check-tensorrt.sh: answers the driver calls the loader
 * makes, as the GPU described by $FAKE_CUDA says:
 *   "nodevice"      cuInit -> CUDA_ERROR_NO_DEVICE (100)
 *   "mismatch"      cuInit -> CUDA_ERROR_SYSTEM_DRIVER_MISMATCH (803)
 *   "<major>.<minor>"  one GPU of that compute capability, named "Fake GPU sm_<major><minor>"
 *   "<major>.<minor>,<major>.<minor>,..."  one such GPU each, in ordinal order (a build on device 1
 *                   is judged by device 1's compute capability, the status by device 0's)
 * Primary contexts are pretend ones; streams, events and memory return CUDA_ERROR_NOT_SUPPORTED (801). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
static const char* mode(void) { const char* m = getenv("FAKE_CUDA"); return m ? m : "8.9"; }
static int gpus(void) {
  int n = 1;
  for (const char* m = mode(); *m; ++m) n += *m == ',';
  return n;
}
static int cc(int dev, int minor) {
  const char* m = mode();
  for (int k = 0; k < dev && m != NULL; ++k) {
    m = strchr(m, ',');
    if (m != NULL) ++m;
  }
  int a = 0, b = 0;
  if (m == NULL || sscanf(m, "%d.%d", &a, &b) != 2) return 0;
  return minor ? b : a;
}

CUresult cuInit(unsigned flags) {
  (void)flags;
  if (strcmp(mode(), "nodevice") == 0) return 100;
  if (strcmp(mode(), "mismatch") == 0) return 803;
  return 0;
}
CUresult cuDriverGetVersion(int* v) { *v = 13000; return 0; }
CUresult cuGetErrorName(CUresult r, const char** s) {
  *s = r == 100 ? "CUDA_ERROR_NO_DEVICE" : r == 101 ? "CUDA_ERROR_INVALID_DEVICE" : r == 803 ? "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH" : "CUDA_ERROR_NOT_SUPPORTED";
  return 0;
}
CUresult cuGetErrorString(CUresult r, const char** s) {
  *s = r == 100 ? "no CUDA-capable device is detected" : r == 101 ? "invalid device ordinal" : "fake";
  return 0;
}
CUresult cuDeviceGetCount(int* n) { *n = gpus(); return 0; }
CUresult cuDeviceGet(int* d, int ordinal) { *d = ordinal; return ordinal >= 0 && ordinal < gpus() ? 0 : 101; }
CUresult cuDeviceGetName(char* name, int len, int dev) {
  snprintf(name, (size_t)len, "Fake GPU sm_%d%d", cc(dev, 0), cc(dev, 1));
  return 0;
}
CUresult cuDeviceGetAttribute(int* v, int attr, int dev) {
  if (attr == 75) *v = cc(dev, 0);
  else if (attr == 76) *v = cc(dev, 1);
  else if (attr == 16) *v = 42;
  else return 801;
  return 0;
}
CUresult cuDeviceTotalMem_v2(size_t* bytes, int dev) { (void)dev; *bytes = (size_t)1 << 34; return 0; }
/* A context that is never used for real work: enough for the builder and runtime to reach
 * TensorRT's factories (which the stand-in TensorRT answers with NULL). */
CUresult cuDevicePrimaryCtxRetain(void** ctx, int dev) { (void)dev; *ctx = (void*)&cuInit; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(int dev) { (void)dev; return 0; }
CUresult cuCtxSetCurrent(void* ctx) { (void)ctx; return 0; }
#define UNSUPPORTED(name) CUresult name(void) { return 801; }
UNSUPPORTED(cuStreamCreate)
UNSUPPORTED(cuStreamDestroy_v2)
UNSUPPORTED(cuStreamSynchronize)
UNSUPPORTED(cuStreamQuery)
UNSUPPORTED(cuEventCreate)
UNSUPPORTED(cuEventDestroy_v2)
UNSUPPORTED(cuEventSynchronize)
UNSUPPORTED(cuMemAlloc_v2)
UNSUPPORTED(cuMemFree_v2)
UNSUPPORTED(cuMemHostAlloc)
UNSUPPORTED(cuMemFreeHost)
UNSUPPORTED(cuMemcpyHtoDAsync_v2)
UNSUPPORTED(cuMemcpyDtoHAsync_v2)
UNSUPPORTED(cuMemcpyDtoDAsync_v2)
UNSUPPORTED(cuMemsetD8Async)
UNSUPPORTED(cuMemcpy2DAsync_v2)
UNSUPPORTED(cuModuleLoadData)
UNSUPPORTED(cuModuleUnload)
UNSUPPORTED(cuModuleGetFunction)
UNSUPPORTED(cuLaunchKernel)
UNSUPPORTED(cuEventRecord)
UNSUPPORTED(cuEventElapsedTime)
UNSUPPORTED(cuStreamBeginCapture_v2)
UNSUPPORTED(cuStreamEndCapture)
UNSUPPORTED(cuGraphInstantiateWithFlags)
UNSUPPORTED(cuGraphLaunch)
UNSUPPORTED(cuGraphExecDestroy)
UNSUPPORTED(cuGraphDestroy)
