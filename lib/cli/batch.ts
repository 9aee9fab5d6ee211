// `face-multitask batch <list.jsonl> --model <onnx> --out <results.jsonl>`: many images, one JSON
// line of results per list line. Images are decoded and run `--concurrency` at a time, so the
// model's scheduler batches faces across them; results are written in list order as they come
// (result-log.ts), and a rerun of the same command goes on where the last one stopped.
//
// What fails for one line (bad JSON, an unreadable image, a box outside it) is written as that
// line's error and the run goes on. What fails in the model itself (an inference error, a lost
// GPU) stops the run: every line done so far is kept, and a rerun redoes only the rest.
import fs from 'node:fs'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileErrorReason } from '../describe'
import { describeHolder, FileLock } from '../engine-cache/file-lock'
import { hashFile } from '../engine-cache/key'
import type { FaceMultitask } from '../face-multitask'
import { facesToRun } from '../image-input'
import type { Box, ImageInput } from '../types'
import { CliError, type Io, UsageError, checkReadableFile, messageOf, parseCommand } from './common'
import { faceToJson } from './format'
import { readImage } from './image'
import { syntheticWarning } from './notices'
import { readLines } from './lines'
import { type BatchHeader, ResultLog } from './result-log'
import { CLI_BACKENDS, type CliBackend, loadModel } from './run-model'

interface BatchArgs {
  list: string
  model: string
  out: string
  backend: CliBackend
  concurrency: number
  mesh: boolean
}

const MAX_CONCURRENCY = 4096

function batchArgs(argv: string[]): BatchArgs {
  const { values, positionals } = parseCommand(argv, {
    model: { type: 'string' },
    out: { type: 'string' },
    backend: { type: 'string' },
    concurrency: { type: 'string' },
    'no-mesh': { type: 'boolean' },
  })
  if (positionals.length !== 1) {
    throw new UsageError(positionals.length === 0 ? '<list>: missing the list file (JSON lines: {"image": "a.jpg", "boxes": [[x1, y1, x2, y2]]})' : `<list>: one list file, got ${positionals.length} (${positionals.join(', ')})`)
  }
  if (!values.model) throw new UsageError('--model is required: the ONNX file to run (made by `face-multitask export`)')
  if (!values.out) throw new UsageError('--out is required: the results file (JSON lines; a rerun with the same --out goes on where the last run stopped)')
  const backend = values.backend ?? 'auto'
  if (!(CLI_BACKENDS as readonly string[]).includes(backend)) throw new UsageError(`--backend must be one of ${CLI_BACKENDS.join(', ')}, got "${backend}"`)
  const concurrency = values.concurrency === undefined ? 32 : Number(values.concurrency)
  if (!/^\d+$/.test(values.concurrency ?? '32') || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
    throw new UsageError(`--concurrency must be an integer from 1 to ${MAX_CONCURRENCY}, got "${values.concurrency}"`)
  }
  return { list: positionals[0], model: values.model, out: values.out, backend: backend as CliBackend, concurrency, mesh: !values['no-mesh'] }
}

interface Entry {
  id?: string | number
  image: string
  boxes?: Box[]
}

/** A list line: {"image": path (relative to the list's folder), "boxes"?: [[x1, y1, x2, y2], ...], "id"?: string | number}. */
function parseEntry(text: string): Entry {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (e) {
    throw new LineError(`not JSON: ${messageOf(e)}`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new LineError('must be an object {"image": "...", "boxes"?: [...], "id"?: ...}')
  const { image, boxes, id, ...rest } = v as Record<string, unknown>
  if (typeof image !== 'string' || image === '') throw new LineError('"image" must be the path of an image file')
  // From here on the record names the image, as every line's record does once its image is known.
  const unknown = Object.keys(rest)
  if (unknown.length > 0) throw new LineError(`unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')} (the keys are image, boxes and id)`, image)
  if (id !== undefined && typeof id !== 'string' && typeof id !== 'number') throw new LineError('"id" must be a string or a number', image)
  if (boxes !== undefined && !Array.isArray(boxes)) throw new LineError('"boxes" must be an array of [x1, y1, x2, y2] boxes', image)
  return { image, boxes: boxes as Box[] | undefined, ...(id !== undefined ? { id } : {}) }
}

/** Something wrong with one list line or its image: written as that line's error. */
class LineError extends Error {
  constructor(message: string, readonly image?: string) {
    super(message)
  }
}

/** The non-blank lines of the list, for the progress line's total (undefined: stopped by Ctrl-C). */
async function countEntries(file: string, stopping: () => boolean): Promise<number | undefined> {
  let n = 0
  for await (const text of readLines(file)) {
    if (stopping()) return undefined
    if (text.trim() !== '') n++
  }
  return n
}

async function header(args: BatchArgs): Promise<BatchHeader> {
  await checkReadableFile(args.model, '--model')
  const list = fs.realpathSync(args.list)  // a rerun through a symlink or another relative path names the same list
  const listBytes = fs.statSync(list).size
  return {
    faceMultitaskBatch: 1,
    list,
    listBytes,
    listSha256: await hashFile(list, undefined, listBytes),  // the bytes counted, even if it grows meanwhile
    outFromList: path.relative(path.dirname(list), realOut(args.out)),
    model: path.resolve(args.model),
    modelSha256: await hashFile(args.model),
    mesh: args.mesh,
  }
}

/**
 * One list line's result record: its faces, or why it has none. What is wrong with the line
 * (its JSON, its image file, its boxes, all checked before the model runs) is recorded and the
 * run goes on; whatever detect() then throws is the model's, and stops the run (rethrown).
 */
async function runEntry(model: FaceMultitask, line: number, text: string, listDir: string, mesh: boolean): Promise<object> {
  let entry: Entry | undefined
  let image: ImageInput
  try {
    entry = parseEntry(text)
    image = await readImage(path.resolve(listDir, entry.image))
    facesToRun(image, entry.boxes ? { boxes: entry.boxes } : undefined, model.spec.crop)  // throws what detect() would
  } catch (e) {
    if (!(e instanceof LineError || e instanceof CliError || e instanceof TypeError || e instanceof RangeError)) throw e
    const message = messageOf(e).replace(/^options\.boxes/, 'boxes').replace(/: image is (\d+x\d+)/, ': the image is $1')
    const named = entry?.image ?? (e instanceof LineError ? e.image : undefined)
    return { line, ...idOf(entry), ...(named !== undefined ? { image: named } : {}), error: message }
  }
  let faces
  try {
    faces = await model.detect(image, entry.boxes ? { boxes: entry.boxes } : undefined)
  } catch (e) {
    // Stops the run: say which line met it, so a long list's culprit can be found.
    throw new Error(`line ${line} (${entry.image}): ${messageOf(e)}`, { cause: e })
  }
  // Without the mesh a face's record is about 7 KB instead of 34: it matters over millions of faces.
  const json = faces.map(faceToJson)
  if (!mesh) for (const f of json) delete (f as Partial<typeof f>).mesh
  return { line, ...idOf(entry), image: entry.image, faces: json }
}

function idOf(entry: Entry | undefined): { id?: string | number } {
  return entry?.id !== undefined ? { id: entry.id } : {}
}

class Progress {
  private readonly t0 = performance.now()
  ran = 0  // lines written this run
  faces = 0
  errors = 0
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly io: Io, private readonly total: number, private readonly before: number) {}

  start(): void {
    const tty = Boolean(process.stderr.isTTY)
    this.timer = setInterval(() => {
      if (tty) process.stderr.write(`\r${this.line()}\x1b[K`)
      else this.io.err(this.line())
    }, tty ? 1000 : 10_000)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    if (process.stderr.isTTY) process.stderr.write('\r\x1b[K')
  }

  line(): string {
    const done = this.before + this.ran
    const s = (performance.now() - this.t0) / 1000
    const rate = this.ran / Math.max(s, 1e-3)
    const eta = rate > 0 ? ` · ETA ${formatSeconds((this.total - done) / rate)}` : ''
    const pct = this.total > 0 ? ` (${((100 * done) / this.total).toFixed(1)}%)` : ''
    return `batch: ${done}/${this.total} lines${pct} · ${this.faces} faces · ${this.errors} errors · ${rate.toFixed(1)} lines/s${eta}`
  }

  summary(out: string): string {
    const s = (performance.now() - this.t0) / 1000
    return `batch: ${this.ran} lines this run (${this.faces} faces, ${this.errors} with errors) in ${formatSeconds(s)}, ` +
      `${(this.ran / Math.max(s, 1e-3)).toFixed(1)} lines/s; ${this.before + this.ran}/${this.total} lines in ${out}`
  }
}

function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(1)} s`
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`
}

/** --out with symlinks resolved (its folder's, when the file does not exist yet). */
function realOut(out: string): string {
  try {
    return fs.realpathSync(out)
  } catch {
    try {
      return path.join(fs.realpathSync(path.dirname(out)), path.basename(out))
    } catch {
      return out  // a folder that does not exist: the lock's creation says so
    }
  }
}

export async function batchCommand(argv: string[], io: Io): Promise<number> {
  const args = batchArgs(argv)
  await checkReadableFile(args.list, '<list>')
  // The results file first: a wrong --out shows before a model load that may build an engine for minutes.
  // Two runs appending to one file would write lines twice: the second is refused (a lock left
  // by a run that died is taken over).
  // Named after the file itself: two paths to it (a symlink) share one lock.
  const lock = await FileLock.acquire(`${realOut(args.out)}.lock`, {
    what: `face-multitask batch ${args.list}`,
    onWait: (holder) => { throw new CliError(`--out: "${args.out}" is being written by another batch run (${describeHolder(holder)}): one run per results file`) },
  }).catch((e: unknown) => {
    throw e instanceof CliError ? e : new CliError(`--out: cannot write "${args.out}.lock" beside the results: ${fileErrorReason(e)}`)
  })
  let opened
  try {
    opened = await ResultLog.open(args.out, await header(args))
  } catch (e) {
    await lock.release()
    throw e
  }
  const { log, done, notes } = opened
  let model: FaceMultitask | undefined
  let stopping = false
  const loading = new AbortController()
  // A second Ctrl-C ends the process as Ctrl-C does without a handler: by the signal, at once
  // (process.exit() would run exit handlers while native threads still work, and can abort).
  // Every line written stays; a lock left behind is taken over by the next run.
  const quit = () => process.kill(process.pid, 'SIGINT')
  const onSigint = () => {
    stopping = true
    loading.abort()
    io.err('batch: interrupted: finishing the images in flight, then stopping (Ctrl-C again to quit at once)')
    process.once('SIGINT', quit)
  }
  process.once('SIGINT', onSigint)
  const syncTimer = setInterval(() => log.sync(), 5000).unref()
  try {
    for (const n of notes) io.err(`batch: ${n}`)
    const total = await countEntries(args.list, () => stopping)
    if (total === undefined) {
      io.err('batch: stopped before anything ran')
      return 130
    }
    if (done.size > 0 && done.size >= total) {
      io.err(`batch: all ${total} lines already have results in ${args.out}: nothing left to run`)
      return 0
    }
    if (done.size > 0) io.err(`batch: ${done.size} of ${total} lines already have results in ${args.out}: going on with the rest`)
    try {
      model = await loadModel(args.model, args.backend, loading.signal)
    } catch (e) {
      if (!stopping) throw e
      io.err('batch: stopped before the model was loaded; nothing ran')
      return 130
    }
    if (model.info().synthetic) io.err(syntheticWarning(args.model))
    const progress = new Progress(io, total, done.size)
    progress.start()
    let fatal: unknown
    try {
      fatal = await runList(args, model, done, log, progress, () => stopping)
    } finally {
      progress.stop()
    }
    io.err(progress.summary(args.out))
    if (fatal !== undefined) {
      throw new CliError(`${messageOf(fatal)}; stopped: the results so far are in ${args.out}, and the same command goes on from there`)
    }
    // Ctrl-C while the last images finished: every line has its result, as without it.
    if (stopping && done.size + progress.ran < total) {
      io.err(`batch: stopped; the same command goes on from where this run stopped`)
      return 130
    }
    return 0
  } finally {
    clearInterval(syncTimer)
    process.removeListener('SIGINT', onSigint)
    process.removeListener('SIGINT', quit)
    log.close()
    await model?.close()
    await lock.release()
  }
}

/**
 * Runs every list line not yet done, `concurrency` at a time, writing results in list order.
 * Returns the model's error that stopped the run, if one did.
 */
async function runList(args: BatchArgs, model: FaceMultitask, done: Set<number>, log: ResultLog, progress: Progress, stopping: () => boolean): Promise<unknown> {
  const listDir = path.dirname(path.resolve(args.list))
  const order: { record?: object | null }[] = []  // started, in list order; null: no result (the run stops)
  let running = 0
  let fatal: unknown
  let wake: (() => void) | undefined
  // Writes the results at the head of `order`. It stops at a line the model failed, so the file
  // stays in list order: the lines behind it are done again by the next run, as it is.
  let writeFailed = false
  const flush = () => {
    while (!writeFailed && order.length > 0 && order[0].record) {
      const record = order[0].record as { faces?: unknown[] }
      try {
        log.write(record)
      } catch (e) {
        writeFailed = true
        fatal ??= new Error(`cannot write ${args.out}: ${fileErrorReason(e)}`)
        break
      }
      order.shift()
      progress.ran++
      if (record.faces) progress.faces += record.faces.length
      else progress.errors++
    }
  }
  let line = 0
  for await (const text of readLines(args.list)) {
    line++
    if (fatal !== undefined || stopping()) break
    if (text.trim() === '' || done.has(line)) continue
    // Results wait in `order` until the lines before them are written: behind one slow image,
    // at most 4 x concurrency of them, so memory stays bounded.
    // A failed line at the head never leaves: stop waiting then (nothing else would wake this).
    while ((running >= args.concurrency || order.length >= 4 * args.concurrency) && fatal === undefined) await new Promise<void>((r) => { wake = r })
    if (fatal !== undefined || stopping()) break
    const slot: { record?: object | null } = {}
    order.push(slot)
    running++
    void runEntry(model, line, text, listDir, args.mesh).then(
      (record) => {
        slot.record = record
      },
      (e: unknown) => {
        fatal ??= e
        slot.record = null
      },
    ).finally(() => {
      running--
      flush()
      wake?.()
      wake = undefined
    })
  }
  while (running > 0) await new Promise<void>((r) => { wake = r })
  return fatal
}
