// Which frame region becomes the 256x256 chip, and which box py-feat reports for it. Computed
// with float32 rounding at each step, as py-feat's torch code computes it on float32 boxes, so
// the sampling grid (native/preprocess) lands where torch's does.
import { CHIP_SIZE, type CropMode } from './contract'
import type { Box } from './types'

/** [x, y, width, height] in frame pixels. */
export type Rect = [number, number, number, number]

export interface Crop {
  /** Where the chip samples: origin and extent, float32 values. */
  window: Rect
  /** The box py-feat reports (FaceRect) and maps the mesh into. */
  box: Rect
}

const f = Math.fround
const EXPAND = f(1.2)

/** torch.round: half to even. */
function roundHalfEven(v: number): number {
  const r = Math.round(v)
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r
}

/** The crop for a face box in a frame of width x height. */
export function faceCrop(mode: CropMode, box: Box, width: number, height: number): Crop {
  const [x1, y1, x2, y2] = box.map(f)
  const cx = f(f(x1 + x2) / 2)
  const cy = f(f(y1 + y2) / 2)
  if (mode === 'square') {
    // py-feat 2.x extract_face_square_pad_torch: side = max(w, h) * 1.2, at least 1, centred,
    // not clamped to the frame (reflection padding fills the outside).
    const side = Math.max(f(Math.max(f(x2 - x1), f(y2 - y1)) * EXPAND), 1)
    const ox = f(cx - f(side / 2))
    const oy = f(cy - f(side / 2))
    return { window: [ox, oy, side, side], box: [ox, oy, f(f(ox + side) - ox), f(f(oy + side) - oy)] }
  }
  // v2.4 extract_face_from_bbox_torch: w and h each * 1.2, clamped to the frame; the chip samples
  // the float box, the reported (and mesh) box is that box rounded to integers.
  const w = f(f(x2 - x1) * EXPAND)
  const h = f(f(y2 - y1) * EXPAND)
  const nx1 = Math.max(f(cx - f(w / 2)), 0)
  const ny1 = Math.max(f(cy - f(h / 2)), 0)
  const nx2 = Math.min(f(cx + f(w / 2)), width)
  const ny2 = Math.min(f(cy + f(h / 2)), height)
  const [rx1, ry1, rx2, ry2] = [nx1, ny1, nx2, ny2].map(roundHalfEven)
  return { window: [nx1, ny1, f(nx2 - nx1), f(ny2 - ny1)], box: [rx1, ry1, rx2 - rx1, ry2 - ry1] }
}

/** A chip given directly is its own window and box. */
export const CHIP_BOX: Rect = [0, 0, CHIP_SIZE, CHIP_SIZE]
