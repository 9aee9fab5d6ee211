// The preprocessing kernels as the addon runs them: the fatbin embedded at build time, loaded with
// cuModuleLoadData and launched with cuLaunchKernel through the dlopen'ed driver API
// (tensorrt/kernels.h), from frames uploaded the way the TensorRT pipeline uploads them (only the
// rows the crops read, tensorrt/upload_plan.h). Compared with the CPU path: max abs <= 1e-5 with
// float32 output, <= 1e-3 with half. Without a CUDA device: 'SKIPPED: ...' and exit code 77.
// As ctest kernel_module_host it runs against the host stand-in libcuda.so.1, which executes the
// kernels' source on the CPU (native/tests/cuda_emu.h): everything but the device itself.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "preprocess/preprocess.h"
#include "preprocess/preprocess_kernel.h"
#include "tensorrt/cuda_driver.h"
#include "tensorrt/kernels.h"
#include "tensorrt/upload_plan.h"
#include "frame_support.h"

using namespace fm;
using fm_test::check;
using fm_test::box_face;
using fm_test::noise_frame;
using Owned = fm_test::NoiseFrame;

namespace {

constexpr int kSkip = 77;

float half_to_float(uint16_t h) {
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const float v = e == 0 ? std::ldexp(static_cast<float>(m), -24) : (e == 31 ? NAN : std::ldexp(static_cast<float>(m + 1024), e - 25));
  return (h & 0x8000) ? -v : v;
}

#define CU_OK(call)                                                                                          \
  do {                                                                                                       \
    const cu::Result r_ = (call);                                                                            \
    if (r_ != cu::kSuccess) {                                                                                \
      check(false, name + ": " #call, cu::error_text(r_));                                                 \
      return false;                                                                                          \
    }                                                                                                        \
  } while (0)

bool run(const std::string& name, const trt::PreprocessKernels& k, const std::vector<const Owned*>& frames,
         const std::vector<trt::FaceIn>& faces, CropMode crop, ResizeMode resize) {
  const cu::Api* a = cu::driver();
  std::vector<trt::FrameIn> in;
  for (const Owned* f : frames) in.push_back(f->in);
  const trt::UploadPlan p = trt::plan_uploads(in, faces, crop);
  std::string error;
  cu::DeviceBuffer d_frames, d_desc, d_out;
  const int n = static_cast<int>(faces.size());
  if (!d_frames.allocate(p.total, &error) || !d_desc.allocate(sizeof(FaceDesc) * n, &error) ||
      !d_out.allocate(sizeof(float) * kInputFloats * n, &error)) {
    check(false, name + ": device buffers", error);
    return false;
  }
  for (size_t i = 0; i < in.size(); ++i)
    if (p.span[i] > 0)
      CU_OK(a->MemcpyHtoDAsync(d_frames.address() + p.offset[i], in[i].data + static_cast<size_t>(p.lo[i]) * in[i].stride, p.span[i], nullptr));
  std::vector<FaceDesc> desc(n);
  std::vector<float> want(static_cast<size_t>(n) * kInputFloats);
  for (int j = 0; j < n; ++j) {
    const trt::FaceIn& f = faces[j];
    const trt::FrameIn& fr = in[static_cast<size_t>(f.frame)];
    const cu::DevicePtr base = d_frames.address() + p.offset[f.frame] - static_cast<cu::DevicePtr>(p.lo[f.frame]) * fr.stride;
    desc[j] = FaceDesc{reinterpret_cast<const uint8_t*>(static_cast<uintptr_t>(base)), static_cast<int64_t>(fr.stride), fr.width, fr.height,
                       fr.format, f.has_window ? 1 : 0, f.window};
    preprocess_face(Frame{fr.data, fr.width, fr.height, fr.stride, fr.format}, f.has_window ? &f.window : nullptr, crop, resize,
                    want.data() + static_cast<size_t>(j) * kInputFloats);
  }
  CU_OK(a->MemcpyHtoDAsync(d_desc.address(), desc.data(), sizeof(FaceDesc) * n, nullptr));
  for (OutDtype dtype : {OutDtype::Float32, OutDtype::Float16}) {
    const bool half = dtype == OutDtype::Float16;
    const FaceDesc* dd = reinterpret_cast<const FaceDesc*>(static_cast<uintptr_t>(d_desc.address()));
    CU_OK(k.launch(dd, n, crop, resize, dtype, d_out.get(), nullptr));
    std::vector<uint8_t> raw(want.size() * (half ? 2 : 4));
    CU_OK(a->MemcpyDtoHAsync(raw.data(), d_out.address(), raw.size(), nullptr));
    CU_OK(a->StreamSynchronize(nullptr));
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      float v;
      if (half) {
        uint16_t h;
        std::memcpy(&h, raw.data() + 2 * i, 2);
        v = half_to_float(h);
      } else {
        std::memcpy(&v, raw.data() + 4 * i, 4);
      }
      const double d = std::fabs(static_cast<double>(v) - want[i]);
      worst = std::isnan(d) ? INFINITY : std::max(worst, d);
    }
    // On the host stand-in the kernels' source runs with the CPU's float arithmetic: bit for bit.
    const bool host = cu::gpu_info().name == "Host stand-in";
    const double limit = half ? 1e-3 : (host ? 0.0 : 1e-5);
    check(worst <= limit, name + (half ? " (half)" : " (float32)"), "max |GPU - CPU| = " + std::to_string(worst));
    std::printf("  %-28s max |GPU - CPU| = %.3g (limit %.0e)\n", (name + (half ? " (half)" : " (float32)")).c_str(), worst, limit);
  }
  return true;
}

}  // namespace

int main() {
  std::string why;
  const cu::GpuInfo& g = cu::gpu_info();
  if (!g.initialized || g.device_count < 1) {
    std::printf("SKIPPED: no CUDA device (%s)\n", g.driver_error.empty() ? "cuInit failed" : g.driver_error.c_str());
    return kSkip;
  }
  if (!trt::PreprocessKernels::embedded()) {
    std::printf("FAIL: built without the embedded kernels (nvcc missing at configure time?)\n");
    return 1;
  }
  cu::PrimaryContext ctx;
  if (!ctx.open(0, &why) || !ctx.bind(&why)) {
    std::printf("FAIL: %s\n", why.c_str());
    return 1;
  }
  bool ok = true;
  {
    trt::PreprocessKernels k;
    if (!k.load(&why)) {
      std::printf("FAIL: %s\n", why.c_str());
      return 1;
    }
    std::printf("kernels loaded on %s (sm_%d%d)\n", g.name.c_str(), g.cc_major, g.cc_minor);
    const Owned hd = noise_frame(1920, 1080, PixelFormat::RGB, 0, 1);
    const Owned bgra = noise_frame(640, 360, PixelFormat::BGRA, 8, 2);
    const Owned gray = noise_frame(321, 203, PixelFormat::GRAY, 1, 3);
    const Owned chip = noise_frame(256, 256, PixelFormat::BGR, 0, 4);
    for (CropMode crop : {CropMode::Square, CropMode::Stretch}) {
      for (ResizeMode resize : {ResizeMode::AntialiasBilinear, ResizeMode::CenterCrop}) {
        const std::string name = std::string(crop == CropMode::Square ? "square" : "stretch") + (resize == ResizeMode::CenterCrop ? "/centre crop" : "/antialias");
        trt::FaceIn c;
        c.frame = 3;
        ok = run(name, k, {&hd, &bgra, &gray, &chip},
                 {box_face(hd, 0, crop, 800, 400, 1100, 700), box_face(hd, 0, crop, -50, 900, 250, 1200), box_face(bgra, 1, crop, 100, 50, 300, 290),
                  box_face(gray, 2, crop, -100, -80, 60, 40), box_face(gray, 2, crop, 150, 100, 151, 102), c},
                 crop, resize) && ok;
      }
    }
  }
  std::printf("kernel module: %d passed, %d failed\n", fm_test::g_passed, fm_test::g_failed);
  return ok && fm_test::g_failed == 0 ? 0 : 1;
}
