// CPU-backend benchmark: how fast FaceMultitask.detect() is on a 1920x1080 frame, how close it
// comes to a bare onnxruntime-node session.run on the same model (the pipeline's overhead), and
// where the time per face goes (preprocess, infer, decode).
//
//   npm run bench [-- --model <onnx>] [--batches 1,8,32] [--seconds N] [--threads N] [--json]
//
// Everything runs in one process and one measurement at a time: the pipeline's worker and the
// bare session each get every core while they run, and neither is timed while the other works.
// Progress goes to stderr; the table (and with --json, a JSON document after it) to stdout.
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import * as ort from 'onnxruntime-node'
import { INPUT_NAME, INPUT_SIZE, type ModelSpec } from '../lib/contract'
import { type BatchOutputs, decodeFace } from '../lib/decode'
import { FaceMultitask } from '../lib/face-multitask'
import { type FaceJob, facesToRun } from '../lib/image-input'
import { loadNative, nativeAddonPath, packageRoot } from '../lib/native'
import type { Box, ImageInput } from '../lib/types'
import { makeFixtureModel } from './make-fixture'

const FRAME_WIDTH = 1920
const FRAME_HEIGHT = 1080
const FACE_SIDE = 300
const INPUT_FLOATS = 3 * INPUT_SIZE * INPUT_SIZE
const DEFAULT_BATCHES = [1, 8, 32]
/** Seconds each throughput measurement runs; 4 keeps the fixture-only default run near 35 s on 2 cores. */
const DEFAULT_SECONDS = 4
const OVERHEAD_TARGET_PCT = 3
const OVERHEAD_TARGET_BATCH = 8
const PREPROCESS_TARGET_MS = 0.3

const USAGE = `usage: npm run bench [-- --model <onnx>] [--batches 1,8,32] [--seconds N] [--threads N] [--json]

Benchmarks the CPU backend (onnxruntime-node) in this process: faces/s through
FaceMultitask.detect() on a 1920x1080 RGB frame with N ~300 px boxes, against a bare
session.run on the same model, and the time per face of preprocess, infer and decode.
The synthetic fixture model (generation v2.5) is always measured; --model adds a real-size one (e.g. an export with --random-weights).

  --model P      also benchmark this face-multitask ONNX file
  --batches L    comma-separated batch sizes (faces per detect() call), default 1,8,32
  --seconds N    seconds per throughput measurement (after a warm-up), default ${DEFAULT_SECONDS}
  --threads N    onnxruntime intra-op threads, for the pipeline's worker and the bare
                 session alike (default: available cores, as FaceMultitask.load does)
  --json         after the table, print the results as one JSON document
  --help         print this help`

// ---------------------------------------------------------------- arguments

interface BenchOptions {
  model: string | undefined
  batches: number[]
  seconds: number
  threads: number
  json: boolean
}

class UsageError extends Error {}

function positiveInt(flag: string, value: string, max: number): number {
  const n = /^\d+$/.test(value) ? Number(value) : NaN
  if (!(n >= 1 && n <= max)) throw new UsageError(`${flag}: "${value}" is not an integer from 1 to ${max}`)
  return n
}

function parseArgs(argv: string[]): BenchOptions | 'help' {
  // The pipeline's own default (one worker, every available core), passed explicitly to both
  // sides so the bare session is guaranteed to run with the worker's intraOpNumThreads.
  const opts: BenchOptions = { model: undefined, batches: DEFAULT_BATCHES, seconds: DEFAULT_SECONDS, threads: os.availableParallelism(), json: false }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--help' || arg === '-h') return 'help'
    if (arg === '--json') {
      opts.json = true
      continue
    }
    const eq = arg.indexOf('=')
    const flag = eq >= 0 ? arg.slice(0, eq) : arg
    if (!['--model', '--batches', '--seconds', '--threads'].includes(flag)) throw new UsageError(`unknown argument "${arg}"`)
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i]
    if (value === undefined || value === '') throw new UsageError(`${flag}: missing value`)
    if (flag === '--model') opts.model = value
    else if (flag === '--threads') opts.threads = positiveInt(flag, value, 256)
    else if (flag === '--seconds') {
      const s = Number(value)
      if (!(s > 0 && s <= 3600)) throw new UsageError(`--seconds: "${value}" is not a number of seconds in (0, 3600]`)
      opts.seconds = s
    } else {
      // 4096 is FaceMultitask's maxBatch limit; duplicates would only repeat a row.
      opts.batches = [...new Set(value.split(',').map((v) => positiveInt(flag, v.trim(), 4096)))]
    }
  }
  return opts
}

// ---------------------------------------------------------------- machine and inputs

interface MachineInfo {
  cpu: string
  cores: number
  availableParallelism: number
  platform: string
  memoryGiB: number
  node: string
  onnxruntimeNode: string
  addon: string
}

function machineInfo(): MachineInfo {
  const cpus = os.cpus()
  const addon = nativeAddonPath()
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    availableParallelism: os.availableParallelism(),
    platform: `${process.platform}-${process.arch}`,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    // onnxruntime-node records its own version here; its package.json is not importable.
    onnxruntimeNode: (ort.env.versions as Record<string, string | undefined>).node ?? 'unknown',
    addon: addon ? path.relative(packageRoot(), addon) : 'not loaded',
  }
}

/** A deterministic 1920x1080 RGB frame; its content does not change the cost of any stage. */
function makeFrame(): ImageInput {
  const data = new Uint8Array(FRAME_WIDTH * FRAME_HEIGHT * 3)
  for (let i = 0; i < data.length; i++) data[i] = (Math.imul(i, 2654435761) >>> 24) & 0xff
  return { data, width: FRAME_WIDTH, height: FRAME_HEIGHT, format: 'rgb' }
}

/**
 * n face boxes of about 300 px on a grid over the frame. The margin keeps the 1.2x square crop
 * (360 px) inside the frame, so the timing is for ordinary faces rather than padded edge ones.
 */
function makeBoxes(n: number): Box[] {
  const margin = (FACE_SIDE * 1.2) / 2
  const cols = Math.ceil(Math.sqrt((n * FRAME_WIDTH) / FRAME_HEIGHT))
  const rows = Math.ceil(n / cols)
  return Array.from({ length: n }, (_, i) => {
    const cx = margin + ((FRAME_WIDTH - 2 * margin) * ((i % cols) + 0.5)) / cols
    const cy = margin + ((FRAME_HEIGHT - 2 * margin) * (Math.floor(i / cols) + 0.5)) / rows
    const side = FACE_SIDE - 20 + ((i * 37) % 41) // 280..320, varied so no two crops are identical
    return [cx - side / 2 - 10, cy - side / 2 + 10, cx + side / 2 - 10, cy + side / 2 + 10] as Box
  })
}

function progress(line: string): void {
  process.stderr.write(`[bench] ${line}\n`)
}

// ---------------------------------------------------------------- timing

interface Budget {
  /** Seconds of untimed runs first (JIT, ORT's first-run allocations, caches), at least minWarm runs. */
  warmSeconds: number
  minWarm: number
  /** Seconds of timed runs, at least minRuns runs (so a slow real model still gets a mean). */
  seconds: number
  minRuns: number
}

interface Timing {
  runs: number
  faces: number
  seconds: number
}

/** Runs `once` (which returns the faces it did) for the warm-up, then for the timed budget. */
async function timeLoop(once: () => Promise<number> | number, b: Budget): Promise<Timing> {
  let start = performance.now()
  for (let n = 0; n < b.minWarm || performance.now() - start < b.warmSeconds * 1000; n++) await once()
  let runs = 0
  let faces = 0
  start = performance.now()
  let elapsed = 0
  while (runs < b.minRuns || elapsed < b.seconds * 1000) {
    faces += await once()
    runs++
    elapsed = performance.now() - start
  }
  return { runs, faces, seconds: elapsed / 1000 }
}

/** Like timeLoop, but only the time inside `timed` counts: `untimed` prepares each run. */
function timeSplit<T>(untimed: () => T, timed: (prepared: T) => number, b: Budget): Timing {
  for (let n = 0; n < b.minWarm; n++) timed(untimed())
  let runs = 0
  let faces = 0
  let inside = 0
  const wall = performance.now()
  while (runs < b.minRuns || performance.now() - wall < b.seconds * 1000) {
    const prepared = untimed()
    const t0 = performance.now()
    faces += timed(prepared)
    inside += performance.now() - t0
    runs++
  }
  return { runs, faces, seconds: inside / 1000 }
}

// ---------------------------------------------------------------- the measurements

/** The session options of lib/backends/onnxruntime-worker.ts, so bare and pipeline run the same graph the same way. */
function sessionOptions(threads: number): ort.InferenceSession.SessionOptions {
  return { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' }
}

/** The native crop/resize flags the CPU backend derives from the model's metadata. */
function nativeModes(spec: ModelSpec): { crop: 0 | 1; resize: 0 | 1 } {
  return { crop: spec.crop === 'square' ? 1 : 0, resize: spec.resize === 'antialias_bilinear' ? 1 : 0 }
}

/** The face jobs detect() makes for these boxes: same crops, so the stages do the pipeline's work. */
function faceJobs(spec: ModelSpec, frame: ImageInput, boxes: Box[]): FaceJob[] {
  return facesToRun(frame, { boxes }, spec.crop).perImage[0]
}

/**
 * Faces/s through the whole public path: checks, crop maths, native preprocess, worker, decode.
 * Two detect() calls of `boxes.length` faces stay in flight, as a busy caller keeps them, so the
 * next batch is preprocessed while the current one infers; maxBatch = the batch size keeps every
 * batch the size the bare session runs.
 */
async function measurePipeline(file: string, threads: number, frame: ImageInput, boxes: Box[], b: Budget): Promise<Timing> {
  const model = await FaceMultitask.load({ model: file, backend: 'cpu', maxBatch: boxes.length, workers: 1, threads })
  try {
    const stream = async (until: number): Promise<{ runs: number; faces: number }> => {
      let runs = 0
      let faces = 0
      while (runs < b.minRuns || performance.now() < until) {
        faces += (await model.detect(frame, { boxes })).length
        runs++
      }
      return { runs, faces }
    }
    const warmUntil = performance.now() + b.warmSeconds * 1000
    await Promise.all([stream(warmUntil), stream(warmUntil)])
    const start = performance.now()
    const until = start + b.seconds * 1000
    const parts = await Promise.all([stream(until), stream(until)])
    return { runs: parts[0].runs + parts[1].runs, faces: parts[0].faces + parts[1].faces, seconds: (performance.now() - start) / 1000 }
  } finally {
    await model.close()
  }
}

/** Faces/s of session.run alone on a tensor made once: the ceiling the pipeline is measured against. */
async function measureBare(session: ort.InferenceSession, input: ort.Tensor, batch: number, b: Budget): Promise<{ timing: Timing; outputs: BatchOutputs }> {
  let last: ort.InferenceSession.ReturnType | undefined
  const timing = await timeLoop(async () => {
    last = await session.run({ [INPUT_NAME]: input })
    return batch
  }, b)
  const outputs: BatchOutputs = {}
  for (const [name, t] of Object.entries(last!)) outputs[name] = t.data as Float32Array
  return { timing, outputs }
}

/** preprocessSync keeps the work on this one thread, so ms/face is a single-core cost. */
function measurePreprocess(jobs: FaceJob[], spec: ModelSpec, out: Float32Array, b: Budget): Timing {
  const { crop, resize } = nativeModes(spec)
  const native = loadNative()
  return timeSplit(() => undefined, () => {
    native.preprocessSync(jobs, crop, resize, out)
    return jobs.length
  }, b)
}

/** decodeFace rewrites the mesh and emotions in place, so each run decodes fresh copies (copying is not timed). */
function measureDecode(spec: ModelSpec, outputs: BatchOutputs, jobs: FaceJob[], b: Budget): Timing {
  const copy = (): BatchOutputs => Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, v.slice()]))
  return timeSplit(copy, (fresh) => {
    for (let i = 0; i < jobs.length; i++) decodeFace(spec, fresh, i, jobs[i].box)
    return jobs.length
  }, b)
}

// ---------------------------------------------------------------- per model

interface BatchRow {
  batch: number
  pipelineFacesPerSec: number
  bareFacesPerSec: number
  /** pipeline faces/s / bare faces/s. */
  ratio: number
  /** Extra time per face the pipeline spends over bare session.run, in % of the bare time. */
  overheadPct: number
  preprocessMsPerFace: number
  inferMsPerFace: number
  decodeMsPerFace: number
  pipelineRuns: number
  bareRuns: number
}

interface ModelResult {
  name: string
  file: string
  generation: string
  synthetic: boolean
  crop: string
  resize: string
  device: string
  rows: BatchRow[]
}

const facesPerSec = (t: Timing) => t.faces / t.seconds
const msPerFace = (t: Timing) => (t.seconds * 1000) / t.faces

async function benchBatch(model: FaceMultitask, file: string, session: ort.InferenceSession, frame: ImageInput, batch: number, opts: BenchOptions): Promise<BatchRow> {
  const spec = model.spec
  const boxes = makeBoxes(batch)
  const jobs = faceJobs(spec, frame, boxes)
  const main: Budget = { warmSeconds: Math.min(1, opts.seconds * 0.2), minWarm: 2, seconds: opts.seconds, minRuns: 3 }
  const stage: Budget = { warmSeconds: 0, minWarm: 1, seconds: Math.max(0.25, opts.seconds * 0.2), minRuns: 3 }

  progress(`  batch ${batch}: pipeline detect() for ~${opts.seconds} s`)
  const pipe = await measurePipeline(file, opts.threads, frame, boxes, main)

  // The bare tensor holds real preprocessed faces, made once outside the timing.
  const input = new Float32Array(batch * INPUT_FLOATS)
  progress(`  batch ${batch}: native preprocessSync (1 thread)`)
  const pre = measurePreprocess(jobs, spec, input, stage)

  progress(`  batch ${batch}: bare session.run for ~${opts.seconds} s`)
  const tensor = new ort.Tensor('float32', input, [batch, 3, INPUT_SIZE, INPUT_SIZE])
  const bare = await measureBare(session, tensor, batch, main)

  progress(`  batch ${batch}: decodeFace`)
  const dec = measureDecode(spec, bare.outputs, jobs, stage)

  const ratio = facesPerSec(pipe) / facesPerSec(bare.timing)
  return {
    batch,
    pipelineFacesPerSec: facesPerSec(pipe),
    bareFacesPerSec: facesPerSec(bare.timing),
    ratio,
    overheadPct: (1 / ratio - 1) * 100,
    preprocessMsPerFace: msPerFace(pre),
    inferMsPerFace: msPerFace(bare.timing),
    decodeMsPerFace: msPerFace(dec),
    pipelineRuns: pipe.runs,
    bareRuns: bare.timing.runs,
  }
}

async function benchModel(name: string, file: string, frame: ImageInput, opts: BenchOptions): Promise<ModelResult> {
  progress(`${name}: loading (${opts.threads} intra-op thread${opts.threads > 1 ? 's' : ''})`)
  const maxBatch = Math.max(...opts.batches)
  const model = await FaceMultitask.load({ model: file, backend: 'cpu', maxBatch, workers: 1, threads: opts.threads })
  // Both sessions stay loaded for the whole model: only one of them is ever running, and an idle
  // ORT pool sleeps, so the two do not compete for the cores.
  const session = await ort.InferenceSession.create(file, sessionOptions(opts.threads))
  try {
    const rows: BatchRow[] = []
    for (const batch of opts.batches) rows.push(await benchBatch(model, file, session, frame, batch, opts))
    const { spec } = model
    return { name, file, generation: spec.generation, synthetic: spec.synthetic, crop: spec.crop, resize: spec.resize, device: model.info().device, rows }
  } finally {
    await session.release()
    await model.close()
  }
}

// ---------------------------------------------------------------- report

function fmtRate(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)
}

function fmtMs(v: number): string {
  return v >= 10 ? v.toFixed(1) : v >= 0.01 ? v.toFixed(3) : v.toFixed(4)
}

/** Plain-text table: first column left-aligned, numbers right-aligned. */
function textTable(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)))
  const line = (cells: string[]) => cells.map((s, c) => (c === 0 ? s.padEnd(widths[c]) : s.padStart(widths[c]))).join('  ').trimEnd()
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)]
}

/** The batch the preprocess headline quotes: the overhead target's batch when measured, else the largest. */
function headlineRow(rows: BatchRow[]): BatchRow {
  return rows.find((r) => r.batch === OVERHEAD_TARGET_BATCH) ?? rows.reduce((a, r) => (r.batch > a.batch ? r : a))
}

function verdict(ok: boolean): string {
  return ok ? 'met' : 'NOT met'
}

function report(machine: MachineInfo, opts: BenchOptions, results: ModelResult[]): string[] {
  const lines = [
    'face-multitask CPU benchmark (onnxruntime backend)',
    `machine: ${machine.cpu}, ${machine.cores} cores (available parallelism ${machine.availableParallelism}), ${machine.platform}, ${machine.memoryGiB} GiB`,
    `software: Node.js ${machine.node}, onnxruntime-node ${machine.onnxruntimeNode}, addon ${machine.addon}`,
    `settings: ${FRAME_WIDTH}x${FRAME_HEIGHT} RGB frame, ~${FACE_SIDE} px boxes, ${opts.threads} intra-op thread(s) for pipeline worker and bare session, ${opts.seconds} s per measurement`,
    '',
  ]
  const header = ['model', 'batch', 'pipeline f/s', 'bare f/s', 'ratio', 'overhead', 'preprocess ms/f', 'infer ms/f', 'decode ms/f']
  const rows = results.flatMap((m) => m.rows.map((r) => [
    m.name, String(r.batch), fmtRate(r.pipelineFacesPerSec), fmtRate(r.bareFacesPerSec), r.ratio.toFixed(3),
    `${r.overheadPct.toFixed(1)}%`, fmtMs(r.preprocessMsPerFace), fmtMs(r.inferMsPerFace), fmtMs(r.decodeMsPerFace),
  ]))
  lines.push(...textTable(header, rows), '')
  for (const m of results) {
    const h = headlineRow(m.rows)
    lines.push(`${m.name} (${m.generation}, crop ${m.crop}, resize ${m.resize}, ${m.device}):`)
    lines.push(`  preprocess ms/face, 1 core, ${FRAME_WIDTH}x${FRAME_HEIGHT} RGB: ${fmtMs(h.preprocessMsPerFace)} ms (batch ${h.batch}; target <= ${PREPROCESS_TARGET_MS} ms: ${verdict(h.preprocessMsPerFace <= PREPROCESS_TARGET_MS)})`)
    const at = m.rows.find((r) => r.batch === OVERHEAD_TARGET_BATCH)
    if (at) {
      const note = m.name === 'fixture' ? ' [tiny fixture: see note 2]' : ''
      lines.push(`  pipeline overhead at batch ${OVERHEAD_TARGET_BATCH}: ${at.overheadPct.toFixed(1)}% (target <= ${OVERHEAD_TARGET_PCT}%: ${verdict(at.overheadPct <= OVERHEAD_TARGET_PCT)})${note}`)
    }
  }
  lines.push(
    '',
    'f/s = faces per second; ms/f = milliseconds per face.',
    '1. pipeline: FaceMultitask.detect() calls on one frame with <batch> boxes, two in flight (one batch each: native preprocess',
    '   on libuv\'s pool, session.run in the worker thread, decode). bare: session.run on the main thread on a tensor',
    '   made once, same session options. ratio = pipeline f/s / bare f/s; overhead = pipeline time / bare time - 1,',
    '   i.e. the extra time per face. The two are timed one after the other, never at the same time.',
    '2. With the tiny synthetic fixture, inference costs almost nothing, so the fixed per-batch costs (preprocess,',
    '   the worker round trip, decode) dominate and the ratio says little: it is meaningful only with a real-size',
    '   model passed by --model.',
    '3. preprocess: native preprocessSync on one thread (crop + resize + normalise from the 1920x1080 frame);',
    '   infer: bare session.run time / faces; decode: decodeFace over a batch\'s outputs (on copies), main thread.',
  )
  return lines
}

// ---------------------------------------------------------------- main

/** Writes the fixture to a temp folder (the pipeline and the bare session both load from a path). */
async function writeFixture(dir: string): Promise<string> {
  const file = path.join(dir, 'fixture-v2.5.onnx')
  await writeFile(file, makeFixtureModel({ generation: 'v2.5' }))
  return file
}

async function run(opts: BenchOptions): Promise<void> {
  loadNative() // fail first, with the addon's own instructions, before any model loads
  // A mistyped --model should fail now, not after the fixture's half minute of measuring.
  if (opts.model) await access(opts.model).catch(() => { throw new Error(`--model: cannot read "${path.resolve(opts.model!)}"`) })
  const machine = machineInfo()
  progress(`${machine.cpu}, ${machine.cores} cores, Node.js ${machine.node}, onnxruntime-node ${machine.onnxruntimeNode}`)
  const frame = makeFrame()
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fm-bench-'))
  const started = performance.now()
  try {
    const models: [string, string][] = [['fixture', await writeFixture(dir)]]
    if (opts.model) models.push([path.basename(opts.model), path.resolve(opts.model)])
    const results: ModelResult[] = []
    for (const [name, file] of models) results.push(await benchModel(name, file, frame, opts))
    progress(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`)
    const out = report(machine, opts, results)
    if (opts.json) {
      out.push('', JSON.stringify({ machine, settings: { frame: [FRAME_WIDTH, FRAME_HEIGHT], faceSide: FACE_SIDE, threads: opts.threads, seconds: opts.seconds, batches: opts.batches }, targets: { overheadPct: OVERHEAD_TARGET_PCT, overheadBatch: OVERHEAD_TARGET_BATCH, preprocessMsPerFace: PREPROCESS_TARGET_MS }, models: results }, null, 2))
    }
    process.stdout.write(`${out.join('\n')}\n`)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** The CLI; returns the exit code (0 ok, 1 failed, 2 bad arguments). */
export async function main(argv: string[]): Promise<number> {
  let opts: BenchOptions | 'help'
  try {
    opts = parseArgs(argv)
  } catch (e) {
    if (!(e instanceof UsageError)) throw e
    process.stderr.write(`bench: ${e.message}\n(run with --help for usage)\n`)
    return 2
  }
  if (opts === 'help') {
    process.stdout.write(`${USAGE}\n`)
    return 0
  }
  try {
    await run(opts)
    return 0
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n`)
    return 1
  }
}

if (typeof require !== 'undefined' && typeof module !== 'undefined' && require.main === module) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (e) => {
    console.error(e)
    process.exitCode = 1
  })
}
