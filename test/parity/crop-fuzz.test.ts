// The face crop and model-input preprocessing against py-feat's own code, on seeded random frames
// and boxes made afresh on every run (scripts/crop_fuzz_reference.py), for both crops:
//  * square (generations v2.5+), py-feat 2.1.5: Detectorv2.crop_faces_from_boxes
//    (extract_face_square_pad_torch: side = max(w, h) * 1.2, pixel-centre grid, reflection
//    padding), MultitaskModel.preprocess (256 -> 224 antialiased bilinear, ImageNet normalisation)
//    and convert_bbox_output, run from the installed wheel's files;
//  * stretch (v2.4), dev commit 3128756c, as the parity reference runs it (no release ships it):
//    its crop_faces_from_boxes (extract_face_from_bbox_torch: w and h each * 1.2, clamped to the
//    frame, grid normalised by (W - 1), zero padding; the reported box that box rounded) and
//    preprocess (centre crop 256 -> 224, ImageNet normalisation), re-stated verbatim in
//    scripts/parity_reference.py, on py-feat 2.0.3's classes, and 2.0.3's convert_bbox_output.
// The Node side is faceCrop (lib/crop.ts) and the native preprocessing (native/preprocess), on the
// same frame bytes and float32 boxes.
//
// test/preprocess-torch.test.ts holds ~40 hand-picked cases against a stored fixture; this draws
// hundreds of boxes per crop of every kind (inside, half-integer and integer coordinates,
// sub-pixel, aspect ratios to 1e4:1, across edges and corners, up to 1e7 px, log-uniform
// anywhere) on frames from the smallest each crop takes (square: 1x1 and one-pixel strips, where
// reflection folds coordinates most; stretch: 2x2 and two-pixel strips, as it refuses frames under
// 2x2) to 1280x720. Frames are noise: a sampling coordinate one float32 ulp off moves a value by up
// to ulp * 1.0.
//
// Held for both crops, as test/preprocess-torch.test.ts holds them: the crop window (square:
// origin and side; stretch: the clamped float box's origin and extent) and the reported box
// (square: the window; stretch: the clamped box rounded to whole pixels) equal py-feat's float32
// values exactly, since both sides compute them in float32 in torch's order; every model-input
// value within 1e-5 in [0,1] pixel units (|ours - py-feat| * std; observed about 3e-7 for both
// crops, from the order of float32 operations in the sampling, resize and normalisation, where a
// stretched window's origin one float32 ulp off moves values by up to 2.3e-4); and the frame as
// rgba, bgr, bgra (and gray, for a grey frame), with padded rows, gives the very same floats.
//
// The reference is torch's AVX2/AVX512 CPU kernels (any x86 CPU since 2013), whose one fused
// multiply-add in grid_sample the native code copies (native/preprocess/taps.h); torch's DEFAULT
// kernels round it twice and would differ by up to ~6e-5. A failure names the kernels torch ran.
//
// FACE_MULTITASK_CROP_FUZZ_SEED and FACE_MULTITASK_CROP_FUZZ_COUNT change the draw (boxes per crop;
// a failure names both). The reference's disk use is ~0.6 MB a box, in a temporary folder removed
// afterwards.
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { faceCrop } from '../../lib/crop'
import { PIXEL_FORMATS } from '../../lib/image-input'
import { loadNative } from '../../lib/native'
import type { CropMode } from '../../lib/contract'
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
const FRAMES = 9 // scripts/crop_fuzz_reference.py's FRAMES (and STRETCH_FRAMES); one test each

interface FuzzBox {
  label: string
  box: Box
  /** The frame region py-feat's grid spans: x, y, width, height (square: crop_affine's origin and side). */
  window: [number, number, number, number]
  /** convert_bbox_output of the box py-feat reports: FaceRect x, y, width, height. */
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
  crop: CropMode
  release: string
  cropCode: string
  torch: string
  cpuCapability: string
  seed: number
  frames: FuzzFrame[]
}

// What each crop's reference runs, and the native flags of the generations that use it.
const CROPS = [
  {
    crop: 'square', generations: 'v2.5+', release: 'py-feat 2.1.5',
    code: /site-packages[\\/]feat[\\/]utils[\\/]image_operations\.py:\d+ \(extract_face_square_pad_torch\)$/,
    sizes: ['1x1', '1x480', '640x1', '333x1000'],
    // crop 1 = square, resize 1 = antialiased bilinear: what a v2.5+ model's metadata names
    native: { crop: 1, resize: 1 },
  },
  {
    crop: 'stretch', generations: 'v2.4', release: "py-feat 2.0.3 with dev commit 3128756c's crop and preprocess (v2.4)",
    code: /scripts[\\/]parity_reference\.py:\d+ \(extract_face_from_bbox_torch_3128756c\)$/,
    sizes: ['2x2', '2x480', '640x2', '333x1000'],
    // crop 0 = stretch, resize 0 = centre crop: what a v2.4 model's metadata names
    native: { crop: 0, resize: 0 },
  },
] as const

const enabled = process.env.FACE_MULTITASK_PARITY === '1'

for (const spec of CROPS) describe.skipIf(!enabled)(`${spec.crop} crop (${spec.generations}) + preprocessing on random boxes against ${spec.release} (seed ${SEED}, ${COUNT} boxes)`, () => {
  let dir: string
  let manifest: FuzzManifest
  const worst = { max: 0, where: 'none' }
  const tag = `[crop fuzz, ${spec.crop}]`

  beforeAll(async () => {
    if (!fs.existsSync(PYTHON)) {
      throw new Error(`crop fuzz: ${PYTHON} not found; it runs py-feat's own code: run \`npm run setup:python\`, then \`npm run test:parity\``)
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `fm-crop-fuzz-${spec.crop}-`))
    const t0 = Date.now()
    await new Promise<void>((resolve, reject) => {
      execFile(PYTHON, ['scripts/crop_fuzz_reference.py', '--crop', spec.crop, '--seed', String(SEED), '--count', String(COUNT), '--out', dir],
        { cwd: ROOT, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
          if (err) reject(new Error(`scripts/crop_fuzz_reference.py --crop ${spec.crop} failed:\n${`${stdout}${stderr}`.split('\n').slice(-30).join('\n')}`))
          else resolve()
        })
    })
    manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'))
    console.log(`${tag} py-feat reference ${((Date.now() - t0) / 1000).toFixed(1)} s (torch ${manifest.torch}, ${manifest.cpuCapability} kernels)`)
  })

  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
    if (manifest) console.log(`${tag} max |ours - py-feat| * std over ${COUNT} boxes: ${worst.max.toExponential(2)} at ${worst.where}`)
  })

  it("runs py-feat's functions on every frame size and box kind", () => {
    expect(manifest.crop).toBe(spec.crop)
    expect(manifest.release).toBe(spec.release)
    expect(manifest.cropCode).toMatch(spec.code)
    expect(manifest.seed).toBe(SEED)
    expect(manifest.frames.reduce((n, f) => n + f.boxes.length, 0)).toBe(COUNT)
    expect(manifest.frames.length).toBe(Math.min(COUNT, FRAMES))
    const sizes = manifest.frames.map((f) => `${f.width}x${f.height}`)
    for (const s of spec.sizes) expect(sizes).toContain(s)
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
    const crops = boxes.map((b) => faceCrop(spec.crop, b.box, width, height))
    const failures: string[] = []
    const at = (k: number) => `${spec.crop} crop, seed ${SEED}: ${frame.name} (${frame.kind}) box ${k} (${boxes[k].label}) [${boxes[k].box.join(', ')}]`
    boxes.forEach((b, k) => {
      // float32 values on both sides: equal exactly
      if (JSON.stringify(crops[k].window) !== JSON.stringify(b.window)) failures.push(`${at(k)}: window [${crops[k].window.join(', ')}], py-feat's [${b.window.join(', ')}]`)
      if (JSON.stringify(crops[k].box) !== JSON.stringify(b.rect)) failures.push(`${at(k)}: box [${crops[k].box.join(', ')}], py-feat's [${b.rect.join(', ')}]`)
    })

    const native = loadNative()
    const run = (data: Uint8Array, stride: number, format: PixelFormat) => {
      const out = new Float32Array(boxes.length * INPUT_FLOATS)
      native.preprocessSync(crops.map((c) => ({ data, width, height, stride, format: PIXEL_FORMATS[format].code, window: c.window })), spec.native.crop, spec.native.resize, out)
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
      if (Buffer.compare(Buffer.from(other.buffer), Buffer.from(got.buffer)) !== 0) failures.push(`${spec.crop} crop, seed ${SEED}: ${frame.name}: ${format} differs from rgb`)
    }
    expect(failures, failures.slice(0, 20).join('\n') + (failures.length > 20 ? `\n... and ${failures.length - 20} more` : '')).toEqual([])
  })
})
