// The TensorRT pipeline uploads only the frame rows a batch's crops read (upload_plan.h). Checked
// on the CPU: for every face, the CPU preprocessing of a copy of its frame in which every row
// outside the plan's [lo, hi] is garbage must equal, bit for bit, the preprocessing of the whole
// frame; and the spans must be 256-byte aligned, disjoint and inside the buffer. Frames with
// several faces, faces over the edges and off the frame (reflection and zero padding read clamped
// rows), tiny and huge boxes, chips, both crops and both resizes.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "preprocess/preprocess.h"
#include "tensorrt/upload_plan.h"
#include "frame_support.h"

using namespace fm;
using fm::trt::FaceIn;
using fm::trt::FrameIn;
using fm_test::check;
using fm_test::box_face;
using fm_test::noise_frame;
using Owned = fm_test::NoiseFrame;

namespace {

void run(const std::string& name, const std::vector<const Owned*>& frames, const std::vector<FaceIn>& faces, CropMode crop) {
  std::vector<FrameIn> in;
  for (const Owned* f : frames) in.push_back(f->in);
  const trt::UploadPlan p = trt::plan_uploads(in, faces, crop);
  // Layout: aligned, in order, disjoint, inside the buffer.
  size_t end = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    if (p.hi[i] < 0) continue;
    check(p.offset[i] % trt::kUploadAlign == 0, name + ": offset aligned");
    check(p.offset[i] >= end, name + ": spans disjoint");
    check(p.lo[i] >= 0 && p.hi[i] < in[i].height && p.lo[i] <= p.hi[i], name + ": rows inside the frame");
    end = p.offset[i] + p.span[i];
  }
  check(end <= p.total, name + ": spans inside the buffer");
  for (ResizeMode resize : {ResizeMode::CenterCrop, ResizeMode::AntialiasBilinear}) {
    for (size_t k = 0; k < faces.size(); ++k) {
      const FaceIn& f = faces[k];
      const Owned& o = *frames[static_cast<size_t>(f.frame)];
      const size_t fi = static_cast<size_t>(f.frame);
      // Only the planned rows are real: every other byte is garbage.
      std::vector<uint8_t> partial(o.bytes.size());
      for (size_t i = 0; i < partial.size(); ++i) partial[i] = static_cast<uint8_t>(~o.bytes[i] ^ 0x5a);
      const size_t first = static_cast<size_t>(p.lo[fi]) * o.in.stride;
      std::memcpy(partial.data() + first, o.bytes.data() + first, p.span[fi]);
      std::vector<float> want(kInputFloats), got(kInputFloats);
      const Frame whole{o.bytes.data(), o.in.width, o.in.height, o.in.stride, o.in.format};
      const Frame part{partial.data(), o.in.width, o.in.height, o.in.stride, o.in.format};
      preprocess_face(whole, f.has_window ? &f.window : nullptr, crop, resize, want.data());
      preprocess_face(part, f.has_window ? &f.window : nullptr, crop, resize, got.data());
      check(std::memcmp(want.data(), got.data(), sizeof(float) * kInputFloats) == 0,
            name + " face " + std::to_string(k) + (resize == ResizeMode::CenterCrop ? " centre crop" : " antialias") +
                ": a row outside the plan was read");
    }
  }
}

}  // namespace

int main() {
  const Owned hd = noise_frame(1920, 1080, PixelFormat::RGB, 0, 1);
  const Owned small = noise_frame(97, 61, PixelFormat::BGRA, 12, 2);
  const Owned gray = noise_frame(640, 480, PixelFormat::GRAY, 3, 3);
  const Owned chip = noise_frame(256, 256, PixelFormat::RGBA, 0, 4);
  const Owned unused = noise_frame(300, 200, PixelFormat::RGB, 0, 5);
  for (CropMode crop : {CropMode::Square, CropMode::Stretch}) {
    const std::string c = crop == CropMode::Square ? "square" : "stretch";
    run(c + ": faces inside a 1080p frame", {&hd}, {box_face(hd, 0, crop, 800, 400, 1100, 700), box_face(hd, 0, crop, 100, 90, 380, 350)}, crop);
    run(c + ": over the top and bottom edges", {&hd}, {box_face(hd, 0, crop, 900, -120, 1200, 150), box_face(hd, 0, crop, 10, 950, 300, 1250)}, crop);
    run(c + ": tiny and huge boxes", {&hd, &small}, {box_face(hd, 0, crop, 500, 500, 501.5f, 502), box_face(small, 1, crop, -200, -300, 400, 500)}, crop);
    run(c + ": mostly off the frame", {&gray}, {box_face(gray, 0, crop, -300, -250, 20, 10), box_face(gray, 0, crop, 630, 470, 900, 800)}, crop);
    // Coordinates past INT_MAX: the int conversions must stay defined (the UBSan build of this
    // test, upload_plan_ubsan, fails otherwise) so that host and GPU pick the same rows.
    run(c + ": a box reaching past INT_MAX", {&gray}, {box_face(gray, 0, crop, 100, 100, 1e13f, 1e13f)}, crop);
    FaceIn vast;
    vast.has_window = true;
    vast.window = CropWindow{-3e12f, -5e12f, 9e12f, 7e12f};
    run(c + ": a window trillions of pixels wide", {&small}, {vast}, crop);
    FaceIn chip_face;
    chip_face.frame = 1;
    run(c + ": a chip beside a frame, and a frame no face reads", {&gray, &chip, &unused},
        {box_face(gray, 0, crop, 200, 100, 330, 260), chip_face}, crop);
  }
  // A frame no face reads is not uploaded.
  std::vector<FrameIn> in{hd.in, unused.in};
  FaceIn one = box_face(hd, 0, CropMode::Square, 800, 400, 1100, 700);
  const trt::UploadPlan p = trt::plan_uploads(in, {one}, CropMode::Square);
  check(p.hi[1] < 0 && p.span[1] == 0, "an unread frame has no span");
  check(p.span[0] < hd.bytes.size() / 2, "a face uploads a band of the 1080p frame, not all of it",
        std::to_string(p.span[0]) + " of " + std::to_string(hd.bytes.size()) + " bytes");
  std::printf("upload plan: %d passed, %d failed\n", fm_test::g_passed, fm_test::g_failed);
  return fm_test::g_failed == 0 ? 0 : 1;
}
