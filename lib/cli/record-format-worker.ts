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

export type FormatReply = { n: number; bytes: Uint8Array } | { n: number; error: string }

export interface FormatWorkerData {
  mesh: boolean
}

const port = parentPort
if (!port) throw new Error('record-format-worker must run in a worker thread')
const { mesh } = workerData as FormatWorkerData
const utf8 = new TextEncoder()

port.on('message', ({ n, record }: FormatRequest) => {
  let reply: FormatReply
  try {
    // The spread keeps the record's key order: line, id, image, faces.
    const text = JSON.stringify({ ...record, faces: record.faces.map((f) => faceToJsonWith(f, { mesh })) })
    reply = { n, bytes: utf8.encode(`${text}\n`) }
  } catch (e) {
    reply = { n, error: e instanceof Error ? e.message : String(e) }
  }
  port.postMessage(reply, 'bytes' in reply ? [reply.bytes.buffer as ArrayBuffer] : [])
})
