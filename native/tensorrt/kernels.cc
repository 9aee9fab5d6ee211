// The embedded preprocessing kernels through the driver API (see kernels.h).
#include "tensorrt/kernels.h"

#if defined(FM_HAVE_CUDA_KERNELS)
// The fatbin of preprocess_cuda.cu (CMakeLists.txt embeds it with cmake/embed.cmake).
extern const unsigned char fm_preprocess_fatbin[];
extern const size_t fm_preprocess_fatbin_size;
#endif

namespace fm::trt {

bool PreprocessKernels::embedded() {
#if defined(FM_HAVE_CUDA_KERNELS)
  return true;
#else
  return false;
#endif
}

PreprocessKernels::~PreprocessKernels() {
  const cu::Api* a = cu::driver();
  if (module_ != nullptr && a != nullptr) a->ModuleUnload(module_);
}

bool PreprocessKernels::load(std::string* error) {
#if defined(FM_HAVE_CUDA_KERNELS)
  const cu::Api* a = cu::driver(error);
  if (a == nullptr) return false;
  if (module_ != nullptr) return true;
  cu::Module m = nullptr;
  cu::Result r = a->ModuleLoadData(&m, fm_preprocess_fatbin);
  if (r != cu::kSuccess) {
    // A GPU newer than every cubin, with a driver older than the embedded PTX, lands here.
    *error = "cuModuleLoadData: the preprocessing kernels do not load on this GPU and driver: " + cu::error_text(r);
    return false;
  }
  for (OutDtype d : {OutDtype::Float32, OutDtype::Float16}) {
    for (ResizeMode z : {ResizeMode::CenterCrop, ResizeMode::AntialiasBilinear}) {
      r = a->ModuleGetFunction(&fn_[static_cast<int>(d)][static_cast<int>(z)], m, kernel_name(d, z));
      if (r != cu::kSuccess) {
        a->ModuleUnload(m);
        *error = std::string("cuModuleGetFunction(") + kernel_name(d, z) + "): " + cu::error_text(r);
        return false;
      }
    }
  }
  module_ = m;
  return true;
#else
  *error = "this build has no CUDA preprocessing kernels (nvcc was not found when the addon was built)";
  return false;
#endif
}

cu::Result PreprocessKernels::launch(const FaceDesc* d_faces, int n, CropMode crop, ResizeMode resize, OutDtype dtype,
                                     void* d_out, cu::Stream stream) const {
  constexpr cu::Result kInvalidValue = 1;  // CUDA_ERROR_INVALID_VALUE
  constexpr cu::Result kNotInitialized = 3;  // CUDA_ERROR_NOT_INITIALIZED
  if (module_ == nullptr) return kNotInitialized;
  if (n < 0 || n > (1 << 24) || d_faces == nullptr || d_out == nullptr) return n == 0 ? cu::kSuccess : kInvalidValue;
  if (n == 0) return cu::kSuccess;
  const int di = static_cast<int>(dtype), ri = static_cast<int>(resize), ci = static_cast<int>(crop);
  if (di < 0 || di > 1 || ri < 0 || ri > 1 || ci < 0 || ci > 1) return kInvalidValue;
  // The kernel's parameters: (const FaceDesc*, CropMode, Out*), passed by address.
  const FaceDesc* faces = d_faces;
  CropMode mode = crop;
  void* out = d_out;
  void* args[] = {&faces, &mode, &out};
  return cu::driver()->LaunchKernel(fn_[di][ri], static_cast<unsigned>(n * kKernelBands), 1, 1, kKernelThreads, 1, 1, 0,
                                    stream, args, nullptr);
}

}  // namespace fm::trt
