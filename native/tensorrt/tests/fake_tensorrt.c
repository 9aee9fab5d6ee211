/* Stand-ins for libnvinfer / libnvonnxparser / libnvinfer_plugin, for scripts/check-tensorrt.sh:
 * they export the entry points the loader resolves, nothing more (the factories return NULL).
 * Built with -DFAKE_NVINFER, -DFAKE_PARSER or -DFAKE_PLUGIN and -DFAKE_VERSION=<getInferLibVersion>. */
#include <stddef.h>
#include <stdint.h>

#if defined(FAKE_NVINFER)
int32_t getInferLibVersion(void) { return FAKE_VERSION; }
void* createInferBuilder_INTERNAL(void* logger, int32_t version) { (void)logger; (void)version; return NULL; }
void* createInferRuntime_INTERNAL(void* logger, int32_t version) { (void)logger; (void)version; return NULL; }
#elif defined(FAKE_PARSER)
/* Linked against the stand-in libnvinfer (DT_NEEDED libnvinfer.so.<major>), as the real parser is. */
int32_t getInferLibVersion(void);
void* createNvOnnxParser_INTERNAL(void* network, void* logger, int version) { (void)network; (void)logger; (void)version; return NULL; }
int getNvOnnxParserVersion(void) { return getInferLibVersion(); }
#elif defined(FAKE_PLUGIN)
int32_t getInferLibVersion(void);
_Bool initLibNvInferPlugins(void* logger, const char* ns) { (void)logger; (void)ns; return getInferLibVersion() > 0; }
#endif
