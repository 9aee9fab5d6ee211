// Which bytes of each frame a batch uploads to the GPU: the rows its faces' crops read (the union
// of the chip rows' source taps, taps.h: the kernel's own arithmetic), each frame's span at a
// 256-byte aligned offset of one device buffer. A face's descriptor then points at
// `buffer + offset - lo * stride`, so the kernel's row arithmetic is unchanged and touches only
// uploaded rows. Where the columns the crops read (the chip columns' taps likewise) are at most
// half of a row, only those columns of each row are copied (a 2D copy, same layout and stride on
// the GPU, the rest of each row left unwritten and unread): one face in a 1080p frame moves a
// fifth of its rows' bytes. Plain C++ (no CUDA, no TensorRT): checked on the CPU by upload_plan_test.
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

struct UploadPlan {
  // Per frame: the first and last row read (hi < 0: no face reads it), the bytes from the first
  // row's start to the last row's end, and where they go in the device buffer.
  std::vector<int> lo, hi;
  std::vector<size_t> span, offset;
  // Per frame: 0, copy the span whole; else copy only `column_bytes` bytes of each row of the
  // span, from `column_offset` bytes into the row (the columns read, whole pixels).
  std::vector<size_t> column_offset, column_bytes;
  size_t total = 0;  // bytes of the device buffer
};

constexpr size_t kUploadAlign = 256;

// columns false: whole rows always (pipeline_gpu_bench's baseline).
UploadPlan plan_uploads(const std::vector<FrameIn>& frames, const std::vector<FaceIn>& faces, CropMode crop, bool columns = true);

}  // namespace fm::trt
