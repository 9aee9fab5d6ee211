// One ONNX Runtime session on its own thread: onnxruntime-node's session.run blocks the thread
// it is called on, so inference never runs on the caller's event loop. Inputs arrive and
// outputs leave as transferred ArrayBuffers (no copies).
import { parentPort } from 'node:worker_threads'
import type * as Ort from 'onnxruntime-node'
import { INPUT_NAME, INPUT_SIZE } from '../contract'
import { gatedCall } from './onnxruntime-exit-gate'
import { type SessionSettings, sessionOptions } from './onnxruntime-session-options'

export type WorkerRequest =
  | { type: 'load'; model: string; settings: SessionSettings; outputs: string[]; gate: SharedArrayBuffer }
  | { type: 'run'; id: number; input: ArrayBuffer; batch: number }

export interface WireTensor {
  buffer: ArrayBuffer
  byteOffset: number
  length: number
  dims: number[]
}

export type WorkerReply =
  | { type: 'loaded' }
  | { type: 'result'; id: number; outputs: Record<string, WireTensor>; input?: ArrayBuffer }
  | { type: 'error'; id?: number; message: string; input?: ArrayBuffer }

const port = parentPort
if (!port) throw new Error('onnxruntime-worker must run in a worker thread')
/** onnxruntime-node, required inside the gate: registering its native module is a native call too. */
let ort: typeof Ort
let session: Ort.InferenceSession | undefined
/** The gate every native call goes through (onnxruntime-exit-gate.ts), from the load request. */
let gate: SharedArrayBuffer
/** The outputs decoding reads: a model's further outputs (allowed, of any type) are not fetched. */
let fetches: string[] = []

function send(reply: WorkerReply, transfer: ArrayBuffer[] = []): void {
  try {
    port!.postMessage(reply, transfer)
  } catch {
    port!.postMessage(reply) // a buffer the runtime will not transfer is copied instead
  }
}

port.on('message', async (msg: WorkerRequest) => {
  if (msg.type === 'load') {
    try {
      gate = msg.gate
      session = await gatedCall(gate, () => {
        ort = require('onnxruntime-node') as typeof Ort
        return ort.InferenceSession.create(msg.model, {
          ...sessionOptions(msg.settings),
          // Fatal only: a failed run comes back to its caller as the rejection's message; ONNX
          // Runtime's own copy on stderr (and again for each request rerun alone) is noise in a service's log.
          logSeverityLevel: 4,
        })
      })
      if (!session) return // the process is exiting: this thread is about to end
      fetches = msg.outputs.filter((name) => session!.outputNames.includes(name))
      send({ type: 'loaded' })
    } catch (e) {
      send({ type: 'error', message: (e as Error).message })
    }
    return
  }
  try {
    const input = new ort.Tensor('float32', new Float32Array(msg.input, 0, msg.batch * 3 * INPUT_SIZE * INPUT_SIZE), [msg.batch, 3, INPUT_SIZE, INPUT_SIZE])
    const result = await gatedCall(gate, () => session!.run({ [INPUT_NAME]: input }, fetches))
    if (!result) return // the process is exiting: this thread is about to end
    const outputs: Record<string, WireTensor> = {}
    const transfer = new Set<ArrayBuffer>()
    for (const [name, t] of Object.entries(result)) {
      if (t.type !== 'float32') throw new Error(`the model's output "${name}" is ${t.type}, not float32`)
      const data = t.data as Float32Array
      outputs[name] = { buffer: data.buffer as ArrayBuffer, byteOffset: data.byteOffset, length: data.length, dims: [...t.dims] }
      transfer.add(data.buffer as ArrayBuffer)
    }
    // The input buffer goes back too, for the next batch: no new allocation (and page faults) per batch.
    send({ type: 'result', id: msg.id, outputs, input: msg.input }, [...transfer, msg.input])
  } catch (e) {
    send({ type: 'error', id: msg.id, message: (e as Error).message, input: msg.input }, [msg.input])
  }
})
