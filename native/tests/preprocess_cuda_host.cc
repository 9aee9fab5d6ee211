// preprocess_cuda.cu compiled as host code under the emulation of CUDA's execution model
// (cuda_emu.h): the kernels and launch_preprocess, for the native tests without a GPU.
#include "cuda_emu.h"  // before any CUDA header
#include "preprocess/preprocess_cuda.cu"
#include "preprocess_cuda_host.h"

#include <cstring>

namespace fm_emu {

PreprocessKernel preprocess_kernel(const char* name) {
  static const struct {
    const char* name;
    PreprocessKernel kernel;
  } kKernels[] = {
      {"fm_preprocess_f32_aa", [](const fm::FaceDesc* f, fm::CropMode c, void* o) { fm_preprocess_f32_aa(f, c, static_cast<float*>(o)); }},
      {"fm_preprocess_f32_cc", [](const fm::FaceDesc* f, fm::CropMode c, void* o) { fm_preprocess_f32_cc(f, c, static_cast<float*>(o)); }},
      {"fm_preprocess_f16_aa", [](const fm::FaceDesc* f, fm::CropMode c, void* o) { fm_preprocess_f16_aa(f, c, static_cast<__half*>(o)); }},
      {"fm_preprocess_f16_cc", [](const fm::FaceDesc* f, fm::CropMode c, void* o) { fm_preprocess_f16_cc(f, c, static_cast<__half*>(o)); }},
  };
  for (const auto& k : kKernels)
    if (std::strcmp(k.name, name) == 0) return k.kernel;
  return nullptr;
}

}  // namespace fm_emu
