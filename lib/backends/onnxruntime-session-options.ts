// The ONNX Runtime session options of the CPU backend's threads, also used by the benchmark's
// bare session, so both run the same graph the same way.
import type { InferenceSession } from 'onnxruntime-node'

/** How each thread's session runs: its intra-op threads, and whether they spin-wait for work. */
export interface SessionSettings {
  threads: number
  spinWait: boolean
}

export function sessionOptions(settings: SessionSettings): InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: settings.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    // ONNX Runtime's session config key session.intra_op.allow_spinning ("1", its default, spins).
    extra: { session: { intra_op: { allow_spinning: settings.spinWait ? '1' : '0' } } },
  }
}
