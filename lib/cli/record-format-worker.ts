// batch's result records written as JSON text on a thread of their own (record-formatter.ts):
// a face's record with the mesh costs about 500 us of CPU to write, which on a fast model was
// most of the main thread's time per face. Faces arrive with their buffers transferred; each
// line leaves as UTF-8 bytes, transferred back.
import { parentPort, workerData } from 'node:worker_threads'
import type { Face } from '../types'
import { faceToJsonWith } from './format'

/** A list line's result: its faces, written as faceToJsonWith() writes them. */
export interface FacesRecord {
  line: number
  id?: string | number
  image: string
  faces: Face[]
}

export interface FormatRequest {
  n: number
  record: FacesRecord
}

export interface FormatReply {
  n: number
  bytes: Uint8Array
}

export interface FormatWorkerData {
  mesh: boolean
}

const port = parentPort
if (!port) throw new Error('record-format-worker must run in a worker thread')
const { mesh } = workerData as FormatWorkerData
// Its bytes own their buffer, which can be transferred (Buffer.from's small ones share a pool).
const utf8 = new TextEncoder()

// What throws here is the thread's 'error': it fails every record waiting (record-formatter.ts).
port.on('message', ({ n, record }: FormatRequest) => {
  // The spread keeps the record's key order: line, id, image, faces.
  const text = JSON.stringify({ ...record, faces: record.faces.map((f) => faceToJsonWith(f, { mesh })) })
  const reply: FormatReply = { n, bytes: utf8.encode(`${text}\n`) }
  port.postMessage(reply, [reply.bytes.buffer as ArrayBuffer])
})
