// One of batch's threads (batch-threads.ts): it reads and decodes list lines' images and writes
// face records as JSON text, the two parts of a line's work that cost its main thread the most
// on a fast model (sharp's calls and the file's 250 us or more an image, a face's record with
// the mesh about 500). Pixels and record bytes go back transferred, faces come in the same way.
import { stat } from 'node:fs/promises'
import { type MessagePort, parentPort, workerData } from 'node:worker_threads'
// Loaded now: a sharp that cannot load (its binary missing for this platform) fails the thread,
// which stops the run at once; loaded on first use, it failed each image's read instead, and
// every line was recorded as unreadable for good.
import 'sharp'
import { isPassingFileError } from '../describe'
import type { DecodedImage } from '../read-image'
import type { Face } from '../types'
import { CliError, messageOf } from './common'
import { faceToJsonWith } from './format'
import { readImage } from './image'
import { SpareBuffers } from './spare-buffers'

/** A list line's result: its faces, written as faceToJsonWith() writes them. */
export interface FacesRecord {
  line: number
  id?: string | number
  image: string
  faces: Face[]
}

/**
 * `read`: an image file to read here if it is no larger than `upTo` bytes. `spare`: an earlier
 * image's pixel buffer, done with, for this thread's images to be copied into (see read()).
 */
export type BatchRequest = { n: number; record: FacesRecord } | { n: number; read: string; upTo: number; spare?: ArrayBuffer }

/**
 * `unreadable`: why an image could not be read, as the CLI's readImage said it: with `code`, an
 * error of the system (out of file handles, EIO), which stops the run; without, the file's own.
 * `tooLarge`: the file is over `upTo` bytes, left to the caller's thread.
 */
export type BatchReply =
  | { n: number; bytes: Uint8Array }
  | { n: number; image: Omit<DecodedImage, 'data'> & { data: Uint8Array } }
  | { n: number; unreadable: { message: string; code?: string } }
  | { n: number; tooLarge: true }

export interface BatchWorkerData {
  mesh: boolean
}

if (!parentPort) throw new Error('batch-worker must run in a worker thread')
const port: MessagePort = parentPort
const { mesh } = workerData as BatchWorkerData
// Its bytes own their buffer, which can be transferred (Buffer.from's small ones share a pool).
const utf8 = new TextEncoder()
const spares = new SpareBuffers()

// What throws here (an unhandled rejection included) is the thread's 'error': it fails every
// request waiting (batch-threads.ts).
port.on('message', (request: BatchRequest) => {
  if ('read' in request) {
    if (request.spare) spares.keep(request.spare)
    void read(request.n, request.read, request.upTo)
    return
  }
  const { n, record } = request
  // The spread keeps the record's key order: line, id, image, faces.
  const text = JSON.stringify({ ...record, faces: record.faces.map((f) => faceToJsonWith(f, { mesh })) })
  const reply: BatchReply = { n, bytes: utf8.encode(`${text}\n`) }
  port.postMessage(reply, [reply.bytes.buffer as ArrayBuffer])
})

async function read(n: number, file: string, upTo: number): Promise<void> {
  // A large file's pixels cost more to copy here than their reading costs the main thread there
  // (a 12-megapixel JPEG: 35-40 ms of copying against decoding's 155). Its stat's errors are
  // left to readImage, on whichever thread.
  if (((await stat(file).catch(() => undefined))?.size ?? 0) > upTo) {
    port.postMessage({ n, tooLarge: true } satisfies BatchReply)
    return
  }
  let image: DecodedImage
  try {
    image = await readImage(file)
  } catch (e) {
    // Anything else is a fault of this code, not of the image: the thread fails.
    const system = isPassingFileError(e)
    if (!system && !(e instanceof CliError)) throw e
    port.postMessage({ n, unreadable: { message: messageOf(e), ...(system ? { code: (e as NodeJS.ErrnoException).code } : {}) } } satisfies BatchReply)
    return
  }
  // Sent as a copy in V8's memory: sharp's own buffer is libvips' memory, freed by a finalizer on
  // the thread that ends up holding it; handed over, a 640x480 image cost the main thread
  // 190-460 us, the copy 100-120 (V8 frees its buffers off the main thread). Copied into a spare
  // where one fits: each new buffer also cost the main thread its share of the collections that
  // free them.
  const data = new Uint8Array(spares.take(image.data.length) ?? new ArrayBuffer(image.data.length), 0, image.data.length)
  data.set(image.data)
  port.postMessage({ n, image: { ...image, data } } satisfies BatchReply, [data.buffer])
}

