// CPU backend: native preprocessing on libuv's pool, straight into a buffer that is then
// transferred to a worker thread running an ONNX Runtime session.
import { statSync } from 'node:fs'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { HEAD_OUTPUTS, type ModelSpec } from '../contract'
import { usableCores } from '../cores'
import type { BatchOutputs } from '../decode'
import { checkStillWhole, type FaceJob } from '../image-input'
import { loadNative, nativeModes, packageRoot } from '../native'
import type { BatchRequests } from '../scheduler'
import type { Backend } from './backend'
import { openExitGate } from './onnxruntime-exit-gate'
import { disableOnnxRuntimeTelemetry } from './onnxruntime-telemetry'
import type { SessionSettings } from './onnxruntime-session-options'
import type { WorkerReply, WorkerRequest } from './onnxruntime-worker'

const INPUT_FLOATS = 3 * 224 * 224

interface Pending {
  resolve: (o: BatchOutputs) => void
  reject: (e: Error) => void
}

class SessionWorker {
  private pending = new Map<number, Pending>()
  private nextId = 1
  /** Set once the thread has died; every later run rejects with it. */
  failure: Error | undefined
  /** Why the thread died, as first said (failure may add what follows: a pause, no replacement). */
  death: string | undefined
  /** Batches it has answered with outputs. */
  completed = 0
  /** Told once, when the thread dies (not when terminate() ends it). */
  onDeath: (() => void) | undefined
  /** Started in place of a thread that died. */
  replacement = false
  /** Whether a batch was on it when it died. */
  diedRunning = false
  /** Given each input buffer the thread hands back with its reply. */
  onInputBack: ((b: ArrayBuffer) => void) | undefined

  private constructor(private readonly worker: Worker) {
    worker.on('message', (m: WorkerReply) => {
      if (m.type === 'result' || (m.type === 'error' && m.id !== undefined)) {
        if (m.input) this.onInputBack?.(m.input)
        const p = this.pending.get(m.id!)
        this.pending.delete(m.id!)
        if (this.pending.size === 0) worker.unref()
        if (!p) return
        if (m.type === 'error') return p.reject(new Error(`onnxruntime: ${m.message}`))
        this.completed++
        try {
          const out: BatchOutputs = {}
          for (const [name, t] of Object.entries(m.outputs)) out[name] = new Float32Array(t.buffer, t.byteOffset, t.length)
          p.resolve(out)
        } catch (e) {
          p.reject(new Error(`onnxruntime: the outputs could not be read: ${(e as Error).message}`))  // thrown here, it would end the process
        }
      }
    })
    const fail = (e: Error) => {
      const first = this.failure === undefined
      if (first) this.diedRunning = this.pending.size > 0
      this.failure ??= e
      this.death ??= this.failure.message
      for (const p of this.pending.values()) p.reject(this.failure)
      this.pending.clear()
      if (first) this.onDeath?.()
    }
    worker.on('error', (e) => fail(new Error(`the inference worker failed: ${e.message}`)))
    worker.on('exit', (code) => fail(new Error(`the inference worker exited (code ${code})`)))
    // A reply that cannot be deserialized (out of memory) would leave its batch waiting for ever:
    // the thread is given up as dead (and replaced, its batch run again, as after a crash).
    worker.on('messageerror', (e) => {
      fail(new Error(`a reply from the inference worker could not be read: ${e.message}`))
      void worker.terminate()
    })
    // An idle model does not keep the process alive (as the TensorRT backend's native threads):
    // the worker holds the event loop only while a batch is on it. After the listeners: adding a
    // 'message' listener refs the worker's port again.
    worker.unref()
  }

  static async start(model: string, settings: SessionSettings, outputs: string[]): Promise<SessionWorker> {
    const file = path.join(packageRoot(), 'dist', 'lib', 'backends', 'onnxruntime-worker.js')
    disableOnnxRuntimeTelemetry()
    const worker = new Worker(file)
    // The process's exit waits for the thread's calls into ONNX Runtime, for as long as it runs.
    const gate = openExitGate()
    worker.once('exit', gate.close)
    const reply = await new Promise<WorkerReply>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
      // Nor may an answer that cannot be read, or a thread that ends without one, leave the load
      // (a replacement's included: the calls waiting for it) waiting for ever.
      const failed = (why: string) => reject(new Error(`onnxruntime could not load "${model}": ${why}`))
      worker.once('messageerror', (e) => failed(`the thread's answer could not be read: ${e.message}`))
      worker.once('exit', (code) => failed(`its thread exited (code ${code}) before answering`))
      worker.postMessage({ type: 'load', model, settings, outputs, gate: gate.buffer } satisfies WorkerRequest)
    }).catch(async (e: unknown) => {
      await worker.terminate()  // one whose answer could not be read still runs
      throw e
    })
    if (reply.type !== 'loaded') {
      await worker.terminate()
      throw new Error(`onnxruntime could not load "${model}": ${reply.type === 'error' ? reply.message : 'unexpected reply'}`)
    }
    return new SessionWorker(worker)
  }

  run(input: Float32Array, batch: number): Promise<BatchOutputs> {
    if (this.failure) return Promise.reject(this.failure)
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref()
      this.pending.set(id, { resolve, reject })
      const msg: WorkerRequest = { type: 'run', id, input: input.buffer as ArrayBuffer, batch }
      this.worker.postMessage(msg, [input.buffer as ArrayBuffer])
    })
  }

  terminate(): Promise<number> {
    this.failure ??= new Error('the model is closed')
    return this.worker.terminate()
  }

}

/**
 * What tells a file rewritten or replaced: its inode, size and time of last change; undefined when
 * it is gone. Synchronous: a thread is replaced even while libuv's pool is held up (see run()).
 */
function fileStamp(file: string): string | undefined {
  const st = statSync(file, { throwIfNoEntry: false })
  return st && `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`
}

/** The files a session reads (the model, and the external-data files beside it that hold its weights), stamped. */
function stampModelFiles(model: string, externalData: readonly string[]): { file: string; stamp: string | undefined }[] {
  const files = [model, ...new Set(externalData.map((location) => path.resolve(path.dirname(model), location)))]
  return files.map((file) => ({ file, stamp: fileStamp(file) }))
}

/** The outputs decoding reads (a model may have more, of any type: not fetched). */
const headOutputs = (spec: ModelSpec) => spec.heads.map((h) => HEAD_OUTPUTS[h].name)

/** The indices (in the batch) of the faces `wanted` keeps among `rows`, in order. */
function wantedRows(rows: number[], wanted: boolean[] | undefined): number[] {
  return wanted ? rows.filter((i) => wanted[i]) : rows
}

/** Outputs of the faces at `rows` back in their rows of a batch of `faces`; the rows left out hold zeros. */
function spreadRows(outputs: BatchOutputs, rows: number[], faces: number): BatchOutputs {
  const out: BatchOutputs = {}
  for (const [name, t] of Object.entries(outputs)) {
    const size = t.length / rows.length
    const full = new Float32Array(faces * size)
    rows.forEach((to, k) => full.set(t.subarray(k * size, (k + 1) * size), to * size))
    out[name] = full
  }
  return out
}

export interface OnnxRuntimeOptions {
  workers: number
  threads?: number
  /** ONNX Runtime's intra-op threads spin-wait for work (LoadOptions.spinWait). */
  spinWait: boolean
  /** What the model declares: ONNX Runtime runs the graph in its own types (FP16 weights stay FP16). */
  precision?: string
  /** The model's external-data locations (OnnxModelInfo.externalData): a replaced thread reads them too. */
  externalData?: readonly string[]
}

export class OnnxRuntimeBackend implements Backend {
  readonly name = 'onnxruntime' as const
  readonly device: string
  /** The addon's crop and resize codes for this model. */
  private readonly modes: { crop: 0 | 1; resize: 0 | 1 }

  private constructor(
    private readonly workers: SessionWorker[],
    private readonly spec: ModelSpec,
    private readonly model: string,
    /** The model's files as the first threads loaded them (the .onnx first): a replacement thread must load the same model. */
    private readonly loaded: { file: string; stamp: string | undefined }[],
    private readonly settings: SessionSettings,
    readonly precision: string,
  ) {
    this.modes = nativeModes(spec)
    this.idle = [...workers]
    const { threads } = settings
    this.device = `cpu (${workers.length} worker${workers.length > 1 ? 's' : ''} x ${threads} thread${threads > 1 ? 's' : ''}${settings.spinWait ? '' : ', no spin-wait'})`
    workers.forEach((w, slot) => this.watch(w, slot))
  }

  /**
   * Input buffers handed back by the threads with their outputs, kept for the next batches (at
   * most one per slot, the largest): a new buffer per batch cost its allocation, page faults in
   * the preprocessing and garbage collection, 51-73% of faces/s at batch 64-256 on the synthetic
   * model. An idle model holds them (maxBatch x 602 KB each), as a busy one held its last ones.
   */
  private spare: ArrayBuffer[] = []

  private takeInput(faces: number): Float32Array {
    const bytes = faces * INPUT_FLOATS * 4
    let best = -1
    for (let i = 0; i < this.spare.length; i++) {
      if (this.spare[i].byteLength >= bytes && (best < 0 || this.spare[i].byteLength < this.spare[best].byteLength)) best = i
    }
    if (best < 0) return new Float32Array(faces * INPUT_FLOATS)
    return new Float32Array(this.spare.splice(best, 1)[0], 0, faces * INPUT_FLOATS)
  }

  private giveBack = (b: ArrayBuffer): void => {
    if (this.closed) return
    this.spare.push(b)
    if (this.spare.length > this.slots) {
      this.spare.sort((x, y) => y.byteLength - x.byteLength)  // keep the largest
      this.spare.length = this.slots
    }
  }

  // A thread that dies (a crash, running out of memory) is replaced by a new one on the same
  // model, so a long-running service recovers, even with one worker. A death with a batch on it
  // is the batch's doing (run() bounds how many threads one batch may kill), so its thread is
  // replaced. Not a replacement that died idle before answering a single batch: a crash loop of
  // the thread itself, and the slot stays dead. Once more replacements in a row than twice what
  // one batch may kill have died answering none (every batch kills: memory gone, a broken
  // runtime; or a client retrying one bad input), the next starts only after a pause that
  // doubles each time, to a minute: meanwhile calls that find no live thread reject at once,
  // saying so, instead of reloading the model with every call.
  private readonly starting = new Set<Promise<void>>()
  private readonly pauses = new Set<NodeJS.Timeout>()
  private closed = false
  /** Faces of a batch that killed as many threads as it may: each call that holds one gets no more. */
  private readonly killers = new WeakSet<FaceJob>()
  /** Per slot: replacements in a row that died before answering a batch. */
  private readonly barren: number[] = []

  private watch(w: SessionWorker, slot: number): void {
    w.onInputBack = this.giveBack
    w.onDeath = () => {
      const barren = (this.barren[slot] = w.completed > 0 || !w.replacement ? 0 : (this.barren[slot] ?? 0) + 1)
      if (this.closed || (w.replacement && w.completed === 0 && !w.diedRunning)) return this.settleWaiters()
      const over = barren - 2 * (this.workers.length + 1)
      if (over <= 0) return this.replace(slot)
      const pause = Math.min(60_000, 1000 * 2 ** (over - 1))
      w.failure = new Error(`${w.death}; ${barren} threads in a row died before answering a batch, so the next starts in ${pause / 1000} s`)
      const timer = setTimeout(() => {
        this.pauses.delete(timer)
        if (!this.closed) this.replace(slot)
      }, pause)
      timer.unref()  // a paused model does not keep the process alive
      this.pauses.add(timer)
      this.settleWaiters()
    }
  }

  private replace(slot: number): void {
    const start: Promise<void> = this.modelUnchanged().then(() => SessionWorker.start(this.model, this.settings, headOutputs(this.spec))).then(
      (fresh) => {
        this.starting.delete(start)
        if (this.closed) return fresh.terminate().then(() => {})
        fresh.replacement = true
        this.workers[slot] = fresh
        this.watch(fresh, slot)
        this.release(fresh)
      },
      (e: unknown) => {
        this.starting.delete(start)  // the model cannot be loaded again: this slot stays dead, saying why
        const dead = this.workers[slot]
        dead.failure = new Error(`${dead.death ?? 'the inference worker died'}; no thread can replace it: ${(e as Error).message}`)
        this.settleWaiters()
      },
    )
    this.starting.add(start)
  }

  // With every thread dead and none starting, the batches waiting for one are handed a dead one,
  // whose run rejects at once with why (see usable()); each passes it on to the next.
  private settleWaiters(): void {
    if (!this.allDead() || this.waiting.length === 0) return
    this.release(this.workers[0])
  }

  /** Workers waiting for a batch to run on. */
  private idle: SessionWorker[]
  private waiting: ((w: SessionWorker) => void)[] = []
  /**
   * Settles once every batch started so far has its worker: batches ask in the order they
   * started, so calls are served in the order they came, not in the order their preprocessing
   * ends (a one-face call would overtake an earlier large one on an idle model).
   */
  private lastTurn: Promise<void> = Promise.resolve()
  /** Batches started and still without a worker, by when they started (see run()). */
  private unserved: number[] = []
  private turns = 0

  // One batch more than there are workers: the next batch is preprocessed while the workers
  // infer, so preprocessing adds no time to a busy pipeline.
  get slots(): number {
    return this.workers.length + 1
  }

  /** Rejects when the model file, or a file holding its weights, is no longer the one loaded (rewritten, removed). */
  private async modelUnchanged(): Promise<void> {
    for (const [i, { file, stamp }] of this.loaded.entries()) {
      const now = fileStamp(file)
      if (now === stamp) continue
      const what = i === 0 ? 'the model file' : `the model's weights file (ONNX external data)`
      throw new Error(`${what} "${file}" changed since it was loaded (${now === undefined ? 'removed' : 'rewritten'}): load the model again`)
    }
  }

  static async create(model: string, spec: ModelSpec, opts: OnnxRuntimeOptions): Promise<OnnxRuntimeBackend> {
    loadNative() // fail early, with the addon's own message, before any thread starts
    const loaded = stampModelFiles(model, opts.externalData ?? [])
    const settings = { threads: opts.threads ?? Math.max(1, Math.floor(usableCores() / opts.workers)), spinWait: opts.spinWait }
    const started = await Promise.allSettled(Array.from({ length: opts.workers }, () => SessionWorker.start(model, settings, headOutputs(spec))))
    const workers = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) {
      await Promise.all(workers.map((w) => w.terminate())) // the ones that did load stop too
      throw failed.reason
    }
    return new OnnxRuntimeBackend(workers, spec, model, loaded, settings, opts.precision ?? 'fp32')
  }

  async run(faces: FaceJob[], requests?: BatchRequests): Promise<BatchOutputs> {
    // A batch may lose threads to crashes not its own (one more than there are workers: each
    // other thread, and one replacement); a call rerun alone after its shared batch used that up
    // (the scheduler's per-call rerun) may lose none, or one bad call would kill every thread.
    const mayLose = faces.some((f) => this.killers.has(f)) ? 0 : this.workers.length
    const all = faces.map((_, i) => i)
    for (let deaths = 0; ; deaths++) {
      // The faces (their indices in the batch) read and run on this try. Run again after its
      // thread died, a batch reads only the frames of calls still waiting for it: the others
      // have failed, and have settled (their frames the callers' again) unless another batch
      // still reads them.
      const rows = deaths === 0 ? all : wantedRows(all, requests?.readFramesAgain())
      if (rows.length === 0) throw new Error('internal: no face of this batch is still wanted')
      const read = rows.length === faces.length ? faces : rows.map((i) => faces[i])
      const input = this.takeInput(read.length)
      const preprocessed = (async () => {
        try {
          if (deaths > 0) checkStillWhole(read)  // read again: the caller may have let a frame go meanwhile
          await loadNative().preprocess(read, this.modes.crop, this.modes.resize, input)
        } finally {
          requests?.framesRead()  // a call aborted from here on rejects without waiting for the inference
        }
      })()
      const worker = await this.workerInTurn(preprocessed)
      try {
        // The batch was preprocessed while another ran, and may have waited a whole inference for
        // this worker: the faces of calls aborted meanwhile (a real-time rig's stale frames) are
        // left out, rather than run for nobody ahead of the frames that replaced them.
        const run = wantedRows(rows, requests?.wanted())
        if (run.length === 0) {
          this.giveBack(input.buffer as ArrayBuffer)
          throw new Error('internal: no face of this batch is still wanted')  // every call in it has already failed or been aborted
        }
        if (run.length < rows.length) {
          let to = 0
          rows.forEach((i, from) => {
            if (run[to] === i) input.copyWithin(to++ * INPUT_FLOATS, from * INPUT_FLOATS, (from + 1) * INPUT_FLOATS)
          })
        }
        const outputs = await worker.run(input, run.length)
        return run.length === faces.length ? outputs : spreadRows(outputs, run, faces.length)
      } catch (e) {
        // Its thread died with the batch on it: run it again (the input went to that thread) on
        // a worker that lives or is replacing it; the batch is not the cause (that would be an
        // error reply). A worker still usable is alive, or dead with no other coming: the error
        // stands. So it does for a batch that has killed more threads than there are workers: it
        // is the cause, and under steady traffic (replacements answering other batches, so
        // replaced in turn) it would otherwise run, and kill, for as long as the traffic lasts.
        if (this.usable(worker)) throw e
        if (deaths >= mayLose) {
          for (const f of faces) this.killers.add(f)
          throw e
        }
      } finally {
        this.release(worker)
      }
    }
  }

  // A worker whose thread died rejects a batch at once and so, back first in this last-in-first-out
  // pool, would take nearly every next batch while a live worker sits idle: it leaves the pool
  // while another worker lives or a replacement is starting. Once all have died and none is
  // coming, any serves, so a run still settles, with why.
  private usable(w: SessionWorker): boolean {
    return !w.failure || this.allDead()
  }

  /** Every thread dead and none starting. */
  private allDead(): boolean {
    return this.starting.size === 0 && this.workers.every((w) => w.failure)
  }

  /**
   * A worker for the batch starting now, once its preprocessing (`preprocessed`) is done, in the
   * order batches started (lastTurn).
   */
  private async workerInTurn(preprocessed: Promise<void>): Promise<SessionWorker> {
    const earlier = this.lastTurn
    let turnTaken!: () => void
    this.lastTurn = Promise.all([earlier, new Promise<void>((resolve) => { turnTaken = resolve })]).then(() => {})
    const turn = this.turns++
    this.unserved.push(turn)
    try {
      await preprocessed
      // With a thread idle for each earlier batch still preprocessing, and one more, taking it
      // overtakes nobody: waiting for them would leave it idle for nothing (workers > 1).
      const ahead = this.unserved.indexOf(turn)
      if (this.idle.filter((w) => this.usable(w)).length <= ahead) await earlier
      return await this.acquire()
    } finally {
      turnTaken()
      this.unserved.splice(this.unserved.indexOf(turn), 1)
    }
  }

  private acquire(): Promise<SessionWorker> {
    this.idle = this.idle.filter((w) => this.usable(w)) // one may have died while idle
    const w = this.idle.pop()
    if (w) return Promise.resolve(w)
    // Every thread dead and none coming (a replacement that failed to load while this batch was
    // preprocessed again): no release will come, so a dead one serves, and the run says why.
    if (this.allDead()) return Promise.resolve(this.workers[0])
    return new Promise((resolve) => this.waiting.push(resolve))
  }

  private release(w: SessionWorker): void {
    if (!this.usable(w)) return
    const next = this.waiting.shift()
    if (next) next(w)
    else this.idle.push(w)
  }

  async close(): Promise<void> {
    this.closed = true
    this.spare = []
    for (const t of this.pauses) clearTimeout(t)
    this.pauses.clear()
    await Promise.all(this.starting) // a replacement still starting ends as soon as it has
    await Promise.all(this.workers.map((w) => w.terminate()))
  }
}

