// TensorRT engines still open when the process exits are closed in its 'exit' event, where only
// synchronous work runs: process.exit() on the main thread tears no environment down, so the
// addon's own teardown hook never runs and the pipelines' threads could still be in the CUDA
// driver while the process's static destructors and the driver's teardown run. The batches not
// yet started are dropped (nothing can receive their results); those running finish first.
// Weak references: a model dropped without close() is still collected, and the addon closes it
// on a thread of its own, which the hooks given to afterClosing (the addon's join) wait for.

export interface ClosesAtExit {
  closeAtExit(): void
}

const open = new Set<WeakRef<ClosesAtExit>>()
const after = new Set<() => void>()
let listening = false

function closeAll(): void {
  const steps = [...[...open].map((ref) => () => ref.deref()?.closeAtExit()), ...after]
  for (const step of steps) {
    try {
      step()
    } catch (e) {
      process.stderr.write(`face-multitask: closing a TensorRT engine at exit: ${(e as Error).message}\n`)
    }
  }
  open.clear()
}

function listen(): void {
  if (listening) return
  listening = true
  process.on('exit', closeAll)
}

/** Runs `hook` at the process's exit after the engines still open are closed (once per hook). */
export function afterClosing(hook: () => void): void {
  after.add(hook)
  listen()
}

/** Closes `engine` at the process's exit unless the returned function is called first (once its own close() is done). */
export function closeAtExit(engine: ClosesAtExit): () => void {
  for (const ref of open) if (ref.deref() === undefined) open.delete(ref)
  const ref = new WeakRef(engine)
  open.add(ref)
  listen()
  return () => {
    open.delete(ref)
  }
}
