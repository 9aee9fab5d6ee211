// Many requests meet here: the moment an execution slot is free, whatever is waiting (up to
// maxBatch items, across requests) goes as one batch. No added delay when idle, large batches
// under load, and a request larger than maxBatch is split, never rejected. A batch takes one item
// from each waiting request in turn, so a small request (a camera's frame) waits for one batch,
// not for every item of a large request queued before it (a batch job's thousands). A failing batch
// shared by several requests is rerun per request, so one request's failure is its own. A request settles
// only once none of its batches is still running: until then a backend may still read its
// frames, so a caller that reuses a frame buffer once detect() settles never races one. A
// request whose AbortSignal fires leaves the queue at once (a real-time rig dropping a stale
// frame) and rejects as soon as none of its batches is running.
import { AbortError } from './engine-cache/abort'

interface Request<R> {
  results: R[]
  remaining: number
  running: number  // batches with an item of this request, started and not yet finished
  failed: boolean
  error?: unknown
  resolve: (r: R[]) => void
  reject: (e: unknown) => void
  release?: () => void  // stops listening to the request's signal
}

interface Item<J, R> {
  job: J
  request: Request<R>
  index: number
}

/** Runs one batch; resolves with one result per job, in order. */
export type BatchRunner<J, R> = (jobs: J[]) => Promise<R[]>

/** A request's items not yet in a batch: items[next..]. */
interface Waiting<J, R> {
  request: Request<R>
  items: Item<J, R>[]
  next: number
}

export class Scheduler<J, R> {
  private waiting: Waiting<J, R>[] = []  // requests with items to run, in the order they take turns
  private queued = 0
  private busy = 0
  private runningItems = 0
  private idleWaiters: (() => void)[] = []

  constructor(private readonly runBatch: BatchRunner<J, R>, private readonly slots: number, private readonly maxBatch: number) {}

  /**
   * Queues the jobs of one request; resolves with all their results, in order. When `signal`
   * fires first, its jobs still queued are dropped and it rejects with an AbortError once its
   * batches already running (which may still read its inputs) have finished.
   */
  submit(jobs: J[], signal?: AbortSignal): Promise<R[]> {
    if (signal?.aborted) return Promise.reject(aborted(signal))
    if (jobs.length === 0) return Promise.resolve([])
    return new Promise<R[]>((resolve, reject) => {
      const request: Request<R> = { results: new Array(jobs.length), remaining: jobs.length, running: 0, failed: false, resolve, reject }
      if (signal) {
        // Not called once the request has settled (release() then removes it); a request that
        // already failed keeps its first error (fail()).
        const onAbort = () => {
          this.fail(request, aborted(signal))
          if (request.running === 0) settle(request)
        }
        signal.addEventListener('abort', onAbort, { once: true })
        request.release = () => signal.removeEventListener('abort', onAbort)
      }
      this.waiting.push({ request, items: jobs.map((job, index) => ({ job, request, index })), next: 0 })
      this.queued += jobs.length
      this.pump()
    })
  }

  /** Jobs waiting for a batch, and jobs in batches running: how far behind the caller is. */
  get pending(): { queued: number; running: number } {
    return { queued: this.queued, running: this.runningItems }
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (this.queued === 0 && this.busy === 0) return Promise.resolve()
    return new Promise((resolve) => this.idleWaiters.push(resolve))
  }

  private pump(): void {
    while (this.busy < this.slots && this.queued > 0) {
      const batch = this.takeBatch()
      this.busy++
      this.runningItems += batch.length
      this.runOne(batch).finally(() => {
        this.busy--
        this.runningItems -= batch.length
        this.pump()
        if (this.queued === 0 && this.busy === 0) this.idleWaiters.splice(0).forEach((w) => w())
      })
    }
  }

  /**
   * The next batch: one item from each waiting request in turn, up to maxBatch. A request served
   * goes to the back of the line, and the next batch goes on from there: with more large requests
   * waiting than a batch holds, a small one behind them still comes up within a few batches.
   */
  private takeBatch(): Item<J, R>[] {
    const batch: Item<J, R>[] = []
    while (batch.length < this.maxBatch && this.waiting.length > 0) {
      const w = this.waiting.shift()!
      batch.push(w.items[w.next++])
      if (w.next < w.items.length) this.waiting.push(w)
    }
    this.queued -= batch.length
    return batch
  }

  private async runOne(batch: Item<J, R>[]): Promise<void> {
    const requests = new Map<Request<R>, Item<J, R>[]>()  // each request in the batch, with its items
    for (const it of batch) {
      const list = requests.get(it.request)
      if (list) list.push(it)
      else requests.set(it.request, [it])
    }
    for (const r of requests.keys()) r.running++
    const failure = await this.attempt(batch)
    if (failure && requests.size > 1) {
      // The failure may be one request's own (something in its input that got past the checks):
      // each request's items run again on their own, so it fails that request only.
      for (const [r, items] of requests) {
        if (r.failed) continue // failed in another batch meanwhile: nothing of it is wanted
        const own = await this.attempt(items)
        if (own) this.fail(r, own.error)
      }
    } else if (failure) {
      this.fail(batch[0].request, failure.error)
    }
    for (const [r, items] of requests) {
      r.running--
      if (!r.failed) r.remaining -= items.length
      if (r.running === 0 && (r.failed || r.remaining === 0)) settle(r)
    }
  }

  /** Runs items as one batch and stores their results; says what went wrong, if anything. */
  private async attempt(items: Item<J, R>[]): Promise<{ error: unknown } | undefined> {
    try {
      const results = await this.runBatch(items.map((it) => it.job))
      if (results.length !== items.length) throw new Error(`internal: a batch of ${items.length} gave ${results.length} results`)
      items.forEach((it, k) => {
        if (!it.request.failed) it.request.results[it.index] = results[k]
      })
      return undefined
    } catch (error) {
      return { error }
    }
  }

  /** A request fails with the first error it met; its items still queued leave the queue. */
  private fail(r: Request<R>, error: unknown): void {
    if (!r.failed) {
      r.failed = true
      r.error = error
    }
    const w = this.waiting.find((x) => x.request === r)
    if (!w) return
    this.queued -= w.items.length - w.next
    this.waiting = this.waiting.filter((x) => x !== w)
  }
}

function aborted(signal: AbortSignal): AbortError {
  return new AbortError('detect() was aborted', { cause: signal.reason })
}

/** Resolves or rejects a request that has nothing running and nothing left to run. */
function settle<R>(r: Request<R>): void {
  r.release?.()
  if (r.failed) r.reject(r.error)
  else r.resolve(r.results)
}
