// The square crop and model-input preprocessing against py-feat 2.1.5's own code, on seeded random
// frames and boxes made afresh on every run (scripts/crop_fuzz_reference.py): py-feat's
// Detectorv2.crop_faces_from_boxes (extract_face_square_pad_torch: side = max(w, h) * 1.2, pixel-
// centre grid, reflection padding), MultitaskModel.preprocess (256 -> 224 antialiased bilinear,
// ImageNet normalisation) and convert_bbox_output, run from the installed wheel's files. The Node
// side is faceCrop (lib/crop.ts) and the native preprocessing (native/preprocess), on the same
// frame bytes and float32 boxes.
//
// test/preprocess-torch.test.ts holds ~40 hand-picked cases against a stored fixture; this draws
// hundreds of boxes of every kind (inside, half-integer and integer coordinates, sub-pixel, aspect
// ratios to 1e4:1, across edges and corners, windows up to 1.2e7 px, log-uniform anywhere) on
// frames from 1x1 and one-pixel strips to 1280x720, where reflection folds coordinates most.
// Frames are noise: a sampling coordinate one float32 ulp off moves a value by up to ulp * 1.0.
//
// Held: the crop window (origin, side) and the reported box equal py-feat's float32 values exactly;
// every model-input value within 1e-5 in [0,1] pixel units (|ours - py-feat| * std; observed
// about 3e-7, from the order of float32 operations in the resize and normalisation); and the frame
// as rgba, bgr, bgra (and gray, for a grey frame), with padded rows, gives the very same floats.
//
// The reference is torch's AVX2/AVX512 CPU kernels (any x86 CPU since 2013), whose one fused
// multiply-add in grid_sample the native code copies (native/preprocess/taps.h); torch's DEFAULT
// kernels round it twice and would differ by up to ~6e-5. A failure names the kernels torch ran.
//
// FACE_MULTITASK_CROP_FUZZ_SEED and FACE_MULTITASK_CROP_FUZZ_COUNT change the draw (a failure names
// both). The reference's disk use is ~0.6 MB a box, in a temporary folder removed afterwards.
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { faceCrop } from '../../lib/crop'
import { PIXEL_FORMATS } from '../../lib/image-input'
import { loadNative } from '../../lib/native'
import type { Box, PixelFormat } from '../../lib/types'
import { repack } from '../helpers/repack'

const ROOT = path.resolve(__dirname, '..', '..')
const VENV = process.env.FACE_MULTITASK_VENV || path.join(ROOT, '.venv')
const PYTHON = path.join(VENV, 'bin', 'python')
const SEED = Number(process.env.FACE_MULTITASK_CROP_FUZZ_SEED ?? 20250)
const COUNT = Number(process.env.FACE_MULTITASK_CROP_FUZZ_COUNT ?? 360)
const TOL = 1e-5 // max |ours - py-feat| * std[c]: in [0,1] pixel units, as test/preprocess-torch.test.ts
const STD = [0.229, 0.224, 0.225]
const PLANE = 224 * 224
const INPUT_FLOATS = 3 * PLANE
const FRAMES = 9 // scripts/crop_fuzz_reference.py's FRAMES; one test each

interface FuzzBox {
  label: string
  box: Box
  /** extract_face_square_pad_torch's crop_affine: origin x, origin y, side. */
  affine: [number, number, number]
  /** convert_bbox_output of the square: FaceRect x, y, width, height. */
  rect: [number, number, number, number]
}
interface FuzzFrame {
  name: string
  width: number
  height: number
  kind: 'noise' | 'gray-noise'
  rgb: string
  input: string
  boxes: FuzzBox[]
}
interface FuzzManifest {
  release: string
  crop: string
  torch: string
  cpuCapability: string
  seed: number
  frames: FuzzFrame[]
}


const enabled = process.env.FACE_MULTITASK_PARITY === '1'

describe.skipIf(!enabled)(`square crop + preprocessing on random boxes against py-feat 2.1.5 (seed ${SEED}, ${COUNT} boxes)`, () => {
  let dir: string
  let manifest: FuzzManifest
  const worst = { max: 0, where: 'none' }

  beforeAll(async () => {
    if (!fs.existsSync(PYTHON)) {
      throw new Error(`crop fuzz: ${PYTHON} not found; it runs py-feat's own code: run \`npm run setup:python\`, then \`npm run test:parity\``)
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fm-crop-fuzz-'))
    const t0 = Date.now()
    await new Promise<void>((resolve, reject) => {
      execFile(PYTHON, ['scripts/crop_fuzz_reference.py', '--seed', String(SEED), '--count', String(COUNT), '--out', dir],
        { cwd: ROOT, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
          if (err) reject(new Error(`scripts/crop_fuzz_reference.py failed:\n${`${stdout}${stderr}`.split('\n').slice(-30).join('\n')}`))
          else resolve()
        })
    })
    manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'))
    console.log(`[crop fuzz] py-feat reference ${((Date.now() - t0) / 1000).toFixed(1)} s (torch ${manifest.torch}, ${manifest.cpuCapability} kernels)`)
  })

  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
    if (manifest) console.log(`[crop fuzz] max |ours - py-feat| * std over ${COUNT} boxes: ${worst.max.toExponential(2)} at ${worst.where}`)
  })

  it("runs py-feat 2.1.5's functions on every frame size and box kind", () => {
    expect(manifest.release).toBe('py-feat 2.1.5')
    expect(manifest.crop).toMatch(/site-packages[\\/]feat[\\/]utils[\\/]image_operations\.py:\d+ \(extract_face_square_pad_torch\)$/)
    expect(manifest.seed).toBe(SEED)
    expect(manifest.frames.reduce((n, f) => n + f.boxes.length, 0)).toBe(COUNT)
    expect(manifest.frames.length).toBe(Math.min(COUNT, FRAMES))
    const sizes = manifest.frames.map((f) => `${f.width}x${f.height}`)
    for (const s of ['1x1', '1x480', '640x1', '333x1000']) expect(sizes).toContain(s)
    if (COUNT >= 8 * manifest.frames.length) {
      for (const f of manifest.frames) expect(new Set(f.boxes.map((b) => b.label)).size, f.name).toBe(8)
    }
  })

  // One test per frame size; each names its worst boxes on failure.
  it.each([...Array(FRAMES).keys()])('frame %i: every box within tolerance, the same in every pixel format', (i) => {
    const frame = manifest.frames[i]
    if (!frame) return // fewer boxes than frames (FACE_MULTITASK_CROP_FUZZ_COUNT)
    const { width, height, boxes } = frame
    const rgb = new Uint8Array(fs.readFileSync(path.join(dir, frame.rgb)))
    const ref = fs.readFileSync(path.join(dir, frame.input))
    const want = new Float32Array(ref.buffer, ref.byteOffset, ref.byteLength / 4)
    expect(want.length).toBe(boxes.length * INPUT_FLOATS)
    const crops = boxes.map((b) => faceCrop('square', b.box, width, height))
    const failures: string[] = []
    const at = (k: number) => `seed ${SEED}: ${frame.name} (${frame.kind}) box ${k} (${boxes[k].label}) [${boxes[k].box.join(', ')}]`
    boxes.forEach((b, k) => {
      // float32 values on both sides: equal exactly
      const [ox, oy, side] = b.affine
      if (JSON.stringify(crops[k].window) !== JSON.stringify([ox, oy, side, side])) {
        failures.push(`${at(k)}: window [${crops[k].window.join(', ')}], py-feat's [${ox}, ${oy}, ${side}, ${side}]`)
      }
      if (JSON.stringify(crops[k].box) !== JSON.stringify(b.rect)) failures.push(`${at(k)}: box [${crops[k].box.join(', ')}], py-feat's [${b.rect.join(', ')}]`)
    })

    const native = loadNative()
    const run = (data: Uint8Array, stride: number, format: PixelFormat) => {
      const out = new Float32Array(boxes.length * INPUT_FLOATS)
      // crop 1 = square, resize 1 = antialiased bilinear: what a v2.5+ model's metadata names
      native.preprocessSync(crops.map((c) => ({ data, width, height, stride, format: PIXEL_FORMATS[format].code, window: c.window })), 1, 1, out)
      return out
    }
    const got = run(rgb, width * 3, 'rgb')
    boxes.forEach((_, k) => {
      let max = 0
      let where = -1
      for (let j = k * INPUT_FLOATS; j < (k + 1) * INPUT_FLOATS; j++) {
        const d = Math.abs(got[j] - want[j]) * STD[Math.floor((j % INPUT_FLOATS) / PLANE)]
        if (!(d <= max)) {
          max = Number.isNaN(d) ? Infinity : d
          where = j
        }
      }
      if (!(max <= worst.max)) Object.assign(worst, { max, where: at(k) })
      if (!(max <= TOL)) {
        const e = where % INPUT_FLOATS
        failures.push(`${at(k)}: max |ours - py-feat| * std = ${max.toExponential(3)} > ${TOL} at channel ${Math.floor(e / PLANE)} ` +
          `row ${Math.floor((e % PLANE) / 224)} column ${e % 224} (ours ${got[where]}, py-feat ${want[where]}; torch ${manifest.torch}, ${manifest.cpuCapability} kernels)`)
      }
    })

    const formats: PixelFormat[] = frame.kind === 'gray-noise' ? ['rgba', 'bgr', 'bgra', 'gray'] : ['rgba', 'bgr', 'bgra']
    for (const [n, format] of formats.entries()) {
      const { data, stride } = repack(rgb, width, height, format, 3 + 2 * n, 1 + n)
      const other = run(data, stride, format)
      if (Buffer.compare(Buffer.from(other.buffer), Buffer.from(got.buffer)) !== 0) failures.push(`seed ${SEED}: ${frame.name}: ${format} differs from rgb`)
    }
    expect(failures, failures.slice(0, 20).join('\n') + (failures.length > 20 ? `\n... and ${failures.length - 20} more` : '')).toEqual([])
  })
})
