import { PIXEL_FORMATS } from '../../lib/image-input'
import type { PixelFormat } from '../../lib/types'

/**
 * An RGB frame repacked as `format`, `pad` junk bytes after each row, starting `offset` bytes
 * into its buffer; alpha varies per pixel (the model must ignore it).
 */
export function repack(rgb: Uint8Array, width: number, height: number, format: PixelFormat, pad: number, offset: number): { data: Uint8Array; stride: number } {
  const channels = PIXEL_FORMATS[format].channels
  const stride = width * channels + pad
  const data = new Uint8Array(offset + stride * height).fill(0xa5).subarray(offset)
  const order = { rgb: [0, 1, 2], rgba: [0, 1, 2], bgr: [2, 1, 0], bgra: [2, 1, 0], gray: [0] }[format]
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const src = (y * width + x) * 3
      const dst = y * stride + x * channels
      for (let k = 0; k < order.length; k++) data[dst + k] = rgb[src + order[k]]
      if (channels === 4) data[dst + 3] = (x * 31 + y) & 255
    }
  }
  return { data, stride }
}
