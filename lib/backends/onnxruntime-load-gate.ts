// onnxruntime-node aborts the whole process (std::terminate in its binding) when a thread is torn
// down while inside its native session load: process.exit() during load() did so, with exit code
// 134 instead of the one asked for. So each inference thread's load goes through a gate shared
// with the thread that started it: at that thread's 'exit', a load under way is waited for (it
// cannot be stopped), and one not yet begun does not begin. Runs are not gated: an exit with runs
// in flight ended with its own code in every trial (the exit stops a thread otherwise than
// worker.terminate(), which does abort a thread inside a run: close() terminates the threads only
// once no batch runs on them).
const BUSY = 0
const EXITING = 1
/** How long an exit waits for loads under way: a real model loads in seconds. */
const EXIT_WAIT_MS = 120_000

const open = new Set<Int32Array>()
let listening = false

/** Waits (blocking: only synchronous work runs in 'exit') for every load under way to end. */
function waitForLoads(): void {
  // All are closed first, so that none begins while another is waited for.
  for (const gate of open) Atomics.store(gate, EXITING, 1)
  const deadline = Date.now() + EXIT_WAIT_MS
  for (const gate of open) {
    while (Atomics.load(gate, BUSY) === 1) {
      const left = deadline - Date.now()
      if (left <= 0) {
        process.stderr.write(`face-multitask: exiting while ONNX Runtime still loads a model (waited ${EXIT_WAIT_MS / 1000} s)\n`)
        return
      }
      Atomics.wait(gate, BUSY, 1, left)
    }
  }
}

/** The starting side: a gate for one thread's load, to pass to it; close it once the load has answered. */
export function openLoadGate(): { buffer: SharedArrayBuffer; close: () => void } {
  if (!listening) {
    listening = true
    process.prependListener('exit', waitForLoads)
  }
  const gate = new Int32Array(new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT))
  open.add(gate)
  return { buffer: gate.buffer as SharedArrayBuffer, close: () => { open.delete(gate) } }
}

/**
 * The inference thread's side: runs `load` unless the exit has begun (then resolves undefined
 * and nothing is loaded: the thread is about to be torn down).
 */
export async function gatedLoad<T>(buffer: SharedArrayBuffer, load: () => Promise<T>): Promise<T | undefined> {
  const gate = new Int32Array(buffer)
  // Marked busy before the check, and the exit marks before it looks: one of the two sees the other.
  Atomics.store(gate, BUSY, 1)
  try {
    if (Atomics.load(gate, EXITING) === 1) return undefined
    return await load()
  } finally {
    Atomics.store(gate, BUSY, 0)
    Atomics.notify(gate, BUSY)
  }
}
