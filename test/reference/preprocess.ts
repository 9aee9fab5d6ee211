// An independent, deliberately naive reference of the preprocessing, written from the
// definitions (model-facts.md, torch's grid_sample and antialiased-resize semantics) in double
// precision, pixel by pixel. The native code is checked against it.

export interface RefImage {
  data: Uint8Array
  width: number
  height: number
  stride: number
  /** byte offsets of R, G, B inside a pixel, and bytes per pixel */
  offsets: [number, number, number]
  channels: number
}

const MEAN = [0.485, 0.456, 0.406]
const STD = [0.229, 0.224, 0.225]

function pixel(im: RefImage, x: number, y: number, c: number): number {
  return im.data[y * im.stride + x * im.channels + im.offsets[c]] / 255
}

// grid_sample(align_corners=False): sample index coordinate ix (pixel k's centre at k).
function sample(im: RefImage, ix: number, iy: number, c: number, reflection: boolean): number {
  if (reflection) {
    const reflect = (v: number, n: number) => {
      // mirror about -0.5 and n - 0.5, then clamp to [0, n-1]
      let u = Math.abs(v + 0.5)
      const flips = Math.floor(u / n)
      u = u % n
      const r = flips % 2 === 0 ? u - 0.5 : n - u - 0.5
      return Math.min(Math.max(r, 0), n - 1)
    }
    ix = reflect(ix, im.width)
    iy = reflect(iy, im.height)
  }
  const x0 = Math.floor(ix)
  const y0 = Math.floor(iy)
  let v = 0
  for (const [xx, wx] of [[x0, 1 - (ix - x0)], [x0 + 1, ix - x0]]) {
    for (const [yy, wy] of [[y0, 1 - (iy - y0)], [y0 + 1, iy - y0]]) {
      if (xx < 0 || yy < 0 || xx >= im.width || yy >= im.height) continue
      v += wx * wy * pixel(im, xx, yy, c)
    }
  }
  return v
}

/**
 * The 256x256 chip, planar, [0,1]. window null: the image is the chip.
 * square (py-feat 2.x): chip pixel j samples index x + (j + 0.5) / 256 * w (pixel k's centre at
 * k), reflection padding. stretch (v2.4 dev code): the grid is normalised by (W - 1) but sampled
 * with align_corners=False, so the index is (x + (j + 0.5) / 256 * w) * W / (W - 1) - 0.5, zeros.
 */
export function refChip(im: RefImage, window: [number, number, number, number] | null, crop: 'square' | 'stretch'): Float64Array {
  const reflection = crop === 'square'
  const index = (origin: number, extent: number, k: number, n: number) => {
    const pos = origin + ((k + 0.5) / 256) * extent
    return crop === 'square' ? pos : (pos * n) / (n - 1) - 0.5
  }
  const chip = new Float64Array(3 * 256 * 256)
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < 256; i++) {
      for (let j = 0; j < 256; j++) {
        let v: number
        if (!window) v = pixel(im, j, i, c)
        else {
          const [x, y, w, h] = window
          v = sample(im, index(x, w, j, im.width), index(y, h, i, im.height), c, reflection)
        }
        chip[c * 65536 + i * 256 + j] = v
      }
    }
  }
  return chip
}

// Antialiased (triangle filter widened by the scale) resize weights, PIL/torch style.
function aaWeights(inSize: number, outSize: number): { start: number; w: number[] }[] {
  const scale = inSize / outSize
  const support = scale
  const out = []
  for (let i = 0; i < outSize; i++) {
    const center = scale * (i + 0.5)
    const lo = Math.max(Math.trunc(center - support + 0.5), 0)
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize)
    const w = []
    for (let j = lo; j < hi; j++) w.push(Math.max(0, 1 - Math.abs((j - center + 0.5) / scale)))
    const total = w.reduce((a, b) => a + b, 0)
    out.push({ start: lo, w: w.map((v) => v / total) })
  }
  return out
}

/** 256 -> 224 (centre crop or antialiased bilinear) and ImageNet normalisation, NCHW. */
export function refInput(chip: Float64Array, resize: 'center_crop' | 'antialias_bilinear'): Float64Array {
  const out = new Float64Array(3 * 224 * 224)
  const wts = aaWeights(256, 224)
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < 224; y++) {
      for (let x = 0; x < 224; x++) {
        let v = 0
        if (resize === 'center_crop') v = chip[c * 65536 + (y + 16) * 256 + x + 16]
        else {
          const wy = wts[y]
          const wx = wts[x]
          for (let a = 0; a < wy.w.length; a++)
            for (let b = 0; b < wx.w.length; b++) v += wy.w[a] * wx.w[b] * chip[c * 65536 + (wy.start + a) * 256 + wx.start + b]
        }
        out[c * 50176 + y * 224 + x] = (v - MEAN[c]) / STD[c]
      }
    }
  }
  return out
}
