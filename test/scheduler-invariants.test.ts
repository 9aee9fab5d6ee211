// The scheduler against its invariants, on random interleavings of submits, aborts (shared
// signals too), batches that fail (a poisoned job, a transient error), CPU-like runners (frames
// read, then inference; threads that die, the batch read again) and TensorRT-like ones (frames
// held to the end): no request settles while a runner still reads its frames, each settles once
// with its own results or a reason it may have, pending counts what runs, idle() comes. Seeded:
// FUZZ_FROM / FUZZ_N rerun a range (the directed cases are in scheduler.test.ts).
import { describe, expect, it } from 'vitest'
import { type BatchRequests, Scheduler } from '../lib/scheduler'

function rng(seed: number) {
  let s = seed >>> 0 || 1
  return () => {
    s ^= s << 13; s >>>= 0
    s ^= s >> 17
    s ^= s << 5; s >>>= 0
    return s / 2 ** 32
  }
}

interface Job { req: number; idx: number; poison: boolean }
interface Runner { id: number; jobs: Job[]; reading: Set<number>; gate?: () => void; mode: 'cpu' | 'trt' }

const flush = () => new Promise((r) => setImmediate(r))

async function once(seed: number, log: boolean) {
  const rand = rng(seed)
  const pick = <T>(a: T[]) => a[Math.floor(rand() * a.length)]
  const transient = rand() < 0.3
  const slots = 1 + Math.floor(rand() * 3)
  const maxBatch = 1 + Math.floor(rand() * 5)
  const trtShare = rand() < 0.3 ? rand() : 0
  const active = new Set<Runner>()
  const settled = new Map<number, { how: 'ok' | 'err'; value: unknown }>()
  const abortedBeforeSettle = new Set<number>()
  const unsure = new Set<number>()
  let flushed = true
  const poisonReq = new Set<number>()
  const reqSignal = new Map<number, AbortController>()
  const violations: string[] = []
  let runnerIds = 0
  const startRead = (r: Runner, req: number) => {
    if (settled.has(req)) violations.push(`runner ${r.id} reads request ${req} after it settled`)
    r.reading.add(req)
  }
  const step = (r: Runner) => new Promise<void>((resolve) => { r.gate = resolve })
  const s = new Scheduler<Job, number>(async (jobs, requests: BatchRequests) => {
    const r: Runner = { id: runnerIds++, jobs, reading: new Set(), mode: rand() < trtShare ? 'trt' : 'cpu' }
    active.add(r)
    for (const j of jobs) startRead(r, j.req)
    try {
      if (r.mode === 'trt') {
        await step(r)
        if (jobs.some((j) => j.poison)) throw new Error('poison')
        if (transient && rand() < 0.1) throw new Error('transient')
        return jobs.map((j) => j.req * 1000 + j.idx)
      }
      let rows = jobs.map((_, i) => i)
      for (let deaths = 0; ; deaths++) {
        if (deaths > 0) {
          const w = requests.readFramesAgain()
          rows = jobs.map((_, i) => i).filter((i) => w[i])
          if (rows.length === 0) throw new Error('internal: none wanted')
          for (const i of rows) startRead(r, jobs[i].req)
        }
        try {
          await step(r)  // preprocessing
          if (transient && rand() < 0.05) throw new Error('transient')
        } finally {
          r.reading.clear()
          requests.framesRead()
        }
        await step(r)  // waiting for the worker
        const w = requests.wanted()
        const run = rows.filter((i) => w[i])
        if (run.length === 0) throw new Error('internal: none wanted')
        await step(r)  // inference
        if (deaths < 2 && rand() < 0.15) continue  // thread died
        if (run.some((i) => jobs[i].poison)) throw new Error('poison')
        return jobs.map((j, i) => (run.includes(i) ? j.req * 1000 + j.idx : -1))
      }
    } finally {
      r.reading.clear()
      active.delete(r)
    }
  }, slots, maxBatch)

  const promises: Promise<void>[] = []
  const signals: AbortController[] = []
  let nreq = 0
  const submit = () => {
    const id = nreq++
    const n = 1 + Math.floor(rand() * 6)
    const poison = rand() < 0.15
    if (poison) poisonReq.add(id)
    const jobs: Job[] = Array.from({ length: n }, (_, idx) => ({ req: id, idx, poison: poison && idx === n - 1 }))
    let ctl: AbortController | undefined
    const u = rand()
    if (u < 0.3 && signals.length) ctl = pick(signals)
    else if (u < 0.8) { ctl = new AbortController(); signals.push(ctl) }
    if (ctl) reqSignal.set(id, ctl)
    const p = s.submit(jobs, ctl?.signal)
    promises.push(p.then(
      (v) => {
        if (settled.has(id)) violations.push(`request ${id} settled twice`)
        settled.set(id, { how: 'ok', value: v })
        for (const r of active) if (r.reading.has(id)) violations.push(`request ${id} resolved while runner ${r.id} reads its frames`)
        const want = jobs.map((j) => j.req * 1000 + j.idx)
        if (JSON.stringify(v) !== JSON.stringify(want)) violations.push(`request ${id} got ${JSON.stringify(v)}, want ${JSON.stringify(want)}`)
        if (poison) violations.push(`poisoned request ${id} resolved`)
        if (abortedBeforeSettle.has(id) && !unsure.has(id)) violations.push(`request ${id} aborted before settling, resolved`)
      },
      (e: Error) => {
        if (settled.has(id)) violations.push(`request ${id} settled twice`)
        settled.set(id, { how: 'err', value: e })
        for (const r of active) if (r.reading.has(id)) violations.push(`request ${id} rejected (${e.message}) while runner ${r.id} reads its frames`)
        const ok = e.name === 'AbortError' ? abortedBeforeSettle.has(id) || ctl?.signal.aborted
          : e.message === 'poison' ? poison : e.message === 'transient' ? transient : false
        if (!ok) violations.push(`request ${id} rejected with ${e.name}: ${e.message}`)
      },
    ))
  }
  const steps = 60 + Math.floor(rand() * 100)
  for (let i = 0; i < steps; i++) {
    const u = rand()
    if (u < 0.3) submit()
    else if (u < 0.42 && signals.length) {
      const c = pick(signals)
      if (!c.signal.aborted) {
        for (const [id, ctl] of reqSignal) if (ctl === c && !settled.has(id)) { abortedBeforeSettle.add(id); if (!flushed) unsure.add(id) }
        c.abort('x')
      }
    } else if (active.size) {
      const r = pick([...active].filter((x) => x.gate))
      if (r?.gate) { const g = r.gate; r.gate = undefined; g() }
    }
    const f = rand()
    flushed = false
    if (f < 0.2) continue
    if (f < 0.4) { for (let t = Math.floor(rand() * 4); t >= 0; t--) await Promise.resolve(); continue }
    await flush()
    flushed = true
    const p = s.pending
    if (p.queued < 0 || p.running < 0) violations.push(`pending ${JSON.stringify(p)}`)
    const running = [...active].reduce((n, r) => n + r.jobs.length, 0)
    if (p.running !== running) violations.push(`pending.running ${p.running}, runners hold ${running}`)
    if (violations.length) break
  }
  // drain
  await flush()
  for (let k = 0; k < 100000 && active.size && !violations.length; k++) {
    for (const r of [...active]) if (r.gate) { const g = r.gate; r.gate = undefined; g() }
    await flush()
  }
  let idle = false
  void s.idle().then(() => { idle = true })
  await flush()
  if (!violations.length) {
    if (!idle) violations.push('idle() did not resolve')
    if (settled.size !== nreq) violations.push(`${nreq - settled.size} requests never settled`)
    if (JSON.stringify(s.pending) !== JSON.stringify({ queued: 0, running: 0 })) violations.push(`pending at end ${JSON.stringify(s.pending)}`)
  }
  if (log && violations.length) console.log(seed, { slots, maxBatch, transient, trtShare }, violations.slice(0, 5))
  return violations
}

describe('Scheduler, on random interleavings', () => {
  it('settles every request once, with its own results, never while a runner reads its frames; pending and idle() stay true', async () => {
    const N = Number(process.env.FUZZ_N ?? 1000)
    const bad: number[] = []
    for (let seed = Number(process.env.FUZZ_FROM ?? 1); seed <= N; seed++) {
      const v = await once(seed, bad.length < 5)
      if (v.length) bad.push(seed)
    }
    expect(bad).toEqual([])
  }, 600_000)
})
