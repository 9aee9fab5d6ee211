// The output of `face-multitask batch`: one JSON line per list line, appended as results come, so
// a run that stops (Ctrl-C, a crash, a lost GPU) keeps every line written and the next run with
// the same --out does only the rest. Its first line says which list and model the results come
// from: a rerun with another model (other bytes) or list (another path) is refused rather than
// mixing results.
import fs from 'node:fs'
import readline from 'node:readline'
import { fileErrorReason } from '../describe'
import { CliError } from './common'

export interface BatchHeader {
  faceMultitaskBatch: 1
  list: string
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
  /** What was found and repaired, for the user (an incomplete last line dropped). */
  notes: string[]
}

const RECORD_START = /^\{"line":(\d+),/

export class ResultLog {
  private constructor(private fd: number, readonly file: string) {}

  /** Opens (or creates) the results file; on a rerun, lists the lines already done. */
  static async open(file: string, header: BatchHeader): Promise<OpenedLog> {
    const fail = (why: string): never => { throw new CliError(`--out: ${why}`) }
    let size = -1
    try {
      const st = fs.statSync(file)
      if (!st.isFile()) fail(`"${file}" is not a regular file`)
      size = st.size
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') fail(`cannot read "${file}": ${fileErrorReason(e)}`)
    }
    let fd: number
    try {
      fd = fs.openSync(file, size < 0 ? 'ax+' : 'a+')  // appends always go to the end
    } catch (e) {
      return fail(`cannot write "${file}": ${fileErrorReason(e)}`)
    }
    const log = new ResultLog(fd, file)
    if (size <= 0) {
      log.write(header)
      return { log, done: new Set(), notes: [] }
    }
    try {
      const notes = log.dropIncompleteLine(size)
      const done = await log.readDone(header)
      return { log, done, notes }
    } catch (e) {
      log.close()
      throw e
    }
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
    fs.fsyncSync(this.fd)
    fs.closeSync(this.fd)
    this.fd = -1
  }

  /** A run killed mid-write leaves a line without its newline: it is cut off (and redone). */
  private dropIncompleteLine(size: number): string[] {
    const last = Buffer.alloc(1)
    fs.readSync(this.fd, last, 0, 1, size - 1)
    if (last[0] === 0x0a) return []
    const chunk = Buffer.alloc(64 * 1024)
    for (let end = size; end > 0;) {
      const start = Math.max(0, end - chunk.length)
      const n = fs.readSync(this.fd, chunk, 0, end - start, start)
      const i = chunk.subarray(0, n).lastIndexOf(0x0a)
      if (i >= 0) {
        fs.ftruncateSync(this.fd, start + i + 1)
        return [`dropped an incomplete last line of ${size - (start + i + 1)} bytes (a run stopped while writing it); its image runs again`]
      }
      end = start
    }
    throw new CliError(`--out: "${this.file}" holds no complete line: it was not written by face-multitask batch; give another --out`)
  }

  /** Checks the header against this run and collects the list lines already done. */
  private async readDone(header: BatchHeader): Promise<Set<number>> {
    const done = new Set<number>()
    // Its own descriptor: a stream stopped early may still read after this log's is closed.
    const input = fs.createReadStream(this.file)
    try {
      let n = 0
      for await (const text of readline.createInterface({ input, crlfDelay: Infinity })) {
        n++
        if (n === 1) {
          checkHeader(this.file, text, header)
          continue
        }
        const m = RECORD_START.exec(text)
        if (!m) throw new CliError(`--out: "${this.file}" line ${n} is not a result of face-multitask batch; give another --out`)
        done.add(Number(m[1]))
      }
      return done
    } finally {
      input.destroy()
    }
  }
}

function checkHeader(file: string, text: string, want: BatchHeader): void {
  let got: Partial<BatchHeader> | undefined
  try {
    got = JSON.parse(text) as Partial<BatchHeader>
  } catch {
    got = undefined
  }
  if (got?.faceMultitaskBatch !== 1) throw new CliError(`--out: "${file}" was not written by face-multitask batch (its first line is not a batch header); give another --out`)
  const differs: string[] = []
  if (got.modelSha256 !== want.modelSha256) differs.push(`another model (${got.model}, sha256 ${String(got.modelSha256).slice(0, 12)}...; --model is ${want.modelSha256.slice(0, 12)}...)`)
  if (got.list !== want.list) differs.push(`another list (${got.list})`)
  if (got.mesh !== want.mesh) differs.push(got.mesh ? 'faces with their mesh (this run has --no-mesh)' : 'faces without their mesh (--no-mesh; this run has none)')
  if (differs.length > 0) {
    throw new CliError(`--out: "${file}" holds results of ${differs.join(' and ')}: going on would mix two runs in one file; give another --out, or the same list, model and --no-mesh choice`)
  }
}
