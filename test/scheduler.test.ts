// The scheduler: batches whatever waits when a slot frees, splits large requests, isolates
// failures to the requests whose items were in the failing batch.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { describe, expect, it } from 'vitest'
import { Scheduler } from '../lib/scheduler'

// A full garbage collection on demand, without starting the test process with --expose-gc.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

function deferred<T>() {
  let resolve!: (v: T) => void
  let reject!: (e: unknown) => void
  const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
  return { promise, resolve, reject }
}

describe('Scheduler', () => {
  it('runs at once when idle, then batches what waited, up to maxBatch', async () => {
    const batches: number[][] = []
    const gates: ReturnType<typeof deferred<void>>[] = []
    const s = new Scheduler<number, number>(async (jobs) => {
      batches.push(jobs)
      const g = deferred<void>()
      gates.push(g)
      await g.promise
      return jobs.map((j) => j * 10)
    }, 1, 4)
    const a = s.submit([1])
    const b = s.submit([2, 3])
    const c = s.submit([4, 5, 6])
    expect(batches).toEqual([[1]]) // no waiting for more when idle
    gates[0].resolve()
    await a
    await new Promise((r) => setImmediate(r))
    expect(batches[1]).toEqual([2, 3, 4, 5]) // what waited goes as one batch, requests whole in the order they came, capped at 4
    gates[1].resolve()
    await new Promise((r) => setImmediate(r))
    gates[2].resolve()
    expect(await b).toEqual([20, 30])
    expect(await c).toEqual([40, 50, 60])
    expect(batches[2]).toEqual([6])
    await s.idle()
  })

  it('a small request queued behind a large one runs in the next batch, not after all of the large one', async () => {
    const batches: number[][] = []
    const gate = deferred<void>()
    const s = new Scheduler<number, number>(async (jobs) => {
      batches.push(jobs)
      if (jobs.includes(-1)) await gate.promise  // holds the only slot while the others queue
      return jobs
    }, 1, 4)
    const first = s.submit([-1])
    const large = s.submit(Array.from({ length: 20 }, (_, i) => 100 + i))  // a batch job's call
    const small = s.submit([1, 2])  // a camera's frame, two faces
    expect(s.pending).toEqual({ queued: 22, running: 1 })
    gate.resolve()
    expect(await small).toEqual([1, 2])
    expect(batches.length).toBe(2)  // the small request was done by the first batch after the held one
    expect(batches[1]).toEqual([100, 1, 2, 101])  // the large one gives one job a turn, then fills the room left
    expect(await large).toEqual(Array.from({ length: 20 }, (_, i) => 100 + i))  // in order, whole
    expect(await first).toEqual([-1])
    expect(batches.slice(2).map((b) => b.length)).toEqual([4, 4, 4, 4, 2])
  })

  it('equal small requests (cameras\' frames) finish in the order they came, each in the first batch it fits, not all at the end', async () => {
    const batches: number[][] = []
    const gate = deferred<void>()
    const s = new Scheduler<number, number>(async (jobs) => {
      batches.push(jobs)
      if (jobs.includes(-1)) await gate.promise
      await new Promise((r) => setImmediate(r))
      return jobs
    }, 1, 8)
    const first = s.submit([-1])
    const done: number[] = []
    // 10 frames of 4 faces: two frames a batch, in the order they came.
    const calls = Array.from({ length: 10 }, (_, c) => s.submit([0, 1, 2, 3].map((f) => 10 * c + f)).then(() => { done.push(c) }))
    // Then frames of 6: one cut off by a batch's end keeps its place, its rest first in the next batch.
    const sixes = [100, 200, 300].map((c) => s.submit([0, 1, 2, 3, 4, 5].map((f) => c + f)).then(() => { done.push(c) }))
    gate.resolve()
    await Promise.all([first, ...calls, ...sixes])
    expect(done).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 100, 200, 300])
    expect(batches.slice(1, 3)).toEqual([[0, 1, 2, 3, 10, 11, 12, 13], [20, 21, 22, 23, 30, 31, 32, 33]])
    expect(batches.slice(6)).toEqual([[100, 101, 102, 103, 104, 105, 200, 201], [202, 203, 204, 205, 300, 301, 302, 303], [304, 305]])
  })

  it('with more large requests waiting than a batch holds, a small one behind them comes up within a few batches', async () => {
    const batches: number[][] = []
    const gate = deferred<void>()
    const s = new Scheduler<number, number>(async (jobs) => {
      batches.push(jobs)
      if (jobs.includes(-1)) await gate.promise
      return jobs
    }, 1, 4)
    const first = s.submit([-1])
    const large = Array.from({ length: 6 }, (_, r) => s.submit(Array.from({ length: 50 }, (_, i) => 1000 * (r + 1) + i)))
    const small = s.submit([7])
    gate.resolve()
    await small
    // 6 large requests and the small one take turns: it is in the second batch after the held one.
    expect(batches.findIndex((b) => b.includes(7))).toBe(2)
    expect(batches[1]).toEqual([1000, 2000, 3000, 4000])
    expect(batches[2]).toEqual([5000, 6000, 7, 1001])
    for (const [r, p] of large.entries()) expect(await p).toEqual(Array.from({ length: 50 }, (_, i) => 1000 * (r + 1) + i))
    await first
  })

  it('splits a request larger than maxBatch and keeps its order', async () => {
    const sizes: number[] = []
    const s = new Scheduler<number, number>(async (jobs) => { sizes.push(jobs.length); return jobs.map((j) => -j) }, 2, 3)
    const out = await s.submit(Array.from({ length: 10 }, (_, i) => i))
    expect(out).toEqual(Array.from({ length: 10 }, (_, i) => -i))
    expect(sizes.sort()).toEqual([1, 3, 3, 3])
  })

  it('runs up to `slots` batches at once', async () => {
    let running = 0
    let peak = 0
    const s = new Scheduler<number, number>(async (jobs) => {
      running++
      peak = Math.max(peak, running)
      await new Promise((r) => setTimeout(r, 5))
      running--
      return jobs
    }, 2, 1)
    await Promise.all([s.submit([1]), s.submit([2]), s.submit([3]), s.submit([4])])
    expect(peak).toBe(2)
  })

  it('a failing batch rejects only the requests in it; the others still resolve', async () => {
    const s = new Scheduler<number, number>(async (jobs) => {
      if (jobs.includes(13)) throw new Error('bad batch')
      return jobs
    }, 1, 2)
    const results = await Promise.allSettled([s.submit([1, 2]), s.submit([13, 14, 15]), s.submit([3])])
    expect(results[0]).toEqual({ status: 'fulfilled', value: [1, 2] })
    expect(results[1].status).toBe('rejected')
    expect(results[2]).toEqual({ status: 'fulfilled', value: [3] })
    await s.idle()
    expect(s.pending).toEqual({ queued: 0, running: 0 })
  })

  it('a batch shared by several requests that fails is rerun per request: only the request with the bad item fails', async () => {
    const batches: number[][] = []
    const gate = deferred<void>()
    const s = new Scheduler<number, number>(async (jobs) => {
      batches.push(jobs)
      if (jobs.includes(0)) await gate.promise  // holds the slot so that the next three requests meet in one batch
      if (jobs.includes(13)) throw new Error('item 13 is bad')
      return jobs.map((j) => j * 10)
    }, 1, 8)
    const first = s.submit([0])
    const results = Promise.allSettled([s.submit([1, 2]), s.submit([13]), s.submit([3])])
    gate.resolve()
    expect(await first).toEqual([0])
    const [a, bad, c] = await results
    expect(a).toEqual({ status: 'fulfilled', value: [10, 20] })
    expect(bad).toMatchObject({ status: 'rejected', reason: { message: 'item 13 is bad' } })
    expect(c).toEqual({ status: 'fulfilled', value: [30] })
    expect(batches).toEqual([[0], [1, 2, 13, 3], [1, 2], [13], [3]])
    await s.idle()
    expect(s.pending).toEqual({ queued: 0, running: 0 })
  })

  it('while a failed shared batch is rerun per call, pending.running counts the faces of the rerun under way, not the whole batch', async () => {
    const gate = deferred<void>()
    const seen: { jobs: number[]; running: number }[] = []
    let s: Scheduler<number, number>
    s = new Scheduler<number, number>(async (jobs) => {
      seen.push({ jobs, running: s.pending.running })
      if (jobs.includes(0)) await gate.promise
      if (jobs.includes(13)) throw new Error('item 13 is bad')
      return jobs
    }, 1, 8)
    const first = s.submit([0])
    const results = Promise.allSettled([s.submit([1, 2]), s.submit([13]), s.submit([3])])
    gate.resolve()
    await first
    await results
    expect(seen).toEqual([
      { jobs: [0], running: 1 },
      { jobs: [1, 2, 13, 3], running: 4 },
      { jobs: [1, 2], running: 2 },
      { jobs: [13], running: 1 },
      { jobs: [3], running: 1 },
    ])
    await s.idle()
    expect(s.pending).toEqual({ queued: 0, running: 0 })
  })

  it('a failure of the backend itself still rejects every request in the batch, each once', async () => {
    let calls = 0
    const gate = deferred<void>()
    const s = new Scheduler<number, number>(async (jobs) => {
      calls++
      if (jobs.includes(0)) {
        await gate.promise
        return jobs
      }
      throw new Error('the GPU is lost')
    }, 1, 8)
    const first = s.submit([0])
    const results = Promise.allSettled([s.submit([1]), s.submit([2, 3])])
    gate.resolve()
    await first
    expect((await results).map((r) => (r as PromiseRejectedResult).reason.message)).toEqual(['the GPU is lost', 'the GPU is lost'])
    expect(calls).toBe(4)  // the shared batch, then once per request
  })

  it('a failed request settles only after its other running batches finish (its frames are free then)', async () => {
    const slow = deferred<number[]>()
    let slowDone = false
    const s = new Scheduler<number, number>(async (jobs) => {
      if (jobs.includes(1)) throw new Error('bad batch')
      const out = await slow.promise
      slowDone = true
      return out
    }, 2, 2)
    // Two batches of one request at once: [1, 2] fails at once, [3, 4] is still running.
    const settled = s.submit([1, 2, 3, 4]).then(
      () => 'resolved',
      (e: Error) => `rejected after the slow batch: ${slowDone} (${e.message})`,
    )
    await new Promise((r) => setTimeout(r, 20))
    let early = true
    void settled.then(() => { early = false })
    await Promise.resolve()
    expect(early).toBe(true)  // not settled while [3, 4] still runs
    slow.resolve([3, 4])
    expect(await settled).toBe('rejected after the slow batch: true (bad batch)')
    await s.idle()
    expect(s.pending).toEqual({ queued: 0, running: 0 })
  })

  it('a request in two failing batches rejects once, with the first error', async () => {
    const second = deferred<number[]>()
    const s = new Scheduler<number, number>(async (jobs) => {
      if (jobs.includes(1)) throw new Error('first')
      await second.promise.catch(() => undefined)
      throw new Error('second')
    }, 2, 2)
    const rejections: string[] = []
    const p = s.submit([1, 2, 3, 4]).catch((e: Error) => { rejections.push(e.message) })
    await new Promise((r) => setTimeout(r, 10))
    second.resolve([])
    await p
    await s.idle()
    expect(rejections).toEqual(['first'])
  })
  it('a request whose signal fires while queued leaves the queue and rejects at once; the others run without it', async () => {
    const gate = deferred<void>()
    const batches: number[][] = []
    const s = new Scheduler<number, number>(async (jobs) => {
      batches.push(jobs)
      await gate.promise
      return jobs.map((j) => j * 10)
    }, 1, 8)
    const first = s.submit([1])
    const controller = new AbortController()
    const stale = s.submit([2, 3], controller.signal)
    const next = s.submit([4])
    expect(s.pending).toEqual({ queued: 3, running: 1 })
    controller.abort(new Error('frame too old'))
    const e = await stale.then(() => undefined, (err: unknown) => err) as Error & { code: string; cause: Error }
    expect([e.name, e.code, e.message, e.cause.message]).toEqual(['AbortError', 'ABORT_ERR', 'detect() was aborted', 'frame too old'])
    expect(s.pending).toEqual({ queued: 1, running: 1 })
    gate.resolve()
    expect(await first).toEqual([10])
    expect(await next).toEqual([40])
    expect(batches).toEqual([[1], [4]])  // 2 and 3 never ran
    await s.idle()
    expect(s.pending).toEqual({ queued: 0, running: 0 })
  })

  it('a request whose signal fires while one of its batches runs rejects only once that batch has finished, when its runner does not say it has read the frames; its queued jobs never run', async () => {
    const gate = deferred<void>()
    const ran: number[][] = []
    const s = new Scheduler<number, number>(async (jobs) => {
      ran.push(jobs)
      await gate.promise
      return jobs
    }, 1, 2)
    const controller = new AbortController()
    let batchDone = false
    const p = s.submit([1, 2, 3, 4], controller.signal).then(
      () => 'resolved',
      (e: Error) => `${e.name} after the running batch: ${batchDone}`,
    )
    controller.abort()
    await new Promise((r) => setTimeout(r, 10))
    let settled = false
    void p.then(() => { settled = true })
    await Promise.resolve()
    expect(settled).toBe(false)  // [1, 2] still runs and may still read the request's inputs
    batchDone = true
    gate.resolve()
    expect(await p).toBe('AbortError after the running batch: true')
    await s.idle()
    expect(ran).toEqual([[1, 2]])
  })

  it('a batch runner is told, when it asks, which of its jobs are still wanted: those of a request aborted since the batch formed are not; a batch none of whose jobs is wanted may reject', async () => {
    const gates = [deferred<void>(), deferred<void>()]
    let phase = 0
    const asked: boolean[][] = []
    const s = new Scheduler<number, number>(async (jobs, requests) => {
      await gates[phase].promise  // waiting for a busy backend, as a preprocessed CPU batch waits for its thread
      const w = requests.wanted()
      asked.push(w)
      if (!w.some(Boolean)) throw new Error('nothing to run')
      return jobs.map((j, i) => (w[i] ? j * 10 : -1))
    }, 2, 3)
    const busy = [s.submit([0]), s.submit([9])]  // both slots
    const stale = new AbortController()
    const a = s.submit([1, 2], stale.signal)
    const b = s.submit([3])
    const gone = new AbortController()
    const c = s.submit([4], gone.signal)
    phase = 1
    gates[0].resolve()
    await Promise.all(busy)
    await new Promise((r) => setImmediate(r))
    expect(s.pending).toEqual({ queued: 0, running: 4 })  // [1, 2, 3] and [4] formed, waiting
    stale.abort('next frame')
    gone.abort('next frame')
    gates[1].resolve()
    await expect(a).rejects.toMatchObject({ name: 'AbortError', cause: 'next frame' })
    await expect(c).rejects.toMatchObject({ name: 'AbortError', cause: 'next frame' })  // its own abort, not the runner's error
    expect(await b).toEqual([30])
    await s.idle()
    expect(asked).toEqual([[true], [true], [false, false, true], [false]])
  })

  it('a request whose signal fires once its batch\'s runner has read the frames rejects then, while the batch still runs; its batch-mates resolve when it ends', async () => {
    const gate = deferred<void>()
    const s = new Scheduler<number, number>(async (jobs, requests) => {
      requests.framesRead()  // preprocessed: inference follows
      await gate.promise
      return jobs.map((j) => j * 10)
    }, 1, 4)
    const controller = new AbortController()
    const late = s.submit([1, 2], controller.signal)
    const queued = s.submit([3], controller.signal)  // the same signal: waits in the queue
    const mate = s.submit([4])
    const busy = s.submit([5])  // both run in the next batch with queued
    controller.abort('deadline')
    await expect(late).rejects.toMatchObject({ name: 'AbortError', cause: 'deadline' })
    await expect(queued).rejects.toMatchObject({ name: 'AbortError', cause: 'deadline' })
    expect(s.pending).toEqual({ queued: 2, running: 2 })  // [1, 2] still runs, its results for nobody
    gate.resolve()
    expect(await mate).toEqual([40])
    expect(await busy).toEqual([50])
    await s.idle()
    expect(s.pending).toEqual({ queued: 0, running: 0 })
  })

  it('a runner that reads the frames again holds them again, of the requests still wanting their jobs only: one aborted before waits for that reading no more, one aborted during it does', async () => {
    const steps = [deferred<void>(), deferred<void>(), deferred<void>()]
    let again: boolean[] = []
    const opening = deferred<void>()
    const s = new Scheduler<number, number>(async (jobs, requests) => {
      if (jobs[0] === 0) return opening.promise.then(() => jobs)  // holds the slot while the others queue
      requests.framesRead()
      await steps[0].promise  // the thread dies: the batch is read again
      again = requests.readFramesAgain()
      await steps[1].promise  // preprocessing again
      requests.framesRead()
      await steps[2].promise
      return jobs
    }, 1, 4)
    const [first, second] = [new AbortController(), new AbortController()]
    const opened = s.submit([0])
    const a = s.submit([1], first.signal)
    const b = s.submit([2], second.signal)
    const c = s.submit([3])
    const settled: string[] = []
    void a.catch(() => settled.push('a'))
    void b.catch(() => settled.push('b'))
    opening.resolve()
    await opened
    await new Promise((r) => setImmediate(r))
    first.abort()
    await new Promise((r) => setImmediate(r))
    expect(settled).toEqual(['a'])
    steps[0].resolve()
    await new Promise((r) => setImmediate(r))
    expect(again).toEqual([false, true, true])  // a's frame is not read again
    second.abort()
    await new Promise((r) => setImmediate(r))
    expect(settled).toEqual(['a'])  // b's frame is being read again
    steps[1].resolve()
    await new Promise((r) => setImmediate(r))
    expect(settled).toEqual(['a', 'b'])
    steps[2].resolve()
    expect(await c).toEqual([3])
  })

  it('a look-alike signal whose removeEventListener throws does not keep the call from settling', async () => {
    const s = new Scheduler<number, number>(async (jobs) => jobs, 1, 8)
    const signal = { aborted: false, addEventListener() {}, removeEventListener() { throw new Error('not today') } } as unknown as AbortSignal
    await expect(s.submit([1, 2], signal)).resolves.toEqual([1, 2])
  })

  it('a look-alike signal whose addEventListener throws once: a later call on it is still listened to, and aborts', async () => {
    const gate = deferred<void>()
    const s = new Scheduler<number, number>(async (jobs) => { await gate.promise; return jobs }, 1, 1)
    let listener: (() => void) | undefined
    let refuse = true
    const signal = {
      aborted: false,
      addEventListener(_type: string, l: () => void) {
        if (refuse) {
          refuse = false
          throw new Error('not yet')
        }
        listener = l
      },
      removeEventListener() {},
    }
    await Promise.resolve().then(() => s.submit([1], signal as unknown as AbortSignal)).catch(() => {})
    const running = s.submit([0])  // holds the one slot
    const queued = s.submit([2], signal as unknown as AbortSignal)
    expect(listener).toBeDefined()
    signal.aborted = true
    listener?.()
    await expect(queued).rejects.toMatchObject({ name: 'AbortError' })
    gate.resolve()
    await expect(running).resolves.toEqual([0])
  })

  it('an already aborted signal rejects without running anything; a signal that fires after the request resolved changes nothing and is no longer listened to', async () => {
    let runs = 0
    const s = new Scheduler<number, number>(async (jobs) => { runs++; return jobs }, 1, 4)
    await expect(s.submit([1], AbortSignal.abort())).rejects.toMatchObject({ name: 'AbortError' })
    await expect(s.submit([], AbortSignal.abort())).rejects.toMatchObject({ name: 'AbortError' })
    expect(runs).toBe(0)
    // One long-lived signal for many calls (a camera's, a job's): one listener for all of them
    // (Node warns of a leak past 10), gone once they have settled.
    const controller = new AbortController()
    let listening = 0
    let peak = 0
    const { signal } = controller
    const add = signal.addEventListener.bind(signal)
    const remove = signal.removeEventListener.bind(signal)
    signal.addEventListener = ((...a: Parameters<typeof add>) => { peak = Math.max(peak, ++listening); add(...a) }) as typeof add
    signal.removeEventListener = ((...a: Parameters<typeof remove>) => { listening--; remove(...a) }) as typeof remove
    const calls = Array.from({ length: 50 }, (_, i) => s.submit([i], signal))
    expect(await Promise.all(calls)).toEqual(Array.from({ length: 50 }, (_, i) => [i]))
    expect([peak, listening]).toEqual([1, 0])
    controller.abort()
    expect(runs).toBeGreaterThan(0)
    // Many calls on one signal that fires: every one still queued rejects.
    const gate = deferred<void>()
    const held = new Scheduler<number, number>(async (jobs) => { await gate.promise; return jobs }, 1, 4)
    const shared = new AbortController()
    const settled = Promise.allSettled(Array.from({ length: 30 }, (_, i) => held.submit([i], shared.signal)))
    shared.abort()
    gate.resolve()
    const statuses = (await settled).map((r) => r.status)
    expect(statuses.filter((x) => x === 'rejected')).toHaveLength(30)  // the running one too, once its batch ended
  })

  it('a request aborted while its shared batch runs rejects when that batch fails, without waiting for the others\' reruns', async () => {
    const hold = deferred<void>()
    const sharedStarted = deferred<void>()
    const sharedFails = deferred<void>()
    const rerunOfA = deferred<void>()
    const s = new Scheduler<number, number>(async (jobs) => {
      if (jobs.includes(0)) await hold.promise  // holds the slot so that A and B meet in one batch
      if (jobs.length > 1 && jobs.includes(13)) {
        sharedStarted.resolve()
        await sharedFails.promise
        throw new Error('the shared batch failed')
      }
      if (jobs.includes(1)) await rerunOfA.promise
      return jobs
    }, 1, 8)
    const first = s.submit([0])
    const controller = new AbortController()
    const events: string[] = []
    const a = s.submit([1, 2]).then(() => events.push('A resolved'))
    const b = s.submit([13], controller.signal).catch((e: Error) => events.push(`B ${e.name}`))
    hold.resolve()
    await first
    await sharedStarted.promise
    controller.abort()  // while [1, 13, 2] runs
    sharedFails.resolve()
    await b
    expect(events).toEqual(['B AbortError'])  // A's rerun is still held
    rerunOfA.resolve()
    await a
    expect(events).toEqual(['B AbortError', 'A resolved'])
    await s.idle()
    expect(s.pending).toEqual({ queued: 0, running: 0 })
  })

  it('a request aborted while waiting for its rerun (another request\'s runs first) rejects at once', async () => {
    const hold = deferred<void>()
    const rerunOfA = deferred<void>()
    const s = new Scheduler<number, number>(async (jobs) => {
      if (jobs.includes(0)) await hold.promise  // holds the slot so that A, B and C meet in one batch
      if (jobs.length > 1 && jobs.includes(13)) throw new Error('the shared batch failed')
      if (jobs.length === 1 && jobs[0] === 13) {
        await rerunOfA.promise
        throw new Error('13 is bad')
      }
      return jobs
    }, 1, 8)
    const first = s.submit([0])
    const controller = new AbortController()
    const events: string[] = []
    const a = s.submit([13]).catch((e: Error) => events.push(`A ${e.message}`))
    const b = s.submit([2]).then(() => events.push('B resolved'))
    const c = s.submit([3], controller.signal).catch((e: Error) => events.push(`C ${e.name}`))
    hold.resolve()
    await first
    await new Promise((r) => setTimeout(r, 20))  // the shared batch has failed; A's rerun is held
    controller.abort()
    await c
    expect(events).toEqual(['C AbortError'])  // neither A's rerun nor B's had to finish first
    rerunOfA.resolve()
    await Promise.all([a, b])
    expect(events).toEqual(['C AbortError', 'A 13 is bad', 'B resolved'])
    await s.idle()
    expect(s.pending).toEqual({ queued: 0, running: 0 })
  })

  it('a request that fails and is then aborted rejects once, with its failure', async () => {
    const slow = deferred<number[]>()
    const s = new Scheduler<number, number>(async (jobs) => {
      if (jobs.includes(1)) throw new Error('bad batch')
      return slow.promise
    }, 2, 2)
    const controller = new AbortController()
    const p = s.submit([1, 2, 3, 4], controller.signal).catch((e: Error) => e.message)
    await new Promise((r) => setTimeout(r, 10))
    controller.abort()
    slow.resolve([3, 4])
    expect(await p).toBe('bad batch')
    await s.idle()
  })

  it('keeps nothing of a settled request, nor of an aborted one still queued: their frames can be collected', async () => {
    const gate = deferred<void>()
    const s = new Scheduler<{ frame: Uint8Array }, number>(async (jobs) => {
      if (jobs.some((j) => j.frame.length === 0)) await gate.promise
      return jobs.map((j) => j.frame.length)
    }, 1, 4)
    const refs: WeakRef<object>[] = []
    // Each call's job is made in a function of its own, so no frame of this test holds it.
    const call = (bytes: number, signal?: AbortSignal) => {
      const job = { frame: new Uint8Array(bytes) }
      refs.push(new WeakRef(job))
      return s.submit([job, { frame: new Uint8Array(bytes) }], signal)
    }
    for (let i = 1; i <= 50; i++) expect(await call(i)).toEqual([i, i])  // one after another, as a service's requests
    const held = call(0)  // holds the only slot
    const controller = new AbortController()
    const stale = call(7, controller.signal).catch((e: Error) => e.name)
    controller.abort()
    expect(await stale).toBe('AbortError')
    await new Promise((r) => setImmediate(r))
    gc()
    // All 51 jobs gone except the one still running (refs[50]); the aborted call's, queued behind it, too.
    expect(refs.map((r, i) => (r.deref() ? i : -1)).filter((i) => i >= 0)).toEqual([50])
    gate.resolve()
    expect(await held).toEqual([0, 0])
    await s.idle()
  })
})
