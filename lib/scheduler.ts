// Many requests meet here: the moment an execution slot is free, whatever is waiting (up to
// maxBatch items, across requests) goes as one batch. No added delay when idle, large batches
// under load, and a request larger than maxBatch is split, never rejected. A failing batch
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

export class Scheduler<J, R> {
  private queue: Item<J, R>[] = []
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
        const onAbort = () => {
          if (request.failed || request.remaining === 0) return
          this.fail(request, aborted(signal))
          if (request.running === 0) settle(request)
        }
        signal.addEventListener('abort', onAbort, { once: true })
        request.release = () => signal.removeEventListener('abort', onAbort)
      }
      jobs.forEach((job, index) => this.queue.push({ job, request, index }))
      this.pump()
    })
  }

  /** Jobs waiting for a batch, and jobs in batches running: how far behind the caller is. */
  get pending(): { queued: number; running: number } {
    return { queued: this.queue.length, running: this.runningItems }
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (this.queue.length === 0 && this.busy === 0) return Promise.resolve()
    return new Promise((resolve) => this.idleWaiters.push(resolve))
  }

  private pump(): void {
    while (this.busy < this.slots && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch)
      this.busy++
      this.runningItems += batch.length
      this.runOne(batch).finally(() => {
        this.busy--
        this.runningItems -= batch.length
        this.pump()
        if (this.queue.length === 0 && this.busy === 0) this.idleWaiters.splice(0).forEach((w) => w())
      })
    }
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
    this.queue = this.queue.filter((it) => it.request !== r)
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
