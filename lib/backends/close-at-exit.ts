// TensorRT engines are closed in the main thread's 'exit' event, where only synchronous work
// runs: process.exit() there tears no environment down, so the addon's teardown hooks never run
// and the pipelines' threads (an open model's, or the one closing a model collected unclosed)
// could still be in the CUDA driver while the process's static destructors and the driver's
// teardown run. The addon's tensorrtCloseAll closes them in place: batches not yet started are
// dropped (nothing can receive their results), those running finish first. A worker's
// process.exit() ends only the worker, whose teardown closes its engines itself.
import { isMainThread } from 'node:worker_threads'

let registered = false

/** Calls `closeAll` in the main thread's 'exit' event, before any other listener (once per process). */
export function closeAtExit(closeAll: () => void): void {
  if (registered || !isMainThread) return
  registered = true
  // First: a listener registered earlier that throws would skip those after it.
  process.prependListener('exit', () => {
    try {
      closeAll()
    } catch (e) {
      process.stderr.write(`face-multitask: closing the TensorRT engines at exit: ${(e as Error).message}\n`)
    }
  })
}
