// Threads that write batch's face records as JSON lines (record-format-worker.ts), so the main
// thread, which reads the list, starts the images and writes the results file, is not the
// bound of a run on a fast model: handing a face over costs it about 60 us instead of the 500
// its record costs to write (mesh included). Records come back as bytes, in any order; batch
// keeps the list's order itself.
import { availableParallelism } from 'node:os'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { packageRoot } from '../native'
import type { FacesRecord, FormatReply, FormatRequest, FormatWorkerData } from './record-format-worker'

/** One thread for every 4 cores, up to 4 (about 2,000 faces/s each with the mesh). */
export function formatThreads(cores = availableParallelism()): number {
  return Math.min(4, Math.max(1, Math.floor(cores / 4)))
}

interface Pending {
  resolve: (bytes: Uint8Array) => void
  reject: (e: Error) => void
  worker: Worker
}

export class RecordFormatter {
  private readonly workers: Worker[] = []
  private readonly load = new Map<Worker, number>()
  private readonly pending = new Map<number, Pending>()
  private failure: Error | undefined
  private next = 0

  constructor(threads: number, mesh: boolean, file = path.join(packageRoot(), 'dist', 'lib', 'cli', 'record-format-worker.js')) {
    try {
      for (let i = 0; i < threads; i++) {
        const worker = new Worker(file, { workerData: { mesh } satisfies FormatWorkerData })
        worker.on('message', (reply: FormatReply) => this.settle(reply))
        worker.on('error', (e) => this.fail(new Error(`the thread writing the results' JSON failed: ${e.message}`)))
        worker.on('exit', (code) => this.fail(new Error(`the thread writing the results' JSON exited (code ${code})`)))
        this.workers.push(worker)
        this.load.set(worker, 0)
      }
    } catch (e) {
      // A thread that could not start (out of memory, a thread limit): the ones started would
      // keep the process alive, with no writer left to end them.
      for (const w of this.workers) void w.terminate()
      throw e
    }
  }

  /** The record as one line of JSON (with its newline). The faces' buffers are transferred: the faces cannot be read after. */
  format(record: FacesRecord): Promise<Uint8Array> {
    if (this.failure) return Promise.reject(this.failure)
    const worker = this.leastLoaded()
    const n = this.next++
    return new Promise((resolve, reject) => {
      try {
        worker.postMessage({ n, record } satisfies FormatRequest, buffersOf(record))
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)))
        return
      }
      this.pending.set(n, { resolve, reject, worker })
      this.load.set(worker, this.load.get(worker)! + 1)
    })
  }

  /** Ends the threads; a record still being written is rejected. */
  async close(): Promise<void> {
    this.fail(new Error('the results writer is closed'))
    await Promise.all(this.workers.map((w) => w.terminate()))
  }

  private leastLoaded(): Worker {
    let best = this.workers[0]
    for (const w of this.workers) if (this.load.get(w)! < this.load.get(best)!) best = w
    return best
  }

  private settle(reply: FormatReply): void {
    const p = this.pending.get(reply.n)
    if (!p) return
    this.pending.delete(reply.n)
    this.load.set(p.worker, this.load.get(p.worker)! - 1)
    p.resolve(reply.bytes)
  }

  /** A thread that fails fails the writer: every record waiting and every one after is rejected. */
  private fail(e: Error): void {
    this.failure ??= e
    for (const p of this.pending.values()) p.reject(this.failure)
    this.pending.clear()
  }
}

/** Each buffer behind the faces' typed arrays, once (a buffer listed twice is refused). */
function buffersOf(record: FacesRecord): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>()
  for (const f of record.faces) {
    for (const v of Object.values(f)) if (ArrayBuffer.isView(v) && v.buffer instanceof ArrayBuffer) buffers.add(v.buffer)
  }
  return [...buffers]
}
