// onnxruntime-node aborts the whole process (std::terminate in its binding) when a thread is torn
// down while inside one of its native calls: process.exit() during load() or detect() on the
// CPU ended with exit code 134 instead of the one asked for. So each inference thread makes its
// native calls (loading onnxruntime-node, the session load, each run) through a gate shared with
// the thread that started it: at that thread's 'exit', a call under way is waited for (it cannot
// be stopped: a session load takes seconds, a run one batch), and none begins after. Not covered:
// worker.terminate() of a caller's own worker thread in which a model is loading or running (no
// JavaScript runs there to wait), which the README says.
const BUSY = 0
const EXITING = 1
/** How long an exit waits for the calls under way: a real model loads in seconds. */
const EXIT_WAIT_MS = 120_000

const open = new Set<Int32Array>()
let listening = false

/** Waits (blocking: only synchronous work runs in 'exit') for every call under way to end. */
function waitForCalls(): void {
  // All are closed first, so that none begins while another is waited for.
  for (const gate of open) Atomics.store(gate, EXITING, 1)
  const deadline = Date.now() + EXIT_WAIT_MS
  for (const gate of open) {
    while (Atomics.load(gate, BUSY) === 1) {
      const left = deadline - Date.now()
      if (left <= 0) {
        process.stderr.write(`face-multitask: exiting while ONNX Runtime is still busy (waited ${EXIT_WAIT_MS / 1000} s)\n`)
        return
      }
      Atomics.wait(gate, BUSY, 1, left)
    }
  }
}

/** The starting side: a gate for one inference thread, to pass to it; closed once the thread has ended. */
export function openExitGate(): { buffer: SharedArrayBuffer; close: () => void } {
  if (!listening) {
    listening = true
    process.prependListener('exit', waitForCalls)
  }
  const gate = new Int32Array(new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT))
  open.add(gate)
  return { buffer: gate.buffer as SharedArrayBuffer, close: () => { open.delete(gate) } }
}

/**
 * The inference thread's side: runs `call` unless the exit has begun (then resolves undefined
 * and nothing is called: the thread is about to be torn down).
 */
export async function gatedCall<T>(buffer: SharedArrayBuffer, call: () => Promise<T>): Promise<T | undefined> {
  const gate = new Int32Array(buffer)
  // Marked busy before the check, and the exit marks before it looks: one of the two sees the other.
  Atomics.store(gate, BUSY, 1)
  try {
    if (Atomics.load(gate, EXITING) === 1) return undefined
    return await call()
  } finally {
    Atomics.store(gate, BUSY, 0)
    Atomics.notify(gate, BUSY)
  }
}
