/* Stand-ins for libnvinfer / libnvonnxparser / libnvinfer_plugin, for scripts/check-tensorrt.sh:
 * they export the entry points the loader resolves, nothing more (the factories return NULL).
 * Built with -DFAKE_NVINFER, -DFAKE_PARSER, -DFAKE_PLUGIN or -DFAKE_CUDART and -DFAKE_VERSION=<getInferLibVersion>. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#if defined(FAKE_NVINFER)
int32_t getInferLibVersion(void) { return FAKE_VERSION; }
int32_t getInferLibBuildVersion(void) { return 48; }
/* The factories say which logger they were given: check-tensorrt.sh checks it is the process's one. */
void* createInferBuilder_INTERNAL(void* logger, int32_t version) { (void)version; printf("createInferBuilder logger %p\n", logger); return NULL; }
void* createInferRuntime_INTERNAL(void* logger, int32_t version) { (void)version; printf("createInferRuntime logger %p\n", logger); return NULL; }
#elif defined(FAKE_PARSER)
/* Linked against the stand-in libnvinfer (DT_NEEDED libnvinfer.so.<major>), as the real parser is. */
int32_t getInferLibVersion(void);
void* createNvOnnxParser_INTERNAL(void* network, void* logger, int version) { (void)network; (void)logger; (void)version; return NULL; }
int getNvOnnxParserVersion(void) { return getInferLibVersion(); }
#elif defined(FAKE_CUDART)
/* A stand-in libcudart.so.<n> of pip's nvidia-cuda-runtime wheel, which the plugin stand-in of
 * some pip folders needs (as the real plugin library may). */
int cudaRuntimeGetVersion(int* v) { *v = 12080; return 0; }
#elif defined(FAKE_PLUGIN)
int32_t getInferLibVersion(void);
_Bool initLibNvInferPlugins(void* logger, const char* ns) { (void)logger; (void)ns; return getInferLibVersion() > 0; }
#endif
