// The rows and columns a batch's crops read (see upload_plan.h).
#include "tensorrt/upload_plan.h"

#include <algorithm>
#include <climits>

#include "preprocess/taps.h"

namespace fm::trt {

UploadPlan plan_uploads(const std::vector<FrameIn>& frames, const std::vector<FaceIn>& faces, CropMode crop, bool columns) {
  UploadPlan p;
  const size_t n = frames.size();
  p.lo.assign(n, INT_MAX);
  p.hi.assign(n, -1);
  std::vector<int> left(n, INT_MAX), right(n, -1);
  p.column_offset.assign(n, 0);
  p.column_bytes.assign(n, 0);
  p.span.assign(n, 0);
  p.offset.assign(n, 0);
  for (const FaceIn& f : faces) {
    const size_t i = static_cast<size_t>(f.frame);
    if (!f.has_window) {  // a chip: the kernel reads its rows 0..255
      p.lo[i] = left[i] = 0;
      p.hi[i] = std::max(p.hi[i], kChip - 1);
      right[i] = std::max(right[i], kChip - 1);
      continue;
    }
    for (int k = 0; k < kChip; ++k) {
      const taps::Tap t = taps::axis_tap(f.window.y, f.window.height, frames[i].height, crop, k);
      p.lo[i] = std::min(p.lo[i], std::min(t.i0, t.i1));
      p.hi[i] = std::max(p.hi[i], std::max(t.i0, t.i1));
      const taps::Tap c = taps::axis_tap(f.window.x, f.window.width, frames[i].width, crop, k);
      left[i] = std::min(left[i], std::min(c.i0, c.i1));
      right[i] = std::max(right[i], std::max(c.i0, c.i1));
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (p.hi[i] < 0) continue;
    const FrameIn& fr = frames[i];
    const size_t pixel = static_cast<size_t>(channels(fr.format)), row = static_cast<size_t>(fr.width) * pixel;
    p.span[i] = static_cast<size_t>(p.hi[i] - p.lo[i]) * fr.stride + row;
    const size_t l = static_cast<size_t>(left[i]), r = static_cast<size_t>(right[i]);  // taps lie inside the frame (taps.h)
    if (columns && 2 * (r - l + 1) * pixel <= row) {
      p.column_offset[i] = l * pixel;
      p.column_bytes[i] = (r - l + 1) * pixel;
    }
    p.offset[i] = p.total;
    p.total += (p.span[i] + kUploadAlign - 1) / kUploadAlign * kUploadAlign;
  }
  return p;
}

}  // namespace fm::trt
