// Runs one scenario of test/tensorrt-binding.test.ts in its own process: the stand-in build of the
// addon (FM_ENGINE_STANDIN) with the host stand-in libcuda.so.1 on LD_LIBRARY_PATH, so the
// TensorRT binding, its pipeline and the CUDA kernels' source run without a GPU or TensorRT.
// Prints one JSON line with what it measured; the parent asserts.
//   node tensorrt-standin-child.js <addon.node> <scenario>
'use strict'
const addonPath = process.argv[2]
const scenario = process.argv[3]
const addon = require(addonPath)

const INPUT = 3 * 224 * 224
const SLICE = 16
const SLICE_AT = { head: 0, mid: INPUT / 2 + 1000, tail: INPUT - SLICE }
const FORMATS = { rgb: [0, 3], rgba: [1, 4], bgr: [2, 3], bgra: [3, 4], gray: [4, 1] }

function noise(n, seed) {
  const a = new Uint8Array(n)
  let x = seed >>> 0
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0
    a[i] = x >>> 24
  }
  return a
}

function frame(width, height, format, seed, pad = 0, data) {
  const [code, nc] = FORMATS[format]
  const stride = width * nc + pad
  return { data: data ?? noise(stride * height, seed), width, height, stride, format: code }
}

/** Largest |got - want| over every face's three slices; the reference is the CPU path (preprocessSync). */
function compare(out, frames, faces, crop, resize, half) {
  const ref = new Float32Array(faces.length * INPUT)
  addon.preprocessSync(faces.map((f) => ({ ...frames[f.frame], window: f.window })), crop, resize, ref)
  let worst = 0
  for (let k = 0; k < faces.length; k++) {
    for (const [name, at] of Object.entries(SLICE_AT)) {
      for (let j = 0; j < SLICE; j++) {
        const want = ref[k * INPUT + at + j]
        const got = out[name][k * SLICE + j]
        // float16 engines: within half's rounding of the value (2^-11 relative, and its subnormal step).
        const d = Math.abs(got - want) / (half ? Math.abs(want) * 2 ** -11 + 2 ** -24 : 1)
        worst = Math.max(worst, Number.isNaN(d) ? Infinity : d)
      }
    }
  }
  return worst
}

async function batches(crop, resize, half) {
  const engine = await addon.tensorrtLoadStandIn({ streams: 2, maxBatch: 8, crop, resize, half })
  const info = engine.info()
  const pinned = engine.allocFrame(640 * 360 * 4)
  pinned.set(noise(pinned.length, 9))
  const frames = [
    frame(1920, 1080, 'rgb', 1),
    frame(333, 211, 'gray', 2, 5),
    frame(256, 256, 'bgr', 3),
    frame(640, 360, 'bgra', 0, 0, pinned), // pinned: the GPU copies from it directly
  ]
  // Faces over every frame: inside, over the edges, tiny, a chip given directly.
  const all = [
    { frame: 0, window: [800, 300, 420, 420] },
    { frame: 0, window: [-100, 900, 300, 300] },
    { frame: 1, window: [10.5, 20.25, 60, 80] },
    { frame: 1, window: [300, 190, 50, 40] },
    { frame: 2, window: null },
    { frame: 3, window: [500, 200, 200, 200] },
    { frame: 3, window: [100.75, 50.5, 3.5, 3.5] },
    { frame: 0, window: [0, 0, 1920, 1080] },
  ]
  // Twelve batches at once (more than the two streams), each a different mix of faces and frames.
  const runs = []
  for (let b = 0; b < 12; b++) {
    const faces = all.filter((_, i) => (i + b) % 3 !== 0).slice(0, 1 + (b % 8))
    runs.push(engine.run(frames, faces).then((out) => ({ out, faces })))
  }
  const results = await Promise.all(runs)
  let worst = 0
  let outputs = []
  for (const { out, faces } of results) {
    worst = Math.max(worst, compare(out, frames, faces, crop, resize, half))
    outputs = Object.keys(out)
    for (const name of outputs) if (out[name].length !== faces.length * SLICE) worst = Infinity
  }
  const stages = engine.info().stages
  await engine.close()
  return {
    preprocessing: info.preprocessing,
    note: info.preprocessingNote,
    tensors: info.tensors.map((t) => `${t.name}:${t.dtype}:${t.shape.join('x')}`),
    outputs,
    worst,
    batches: stages.batches,
    faces: stages.faces,
    graphs: stages.cudaGraphs,
    graphFallbacks: stages.cudaGraphFallbacks,
    expectedFaces: results.reduce((n, r) => n + r.faces.length, 0),
  }
}

async function errors() {
  const engine = await addon.tensorrtLoadStandIn({ streams: 1, maxBatch: 4, crop: 1, resize: 1 })
  const f = frame(64, 48, 'rgb', 5)
  const thrown = (fn) => {
    try {
      fn()
      return 'no error'
    } catch (e) {
      return `${e.constructor.name}: ${e.message}`
    }
  }
  const out = {
    oversized: thrown(() => engine.run([f], Array.from({ length: 5 }, () => ({ frame: 0, window: [0, 0, 10, 10] })))),
    empty: thrown(() => engine.run([f], [])),
    badFrameIndex: thrown(() => engine.run([f], [{ frame: 1, window: [0, 0, 10, 10] }])),
    shortData: thrown(() => engine.run([{ ...f, data: f.data.subarray(0, 100) }], [{ frame: 0, window: [0, 0, 10, 10] }])),
    notAChip: thrown(() => engine.run([f], [{ frame: 0, window: null }])),
    hugeAlloc: thrown(() => engine.allocFrame(2 ** 40)),
  }
  // A getter that detaches an earlier frame's buffer while the arguments are read.
  const g = frame(64, 48, 'rgb', 8)
  const sly = { data: f.data, width: 64, height: 48, stride: 192, get format() { structuredClone(g.data.buffer, { transfer: [g.data.buffer] }); return 0 } }
  out.detachedByGetter = thrown(() => engine.run([g, sly], [{ frame: 0, window: [0, 0, 10, 10] }]))
  // A pinned frame cannot be transferred away (and freed) while a batch reads it: Node copies an
  // external buffer put in a transfer list (or, in later releases, refuses it) instead of detaching it.
  const pinned = engine.allocFrame(64 * 48 * 3)
  try {
    structuredClone(pinned.buffer, { transfer: [pinned.buffer] })
  } catch (e) {
    out.pinnedTransferError = e.name
  }
  out.pinnedAfterTransfer = pinned.byteLength
  // Still usable after the refusals.
  const ok = await engine.run([f], [{ frame: 0, window: [5, 5, 30, 30] }])
  out.afterRefusals = compare(ok, [f], [{ frame: 0, window: [5, 5, 30, 30] }], 1, 1, false)
  await engine.close()
  out.afterClose = thrown(() => engine.run([f], [{ frame: 0, window: [0, 0, 10, 10] }]))
  await engine.close() // twice: fine
  out.closedTwice = true
  return out
}

// FM_HOST_CUDA_CONTAIN_AT makes the stand-in driver fail a copy with a context-fatal error.
async function lost() {
  const engine = await addon.tensorrtLoadStandIn({ streams: 2, maxBatch: 4, crop: 1, resize: 1 })
  const f = frame(320, 240, 'rgb', 6)
  const settled = await Promise.allSettled(Array.from({ length: 10 }, () => engine.run([f], [{ frame: 0, window: [20, 20, 100, 100] }])))
  const later = await engine.run([f], [{ frame: 0, window: [20, 20, 100, 100] }]).then(() => 'resolved', (e) => e.message)
  const lostWhy = engine.info().lost
  await engine.close()
  return {
    statuses: settled.map((s) => s.status),
    firstError: settled.find((s) => s.status === 'rejected')?.reason.message ?? '',
    later,
    lost: lostWhy,
  }
}

// Never closed: once idle, the engine must not keep the process alive.
async function idle() {
  const engine = await addon.tensorrtLoadStandIn({ streams: 2, maxBatch: 4, crop: 1, resize: 1 })
  const f = frame(128, 128, 'rgb', 7)
  const out = await engine.run([f], [{ frame: 0, window: [10, 10, 60, 60] }])
  engine.allocFrame(4096) // a pinned frame dropped unfreed: freed by the collector or at exit
  return { worst: compare(out, [f], [{ frame: 0, window: [10, 10, 60, 60] }], 1, 1, false) }
}

// Two engines open at exit, one closed, one not (and, with "worker", in a worker thread that is
// terminated): each is torn down once, without crashing the process.
async function two() {
  const a = await addon.tensorrtLoadStandIn({ streams: 2, maxBatch: 4, crop: 1, resize: 1 })
  const b = await addon.tensorrtLoadStandIn({ streams: 1, maxBatch: 4, crop: 1, resize: 1 })
  const f = frame(128, 128, 'rgb', 7)
  const faces = [{ frame: 0, window: [10, 10, 60, 60] }]
  const [x, y] = await Promise.all([a.run([f], faces), b.run([f], faces)])
  await a.close()
  return { worst: Math.max(compare(x, [f], faces, 1, 1, false), compare(y, [f], faces, 1, 1, false)) }
}

async function twoInWorker() {
  const { Worker } = require('node:worker_threads')
  const w = new Worker(`
    const { parentPort } = require('node:worker_threads')
    const addon = require(${JSON.stringify(addonPath)})
    setInterval(() => {}, 1000)  // alive until terminated
    Promise.all([1, 2].map(() => addon.tensorrtLoadStandIn({ streams: 1, maxBatch: 4, crop: 1, resize: 1 }))).then(() => parentPort.postMessage('loaded'))
  `, { eval: true })
  await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject) })
  return { terminated: await w.terminate() }
}

// A worker terminated with batches still queued that read a pinned allocFrame frame: the
// frame's finalizer (run at the worker's teardown, before the engine is closed) must not free
// the memory under them. 35 MB, so that on the host stand-in the free unmaps it.
async function pinnedInTerminatedWorker() {
  const { Worker } = require('node:worker_threads')
  const w = new Worker(`
    const { parentPort } = require('node:worker_threads')
    const addon = require(${JSON.stringify(addonPath)})
    setInterval(() => {}, 1000)  // alive until terminated
    addon.tensorrtLoadStandIn({ streams: 1, maxBatch: 8, crop: 1, resize: 1 }).then((engine) => {
      const width = 4096, height = 2160
      const data = engine.allocFrame(width * height * 4)
      data.fill(77)
      const frame = { data, width, height, stride: width * 4, format: 3 }
      const faces = Array.from({ length: 8 }, (_, k) => ({ frame: 0, window: [100 + 400 * k, 80 + 200 * k, 400 + 400 * k, 420 + 200 * k] }))
      for (let i = 0; i < 40; i++) engine.run([frame], faces).catch(() => {})
      parentPort.postMessage('queued')
    })
  `, { eval: true })
  await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject) })
  return { terminated: await w.terminate() }
}

// process.exit() with batches queued and running: on the main thread it runs no environment
// teardown, so the engine is closed in the 'exit' event (lib/backends/close-at-exit.js calling
// tensorrtCloseAll; unless NO_CLOSE_AT_EXIT is set, to show the difference). The host stand-in driver then reports the
// device allocations still live (FM_HOST_CUDA_REPORT_AT_EXIT).
async function exitWithQueued() {
  const { closeAtExit } = require('../../dist/lib/backends/close-at-exit.js')
  if (!process.env.NO_CLOSE_AT_EXIT) closeAtExit(() => addon.tensorrtCloseAll())
  const engine = await addon.tensorrtLoadStandIn({ streams: 2, maxBatch: 8, crop: 1, resize: 1 })
  const f = frame(1280, 720, 'rgb', 5)
  const faces = Array.from({ length: 8 }, (_, k) => ({ frame: 0, window: [40 + 120 * k, 30 + 60 * k, 240 + 120 * k, 260 + 60 * k] }))
  for (let i = 0; i < 40; i++) engine.run([f], faces).catch(() => {})
  await new Promise((resolve) => setTimeout(resolve, 20))  // some batches running, most queued
  process.stdout.write(`${JSON.stringify({ gpu: addon.tensorrtStatus().gpuName, queued: 40 })}\n`)
  process.exit(0)
}

// An engine dropped unclosed is collected and closed on a thread of the addon's own (each
// cuMemFree slowed by FM_HOST_CUDA_SLOW_FREE_MS, so that close is still going on); then
// process.exit(): the exit event waits for it through tensorrtCloseAll (unless NO_CLOSE_AT_EXIT).
async function exitWhileDroppedCloses() {
  const { closeAtExit } = require('../../dist/lib/backends/close-at-exit.js')
  if (!process.env.NO_CLOSE_AT_EXIT) closeAtExit(() => addon.tensorrtCloseAll())
  await (async () => {
    const engine = await addon.tensorrtLoadStandIn({ streams: 2, maxBatch: 4, crop: 1, resize: 1 })
    await engine.run([frame(256, 256, 'rgb', 4)], [{ frame: 0, window: null }])
  })()
  for (let i = 0; i < 3; i++) {
    globalThis.gc()
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
  process.stdout.write(`${JSON.stringify({ gpu: addon.tensorrtStatus().gpuName })}\n`)
  process.exit(0)
}

// process.exit() while an engine is still being loaded on libuv's pool (each cuMemAlloc slowed by
// FM_HOST_CUDA_SLOW_ALLOC_MS): the exit event waits for the load and closes what it made (unless
// NO_CLOSE_AT_EXIT).
async function exitWhileLoading() {
  const { closeAtExit } = require('../../dist/lib/backends/close-at-exit.js')
  if (!process.env.NO_CLOSE_AT_EXIT) closeAtExit(() => addon.tensorrtCloseAll())
  addon.tensorrtLoadStandIn({ streams: 2, maxBatch: 8, crop: 1, resize: 1 }).catch(() => {})
  await new Promise((resolve) => setTimeout(resolve, 150))  // some buffers allocated, more to come
  process.stdout.write(`${JSON.stringify({ gpu: addon.tensorrtStatus().gpuName })}\n`)
  process.exit(0)
}

// close() called with batches still running and queued: it resolves after every one of their
// promises has settled, so code after `await close()` sees all results. (Before close() waited
// for the batches' promises, the close's own completion could come first when the event loop was
// late: a few runs in a hundred, more under load.)
async function closeAfterRuns() {
  const engine = await addon.tensorrtLoadStandIn({ streams: 2, maxBatch: 4, crop: 1, resize: 1 })
  const f = frame(640, 480, 'rgb', 3)
  const faces = Array.from({ length: 4 }, (_, k) => ({ frame: 0, window: [20 + 100 * k, 20 + 60 * k, 220 + 100 * k, 260 + 60 * k] }))
  const order = []
  const runs = Array.from({ length: 8 }, (_, i) => engine.run([f], faces).then(() => order.push(`run ${i}`), () => order.push(`run ${i} failed`)))
  await engine.close().then(() => order.push('close'))
  await Promise.all(runs)
  return { order }
}

// run() refusing its arguments, many times: a refused call leaves nothing behind (before, each
// one kept the promise it had made for the batch, through a global handle that was never
// released: the V8 heap grew by every refusal). Global handles in use, after collection,
// before and after; then the engine still runs.
async function refusedRuns() {
  const v8 = require('node:v8')
  const engine = await addon.tensorrtLoadStandIn({ streams: 1, maxBatch: 4, crop: 1, resize: 1 })
  const f = frame(64, 48, 'rgb', 5)
  const face = { frame: 0, window: [0, 0, 10, 10] }
  const refusals = [
    () => engine.run([f], []),
    () => engine.run([f], Array.from({ length: 5 }, () => face)),
    () => engine.run([f], [{ frame: 1, window: [0, 0, 10, 10] }]),
    () => engine.run([{ ...f, data: f.data.subarray(0, 100) }], [face]),
    () => engine.run([f], [{ frame: 0, window: null }]),
    () => engine.run([{ ...f, format: 9 }], [face]),
  ]
  const refuseAll = (times) => {
    let refused = 0
    for (let i = 0; i < times; i++) {
      for (const call of refusals) {
        try {
          call()
        } catch {
          refused++
        }
      }
    }
    return refused
  }
  const handles = () => {
    for (let i = 0; i < 3; i++) globalThis.gc()
    return v8.getHeapStatistics().used_global_handles_size
  }
  refuseAll(100) // warm-up
  const before = handles()
  const refused = refuseAll(5000)
  const after = handles()
  const out = await engine.run([f], [face])
  const worst = compare(out, [f], [face], 1, 1, false)
  await engine.close()
  return { refused, handleBytesPerCall: (after - before) / refused, worst }
}

const scenarios = {
  square: () => batches(1, 1, false),
  stretch: () => batches(0, 0, false),
  half: () => batches(1, 1, true),
  errors,
  lost,
  idle,
  two,
  twoInWorker,
  pinnedInTerminatedWorker,
  exitWithQueued,
  closeAfterRuns,
  refusedRuns,
  exitWhileDroppedCloses,
  exitWhileLoading,
}

scenarios[scenario]().then(
  (r) => process.stdout.write(`${JSON.stringify({ gpu: addon.tensorrtStatus().gpuName, ...r })}\n`),
  (e) => {
    process.stdout.write(`${JSON.stringify({ failed: String(e && e.stack ? e.stack : e) })}\n`)
    process.exitCode = 1
  },
)
