// Which bytes of each frame a batch uploads to the GPU: the rows its faces' crops read (the union
// of the chip rows' source taps, taps.h: the kernel's own arithmetic), each frame's span at a
// 256-byte aligned offset of one device buffer. A face's descriptor then points at
// `buffer + offset - lo * stride`, so the kernel's row arithmetic is unchanged and touches only
// uploaded rows. Where the blocks the crops read (each face's rows by its columns, the chip
// columns' taps likewise; two merged where their hull moves at most 64 KiB more than they do, and
// at most kMaxUploadBlocks a frame) come to at most half of those rows' bytes, only the blocks are
// copied (2D copies, same layout and stride on the GPU, the rest left unwritten and unread; blocks
// may overlap): one face in a 1080p frame moves a fifth of its rows' bytes, two faces side by side
// about a third. Never more bytes than the hull of the faces' columns over those rows would move.
// Plain C++ (no CUDA, no TensorRT): checked on the CPU by upload_plan_test.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "preprocess/preprocess.h"

namespace fm::trt {

// A frame in host memory; faces refer to it by index.
struct FrameIn {
  const uint8_t* data = nullptr;
  int width = 0, height = 0;
  size_t stride = 0;  // bytes per row
  PixelFormat format = PixelFormat::RGB;
};

struct FaceIn {
  int frame = 0;             // index into the batch's frames
  bool has_window = false;   // false: the frame is a 256x256 chip
  CropWindow window{};
};

// Part of a frame copied on its own: rows first..last, of each `bytes` bytes from `column` bytes
// into the row (whole pixels), to the same place in the frame's span on the GPU.
struct UploadBlock {
  int frame = 0;
  int first = 0, last = 0;
  size_t column = 0, bytes = 0;
};

struct UploadPlan {
  // Per frame: the first and last row read (hi < 0: no face reads it), the bytes from the first
  // row's start to the last row's end, and where they go in the device buffer.
  std::vector<int> lo, hi;
  std::vector<size_t> span, offset;
  // Per frame: true, copy the span whole (one linear copy); false, only its blocks below.
  std::vector<bool> whole;
  std::vector<UploadBlock> blocks;
  size_t total = 0;  // bytes of the device buffer
};

constexpr size_t kUploadAlign = 256;
// n rounded up to a multiple of kUploadAlign: where the next piece of a buffer may begin.
constexpr size_t upload_aligned(size_t n) { return (n + kUploadAlign - 1) / kUploadAlign * kUploadAlign; }
// A frame is copied in at most this many blocks: past that, the pairs adding the fewest bytes merge.
constexpr size_t kMaxUploadBlocks = 16;

// The first and last pixel the 256 taps of one axis of a crop window read (taps::axis_tap):
// every sample's taps where the square crop's reflection may fold them, else the first and last
// sample's (the same extremes; upload_plan_test holds the two to each other).
void axis_reads(float origin, float extent, int size, CropMode crop, int* first, int* last);

// blocks false: whole rows always (pipeline_gpu_bench's baseline).
UploadPlan plan_uploads(const std::vector<FrameIn>& frames, const std::vector<FaceIn>& faces, CropMode crop, bool blocks = true);

}  // namespace fm::trt
