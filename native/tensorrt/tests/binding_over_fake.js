// The N-API binding's tensorrtBuild and tensorrtLoad (native/tensorrt_binding.cc) from Node, over
// the stand-in TensorRT libraries (fake_trt_*.cc) and the host stand-in libcuda.so.1, for
// scripts/check-tensorrt.sh with CHECK_TENSORRT_ADDON=1 (it builds the addon against the headers
// being checked):
//   node binding_over_fake.js <addon.node> <work folder>
// A build on its own thread with progress events and a timing cache; a process exiting mid-build
// stops it first; a build cancelled while it runs rejects with an AbortError; the parser's errors reject once each; the plan loads on libuv's
// pool and runs batches whose output (the stand-in plan's "out": a face's first 16 input values)
// equals the CPU preprocessing; a plan TensorRT refuses rejects with code FM_PLAN_REFUSED; refused
// options leave no global handle behind.
// Prints "binding: <passed> passed, <failed> failed".
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const addon = require(process.argv[2])
const dir = process.argv[3]

const { check, run } = require('./checks.js')('binding')

const MODEL = 'FAKE-ONNX\ninput input -1 3 224 224\n'
const write = (name, text) => {
  const f = path.join(dir, name)
  fs.writeFileSync(f, text)
  return f
}

async function main() {
  const onnx = write('model.onnx', MODEL)
  const timingCache = path.join(dir, 'timing.cache')
  fs.rmSync(timingCache, { force: true })

  // A build, its progress through the thread-safe function, its plan.
  const events = []
  const built = await addon.tensorrtBuild({ onnx, minBatch: 1, optBatch: 4, maxBatch: 8, timingCache }, (e) => events.push(e)).promise
  check(built.plan.length > 0 && built.timingCacheSaved === true, 'a build resolves with its plan and saves the timing cache')
  const seen = events.map((e) => `${e.type}:${e.phase}`).join(' ')
  check(seen === 'phase-start:Building step:Building phase-start:Timing step:Timing step:Timing phase-end:Timing step:Building step:Building phase-end:Building',
    'its progress events reach the callback, in order', seen)

  // process.exit() mid-build: the exit event (close-at-exit.ts calls tensorrtCloseAll) cancels
  // the build and waits for it to stop, so no thread is left inside libnvinfer during the exit.
  const exiting = require('node:child_process').spawnSync(process.execPath, ['-e', `
    const addon = require(${JSON.stringify(process.argv[2])})
    process.prependListener('exit', () => addon.tensorrtCloseAll())
    addon.tensorrtBuild({ onnx: ${JSON.stringify(onnx)}, minBatch: 1, optBatch: 4, maxBatch: 8 }, () => {}).promise.catch(() => {})
    setTimeout(() => process.exit(0), 50)
  `], { encoding: 'utf8', env: { ...process.env, FAKE_TRT_STEP_MS: '300', FAKE_TRT_REPORT_END: '1' }, timeout: 60_000 })
  check(exiting.status === 0 && /fake TensorRT: the build ended \(cancelled\)/.test(exiting.stderr),
    'process.exit() mid-build: the exit event cancels the build and waits for it', `exit ${exiting.status}: ${exiting.stderr}`)

  // Cancelled while it runs (each stand-in step takes 100 ms: FAKE_TRT_STEP_MS in the environment).
  const slow = addon.tensorrtBuild({ onnx, minBatch: 1, optBatch: 4, maxBatch: 8 }, () => slow.cancel())
  const cancelled = await slow.promise.then(() => null, (e) => e)
  check(cancelled && cancelled.name === 'AbortError', 'a build cancelled while it runs rejects with an AbortError', String(cancelled))

  // The parser's errors, each once, with its node.
  const bad = write('bad.onnx', `${MODEL}error 7 /net/roi RoiAlign plugin ROIAlign_TRT not found\n`)
  const refused = await addon.tensorrtBuild({ onnx: bad }).promise.then(() => null, (e) => e)
  const text = refused ? refused.message : ''
  check(/node 7 \(\/net\/roi, RoiAlign\): plugin ROIAlign_TRT not found/.test(text) && text.split('ROIAlign_TRT not found').length === 2,
    "a parser error rejects the build, listed once with its node", text)

  // Options refused (no ONNX, a batch out of range): each call throws and leaves nothing behind
  // (before, the build's promise was made first and kept, with its global handle, by every refusal).
  const handles = () => require('node:v8').getHeapStatistics().used_global_handles_size
  const refuse = () => {
    let n = 0
    for (const options of [{}, { onnx: '' }, { onnx, minBatch: 0 }, { onnx, maxBatch: 1.5 }, { onnx, device: -1 }]) {
      try {
        addon.tensorrtBuild(options, () => {})
      } catch {
        n++
      }
    }
    return n
  }
  refuse()
  const before = handles()
  let refusals = 0
  for (let i = 0; i < 2000; i++) refusals += refuse()
  const perCall = (handles() - before) / refusals
  check(refusals === 10000 && perCall < 1, 'refused build options leave no global handle behind', `${refusals} refused, ${perCall} bytes of handles per call`)

  // The plan loads and runs; its output is each face's first 16 preprocessed values.
  const engine = await addon.tensorrtLoad(built.plan, { streams: 2, maxBatch: 8, crop: 1, resize: 1 })
  const width = 320
  const height = 240
  const data = new Uint8Array(width * height * 3).map((_, i) => (i * 37 + 11) & 255)
  const frame = { data, width, height, stride: width * 3, format: 0 }
  const faces = [{ frame: 0, window: [40, 30, 150, 150] }, { frame: 0, window: [-20, 100, 90, 90] }, { frame: 0, window: [200, 10, 64, 64] }]
  const outs = await Promise.all([engine.run([frame], faces), engine.run([frame], faces.slice(1))])
  const ref = new Float32Array(faces.length * 3 * 224 * 224)
  addon.preprocessSync(faces.map((f) => ({ ...frame, window: f.window })), 1, 1, ref)
  let worst = 0
  outs.forEach((out, b) => {
    const mine = b === 0 ? faces : faces.slice(1)
    if (!out.out || out.out.length !== mine.length * 16) worst = Infinity
    else mine.forEach((_, k) => {
      const at = (b === 0 ? k : k + 1) * 3 * 224 * 224
      for (let j = 0; j < 16; j++) worst = Math.max(worst, Math.abs(out.out[k * 16 + j] - ref[at + j]))
    })
  })
  check(worst === 0, 'batches of the loaded plan give the CPU preprocessing exactly', `max |diff| ${worst}`)
  await engine.close()

  const garbage = await addon.tensorrtLoad(Buffer.from('not a plan'), { streams: 1, maxBatch: 8 }).then(() => null, (e) => e)
  check(garbage && garbage.code === 'FM_PLAN_REFUSED' && /refused the plan/.test(garbage.message),
    'a plan TensorRT refuses rejects with code FM_PLAN_REFUSED', String(garbage && garbage.message))
}

run(main)
