// The TensorRT pipeline uploads only the frame rows a batch's crops read, and of them only the
// blocks each face reads where those come to at most half of the rows' bytes (upload_plan.h).
// Checked on the CPU: for every face, the CPU preprocessing of a copy of its frame in which every
// byte the plan does not copy is garbage must equal, bit for bit, the preprocessing of the whole
// frame; and the spans must be 256-byte aligned, disjoint and inside the buffer, the blocks whole
// pixels inside the span's rows. Frames with several faces, faces over the edges and off the frame
// (reflection and zero padding read clamped rows), tiny and huge boxes, chips, both crops and both
// resizes.
#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "preprocess/preprocess.h"
#include "preprocess/taps.h"
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

// The plan's blocks of frame i.
std::vector<trt::UploadBlock> blocks_of(const trt::UploadPlan& p, size_t i) {
  std::vector<trt::UploadBlock> v;
  for (const trt::UploadBlock& b : p.blocks)
    if (static_cast<size_t>(b.frame) == i) v.push_back(b);
  return v;
}

// The bytes the plan moves for frame i.
size_t moved(const trt::UploadPlan& p, size_t i) {
  if (p.whole[i]) return p.span[i];
  size_t n = 0;
  for (const trt::UploadBlock& b : blocks_of(p, i)) n += static_cast<size_t>(b.last - b.first + 1) * b.bytes;
  return n;
}

// What the plan before blocks moved for frame i: the hull of its faces' columns over its rows
// where that hull is at most half a row wide, else whole rows (restated from the taps).
size_t columns_plan_bytes(const FrameIn& fr, const std::vector<FaceIn>& faces, size_t i, CropMode crop, size_t span) {
  int left = INT_MAX, right = -1, top = INT_MAX, bottom = -1;
  for (const FaceIn& f : faces) {
    if (static_cast<size_t>(f.frame) != i) continue;
    if (!f.has_window) return span;  // a chip: all of its 256 columns, more than half
    for (int k = 0; k < kChip; ++k) {
      const taps::Tap c = taps::axis_tap(f.window.x, f.window.width, fr.width, crop, k);
      const taps::Tap t = taps::axis_tap(f.window.y, f.window.height, fr.height, crop, k);
      left = std::min({left, c.i0, c.i1});
      right = std::max({right, c.i0, c.i1});
      top = std::min({top, t.i0, t.i1});
      bottom = std::max({bottom, t.i0, t.i1});
    }
  }
  const size_t pixel = static_cast<size_t>(channels(fr.format)), row = static_cast<size_t>(fr.width) * pixel;
  const size_t columns = static_cast<size_t>(right - left + 1) * pixel;
  return 2 * columns <= row ? static_cast<size_t>(bottom - top + 1) * columns : span;
}

// blocks: how many blocks each frame a face reads must be planned in (the layouts meant to test
// that path); 0: not checked.
trt::UploadPlan run(const std::string& name, const std::vector<const Owned*>& frames, const std::vector<FaceIn>& faces, CropMode crop,
                    size_t blocks = 0) {
  std::vector<FrameIn> in;
  for (const Owned* f : frames) in.push_back(f->in);
  const trt::UploadPlan p = trt::plan_uploads(in, faces, crop);
  for (size_t i = 0; blocks > 0 && i < in.size(); ++i)
    check(p.hi[i] < 0 || (!p.whole[i] && blocks_of(p, i).size() == blocks), name + ": planned in " + std::to_string(blocks) + " block(s)",
          "frame " + std::to_string(i) + ": " + (p.whole[i] ? "whole rows" : std::to_string(blocks_of(p, i).size()) + " blocks"));
  // Layout: aligned, in order, disjoint, inside the buffer.
  size_t end = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    if (p.hi[i] < 0) {
      check(blocks_of(p, i).empty(), name + ": no block of an unread frame");
      continue;
    }
    check(p.offset[i] % trt::kUploadAlign == 0, name + ": offset aligned");
    check(p.offset[i] >= end, name + ": spans disjoint");
    check(p.lo[i] >= 0 && p.hi[i] < in[i].height && p.lo[i] <= p.hi[i], name + ": rows inside the frame");
    const size_t pixel = static_cast<size_t>(channels(in[i].format)), row = static_cast<size_t>(in[i].width) * pixel;
    const std::vector<trt::UploadBlock> own = blocks_of(p, i);
    check(p.whole[i] == own.empty() && own.size() <= trt::kMaxUploadBlocks, name + ": a frame is copied whole or in at most 16 blocks");
    for (const trt::UploadBlock& b : own) {
      check(b.column % pixel == 0 && b.bytes % pixel == 0 && b.bytes > 0 && b.column + b.bytes <= row,
            name + ": a block's columns whole pixels inside the row");
      check(b.first >= p.lo[i] && b.last <= p.hi[i] && b.first <= b.last, name + ": a block's rows inside the span");
    }
    const size_t bytes = moved(p, i);
    check(own.empty() || 2 * bytes <= static_cast<size_t>(p.hi[i] - p.lo[i] + 1) * row, name + ": blocks at most half of the rows' bytes");
    const size_t before = columns_plan_bytes(in[i], faces, i, crop, p.span[i]);
    check(bytes <= before, name + ": no more bytes than the plan before blocks", std::to_string(bytes) + " > " + std::to_string(before));
    end = p.offset[i] + p.span[i];
  }
  check(end <= p.total, name + ": spans inside the buffer");
  for (ResizeMode resize : {ResizeMode::CenterCrop, ResizeMode::AntialiasBilinear}) {
    for (size_t k = 0; k < faces.size(); ++k) {
      const FaceIn& f = faces[k];
      const Owned& o = *frames[static_cast<size_t>(f.frame)];
      const size_t fi = static_cast<size_t>(f.frame);
      // Only the bytes the plan copies are real: every other byte is garbage.
      std::vector<uint8_t> partial(o.bytes.size());
      for (size_t i = 0; i < partial.size(); ++i) partial[i] = static_cast<uint8_t>(~o.bytes[i] ^ 0x5a);
      if (p.whole[fi]) {
        const size_t first = static_cast<size_t>(p.lo[fi]) * o.in.stride;
        std::memcpy(partial.data() + first, o.bytes.data() + first, p.span[fi]);
      }
      for (const trt::UploadBlock& b : blocks_of(p, fi))
        for (int y = b.first; y <= b.last; ++y) {
          const size_t at = static_cast<size_t>(y) * o.in.stride + b.column;
          std::memcpy(partial.data() + at, o.bytes.data() + at, b.bytes);
        }
      std::vector<float> want(kInputFloats), got(kInputFloats);
      const Frame whole{o.bytes.data(), o.in.width, o.in.height, o.in.stride, o.in.format};
      const Frame part{partial.data(), o.in.width, o.in.height, o.in.stride, o.in.format};
      preprocess_face(whole, f.has_window ? &f.window : nullptr, crop, resize, want.data());
      preprocess_face(part, f.has_window ? &f.window : nullptr, crop, resize, got.data());
      check(std::memcmp(want.data(), got.data(), sizeof(float) * kInputFloats) == 0,
            name + " face " + std::to_string(k) + (resize == ResizeMode::CenterCrop ? " centre crop" : " antialias") +
                ": a byte outside the plan was read");
    }
  }
  return p;
}

// axis_reads (the first and last sample's taps where no reflection can fold them) against every
// sample's taps: windows inside, across and far outside frames of several sizes, at and within
// rounding of the shortcut's bounds (a pixel inside the frame), negative, zero and huge extents.
void axis_reads_match_every_tap() {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  int cases = 0, wrong = 0;
  for (int size : {1, 2, 3, 7, 97, 256, 1080, 1920, 65535}) {
    const float fs = static_cast<float>(size);
    for (CropMode crop : {CropMode::Square, CropMode::Stretch}) {
      for (int i = 0; i < 3000; ++i) {
        float origin = 0, extent = 0;
        const float nudge = (unit(rng) - 0.5f) * 2e-3f;
        switch (i % 6) {
          case 0: origin = (unit(rng) * 4 - 2) * fs; extent = unit(rng) * 3 * fs; break;   // anywhere
          case 1: origin = 1.0f + nudge; extent = unit(rng) * (fs - 2); break;              // at the near bound
          case 2: extent = unit(rng) * (fs - 2); origin = fs - 1 - extent + nudge; break;   // at the far bound
          case 3: origin = 1.0f + nudge; extent = fs - 2 + (unit(rng) - 0.5f) * 4e-3f; break;  // both
          case 4: origin = unit(rng) * fs; extent = (unit(rng) - 0.7f) * 2e-3f * fs; break;  // tiny, zero, negative
          default: origin = (unit(rng) - 0.5f) * 1e7f; extent = unit(rng) * 1e7f; break;     // huge
        }
        if (i % 97 == 0) extent = 0.0f;
        int first = 0, last = 0, want_first = INT_MAX, want_last = -1;
        trt::axis_reads(origin, extent, size, crop, &first, &last);
        for (int k = 0; k < kChip; ++k) {
          const taps::Tap t = taps::axis_tap(origin, extent, size, crop, k);
          want_first = std::min({want_first, t.i0, t.i1});
          want_last = std::max({want_last, t.i0, t.i1});
        }
        ++cases;
        if ((first != want_first || last != want_last) && wrong++ < 5)
          std::printf("  axis_reads(%.9g, %.9g, %d, %s) = %d..%d, every tap: %d..%d\n", origin, extent, size,
                      crop == CropMode::Square ? "square" : "stretch", first, last, want_first, want_last);
      }
    }
  }
  check(wrong == 0, "axis_reads equals every sample's taps", std::to_string(wrong) + " of " + std::to_string(cases) + " windows differ");
}

}  // namespace

int main() {
  axis_reads_match_every_tap();
  const Owned hd = noise_frame(1920, 1080, PixelFormat::RGB, 0, 1);
  const Owned small = noise_frame(97, 61, PixelFormat::BGRA, 12, 2);
  const Owned gray = noise_frame(640, 480, PixelFormat::GRAY, 3, 3);
  const Owned chip = noise_frame(256, 256, PixelFormat::RGBA, 0, 4);
  const Owned unused = noise_frame(300, 200, PixelFormat::RGB, 0, 5);
  const Owned bgra = noise_frame(1000, 500, PixelFormat::BGRA, 8, 6);
  for (CropMode crop : {CropMode::Square, CropMode::Stretch}) {
    const std::string c = crop == CropMode::Square ? "square" : "stretch";
    run(c + ": faces inside a 1080p frame", {&hd}, {box_face(hd, 0, crop, 800, 400, 1100, 700), box_face(hd, 0, crop, 100, 90, 380, 350)}, crop);
    run(c + ": over the top and bottom edges", {&hd}, {box_face(hd, 0, crop, 900, -120, 1200, 150), box_face(hd, 0, crop, 10, 950, 300, 1250)}, crop);
    // Blocks: one face in a 1080p frame, faces at the left and right edges of a 4-channel frame
    // (whole 32-bit pixels), one over a grey frame's corner; two side by side, two overlapping
    // (one block), one at each corner of a 1080p frame.
    run(c + ": one face in a 1080p frame", {&hd}, {box_face(hd, 0, crop, 800, 400, 1100, 700)}, crop, 1);
    run(c + ": one face over the left edge of a BGRA frame", {&bgra}, {box_face(bgra, 0, crop, -50, 100, 120, 260)}, crop, 1);
    run(c + ": one face over the right edge of a BGRA frame", {&bgra}, {box_face(bgra, 0, crop, 900, 300, 1050, 470)}, crop, 1);
    run(c + ": one face over a grey frame's corner", {&gray}, {box_face(gray, 0, crop, 580, -40, 700, 90)}, crop, 1);
    run(c + ": two faces side by side", {&hd}, {box_face(hd, 0, crop, 300, 400, 600, 700), box_face(hd, 0, crop, 1300, 420, 1600, 720)}, crop, 2);
    run(c + ": two faces overlapping", {&hd}, {box_face(hd, 0, crop, 800, 400, 1100, 700), box_face(hd, 0, crop, 900, 450, 1200, 750)}, crop, 1);
    run(c + ": a face at each corner", {&hd},
        {box_face(hd, 0, crop, -20, -30, 200, 210), box_face(hd, 0, crop, 1700, -10, 1950, 240), box_face(hd, 0, crop, 10, 850, 250, 1100),
         box_face(hd, 0, crop, 1650, 800, 1910, 1070)},
        crop, 4);
    std::vector<FaceIn> apart;  // 18 faces far apart: 18 blocks, the two cheapest pairs merged
    for (int y = 0; y < 3; ++y)
      for (int x = 0; x < 6; ++x) apart.push_back(box_face(hd, 0, crop, 20.0f + 320 * x, 20.0f + 360 * y, 140.0f + 320 * x, 140.0f + 360 * y));
    run(c + ": 18 faces far apart in a 1080p frame", {&hd}, apart, crop, trt::kMaxUploadBlocks);
    std::vector<FaceIn> grid;  // 40 faces spread over the frame: whole rows
    for (int y = 0; y < 5; ++y)
      for (int x = 0; x < 8; ++x) grid.push_back(box_face(hd, 0, crop, 40.0f + 240 * x, 30.0f + 216 * y, 120.0f + 240 * x, 110.0f + 216 * y));
    check(run(c + ": 40 faces spread over a 1080p frame", {&hd}, grid, crop).whole[0], c + ": 40 faces spread over a frame: whole rows");
  }
  // A frame no face reads is not uploaded; one face moves a band of its rows, and of them only
  // its own columns.
  std::vector<FrameIn> in{hd.in, unused.in};
  FaceIn one = box_face(hd, 0, CropMode::Square, 800, 400, 1100, 700);
  const trt::UploadPlan p = trt::plan_uploads(in, {one}, CropMode::Square);
  check(p.hi[1] < 0 && p.span[1] == 0, "an unread frame has no span");
  check(p.span[0] < hd.bytes.size() / 2, "a face uploads a band of the 1080p frame, not all of it",
        std::to_string(p.span[0]) + " of " + std::to_string(hd.bytes.size()) + " bytes");
  check(p.blocks.size() == 1 && p.blocks[0].bytes < 1920 * 3 / 4, "... and of its rows only the columns read (under a quarter)",
        std::to_string(p.blocks.empty() ? 0 : p.blocks[0].bytes) + " bytes of each row");
  check(trt::plan_uploads(in, {one}, CropMode::Square, false).whole[0], "blocks off: whole rows");
  // Faces at both sides of a frame: each its own block, a third of the rows' bytes or less, where
  // their columns' hull (the whole width) would take whole rows.
  const trt::UploadPlan sides = trt::plan_uploads({hd.in}, {box_face(hd, 0, CropMode::Square, 50, 400, 300, 650), box_face(hd, 0, CropMode::Square, 1600, 400, 1850, 650)},
                                                  CropMode::Square);
  check(!sides.whole[0] && sides.blocks.size() == 2 && 3 * moved(sides, 0) <= sides.span[0], "faces at both sides of a frame: two blocks",
        std::to_string(moved(sides, 0)) + " of " + std::to_string(sides.span[0]) + " bytes");
  // Many faces over the whole frame: whole rows, one linear copy.
  std::vector<FaceIn> crowd;
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 6; ++x) crowd.push_back(box_face(hd, 0, CropMode::Square, 20.0f + 320 * x, 20.0f + 270 * y, 300.0f + 320 * x, 260.0f + 270 * y));
  check(trt::plan_uploads({hd.in}, crowd, CropMode::Square).whole[0], "24 faces covering a frame: whole rows");
  std::printf("upload plan: %d passed, %d failed\n", fm_test::g_passed, fm_test::g_failed);
  return fm_test::g_failed == 0 ? 0 : 1;
}
