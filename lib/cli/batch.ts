// `face-multitask batch <list.jsonl> --model <onnx> --out <results.jsonl>`: many images, one JSON
// line of results per list line. Images are decoded and run `--concurrency` at a time, so the
// model's scheduler batches faces across them; images are read and face records written as JSON
// on threads of their own (batch-threads.ts), records go into the results file in list order as
// they come (result-log.ts), and a rerun of the same command goes on where the last one stopped.
//
// What fails for one line (bad JSON, an unreadable image, a box outside it, NaN from the model for
// its faces) is written as that line's error and the run goes on. What fails in the model itself
// (an inference error, a lost GPU), or in the system reading an image (out of file handles, EIO,
// a sharp that cannot load), stops the run: every line done so far is kept, and a rerun redoes
// only the rest.
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { fileErrorReason, isPassingFileError } from '../describe'
import { NonFiniteOutputError } from '../decode'
import { describeHolder, FileLock } from '../engine-cache/file-lock'
import { hashExternalData, hashFile } from '../engine-cache/key'
import type { FaceMultitask } from '../face-multitask'
import { MAX_THREADS, MAX_WORKERS } from '../gpu-options'
import { facesToRun } from '../image-input'
import { readOnnxModel } from '../onnx-model'
import type { DecodedImage } from '../read-image'
import type { Box, LoadOptions } from '../types'
import { batchThreads, BatchThreads } from './batch-threads'
import { CliError, type Io, UsageError, checkReadableFile, messageOf, parseCommand } from './common'
import { ENGINE_FLAGS, type EngineOptions, engineOptions, flagNames, intFlag } from './engine-flags'
import type { LineSet } from './line-set'
import { completeBytesIn, type FileId, readLines, readStream } from './lines'
import { syntheticWarning } from './notices'
import { type BatchHeader, jsonLine, notRegular, type OpenedLog, ResultLog } from './result-log'
import { backendFlag, type CliBackend, loadModel } from './run-model'

interface BatchArgs {
  list: string
  model: string
  out: string
  backend: CliBackend
  /** The engine flags, and --workers / --threads / --no-spin-wait (the CPU's sessions). */
  engine: EngineOptions & Pick<LoadOptions, 'workers' | 'threads' | 'spinWait'>
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
    workers: { type: 'string' },
    threads: { type: 'string' },
    'no-spin-wait': { type: 'boolean' },
    ...ENGINE_FLAGS,
  })
  if (positionals.length !== 1) {
    throw new UsageError(positionals.length === 0 ? '<list>: missing the list file (JSON lines: {"image": "a.jpg", "boxes": [[x1, y1, x2, y2]]})' : `<list>: one list file, got ${positionals.length} (${positionals.join(', ')})`)
  }
  if (!values.model) throw new UsageError('--model is required: the ONNX file to run (made by `face-multitask export`)')
  if (!values.out) throw new UsageError('--out is required: the results file (JSON lines; a rerun with the same --out goes on where the last run stopped)')
  if (values.out === '-') throw new UsageError('--out: "-" (stdout) cannot hold the results: batch writes them to a file, which a rerun with the same --out goes on from')
  const backend = backendFlag(values.backend)
  const concurrency = intFlag(values.concurrency, 'concurrency', MAX_CONCURRENCY) ?? 32
  const workers = intFlag(values.workers, 'workers', MAX_WORKERS)
  const threads = intFlag(values.threads, 'threads', MAX_THREADS)
  const engine = {
    ...engineOptions(values), ...(workers !== undefined ? { workers } : {}), ...(threads !== undefined ? { threads } : {}),
    ...(values['no-spin-wait'] ? { spinWait: false } : {}),
  }
  return { list: positionals[0], model: values.model, out: values.out, backend, engine, concurrency, mesh: !values['no-mesh'] }
}

interface Entry {
  id?: string | number
  image: string
  boxes?: Box[]
}

/** A list line: {"image": path (relative to the list file's real folder), "boxes"?: [[x1, y1, x2, y2], ...], "id"?: string | number}. */
function parseEntry(text: string): Entry {
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (e) {
    throw new LineError(`not JSON: ${messageOf(e)}`)
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new LineError('must be an object {"image": "...", "boxes"?: [...], "id"?: ...}')
  const { image, boxes, id, ...rest } = v as Record<string, unknown>
  // JSON.parse rounds a number to a double: 12345678901234567890 would come back as ...7000, and
  // two ids could become one; 1e400 as Infinity, written as null. (A fraction such as 1.5 is kept.)
  const keptAsWritten = (n: number) => Number.isFinite(n) && (!Number.isInteger(n) || Number.isSafeInteger(n))
  // The record of a line refused carries what is valid of its id and image.
  const known = {
    ...(typeof id === 'string' || (typeof id === 'number' && keptAsWritten(id)) ? { id } : {}),
    ...(typeof image === 'string' && image !== '' ? { image } : {}),
  }
  if (id !== undefined && typeof id !== 'string' && typeof id !== 'number') throw new LineError('"id" must be a string or a number', known)
  if (typeof id === 'number' && !keptAsWritten(id)) {
    const digits = /"id"\s*:\s*(-?\d[\d.eE+-]*)/.exec(text)?.[1] ?? String(id)
    const what = Number.isFinite(id) ? `an integer over ${Number.MAX_SAFE_INTEGER} in size` : 'beyond the range of a number'
    throw new LineError(`"id" ${digits} is ${what}, which would not be kept as written: give it as a string ("id": "${digits}")`, known)
  }
  if (known.image === undefined) throw new LineError('"image" must be the path of an image file', known)
  const unknown = Object.keys(rest)
  if (unknown.length > 0) throw new LineError(`unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')} (the keys are image, boxes and id)`, known)
  if (boxes !== undefined && !Array.isArray(boxes)) throw new LineError('"boxes" must be an array of [x1, y1, x2, y2] boxes', known)
  return { image: known.image, boxes: boxes as Box[] | undefined, ...('id' in known ? { id: known.id } : {}) }
}

/** Something wrong with one list line or its image: written as that line's error, with what is known of the line. */
class LineError extends Error {
  constructor(message: string, readonly known: { id?: string | number; image?: string } = {}) {
    super(message)
  }
}

/**
 * The part of the list this run reads: its bytes when the run began (lines added meanwhile are
 * the next run's), less a last line still being written. A line is whole once it has its line
 * ending, or without one when it is JSON (a list written by hand often lacks the last newline);
 * a last line without one that is not JSON yet may be half-written by a program appending to
 * the list: recorded now, its error would stand for the whole line once it is written.
 */
interface ListSnapshot {
  /** The list's real path: a rerun through a symlink or another relative path names the same list,
   * and its relative image paths start from this file's folder. */
  file: string
  /** The file read when the run began: a list replaced meanwhile (an editor or a script writing
   * a new file in its place) stops the run rather than be read under the first one's hash. */
  id: FileId
  bytes: number
  /** Whether a last line was left out as still being written. */
  unfinished: boolean
}

function listSnapshot(list: string): ListSnapshot {
  const file = fs.realpathSync(list)
  const fd = fs.openSync(file, 'r')
  let st: fs.Stats
  let last = ''
  let complete: number
  try {
    st = fs.fstatSync(fd)
    complete = completeBytesIn(fd, st.size)
    if (complete < st.size) last = lastLine(fd, complete, st.size)
  } finally {
    fs.closeSync(fd)
  }
  const id = { dev: st.dev, ino: st.ino }
  if (complete === st.size) return { file, id, bytes: st.size, unfinished: false }
  if (last.trim() === '') return { file, id, bytes: complete, unfinished: false }  // no line yet
  try {
    JSON.parse(last)
  } catch {
    return { file, id, bytes: complete, unfinished: true }
  }
  // Whole, but a \r at its end is half a \r\n: left out, the \n added next is this line's ending.
  return { file, id, bytes: last.endsWith('\r') ? st.size - 1 : st.size, unfinished: false }
}

/** The list's bytes from `start` to `end` (its last line, without a newline), as text. */
function lastLine(fd: number, start: number, end: number): string {
  const bytes = Buffer.alloc(end - start)
  fs.readSync(fd, bytes, 0, bytes.length, start)
  const text = bytes.toString('utf8')
  return start === 0 && text.startsWith('\uFEFF') ? text.slice(1) : text  // readLines drops the mark too
}

/** The SHA-256 of the bytes this run reads, even if the list grows meanwhile. */
async function listSha256(list: ListSnapshot): Promise<string> {
  const hash = createHash('sha256')
  if (list.bytes > 0) for await (const chunk of readStream(list.file, { end: list.bytes, highWaterMark: 1 << 20, same: list.id })) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** The list's lines and its non-blank ones (the progress line's total); undefined: stopped by Ctrl-C. */
async function countEntries(list: ListSnapshot, stopping: () => boolean): Promise<{ lines: number; entries: number } | undefined> {
  let lines = 0
  let entries = 0
  for await (const text of readLines(list.file, list.bytes, list.id)) {
    if (stopping()) return undefined
    lines++
    if (text.trim() !== '') entries++
  }
  return { lines, entries }
}

async function header(args: BatchArgs, list: ListSnapshot): Promise<BatchHeader> {
  await checkReadableFile(args.model, '--model')
  const externalData = await modelExternalData(args.model)
  return {
    faceMultitaskBatch: 1,
    list: list.file,
    listBytes: list.bytes,
    listSha256: await listSha256(list),
    outFromList: path.relative(path.dirname(list.file), realOut(args.out)),
    model: path.resolve(args.model),
    modelSha256: await hashFile(args.model),
    ...(externalData ? { modelExternalData: externalData } : {}),
    mesh: args.mesh,
  }
}

/**
 * The hashes of the files beside the model that hold its weights (ONNX external data), if it has
 * any: new weights there with the same .onnx are another model. Undefined too for a file that is
 * not a readable ONNX model: the model's load then says why.
 */
async function modelExternalData(model: string): Promise<BatchHeader['modelExternalData']> {
  let locations: string[]
  try {
    locations = (await readOnnxModel(model)).externalData
  } catch {
    return undefined
  }
  try {
    return await hashExternalData(model, locations)
  } catch (e) {
    throw new CliError(`--model: ${messageOf(e)}`)
  }
}

/** A list line's result as its line of the results file; `faces`: how many it holds, undefined for an error. */
interface EntryResult {
  bytes: Uint8Array
  faces?: number
}

/**
 * One list line's result record: its faces, or why it has none. What is wrong with the line
 * (its JSON, its image file, its boxes, all checked before the model runs) is recorded and the
 * run goes on; whatever detect() then throws is the model's, and stops the run (rethrown).
 */
async function runEntry(model: FaceMultitask, threads: BatchThreads, line: number, text: string, listDir: string): Promise<EntryResult> {
  let entry: Entry | undefined
  let image: DecodedImage | undefined
  try {
    entry = parseEntry(text)
    image = await threads.readImage(path.resolve(listDir, entry.image))
    facesToRun(image, entry.boxes ? { boxes: entry.boxes } : undefined, model.spec.crop)  // throws what detect() would
  } catch (e) {
    if (image) threads.recycle(image)
    // An error of the system reading the image (out of file handles, EIO) stops the run, as the
    // model's do: recorded, it would stand for the image for good, and a rerun would not read it again.
    if (isPassingFileError(e)) throw new Error(`line ${line} (${entry?.image}): ${messageOf(e)}`, { cause: e })
    if (!(e instanceof LineError || e instanceof CliError || e instanceof TypeError || e instanceof RangeError)) throw e
    const message = messageOf(e).replace(/^options\.boxes/, 'boxes').replace(/(^|: )image is (\d+x\d+)/, '$1the image is $2')
    const known = entry ?? (e instanceof LineError ? e.known : {})
    return { bytes: jsonLine({ line, ...idOf(known), ...(known.image !== undefined ? { image: known.image } : {}), error: message }) }
  }
  let faces
  try {
    faces = await model.detect(image, entry.boxes ? { boxes: entry.boxes } : undefined)
  } catch (e) {
    // NaN from the model for this image's faces is this line's result, as a bad box is: stopping
    // would stop every rerun at the same line.
    if (e instanceof NonFiniteOutputError) return { bytes: jsonLine({ line, ...idOf(entry), image: entry.image, error: flagNames(e.message.replace(/options\.boxes/g, 'boxes').replace(/\bthe chip image\b/, 'the chip')) }) }
    // Stops the run: say which line met it, so a long list's culprit can be found.
    throw new Error(`line ${line} (${entry.image}): ${messageOf(e)}`, { cause: e })
  } finally {
    threads.recycle(image)  // detect() has settled: nothing reads its pixels any more
  }
  // Written on batch's threads, with the mesh or without (--no-mesh: a face's record is then
  // about 4.5 KB instead of 19, which matters over millions of faces).
  return { bytes: await threads.format({ line, ...idOf(entry), image: entry.image, faces }), faces: faces.length }
}

function idOf(entry: { id?: string | number }): { id?: string | number } {
  return entry.id !== undefined ? { id: entry.id } : {}
}

export class Progress {
  private readonly t0 = performance.now()
  ran = 0  // lines written this run
  /** Lines whose result came this run, written or still waiting for a line before them. */
  finished = 0
  faces = 0  // of the lines written this run
  errors = 0
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly io: Io, private readonly total: number, private readonly before: number) {}

  start(): void {
    const tty = Boolean(process.stderr.isTTY)
    this.timer = setInterval(() => {
      // Cut to the terminal's width: a line that wraps is redrawn only in its last row.
      if (tty) process.stderr.write(`\r${this.line().slice(0, Math.max(20, (process.stderr.columns || 80) - 1))}\x1b[K`)
      else this.io.err(this.line())
    }, tty ? 1000 : 10_000)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    if (process.stderr.isTTY) process.stderr.write('\r\x1b[K')
  }

  line(now = performance.now()): string {
    const done = this.before + this.ran
    const s = (now - this.t0) / 1000
    // The rate counts lines finished, not written: results are written in list order, so they
    // reach the file in bursts (behind a slow image; the first batches end together), and a rate
    // of lines written made the ETA climb for seconds, then drop.
    const rate = this.finished / Math.max(s, 1e-3)
    const eta = rate > 0 ? ` · ETA ${formatSeconds(Math.max(0, this.total - this.before - this.finished) / rate)}` : ''
    const pct = this.total > 0 ? ` (${((100 * done) / this.total).toFixed(1)}%)` : ''
    // On a rerun the lines count the earlier runs' too; the faces and errors are this run's.
    const counts = `${this.before > 0 ? `this run ${this.ran} lines, ` : ''}${this.faces} faces, ${this.errors} errors`
    return `batch: ${done}/${this.total} lines${pct} · ${counts} · ${rate.toFixed(1)} lines/s${eta}`
  }

  summary(out: string): string {
    const s = (performance.now() - this.t0) / 1000
    return `batch: ${this.ran} lines this run (${this.faces} faces, ${this.errors} with errors) in ${formatSeconds(s)}, ` +
      `${(this.ran / Math.max(s, 1e-3)).toFixed(1)} lines/s; ${this.before + this.ran}/${this.total} lines in ${out}`
  }
}

/** A duration as "12.3 s", "2 min 5 s" or "1 h 7 min" (rounded first: 119.7 s is "2 min 0 s", not "1 min 60 s"). */
export function formatSeconds(s: number): string {
  if (s < 59.95) return `${s.toFixed(1)} s`
  if (s < 3599.5) {
    const whole = Math.round(s)
    return `${Math.floor(whole / 60)} min ${whole % 60} s`
  }
  const minutes = Math.round(s / 60)
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`
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

/**
 * What to do about a results lock nobody refreshes: a run refreshes its lock every 10 s, and one
 * that died on this host is taken over at once, but one that died in another container or on
 * another host (its pid means nothing here) is refused until it is removed.
 */
function unrefreshed(lockFile: string): string {
  const idle = Date.now() - (fs.statSync(lockFile, { throwIfNoEntry: false })?.mtimeMs ?? Date.now())
  if (idle < 60_000) return ''
  return `; its lock ${lockFile} has not been refreshed for ${formatSeconds(idle / 1000)} (a run refreshes it every 10 s): ` +
    'if no run is writing the results (one stopped in another container or on another host), remove that file'
}

export async function batchCommand(argv: string[], io: Io): Promise<number> {
  const args = batchArgs(argv)
  await checkReadableFile(args.list, '<list>')
  // The results file first: a wrong --out shows before a model load that may build an engine for minutes.
  // Two runs appending to one file would write lines twice: the second is refused (a lock left
  // by a run that died is taken over).
  // Named after the file itself: two paths to it (a symlink) share one lock.
  // Not a lock beside a device or a pipe (/dev/stdout, /dev/null: root may create files in /dev).
  let outStats: fs.Stats | undefined
  try {
    outStats = fs.statSync(args.out, { throwIfNoEntry: false })
  } catch { /* unreadable: the lock's creation or ResultLog.open says why */ }
  if (outStats?.isFile() === false) throw new CliError(`--out: ${notRegular(args.out)}`)
  const lockFile = `${realOut(args.out)}.lock`
  const lock = await FileLock.acquire(lockFile, {
    what: `face-multitask batch ${args.list}`,
    onWait: (holder) => { throw new CliError(`--out: "${args.out}" is being written by another batch run (${describeHolder(holder)}): one run per results file${unrefreshed(lockFile)}`) },
  }).catch((e: unknown) => {
    if (e instanceof CliError) throw e
    const folder = path.dirname(args.out)
    if ((e as NodeJS.ErrnoException)?.code === 'ENOENT' && !fs.existsSync(folder)) throw new CliError(`--out: the folder "${folder}" does not exist`)
    throw new CliError(`--out: cannot write "${lockFile}" beside the results: ${fileErrorReason(e)}`)
  })
  let list, opened
  try {
    list = listSnapshot(args.list)
    const before = fs.statSync(args.out, { throwIfNoEntry: false })?.size ?? 0
    // A long run's results (hundreds of GB with meshes) take a while to read through: said first.
    if (before >= 2 ** 30) io.err(`batch: reading the ${(before / 2 ** 30).toFixed(1)} GiB of results in ${args.out} to go on from them`)
    opened = await ResultLog.open(args.out, await header(args, list))
  } catch (e) {
    await lock.release()
    throw e
  }
  const { log } = opened
  const run: RunState = { stopping: false, loading: new AbortController(), failure: new LogFailure(args.out) }
  // A second Ctrl-C ends the process as Ctrl-C does without a handler: by the signal, at once
  // (process.exit() would run exit handlers while native threads still work, and can abort).
  // Every line written stays; a lock left behind is taken over by the next run.
  // One listener for both: with the first removed before the second is added, Node stops watching
  // SIGINT in between, and a second Ctrl-C that reached the process with the first (its main
  // thread busy) is dropped: the run would go on finishing the images in flight.
  let interrupted = false
  const onSigint = () => {
    if (interrupted) {
      process.removeListener('SIGINT', onSigint)  // the last listener: SIGINT's own action is back
      process.kill(process.pid, 'SIGINT')
      return
    }
    interrupted = true
    run.stopping = true
    run.loading.abort()
    if (process.stderr.isTTY) process.stderr.write('\r\x1b[K')  // on a line of its own, not after the progress line
    io.err('batch: interrupted: finishing the images in flight, then stopping (Ctrl-C again to quit at once)')
  }
  process.on('SIGINT', onSigint)
  // A flush that fails (EIO; on some file systems a full disk shows only here) stops the run as a
  // failed write does.
  const syncTimer = setInterval(() => {
    log.flush((e) => {
      run.failure.fail(e)
      clearInterval(syncTimer)
    })
  }, 5000).unref()
  let code: number
  try {
    code = await runBatch(args, list, opened, run, io)
  } finally {
    clearInterval(syncTimer)
    process.removeListener('SIGINT', onSigint)
    await log.flushed()
    // Each step even if the one before fails: a lock kept would refuse the next run in this process.
    // A run that never had a model (its load failed or was interrupted) leaves no results file it
    // made; one that stopped later keeps its file, which the stop's message names.
    try {
      if (run.model === undefined) log.closeUnfinished()
      else log.close()
    } catch (e) {
      run.failure.fail(e)
    }
    try {
      await run.model?.close()
    } finally {
      await lock.release()
    }
  }
  // The results file failed after the last line was written (its last flush): not every result may be on the disk.
  if (run.failure.error !== undefined) throw stoppedBy(run.failure.error, args.out)
  return code
}

/** What the run shares with its Ctrl-C handler, its flush timer and its clean-up. */
interface RunState {
  stopping: boolean
  loading: AbortController
  model?: FaceMultitask
  failure: LogFailure
}

/** The results file's first failure (a write, or a flush to the disk): it stops the run as a model error does. */
class LogFailure {
  error: Error | undefined

  constructor(private readonly out: string) {}

  fail(e: unknown): void {
    this.error ??= new Error(`cannot write ${this.out}: ${fileErrorReason(e)}`, { cause: e })
  }
}

function stoppedBy(fatal: unknown, out: string): CliError {
  return new CliError(`${messageOf(fatal)}; stopped: the results so far are in ${out}, and the same command goes on from there`)
}

async function runBatch(args: BatchArgs, list: ListSnapshot, { log, done, notes }: OpenedLog, run: RunState, io: Io): Promise<number> {
  for (const n of notes) io.err(`batch: ${n}`)
  const counted = await countEntries(list, () => run.stopping)
  if (counted === undefined) {
    io.err('batch: stopped before anything ran')
    return 130
  }
  if (list.unfinished) {
    io.err(`batch: line ${counted.lines + 1} of ${args.list} has no line ending and is not JSON: it may still be being written, so it is left for the next run`)
  }
  const total = counted.entries
  if (done.size > 0 && done.size >= total) {
    io.err(`batch: all ${total} lines already have results in ${args.out}: nothing left to run`)
    return 0
  }
  if (done.size > 0) io.err(`batch: ${done.size} of ${total} lines already have results in ${args.out}: going on with the rest`)
  try {
    run.model = await loadModel(args.model, args.backend, args.engine, run.loading.signal)
  } catch (e) {
    if (!run.stopping) throw e
    io.err('batch: stopped before the model was loaded; nothing ran')
    return 130
  }
  const model = run.model
  if (model.info().synthetic) io.err(syntheticWarning(args.model))
  const progress = new Progress(io, total, done.size)
  // sharp loaded here first: its libraries must stay loaded by the main thread, or the last of
  // the threads to end may unload them (sharp's notes on worker threads, glibc). One that cannot
  // load is said by the threads, which stop the run.
  await import('sharp').catch(() => undefined)
  const threads = new BatchThreads(batchThreads(), args.mesh)
  progress.start()
  let fatal: unknown
  try {
    fatal = await runList(args, list, model, threads, done, log, run, progress)
  } finally {
    progress.stop()
    await threads.close()
  }
  io.err(progress.summary(args.out))
  if (fatal !== undefined) throw stoppedBy(fatal, args.out)
  // Ctrl-C while the last images finished: every line has its result, as without it.
  if (run.stopping && done.size + progress.ran < total) {
    io.err(`batch: stopped; the same command goes on from where this run stopped`)
    return 130
  }
  // Every line an error is most likely the run's setup (image paths against the wrong folder),
  // not the images: a script must be able to tell that from a finished run.
  if (progress.ran > 0 && progress.errors === progress.ran) {
    io.err(`batch: every line this run read got an "error" (see ${args.out}); image paths are relative to the list's folder. ` +
      `A rerun does not redo lines that have a record: once the cause is fixed, give another --out (or remove ${args.out})`)
    return EXIT_ALL_LINES_FAILED
  }
  return 0
}

/** batch's exit code when it ran lines and every one got an "error" (their records are written). */
export const EXIT_ALL_LINES_FAILED = 3

/**
 * Runs every line of the list's snapshot not yet done, `concurrency` at a time, writing results
 * in list order. Returns the error that stopped the run (the model's, or the results file's), if one did.
 */
async function runList(args: BatchArgs, list: ListSnapshot, model: FaceMultitask, threads: BatchThreads, done: LineSet, log: ResultLog, run: RunState, progress: Progress): Promise<unknown> {
  // The folder of the file itself, as the header names it: through a symlink elsewhere, the list's
  // images are still the ones a rerun by its real path (or the run that began the results) read.
  const listDir = path.dirname(list.file)
  const order: { result?: EntryResult | null }[] = []  // started, in list order; null: no result (the run stops)
  let running = 0
  let fatal: unknown
  let wake: (() => void) | undefined
  // Writes the results at the head of `order`. It stops at a line the model failed, so the file
  // stays in list order: the lines behind it are done again by the next run, as it is. It stops
  // for good once the results file failed (a write, or the flush timer's).
  const flush = () => {
    while (run.failure.error === undefined && order.length > 0 && order[0].result) {
      const result = order[0].result
      try {
        log.write(result.bytes)
      } catch (e) {
        run.failure.fail(e)
        break
      }
      order.shift()
      progress.ran++
      if (result.faces !== undefined) progress.faces += result.faces
      else progress.errors++
    }
    fatal ??= run.failure.error
  }
  let line = 0
  try {
    for await (const text of readLines(list.file, list.bytes, list.id)) {
      line++
      fatal ??= run.failure.error
      if (fatal !== undefined || run.stopping) break
      if (text.trim() === '' || done.has(line)) continue
      // Results wait in `order` until the lines before them are written: behind one slow image,
      // at most 4 x concurrency of them, so memory stays bounded.
      // A failed line at the head never leaves: stop waiting then (nothing else would wake this).
      while ((running >= args.concurrency || order.length >= 4 * args.concurrency) && fatal === undefined) await new Promise<void>((r) => { wake = r })
      if (fatal !== undefined || run.stopping) break
      const slot: { result?: EntryResult | null } = {}
      order.push(slot)
      running++
      void runEntry(model, threads, line, text, listDir).then(
        (result) => {
          slot.result = result
          progress.finished++
        },
        (e: unknown) => {
          fatal ??= e
          slot.result = null
        },
      ).finally(() => {
        running--
        flush()
        wake?.()
        wake = undefined
      })
    }
  } catch (e) {
    fatal ??= e  // the list could not be read on (replaced meanwhile): the lines in flight still finish
  }
  while (running > 0) await new Promise<void>((r) => { wake = r })
  return fatal ?? run.failure.error
}
