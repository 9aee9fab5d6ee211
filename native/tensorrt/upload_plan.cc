// The rows and blocks a batch's crops read (see upload_plan.h).
#include "tensorrt/upload_plan.h"

#include <algorithm>
#include <climits>
#include <cmath>

#include "preprocess/taps.h"

namespace fm::trt {

namespace {

// A copy of its own costs its issue and the copy engine's start, a few microseconds: about what
// 64 KiB take over PCIe (reasoned, not measured). Two blocks whose hull moves no more than that
// beyond their own bytes are copied as one.
constexpr size_t kCopyBytes = 64 << 10;
// A frame with more faces is planned as their hull (or whole rows): a crowd covers most of it,
// and merging stays cheap (each pass looks at every pair of at most this many blocks, a few
// hundred microseconds at worst).
constexpr size_t kMaxFacesForBlocks = 64;

struct Box {
  int top = INT_MAX, bottom = -1, left = INT_MAX, right = -1;  // pixels read, inclusive
  void add(const Box& b) {
    top = std::min(top, b.top);
    bottom = std::max(bottom, b.bottom);
    left = std::min(left, b.left);
    right = std::max(right, b.right);
  }
  size_t bytes(size_t pixel) const {
    return static_cast<size_t>(bottom - top + 1) * static_cast<size_t>(right - left + 1) * pixel;
  }
};

}  // namespace

void axis_reads(float origin, float extent, int size, CropMode crop, int* first, int* last) {
  // The chip's source coordinate rises with k through every rounded step of axis_tap (or falls,
  // for a negative extent), and so do the clamps and the floor after it; only the square crop's
  // reflection folds it back. Where no fold is reached, the extremes are the first and last
  // samples': the stretch crop (size >= 2: no division by zero), and a square window at least a
  // pixel inside the frame, whose coordinates stay within [1, size - 1] give or take rounding
  // (a thousandth of a pixel up to 70,000 px), inside the reflection's identity range
  // [-0.5, size - 0.5). Frames are at most 2^16 px a side (lib/image-input.ts); past 2^24 the
  // size itself rounds as a float, and every sample is looked at.
  const bool monotone = std::isfinite(origin) && std::isfinite(extent) && size >= 2 && size <= (1 << 24) &&
                        (crop == CropMode::Stretch || (extent >= 0.0f && origin >= 1.0f && origin + extent <= static_cast<float>(size - 1)));
  *first = INT_MAX;
  *last = -1;
  for (int k = 0; k < kChip; k += monotone ? kChip - 1 : 1) {
    const taps::Tap t = taps::axis_tap(origin, extent, size, crop, k);
    *first = std::min(*first, std::min(t.i0, t.i1));
    *last = std::max(*last, std::max(t.i0, t.i1));
  }
}

namespace {

// The pixels face `f` reads: its chip rows' and columns' taps (a chip: all of its 256x256).
Box box_of(const FaceIn& f, const FrameIn& frame, CropMode crop) {
  if (!f.has_window) return Box{0, kChip - 1, 0, kChip - 1};
  Box b;
  axis_reads(f.window.y, f.window.height, frame.height, crop, &b.top, &b.bottom);
  axis_reads(f.window.x, f.window.width, frame.width, crop, &b.left, &b.right);
  return b;  // taps lie inside the frame (taps.h)
}

// The bytes the hull of a and b moves beyond theirs (a negative sum: they overlap).
long long added(const Box& a, const Box& b, size_t pixel) {
  Box h = a;
  h.add(b);
  return static_cast<long long>(h.bytes(pixel)) - static_cast<long long>(a.bytes(pixel) + b.bytes(pixel));
}

// Merges boxes while the hull of two costs no more than copying them apart (kCopyBytes), then,
// while there are more than kMaxUploadBlocks, the pair whose hull adds the fewest bytes.
void merge(std::vector<Box>* boxes, size_t pixel) {
  std::vector<Box>& v = *boxes;
  const auto join = [&](size_t a, size_t b) {
    v[a].add(v[b]);
    v.erase(v.begin() + static_cast<std::ptrdiff_t>(b));
  };
  for (bool merged = true; merged;) {
    merged = false;
    for (size_t a = 0; a < v.size(); ++a)
      for (size_t b = a + 1; b < v.size();) {
        if (added(v[a], v[b], pixel) <= static_cast<long long>(kCopyBytes)) {
          join(a, b);
          merged = true;
        } else {
          ++b;
        }
      }
  }
  while (v.size() > kMaxUploadBlocks) {
    size_t best_a = 0, best_b = 1;
    for (size_t a = 0; a < v.size(); ++a)
      for (size_t b = a + 1; b < v.size(); ++b)
        if (added(v[a], v[b], pixel) < added(v[best_a], v[best_b], pixel)) {
          best_a = a;
          best_b = b;
        }
    join(best_a, best_b);
  }
}

}  // namespace

UploadPlan plan_uploads(const std::vector<FrameIn>& frames, const std::vector<FaceIn>& faces, CropMode crop, bool blocks) {
  UploadPlan p;
  const size_t n = frames.size();
  std::vector<std::vector<Box>> boxes(n);
  std::vector<Box> hull(n);
  for (const FaceIn& f : faces) {
    const size_t i = static_cast<size_t>(f.frame);
    const Box b = box_of(f, frames[i], crop);
    hull[i].add(b);
    if (boxes[i].size() <= kMaxFacesForBlocks) boxes[i].push_back(b);  // one more: too many
  }
  p.lo.assign(n, INT_MAX);
  p.hi.assign(n, -1);
  p.span.assign(n, 0);
  p.offset.assign(n, 0);
  p.whole.assign(n, true);
  for (size_t i = 0; i < n; ++i) {
    if (hull[i].bottom < 0) continue;
    const FrameIn& fr = frames[i];
    const Box& h = hull[i];
    p.lo[i] = h.top;
    p.hi[i] = h.bottom;
    const size_t pixel = static_cast<size_t>(channels(fr.format)), row = static_cast<size_t>(fr.width) * pixel;
    p.span[i] = static_cast<size_t>(h.bottom - h.top) * fr.stride + row;
    p.offset[i] = p.total;
    p.total += upload_aligned(p.span[i]);
    if (!blocks) continue;
    // The faces' own blocks, merged, or their hull where that is cheaper (or the frame has too
    // many faces).
    std::vector<Box>& v = boxes[i];
    if (v.size() > kMaxFacesForBlocks) v.assign(1, h);
    merge(&v, pixel);
    size_t moved = (v.size() - 1) * kCopyBytes;
    for (const Box& b : v) moved += b.bytes(pixel);
    if (h.bytes(pixel) <= moved) {
      v.assign(1, h);
      moved = h.bytes(pixel);
    }
    // A 2D copy of short pieces of rows moves fewer bytes a microsecond than one linear copy:
    // blocks only where they are at most half of the rows' bytes.
    if (2 * moved > static_cast<size_t>(h.bottom - h.top + 1) * row) continue;
    p.whole[i] = false;
    for (const Box& b : v)
      p.blocks.push_back(UploadBlock{static_cast<int>(i), b.top, b.bottom, static_cast<size_t>(b.left) * pixel,
                                     static_cast<size_t>(b.right - b.left + 1) * pixel});
  }
  return p;
}

}  // namespace fm::trt
