// batch's threads (batch-worker.ts): they read and decode the list's images and write its face
// records as JSON lines, so the main thread, which reads the list, runs detect() and writes the
// results file, is not the bound of a run on a fast model. Handing a 320x240 JPEG over costs it
// about 60-80 us instead of the 300-400 its reading costs there (its pixel buffer reused), a
// face's record about 55 instead of 480 (mesh included), for 5-15% more CPU in all (npm run
// bench:batch-threads). Replies come in any order; batch keeps the list's order itself.
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { usableCores } from '../cores'
import { isDetached } from '../image-input'
import { packageRoot } from '../native'
import type { DecodedImage } from '../read-image'
import type { BatchReply, BatchRequest, BatchWorkerData, FacesRecord } from './batch-worker'
import { CliError } from './common'
import { readImage as readImageHere } from './image'

/** One thread for every 4 cores, up to 4 (each writes about 2,000 faces/s with the mesh; an image's read costs one 250 us or more). */
export function batchThreads(cores = usableCores()): number {
  return Math.min(4, Math.max(1, Math.floor(cores / 4)))
}

/**
 * The largest image file read on the threads (bytes): up to a megapixel or so of JPEG. Above it
 * the pixels' copy back costs more than the main thread saves, and the decoding, not the main
 * thread, bounds a run (a 12-megapixel JPEG on 2 cores: 22% fewer lines/s read on a thread).
 */
export const ON_THREADS_UP_TO = 256 * 1024

/**
 * The largest pixel buffer handed back to the threads for reuse (about 1.4 megapixels of RGB): a larger
 * one, from a small file of a large flat image, would be held for the rest of the run.
 */
const RECYCLE_UP_TO = 4 * 1024 * 1024

interface Pending {
  resolve: (reply: BatchReply) => void
  reject: (e: Error) => void
  worker: Worker
}

export class BatchThreads {
  private readonly workers: Worker[] = []
  private readonly load = new Map<Worker, number>()
  private readonly pending = new Map<number, Pending>()
  private failure: Error | undefined
  private next = 0
  private readonly onThreadsUpTo: number
  /** Pixel buffers of images the threads read, done with (recycle()); each goes back with a read. At most as many as were in use at once. */
  private readonly spares: ArrayBuffer[] = []
  private readonly fromThreads = new WeakSet<ArrayBuffer>()

  constructor(
    threads: number,
    mesh: boolean,
    { file = path.join(packageRoot(), 'dist', 'lib', 'cli', 'batch-worker.js'), onThreadsUpTo = ON_THREADS_UP_TO } = {},
  ) {
    this.onThreadsUpTo = onThreadsUpTo
    try {
      for (let i = 0; i < threads; i++) {
        const worker = new Worker(file, { workerData: { mesh } satisfies BatchWorkerData })
        worker.on('message', (reply: BatchReply) => this.settle(reply))
        worker.on('error', (e) => this.fail(new Error(`batch's thread reading images and writing results failed: ${e.message}`)))
        // A reply that cannot be deserialized (out of memory) would leave its request waiting for ever.
        worker.on('messageerror', (e) => this.fail(new Error(`a reply from batch's thread could not be read: ${e.message}`)))
        worker.on('exit', (code) => this.fail(new Error(`batch's thread reading images and writing results exited (code ${code})`)))
        this.workers.push(worker)
        this.load.set(worker, 0)
      }
    } catch (e) {
      // A thread that could not start (out of memory, a thread limit): the ones started would
      // keep the process alive, with nothing left to end them.
      for (const w of this.workers) void w.terminate()
      throw e
    }
  }

  /**
   * An image file decoded as the CLI's readImage decodes it, and with its errors: a CliError for
   * the file's own problem, an error with the system's `code` (EMFILE, EIO) for the system's.
   * Files over `onThreadsUpTo` bytes are read on this thread: their pixels' copy from a thread
   * would cost more than their reading costs here.
   */
  async readImage(file: string): Promise<DecodedImage> {
    const spare = this.spares.pop()
    const reply = await this.request({ n: this.next++, read: file, upTo: this.onThreadsUpTo, spare }, spare ? [spare] : [])
    if ('tooLarge' in reply) return readImageHere(file)
    if ('unreadable' in reply) {
      const { message, code } = reply.unreadable
      throw code === undefined ? new CliError(message) : Object.assign(new Error(message), { code })
    }
    if (!('image' in reply)) throw new Error(`an image's read was answered with ${Object.keys(reply).join(', ')}`)
    // Its pixels came as a Uint8Array (a Buffer crosses threads as one): a Buffer again, as readImage gives.
    const { data } = reply.image
    this.fromThreads.add(data.buffer as ArrayBuffer)
    return { ...reply.image, data: Buffer.from(data.buffer, data.byteOffset, data.length) }
  }

  /**
   * An image readImage() gave, whose pixels nothing reads any more (detect() has settled): its
   * buffer goes back to the threads, which copy later images into it. A new buffer for each image
   * cost the main thread the collections that free them (about 35 us a 640x480 image, more on a
   * larger heap). The image's data must not be used after.
   */
  recycle(image: DecodedImage): void {
    const buffer = image.data.buffer as ArrayBuffer
    if (this.fromThreads.delete(buffer) && buffer.byteLength <= RECYCLE_UP_TO) this.spares.push(buffer)
  }

  /** The record as one line of JSON (with its newline). The faces' buffers are transferred: the faces cannot be read after. */
  async format(record: FacesRecord): Promise<Uint8Array> {
    const reply = await this.request({ n: this.next++, record }, buffersOf(record))
    if (!('bytes' in reply)) throw new Error(`a record was answered with ${Object.keys(reply).join(', ')}`)
    return reply.bytes
  }

  /** Ends the threads; a request still waiting is rejected. */
  async close(): Promise<void> {
    this.fail(new Error("batch's threads are closed"))
    await Promise.all(this.workers.map((w) => w.terminate()))
  }

  private request(message: BatchRequest, transfer: ArrayBuffer[]): Promise<BatchReply> {
    if (this.failure) return Promise.reject(this.failure)
    // Node 20 drops a message whose transfer list holds a detached buffer, without a word: its
    // request would wait for ever.
    if (transfer.some(isDetached)) return Promise.reject(new Error(`request ${message.n} to batch's threads: a buffer to transfer is detached (already sent elsewhere)`))
    const worker = this.leastLoaded()
    return new Promise((resolve, reject) => {
      try {
        worker.postMessage(message, transfer)
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)))
        return
      }
      this.pending.set(message.n, { resolve, reject, worker })
      this.load.set(worker, this.load.get(worker)! + 1)
    })
  }

  private leastLoaded(): Worker {
    let best = this.workers[0]
    for (const w of this.workers) if (this.load.get(w)! < this.load.get(best)!) best = w
    return best
  }

  private settle(reply: BatchReply): void {
    const p = this.pending.get(reply.n)
    if (!p) return
    this.pending.delete(reply.n)
    this.load.set(p.worker, this.load.get(p.worker)! - 1)
    p.resolve(reply)
  }

  /** A thread that fails fails them all: every request waiting and every one after is rejected. */
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
