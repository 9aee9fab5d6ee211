// Many requests meet here: the moment an execution slot is free, whatever is waiting (up to
// maxBatch items, across requests) goes as one batch. No added delay when idle, large batches
// under load, and a request larger than maxBatch is split, never rejected.

interface Request<R> {
  results: R[]
  remaining: number
  failed: boolean
  resolve: (r: R[]) => void
  reject: (e: unknown) => void
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
  private idleWaiters: (() => void)[] = []

  constructor(private readonly runBatch: BatchRunner<J, R>, private readonly slots: number, private readonly maxBatch: number) {}

  /** Queues the jobs of one request; resolves with all their results, in order. */
  submit(jobs: J[]): Promise<R[]> {
    if (jobs.length === 0) return Promise.resolve([])
    return new Promise<R[]>((resolve, reject) => {
      const request: Request<R> = { results: new Array(jobs.length), remaining: jobs.length, failed: false, resolve, reject }
      jobs.forEach((job, index) => this.queue.push({ job, request, index }))
      this.pump()
    })
  }

  /** Items waiting and batches running. */
  get pending(): { queued: number; running: number } {
    return { queued: this.queue.length, running: this.busy }
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
      this.runOne(batch).finally(() => {
        this.busy--
        this.pump()
        if (this.queue.length === 0 && this.busy === 0) this.idleWaiters.splice(0).forEach((w) => w())
      })
    }
  }

  private async runOne(batch: Item<J, R>[]): Promise<void> {
    let results: R[]
    try {
      results = await this.runBatch(batch.map((it) => it.job))
      if (results.length !== batch.length) throw new Error(`internal: a batch of ${batch.length} gave ${results.length} results`)
    } catch (err) {
      // Every request with a face in this batch fails; its other faces leave the queue.
      const failed = new Set(batch.map((it) => it.request))
      for (const r of failed) {
        if (!r.failed) {
          r.failed = true
          r.reject(err)
        }
      }
      this.queue = this.queue.filter((it) => !failed.has(it.request))
      return
    }
    batch.forEach((it, k) => {
      const r = it.request
      if (r.failed) return
      r.results[it.index] = results[k]
      if (--r.remaining === 0) r.resolve(r.results)
    })
  }
}
