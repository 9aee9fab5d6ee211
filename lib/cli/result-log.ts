// The output of `face-multitask batch`: one JSON line per list line, appended as results come, so
// a run that stops (Ctrl-C, a crash, a lost GPU) keeps every line written and the next run with
// the same --out does only the rest. Its first line says which list and model the results come
// from: a rerun with another model (other bytes, in the .onnx or in the external-data files beside
// it that hold its weights), another list (or one changed other than by lines
// added at its end) or the other --no-mesh choice is refused rather than mixing results, unless
// the file holds no result yet (a run that stopped or failed before its first line): that one is
// begun again. A list at another path is the same list when its bytes are, and the results file
// sits where it did beside it: the folder was moved or copied whole (another disk, another mount
// point), and its relative image paths name the same images. A file is only changed once it has
// been checked: a refused one is left as it was.
import fs from 'node:fs'
import { fileErrorReason } from '../describe'
import { hashFile } from '../engine-cache/key'
import { CliError } from './common'
import { LineSet } from './line-set'
import { completeBytes, completeBytesIn, lineHeads, readLines } from './lines'

export interface BatchHeader {
  faceMultitaskBatch: 1
  list: string
  /** The size and SHA-256 of the list's bytes the results are of: lines added at its end since are
   * fine. A run that takes added lines writes its own over them (see headerLine). */
  listBytes: number
  listSha256: string
  /** The results file's path relative to the list's folder: the two moved together keep it. */
  outFromList: string
  model: string
  /** The model file's bytes: a rerun must run the same model, wherever it now lives. */
  modelSha256: string
  /** The bytes of the files beside it that hold its weights (ONNX external data), where it has them. */
  modelExternalData?: { location: string; sha256: string }[]
  /** Whether the faces carry their mesh (--no-mesh): one file holds one kind of record. */
  mesh: boolean
}

export interface OpenedLog {
  log: ResultLog
  /** List lines that already have a result in the file. */
  done: LineSet
  /** What was found and repaired, for the user (an incomplete last line dropped, a list moved). */
  notes: string[]
}

const RECORD_START = /^\{"line":(\d+),/
/** Enough of a record's start for RECORD_START: 8 bytes, up to 16 digits and the comma. */
const RECORD_HEAD_BYTES = 32

/** Why --out cannot be what it names: stdout, a pipe or a device holds nothing a rerun could go on from. */
export function notRegular(file: string): string {
  return `"${file}" is not a regular file: batch writes its results to a file, which a rerun with the same --out goes on from`
}

export class ResultLog {
  /** The file's size: where the next record begins (the file is locked: no one else appends). */
  private end: number

  /** `made`: the file did not exist before this run. */
  private constructor(private fd: number, readonly file: string, private readonly made: boolean) {
    this.end = fs.fstatSync(fd).size
  }

  /** Opens (or creates) the results file; on a rerun, lists the lines already done. */
  static async open(file: string, header: BatchHeader): Promise<OpenedLog> {
    const fail = (why: string): never => { throw new CliError(`--out: ${why}`) }
    let stats: fs.Stats | undefined
    try {
      stats = fs.statSync(file)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') fail(`cannot read "${file}": ${fileErrorReason(e)}`)
    }
    if (stats && !stats.isFile()) fail(notRegular(file))
    const size = stats?.size ?? -1
    if (size <= 0) return { log: ResultLog.begin(file, size < 0 ? 'ax+' : 'a+', `${headerLine(header)}\n`), done: new LineSet(), notes: [] }
    // Checked before anything is written: a refused file is left as it was.
    const complete = completeBytes(file, size)
    if (complete === 0) {
      // One line without its newline: a header whose run stopped right after writing it (or while
      // writing it: no result can follow a header cut short), or not ours.
      const text = size < 1 << 20 ? fs.readFileSync(file, 'utf8') : ''
      if (isPartHeader(text)) {
        const log = ResultLog.begin(file, 'w+', `${headerLine(header)}\n`)
        return { log, done: new LineSet(), notes: [`"${file}" held only part of a batch header (a run stopped while writing it) and no results; begun again for this run`] }
      }
      const { differs, moved } = await headerDifferences(file, text, header)
      if (differs.length > 0) return ResultLog.beginAgain(file, header, differs)
      updateListFields(file, text, header)
      return { log: ResultLog.begin(file, 'a+', '\n'), done: new LineSet(), notes: moved }
    }
    const whole = wholeRecordsEnd(file, complete)
    const { done, differs, moved, headerText } = await readDone(file, whole, header)
    if (differs.length > 0) return ResultLog.beginAgain(file, header, differs)
    updateListFields(file, headerText, header)
    const log = ResultLog.begin(file, 'a+', '')
    if (whole === size) return { log, done, notes: moved }
    try {
      fs.ftruncateSync(log.fd, whole)
      log.end = whole
    } catch (e) {
      log.close()
      fail(`cannot cut the incomplete last line off "${file}": ${fileErrorReason(e)}`)
    }
    const why = whole === complete ? 'a run stopped while writing it' : 'not whole JSON: cut by hand, or by a copy that stopped?'
    return { log, done, notes: [...moved, `dropped an incomplete last line of ${size - whole} bytes (${why}); its image runs again`] }
  }

  /**
   * A file of ours with no result in it, begun for another run (another model, list or --no-mesh
   * choice; a run that stopped or failed before its first line): nothing would be mixed, so it
   * starts again with this run's header.
   */
  private static beginAgain(file: string, header: BatchHeader, differs: string[]): OpenedLog {
    const log = ResultLog.begin(file, 'w+', `${headerLine(header)}\n`)
    return { log, done: new LineSet(), notes: [`"${file}" held no results yet, only the header of a run of ${differs.join(' and ')}; begun again for this run`] }
  }

  /** Opens the file for appending (writes always go to its end), or 'w+' emptied, and writes `text`. */
  private static begin(file: string, flags: 'ax+' | 'a+' | 'w+', text: string): ResultLog {
    let fd: number
    try {
      fd = fs.openSync(file, flags)
    } catch (e) {
      throw new CliError(`--out: cannot write "${file}": ${fileErrorReason(e)}`)
    }
    try {
      if (text !== '') writeAll(fd, Buffer.from(text))
      return new ResultLog(fd, file, flags === 'ax+')
    } catch (e) {
      fs.closeSync(fd)
      if (flags === 'ax+') fs.rmSync(file, { force: true })  // made here: no part of a header left
      throw new CliError(`--out: cannot write "${file}": ${fileErrorReason(e)}`)
    }
  }

  /** Appends one record's line (jsonLine(), or a face record's from batch-threads.ts): all of it, or (a full disk) none of it, and throws. */
  write(line: Uint8Array): void {
    try {
      writeAll(this.fd, line)
    } catch (e) {
      // Part of a line left at the end would join the next record into one line that looks like
      // a result. Cut off; should that fail too, the next run drops it as a line without its newline.
      try {
        fs.ftruncateSync(this.fd, this.end)
      } catch { /* as said */ }
      throw e
    }
    this.end += line.length
  }

  /** The flush to the disk running on libuv's pool, if one is (see flush()). */
  private flushing: Promise<void> | undefined

  /**
   * Starts a flush of what was written to the disk (a power cut then loses nothing written
   * before), on libuv's pool, unless one is still running; a failed one calls `onError`. Not on
   * the main thread: at a GPU's pace 5 s of records with meshes are about 400 MB, whose fsync
   * took 230 ms on a virtual disk, longer on a slow one, and the main thread feeds the GPU.
   */
  flush(onError: (e: unknown) => void): void {
    if (this.flushing !== undefined || this.fd < 0) return
    this.flushing = new Promise((resolve) => {
      fs.fsync(this.fd, (e) => {
        this.flushing = undefined
        if (e) onError(e)
        resolve()
      })
    })
  }

  /** Once no flush() is running: close() must wait for it (the descriptor is the flush's). */
  async flushed(): Promise<void> {
    await this.flushing
  }

  /**
   * Closes the file, and removes it when this run made it: for a run that never had a model (its
   * load failed or was interrupted), which wrote only the header. A file that was there before is
   * kept as it is.
   */
  closeUnfinished(): void {
    this.close()
    if (this.made) fs.rmSync(this.file, { force: true })
  }

  close(): void {
    if (this.fd < 0) return
    if (this.flushing !== undefined) throw new Error('ResultLog.close() while a flush runs: await flushed() first')
    const fd = this.fd
    this.fd = -1
    try {
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
  }
}

/** A record as its line of the results file. */
export function jsonLine(record: object): Buffer {
  return Buffer.from(`${JSON.stringify(record)}\n`)
}

/** fs.writeSync until every byte is written (at `position`, or where the file's offset is): on a
 * full disk a write can write part of the buffer and return the count it wrote (the next write
 * then fails with ENOSPC). */
function writeAll(fd: number, data: Uint8Array, position?: number): void {
  for (let at = 0; at < data.length;) {
    const n = fs.writeSync(fd, data, at, data.length - at, position === undefined ? null : position + at)
    if (!(n > 0)) throw new Error(`the write stopped after ${at} of ${data.length} bytes`)  // never loop forever
    at += n
  }
}

// The header's list size is written padded with spaces (JSON whitespace) to the digits of the
// largest size a number holds exactly, so a run on the list grown since can bring it and the hash
// up to date in place: lines added at the end, once run, are then held to their bytes as the
// first ones are. A header written before (no padding) keeps its first size and hash.
const LIST_BYTES_WIDTH = String(Number.MAX_SAFE_INTEGER).length
const LIST_FIELDS = /"listBytes":(\d+ *),"listSha256":"[0-9a-f]{64}"/

/** The header as its line in the file (without the newline). A string value cannot hold the
 * pattern replaced: its quotes are escaped. */
function headerLine(header: BatchHeader): string {
  return JSON.stringify(header).replace(/"listBytes":(\d+),/, (_, n: string) => `"listBytes":${n.padEnd(LIST_BYTES_WIDTH)},`)
}

/** Writes this run's list size and hash over the header's, when the list grew since and the
 * header has room for them. Called once the header has been checked against this run. */
function updateListFields(file: string, headerText: string, want: BatchHeader): void {
  const m = LIST_FIELDS.exec(headerText)
  if (!m || m[1].length !== LIST_BYTES_WIDTH || Number(m[1]) >= want.listBytes) return
  const fields = Buffer.from(`"listBytes":${String(want.listBytes).padEnd(LIST_BYTES_WIDTH)},"listSha256":"${want.listSha256}"`)
  try {
    // Not through the results' own descriptor: on Linux a write at a position to a file opened for
    // appending goes to its end. One write, within the first line: size and hash change together.
    const fd = fs.openSync(file, 'r+')
    try {
      writeAll(fd, fields, Buffer.byteLength(headerText.slice(0, m.index)))
    } finally {
      fs.closeSync(fd)
    }
  } catch (e) {
    throw new CliError(`--out: cannot write "${file}" (its header, for the lines added to the list): ${fileErrorReason(e)}`)
  }
}

const HEADER_START = '{"faceMultitaskBatch":1,'

/** A line that is the start of a batch header cut short (headerLine's, which begins with HEADER_START). */
function isPartHeader(text: string): boolean {
  if (text === '' || !(HEADER_START.startsWith(text) || text.startsWith(HEADER_START))) return false
  try {
    JSON.parse(text)
    return false  // whole: the header's own checks apply
  } catch {
    return true
  }
}

/**
 * Compares the header with this run and collects the list lines already done. A header of
 * another run is refused at its first result (results would be mixed); with none, `differs`
 * says how it differs.
 */
async function readDone(file: string, complete: number, header: BatchHeader): Promise<{ done: LineSet; headerText: string } & HeaderCheck> {
  let headerText = ''
  for await (const text of readLines(file, complete)) {
    headerText = text
    break
  }
  const check = await headerDifferences(file, headerText, header)
  const done = new LineSet()
  let n = 0
  for await (const head of lineHeads(file, complete, RECORD_HEAD_BYTES)) {
    if (++n === 1) continue
    const m = RECORD_START.exec(head.toString('latin1'))
    if (!m) throw new CliError(`--out: "${file}" line ${n} is not a result of face-multitask batch; give another --out`)
    if (check.differs.length > 0) {
      throw new CliError(`--out: "${file}" holds results of ${check.differs.join(' and ')}: going on would mix two runs in one file; give another --out, or the same list, model and --no-mesh choice`)
    }
    done.add(Number(m[1]))
  }
  return { done, headerText, ...check }
}

/**
 * Where the file's whole records end: `complete` (the bytes up to its last newline), or the start
 * of a last record that is not whole JSON. A run writes each record whole with its newline last,
 * but a record cut by hand and saved by an editor (which ends the file with a newline), or by a
 * copy that stopped, would otherwise stand for its line for good. The header is not judged here.
 */
function wholeRecordsEnd(file: string, complete: number): number {
  const fd = fs.openSync(file, 'r')
  try {
    const start = completeBytesIn(fd, complete - 1)
    if (start === 0) return complete  // the header: judged by headerDifferences
    const last = Buffer.alloc(complete - start)
    fs.readSync(fd, last, 0, last.length, start)
    try {
      JSON.parse(last.toString('utf8'))
      return complete
    } catch {
      return start
    }
  } finally {
    fs.closeSync(fd)
  }
}

/** How a results file's header differs from this run (nothing: the same run), and, when the list
 * and the file were moved together, a note saying so. */
interface HeaderCheck {
  differs: string[]
  moved: string[]
}

/** The same file, however it is reached (a symlink, a relative path); else the same path. */
function sameFile(a: string, b: string): boolean {
  try {
    return fs.realpathSync(a) === fs.realpathSync(b)
  } catch {
    return a === b
  }
}

/** How the header differs from this run's (nothing: the same run); a first line not ours is refused. */
async function headerDifferences(file: string, text: string, want: BatchHeader): Promise<HeaderCheck> {
  let got: Partial<BatchHeader> | undefined
  try {
    got = JSON.parse(text) as Partial<BatchHeader>
  } catch {
    got = undefined
  }
  if (got?.faceMultitaskBatch !== 1) throw new CliError(`--out: "${file}" was not written by face-multitask batch (its first line is not a batch header); give another --out`)
  const differs: string[] = []
  const moved: string[] = []
  if (got.modelSha256 !== want.modelSha256) differs.push(`another model (${got.model}, sha256 ${String(got.modelSha256).slice(0, 12)}...; --model is ${want.modelSha256.slice(0, 12)}...)`)
  else if (JSON.stringify(got.modelExternalData ?? null) !== JSON.stringify(want.modelExternalData ?? null)) {
    const files = [...new Set([...(got.modelExternalData ?? []), ...(want.modelExternalData ?? [])].map((e) => e.location))]
    differs.push(`another model (${got.model} with other weights in ${files.map((f) => `"${f}"`).join(', ')}, its ONNX external data)`)
  }
  const sameList = typeof got.list === 'string' && sameFile(got.list, want.list)
  // A list at another path may be this one moved with its folder: the results file sits beside it as before.
  const movedWith = !sameList && typeof got.outFromList === 'string' && got.outFromList === want.outFromList
  const grownOnly = (sameList || movedWith) && (got.listSha256 === want.listSha256 || await onlyGrew(want.list, got, want))
  if (!sameList && !(movedWith && grownOnly)) differs.push(`another list (${got.list})`)
  else if (!grownOnly) differs.push('a list that has changed since (other than by lines added at its end), so its line numbers may name other images')
  else if (movedWith) moved.push(`the results were begun for ${got.list}; ${want.list} is the same list with the results beside it as they were (the folder moved): going on`)
  if (got.mesh !== want.mesh) differs.push(got.mesh ? 'faces with their mesh (this run has --no-mesh)' : 'faces without their mesh (--no-mesh; this run has none)')
  return { differs, moved }
}

/**
 * Whether the list is the one the results were begun with plus lines added at its end: the same
 * first bytes, and its last line then was not extended since (it ended with a newline, or what
 * was added begins with one: \n, or \r\n as a Windows editor adds).
 */
async function onlyGrew(list: string, got: Partial<BatchHeader>, want: BatchHeader): Promise<boolean> {
  const bytes = got.listBytes
  if (typeof bytes !== 'number' || bytes > want.listBytes) return false
  if ((await hashFile(list, undefined, bytes)) !== got.listSha256) return false
  if (bytes === 0) return true
  const edge = Buffer.alloc(3)
  const fd = fs.openSync(list, 'r')
  try {
    fs.readSync(fd, edge, 0, Math.min(3, want.listBytes - bytes + 1), bytes - 1)
  } finally {
    fs.closeSync(fd)
  }
  return edge[0] === 0x0a || edge[1] === 0x0a || (edge[1] === 0x0d && edge[2] === 0x0a)
}
