// The demo's picture, drawn here so the demo needs no files and no downloads: a colour gradient
// with three cartoon faces (an SVG overlay composited by sharp), and the boxes of those faces.
import type { Box } from '../types'

export const DEMO_WIDTH = 640
export const DEMO_HEIGHT = 480

interface CartoonFace {
  cx: number
  cy: number
  rx: number
  ry: number
  skin: string
}

// The third face touches the right edge and its crop runs past it: the demo also shows the padding.
const FACES: CartoonFace[] = [
  { cx: 170, cy: 220, rx: 80, ry: 105, skin: '#e0ac69' },
  { cx: 400, cy: 190, rx: 60, ry: 78, skin: '#8d5524' },
  { cx: 590, cy: 360, rx: 50, ry: 65, skin: '#f1c27d' },
]

/** The faces' boxes [x1, y1, x2, y2]: each ellipse's bounding box. */
export const DEMO_BOXES: Box[] = FACES.map(({ cx, cy, rx, ry }) => [cx - rx, cy - ry, cx + rx, cy + ry] as const)

function faceSvg({ cx, cy, rx, ry, skin }: CartoonFace): string {
  const eye = (dx: number) =>
    `<ellipse cx="${cx + dx * rx}" cy="${cy - 0.2 * ry}" rx="${0.16 * rx}" ry="${0.09 * ry}" fill="#fff"/>` +
    `<circle cx="${cx + dx * rx}" cy="${cy - 0.2 * ry}" r="${0.07 * rx}" fill="#3b2a1a"/>` +
    `<path d="M ${cx + (dx - 0.2) * rx} ${cy - 0.38 * ry} q ${0.2 * rx} ${-0.1 * ry} ${0.4 * rx} 0" stroke="#3b2a1a" stroke-width="${0.05 * rx}" fill="none"/>`
  return `<ellipse cx="${cx}" cy="${cy}" rx="${rx}" ry="${ry}" fill="${skin}"/>` +
    eye(-0.38) + eye(0.38) +
    `<path d="M ${cx} ${cy - 0.1 * ry} l ${-0.1 * rx} ${0.3 * ry} h ${0.2 * rx}" stroke="#6b4a2f" stroke-width="${0.04 * rx}" fill="none"/>` +
    `<path d="M ${cx - 0.35 * rx} ${cy + 0.45 * ry} q ${0.35 * rx} ${0.25 * ry} ${0.7 * rx} 0" stroke="#a0303a" stroke-width="${0.08 * rx}" fill="none" stroke-linecap="round"/>`
}

/** The demo image as PNG bytes; the same bytes every time for a given sharp version. */
export async function makeDemoImage(): Promise<Buffer> {
  const { default: sharp } = await import('sharp')
  const w = DEMO_WIDTH
  const h = DEMO_HEIGHT
  const background = Buffer.alloc(w * h * 3)
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3
      background[i] = Math.round(40 + (150 * x) / (w - 1))
      background[i + 1] = Math.round(70 + (120 * y) / (h - 1))
      background[i + 2] = Math.round(190 - (110 * x) / (w - 1))
    }
  }
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}">${FACES.map(faceSvg).join('')}</svg>`
  return sharp(background, { raw: { width: w, height: h, channels: 3 } })
    .composite([{ input: Buffer.from(svg), top: 0, left: 0 }])
    .png()
    .toBuffer()
}
