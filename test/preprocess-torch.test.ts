// Native preprocessing against torch itself: test/fixtures/preprocess-torch.json holds py-feat's
// crop (square: 2.x extract_face_square_pad_torch; stretch: the v2.4 extract_face_from_bbox_torch),
// 256->224 step and normalisation as torch computed them on deterministic noise frames (made by
// scripts/make_preprocess_fixtures.py). Noise is the hard case: a sampling coordinate off by one
// float32 ulp moves a value by up to ulp * 1.0, so only torch's exact coordinate arithmetic passes
// the 1e-5 bound (in [0,1] pixel units) at large frame coordinates.
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { faceCrop, type Rect } from '../lib/crop'
import { PIXEL_FORMATS } from '../lib/image-input'
import { loadNative } from '../lib/native'
import type { Box, PixelFormat } from '../lib/types'
import { repack } from './helpers/repack'

interface FixtureCase {
  name: string
  frame: { kind: 'noise' | 'gray-noise'; seed: number; width: number; height: number }
  box: [number, number, number, number] | null
  crop: 'square' | 'stretch' | null
  resize: 'antialias_bilinear' | 'center_crop'
  window: Rect | null
  reportedBox: Rect
  values: string
  channelSums: [number, number, number]
  rowSums: string
}

interface Fixture {
  torch: string
  std: [number, number, number]
  samplePositions: string
  cases: FixtureCase[]
}

const fixture: Fixture = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'preprocess-torch.json'), 'utf8'))
const STD = fixture.std
const PLANE = 224 * 224
const TOL = 1e-5 // max |ours - torch| * std[c]: 1e-5 in [0,1] pixel units

function decode<T>(b64: string, View: new (buf: ArrayBuffer) => T): T {
  const bytes = Buffer.from(b64, 'base64')
  return new View(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength))
}
const positions = decode(fixture.samplePositions, Int32Array)

/** lowbias32 (Chris Wellons), as the fixture script's torch version. */
function lowbias32(x: number): number {
  x ^= x >>> 16
  x = Math.imul(x, 0x7feb352d)
  x ^= x >>> 15
  x = Math.imul(x, 0x846ca68b)
  x ^= x >>> 16
  return x >>> 0
}

/** The frame as RGB bytes: byte k of stream `seed` is lowbias32((seed * 0x9E3779B9 + k) mod 2^32) >>> 24. */
function makeFrame(f: FixtureCase['frame']): Uint8Array {
  const n = f.width * f.height
  const rgb = new Uint8Array(n * 3)
  const base = Math.imul(f.seed, 0x9e3779b9)
  if (f.kind === 'noise') {
    for (let k = 0; k < rgb.length; k++) rgb[k] = lowbias32((base + k) >>> 0) >>> 24
  } else {
    for (let k = 0; k < n; k++) rgb[3 * k] = rgb[3 * k + 1] = rgb[3 * k + 2] = lowbias32((base + k) >>> 0) >>> 24
  }
  return rgb
}

function runNative(c: FixtureCase, data: Uint8Array, stride: number, format: PixelFormat, window: Rect | null): Float32Array {
  const out = new Float32Array(3 * PLANE)
  const { width, height } = c.frame
  loadNative().preprocessSync(
    [{ data, width, height, stride, format: PIXEL_FORMATS[format].code, window }],
    c.crop === 'stretch' ? 0 : 1,
    c.resize === 'center_crop' ? 0 : 1,
    out,
  )
  return out
}

/** Max |ours - torch| * std[c] over the stored samples, and the worst row-sum and plane-sum gaps in the same units. */
function compare(c: FixtureCase, got: Float32Array) {
  const want = decode(c.values, Float32Array)
  let sample = 0
  for (let k = 0; k < positions.length; k++) {
    const i = positions[k]
    sample = Math.max(sample, Math.abs(got[i] - want[k]) * STD[Math.floor(i / PLANE)])
  }
  const rows = decode(c.rowSums, Float64Array)
  let row = 0
  const planes = [0, 0, 0]
  for (let r = 0; r < 3 * 224; r++) {
    let s = 0
    for (let x = 0; x < 224; x++) s += got[r * 224 + x]
    planes[Math.floor(r / 224)] += s
    row = Math.max(row, Math.abs(s - rows[r]) * STD[Math.floor(r / 224)])
  }
  const plane = Math.max(...planes.map((s, ch) => Math.abs(s - c.channelSums[ch]) * STD[ch]))
  return { sample, row, plane }
}

const report: string[] = []

describe(`native preprocessing equals torch ${fixture.torch} (py-feat's own steps)`, () => {
  it('the fixture has the cases it should', () => {
    expect(fixture.cases.length).toBeGreaterThanOrEqual(30)
    expect(positions.length).toBeGreaterThan(3000)
  })

  for (const c of fixture.cases) {
    it(c.name, () => {
      const { width, height } = c.frame
      let window: Rect | null = null
      if (c.box && c.crop) {
        const crop = faceCrop(c.crop, c.box as Box, width, height)
        // float32 values on both sides: equal exactly
        expect(crop.window).toEqual(c.window)
        expect(crop.box).toEqual(c.reportedBox)
        window = crop.window
      }
      const rgb = makeFrame(c.frame)
      const got = runNative(c, rgb, width * 3, 'rgb', window)
      const d = compare(c, got)
      report.push(`${d.sample.toExponential(2)}  row ${d.row.toExponential(2)}  plane ${d.plane.toExponential(2)}  ${c.name}`)
      expect(d.sample).toBeLessThanOrEqual(TOL)
      // Each row sums 224 values, each within TOL: the sums are within 224 * TOL (and far closer in practice).
      expect(d.row).toBeLessThanOrEqual(224 * TOL)
      expect(d.plane).toBeLessThanOrEqual(PLANE * TOL)

      // The same frame in every other layout, padded rows, a view that starts inside its buffer:
      // the very same floats.
      const formats: PixelFormat[] = c.frame.kind === 'gray-noise' ? ['rgba', 'bgr', 'bgra', 'gray'] : ['rgba', 'bgr', 'bgra']
      for (const [i, format] of formats.entries()) {
        const { data, stride } = repack(rgb, width, height, format, 5 + 2 * i, 3 + i)
        expect(data.byteOffset).toBeGreaterThan(0)
        const other = runNative(c, data, stride, format, window)
        expect(Buffer.compare(Buffer.from(other.buffer), Buffer.from(got.buffer)), `${format} differs from rgb`).toBe(0)
      }
    })
  }

  // PREPROCESS_TORCH_REPORT=1 prints every case's differences.
  afterAll(() => {
    if (!process.env.PREPROCESS_TORCH_REPORT) return
    console.log(`max |ours - torch| * std, in [0,1] pixel units (samples, worst row sum, worst plane sum):\n${report.join('\n')}`)
  })
})
