// TensorRT engines still open when the process exits are closed in its 'exit' event, where only
// synchronous work runs: process.exit() on the main thread tears no environment down, so the
// addon's own teardown hook never runs and the pipelines' threads could still be in the CUDA
// driver while the process's static destructors and the driver's teardown run. The batches not
// yet started are dropped (nothing can receive their results); those running finish first.
// Weak references: a model dropped without close() is still collected, and the addon closes it.

export interface ClosesAtExit {
  closeAtExit(): void
}

const open = new Set<WeakRef<ClosesAtExit>>()
let listening = false

function closeAll(): void {
  for (const ref of open) {
    try {
      ref.deref()?.closeAtExit()
    } catch (e) {
      process.stderr.write(`face-multitask: closing a TensorRT engine at exit: ${(e as Error).message}\n`)
    }
  }
  open.clear()
}

/** Closes `engine` at the process's exit unless the returned function is called first (once its own close() is done). */
export function closeAtExit(engine: ClosesAtExit): () => void {
  for (const ref of open) if (ref.deref() === undefined) open.delete(ref)
  const ref = new WeakRef(engine)
  open.add(ref)
  if (!listening) {
    listening = true
    process.on('exit', closeAll)
  }
  return () => {
    open.delete(ref)
  }
}
