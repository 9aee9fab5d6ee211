// Many requests meet here: the moment an execution slot is free, whatever is waiting (up to
// maxBatch items, across requests) goes as one batch. No added delay when idle, large batches
// under load, and a request larger than maxBatch is split, never rejected. Requests are served in
// the order they came, each whole where it fits; one with more items left than a batch holds
// gives one item per turn and goes to the back, so a small request (a camera's frame) waits for
// one batch, not for every item of a large request queued before it (a batch job's thousands). A failing batch
// shared by several requests is rerun per request, so one request's failure is its own. A request settles
// only once none of its batches may still read its frames, so a caller that reuses a frame
// buffer once detect() settles never races a backend. A request whose AbortSignal fires leaves
// the queue at once (a real-time rig dropping a stale frame) and rejects as soon as none of its
// batches is reading its frames: on the CPU, once preprocessed, not a whole inference later (a
// service's deadline, AbortSignal.timeout, is kept to within a batch's preprocessing).
import { AbortError, reasonOf } from './engine-cache/abort'

interface Request<J, R> {
  results: R[]
  remaining: number
  reading: number  // batches that may still read this request's frames (see BatchRequests)
  failed: boolean
  settled: boolean
  error?: unknown
  resolve: (r: R[]) => void
  reject: (e: unknown) => void
  release?: () => void  // stops listening to the request's signal
  waiting?: Waiting<J, R>  // its items not yet in a batch
}

interface Item<J, R> {
  job: J
  request: Request<J, R>
  index: number
}

/**
 * What a batch runner may ask of, and tell, the requests its jobs came from. A runner that uses
 * none of it is taken to read its jobs' frames until its promise settles.
 */
export interface BatchRequests {
  /**
   * Per job, whether its request still wants it: one that failed or was aborted since the batch
   * formed (a stale frame, while the batch waited for a busy backend) need not be run, and its
   * result is dropped.
   */
  wanted(): boolean[]
  /** The runner no longer reads the jobs' frames (preprocessed): a request aborted meanwhile rejects now. */
  framesRead(): void
  /**
   * The runner reads the frames again (a rerun after its CPU thread died), of the jobs this
   * returns true for only, the others' requests having failed (their frames may be the callers'
   * again); those are held until framesRead(), as at the start.
   */
  readFramesAgain(): boolean[]
}

/** Runs one batch; resolves with one result per job, in order. */
export type BatchRunner<J, R> = (jobs: J[], requests: BatchRequests) => Promise<R[]>

/** A request's items not yet in a batch: items[next..]; dropped: it failed or was aborted. */
interface Waiting<J, R> {
  items: Item<J, R>[]
  next: number
  dropped: boolean
}

export class Scheduler<J, R> {
  // Requests with items to run, in the order they take turns, from `head` on (a queue that
  // many thousands of waiting requests do not slow down).
  private waiting: (Waiting<J, R> | undefined)[] = []
  private head = 0
  private queued = 0
  private busy = 0
  private runningItems = 0
  private idleWaiters: (() => void)[] = []
  private watched = new Map<AbortSignal, { requests: Set<Request<J, R>>; onAbort: () => void }>()

  constructor(private readonly runBatch: BatchRunner<J, R>, private readonly slots: number, private readonly maxBatch: number) {}

  /**
   * Queues the jobs of one request; resolves with all their results, in order. When `signal`
   * fires first, its jobs still queued are dropped and it rejects with an AbortError once no
   * batch already running may still read its frames.
   */
  submit(jobs: J[], signal?: AbortSignal): Promise<R[]> {
    if (signal?.aborted) return Promise.reject(aborted(signal))
    if (jobs.length === 0) return Promise.resolve([])
    return new Promise<R[]>((resolve, reject) => {
      const request: Request<J, R> = { results: new Array(jobs.length), remaining: jobs.length, reading: 0, failed: false, settled: false, resolve, reject }
      if (signal) this.watch(signal, request)
      request.waiting = { items: jobs.map((job, index) => ({ job, request, index })), next: 0, dropped: false }
      this.waiting.push(request.waiting)
      this.queued += jobs.length
      this.pump()
    })
  }

  /**
   * Aborts `request` when `signal` fires. One listener per signal, however many requests share it
   * (a camera's or a job's): no listener-leak warning past 10, and no quadratic removal. A
   * request that already failed keeps its first error (fail()).
   */
  private watch(signal: AbortSignal, request: Request<J, R>): void {
    let w = this.watched.get(signal)
    if (!w) {
      const requests = new Set<Request<J, R>>()
      const onAbort = () => {
        this.watched.delete(signal)
        for (const r of requests) {
          this.fail(r, aborted(signal))
          if (r.reading === 0) settle(r)
        }
      }
      w = { requests, onAbort }
      signal.addEventListener('abort', onAbort, { once: true })  // first: one that throws leaves nothing watched
      this.watched.set(signal, w)
    }
    const { requests, onAbort } = w
    requests.add(request)
    request.release = () => {
      requests.delete(request)
      if (requests.size === 0 && this.watched.get(signal) === w) {
        this.watched.delete(signal)
        signal.removeEventListener('abort', onAbort)
      }
    }
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
      this.runOne(batch).finally(() => {
        this.busy--
        this.pump()
        if (this.queued === 0 && this.busy === 0) this.idleWaiters.splice(0).forEach((w) => w())
      })
    }
  }

  /**
   * The next batch, up to maxBatch items. Waiting requests are taken in line order, each whole
   * where it fits: equal small requests (cameras' frames) finish in the order they came, each as
   * early as it can. (Taken one item each in turn, they all finished only at the end, and a
   * caller's timeout threw away the items of its request already run.) A request with more items
   * left than a batch holds gives one per turn and goes to the back of the line: with more large
   * requests waiting than a batch holds, a small one behind them still comes up within a few
   * batches. One cut off by the batch's end keeps its place and finishes first in the next.
   */
  private takeBatch(): Item<J, R>[] {
    const batch: Item<J, R>[] = []
    const take = (w: Waiting<J, R>, n: number) => {
      for (const end = Math.min(w.items.length, w.next + n); w.next < end;) batch.push(w.items[w.next++])
    }
    const served: Waiting<J, R>[] = []  // taken from this batch, items left, in line order
    while (batch.length < this.maxBatch && this.head < this.waiting.length) {
      const w = this.waiting[this.head]!
      // The slot is cleared as it is passed: the queue must not keep a settled request's frames
      // (a service decoding each frame into a new buffer would hold up to a thousand of them).
      this.waiting[this.head++] = undefined
      if (w.dropped) continue
      take(w, w.items.length - w.next > this.maxBatch ? 1 : this.maxBatch - batch.length)
      if (w.next < w.items.length) served.push(w)
    }
    // Room left: no other request waits, so those served fill it, in order.
    for (const w of served) take(w, this.maxBatch - batch.length)
    const left = served.filter((w) => w.next < w.items.length)
    const keep = left.filter((w) => w.items.length - w.next <= this.maxBatch)
    // Back at the front, in the slots this batch emptied; the large ones behind everyone.
    this.head -= keep.length
    keep.forEach((w, i) => { this.waiting[this.head + i] = w })
    for (const w of left) if (w.items.length - w.next > this.maxBatch) this.waiting.push(w)
    if (this.head === this.waiting.length) {
      this.waiting = []
      this.head = 0
    } else if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting = this.waiting.slice(this.head)
      this.head = 0
    }
    this.queued -= batch.length
    return batch
  }

  private async runOne(batch: Item<J, R>[]): Promise<void> {
    const requests = new Map<Request<J, R>, Item<J, R>[]>()  // each request in the batch, with its items
    for (const it of batch) {
      const list = requests.get(it.request)
      if (list) list.push(it)
      else requests.set(it.request, [it])
    }
    const failure = await this.attempt(batch)  // counted in pending.running while it runs, as each rerun below
    if (failure && requests.size > 1) {
      // The failure may be one request's own (something in its input that got past the checks):
      // each request's items run again on their own, so it fails that request only. While a
      // request waits for its rerun nothing reads its frames: one aborted meanwhile settles then.
      for (const [r, items] of requests) {
        if (r.failed) continue  // settled when it failed, or once no other batch reads its frames
        const own = await this.attempt(items)
        if (own) this.fail(r, own.error)
        this.finish(r, items)
      }
      return
    }
    if (failure) this.fail(batch[0].request, failure.error)
    for (const [r, items] of requests) this.finish(r, items)
  }

  /** A batch with these items of `r` is over: `r` settles when it was its last. */
  private finish(r: Request<J, R>, items: Item<J, R>[]): void {
    if (!r.failed) r.remaining -= items.length
    if (r.failed ? r.reading === 0 : r.remaining === 0) settle(r)
  }

  /** Runs items as one batch and stores their results; says what went wrong, if anything. */
  private async attempt(items: Item<J, R>[]): Promise<{ error: unknown } | undefined> {
    this.runningItems += items.length
    // The requests whose frames the runner may read; each in it counts once in its `reading`.
    let held = new Set<Request<J, R>>()
    const hold = (r: Request<J, R>) => {
      if (r.failed || held.has(r)) return
      held.add(r)
      r.reading++
    }
    const framesRead = () => {
      const was = held
      held = new Set()
      for (const r of was) {
        r.reading--
        if (r.failed && r.reading === 0) settle(r)
      }
    }
    const wanted = () => items.map((it) => !it.request.failed)
    for (const it of items) hold(it.request)
    const readFramesAgain = () => {
      for (const it of items) hold(it.request)
      return wanted()
    }
    try {
      const results = await this.runBatch(items.map((it) => it.job), { wanted, framesRead, readFramesAgain })
      if (results.length !== items.length) throw new Error(`internal: a batch of ${items.length} gave ${results.length} results`)
      items.forEach((it, k) => {
        if (!it.request.failed) it.request.results[it.index] = results[k]
      })
      return undefined
    } catch (error) {
      return { error }
    } finally {
      this.runningItems -= items.length
      framesRead()
    }
  }

  /** A request fails with the first error it met; its items still queued leave the queue. */
  private fail(r: Request<J, R>, error: unknown): void {
    if (!r.failed) {
      r.failed = true
      r.error = error
    }
    const w = r.waiting
    if (!w || w.dropped) return
    w.dropped = true  // skipped when its turn comes
    this.queued -= w.items.length - w.next
    w.items = []  // its frames are not kept until then
  }
}

function aborted(signal: AbortSignal): AbortError {
  return new AbortError('detect() was aborted', { cause: reasonOf(signal) })
}

/** Resolves a request with every result in, or rejects a failed one whose frames no batch still reads; once. */
function settle<J, R>(r: Request<J, R>): void {
  if (r.settled) return
  r.settled = true
  try {
    r.release?.()
  } catch {
    // a look-alike signal whose removeEventListener throws: the call settles all the same
  }
  if (r.failed) r.reject(r.error)
  else r.resolve(r.results)
}
