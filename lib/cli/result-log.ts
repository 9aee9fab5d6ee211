// The output of `face-multitask batch`: one JSON line per list line, appended as results come, so
// a run that stops (Ctrl-C, a crash, a lost GPU) keeps every line written and the next run with
// the same --out does only the rest. Its first line says which list and model the results come
// from: a rerun with another model (other bytes), another list (or one changed other than by lines
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
import { readLines } from './lines'

export interface BatchHeader {
  faceMultitaskBatch: 1
  list: string
  /** The list's size and SHA-256 when the file was begun: lines added at its end since are fine. */
  listBytes: number
  listSha256: string
  /** The results file's path relative to the list's folder: the two moved together keep it. */
  outFromList: string
  model: string
  /** The model file's bytes: a rerun must run the same model, wherever it now lives. */
  modelSha256: string
  /** Whether the faces carry their mesh (--no-mesh): one file holds one kind of record. */
  mesh: boolean
}

export interface OpenedLog {
  log: ResultLog
  /** List lines that already have a result in the file. */
  done: Set<number>
  /** What was found and repaired, for the user (an incomplete last line dropped, a list moved). */
  notes: string[]
}

const RECORD_START = /^\{"line":(\d+),/

export class ResultLog {
  private constructor(private fd: number, readonly file: string) {}

  /** Opens (or creates) the results file; on a rerun, lists the lines already done. */
  static async open(file: string, header: BatchHeader): Promise<OpenedLog> {
    const fail = (why: string): never => { throw new CliError(`--out: ${why}`) }
    let stats: fs.Stats | undefined
    try {
      stats = fs.statSync(file)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') fail(`cannot read "${file}": ${fileErrorReason(e)}`)
    }
    if (stats && !stats.isFile()) fail(`"${file}" is not a regular file`)
    const size = stats?.size ?? -1
    if (size <= 0) return { log: ResultLog.begin(file, size < 0 ? 'ax+' : 'a+', `${JSON.stringify(header)}\n`), done: new Set(), notes: [] }
    // Checked before anything is written: a refused file is left as it was.
    const complete = completeBytes(file, size)
    if (complete === 0) {
      // One line without its newline: a header whose run stopped right after writing it, or not ours.
      const text = size < 1 << 20 ? fs.readFileSync(file, 'utf8') : ''
      const { differs, moved } = await headerDifferences(file, text, header)
      if (differs.length > 0) return ResultLog.beginAgain(file, header, differs)
      return { log: ResultLog.begin(file, 'a+', '\n'), done: new Set(), notes: moved }
    }
    const { done, differs, moved } = await readDone(file, complete, header)
    if (differs.length > 0) return ResultLog.beginAgain(file, header, differs)
    const log = ResultLog.begin(file, 'a+', '')
    if (complete === size) return { log, done, notes: moved }
    try {
      fs.ftruncateSync(log.fd, complete)
    } catch (e) {
      log.close()
      fail(`cannot cut the incomplete last line off "${file}": ${fileErrorReason(e)}`)
    }
    return { log, done, notes: [...moved, `dropped an incomplete last line of ${size - complete} bytes (a run stopped while writing it); its image runs again`] }
  }

  /**
   * A file of ours with no result in it, begun for another run (another model, list or --no-mesh
   * choice; a run that stopped or failed before its first line): nothing would be mixed, so it
   * starts again with this run's header.
   */
  private static beginAgain(file: string, header: BatchHeader, differs: string[]): OpenedLog {
    const log = ResultLog.begin(file, 'w+', `${JSON.stringify(header)}\n`)
    return { log, done: new Set(), notes: [`"${file}" held no results yet, only the header of a run of ${differs.join(' and ')}; begun again for this run`] }
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
      if (text !== '') fs.writeSync(fd, text)
    } catch (e) {
      fs.closeSync(fd)
      throw new CliError(`--out: cannot write "${file}": ${fileErrorReason(e)}`)
    }
    return new ResultLog(fd, file)
  }

  /** Appends one record as one line. */
  write(record: object): void {
    fs.writeSync(this.fd, `${JSON.stringify(record)}\n`)
  }

  /** Flushes what was written to the disk (a power cut then loses nothing written before). */
  sync(): void {
    fs.fsyncSync(this.fd)
  }

  close(): void {
    if (this.fd < 0) return
    const fd = this.fd
    this.fd = -1
    try {
      fs.fsyncSync(fd)
    } finally {
      fs.closeSync(fd)
    }
  }
}

/** The bytes up to and including the file's last newline (a run killed mid-write leaves a line without one). */
function completeBytes(file: string, size: number): number {
  const fd = fs.openSync(file, 'r')
  try {
    const chunk = Buffer.alloc(64 * 1024)
    for (let end = size; end > 0;) {
      const start = Math.max(0, end - chunk.length)
      const n = fs.readSync(fd, chunk, 0, end - start, start)
      const i = chunk.subarray(0, n).lastIndexOf(0x0a)
      if (i >= 0) return start + i + 1
      end = start
    }
    return 0
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * Compares the header with this run and collects the list lines already done. A header of
 * another run is refused at its first result (results would be mixed); with none, `differs`
 * says how it differs.
 */
async function readDone(file: string, complete: number, header: BatchHeader): Promise<{ done: Set<number> } & HeaderCheck> {
  const done = new Set<number>()
  let check: HeaderCheck = { differs: [], moved: [] }
  let n = 0
  for await (const text of readLines(file, complete)) {
    n++
    if (n === 1) {
      check = await headerDifferences(file, text, header)
      continue
    }
    const m = RECORD_START.exec(text)
    if (!m) throw new CliError(`--out: "${file}" line ${n} is not a result of face-multitask batch; give another --out`)
    if (check.differs.length > 0) {
      throw new CliError(`--out: "${file}" holds results of ${check.differs.join(' and ')}: going on would mix two runs in one file; give another --out, or the same list, model and --no-mesh choice`)
    }
    done.add(Number(m[1]))
  }
  return { done, ...check }
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
 * was added begins with one).
 */
async function onlyGrew(list: string, got: Partial<BatchHeader>, want: BatchHeader): Promise<boolean> {
  const bytes = got.listBytes
  if (typeof bytes !== 'number' || bytes > want.listBytes) return false
  if ((await hashFile(list, undefined, bytes)) !== got.listSha256) return false
  if (bytes === 0) return true
  const edge = Buffer.alloc(2)
  const fd = fs.openSync(list, 'r')
  try {
    fs.readSync(fd, edge, 0, 2, bytes - 1)
  } finally {
    fs.closeSync(fd)
  }
  return edge[0] === 0x0a || (bytes < want.listBytes && edge[1] === 0x0a)
}
