// Run as a child process by test/errors.test.ts, with itself preloaded (--require) so that it also
// runs in the inference worker threads. There it marks (a file) the moment onnxruntime-node is
// about to enter a native call: its session load (FM_TEST_EXIT_IN=load) or a run (=run). The main
// thread calls process.exit(7) as soon as it sees the mark. onnxruntime-node's binding aborts
// the process (std::terminate) when a thread is torn down inside such a call: the exit must wait.
const { existsSync, writeFileSync } = require('node:fs')
const Module = require('node:module')
const path = require('node:path')
const { isMainThread } = require('node:worker_threads')

const marker = process.env.FM_TEST_EXIT_MARKER
const when = process.env.FM_TEST_EXIT_IN

/** Marks the call: onnxruntime-node's own functions are wrapped (its native methods cannot be). */
function wrap() {
  if (when === 'load') {
    // The session handler calls initOrt() and then, in the same tick, the native loadModel.
    const binding = require('onnxruntime-node/dist/binding')
    const initOrt = binding.initOrt
    binding.initOrt = (...args) => {
      writeFileSync(marker, 'loading')
      return initOrt(...args)
    }
  } else {
    // A handler's run() calls the native run on the next setImmediate.
    const { onnxruntimeBackend } = require('onnxruntime-node/dist/backend')
    const create = onnxruntimeBackend.createInferenceSessionHandler
    onnxruntimeBackend.createInferenceSessionHandler = async function (...args) {
      const handler = await create.apply(this, args)
      const run = handler.run
      handler.run = function (...a) {
        writeFileSync(marker, 'running')
        return run.apply(this, a)
      }
      return handler
    }
  }
}

if (!isMainThread) {
  // Wrapped once the worker itself requires onnxruntime-node (requiring it here, at the thread's
  // start, would register the native module outside the library's gate).
  const load = Module._load
  let wrapped = false
  Module._load = function (request, ...rest) {
    const exports = load.call(this, request, ...rest)
    if (request === 'onnxruntime-node' && !wrapped) {
      wrapped = true
      wrap()
    }
    return exports
  }
} else if (path.resolve(process.argv[1] ?? '') === __filename) {
  // Preloaded in the main thread too (the script itself then runs from the module cache: not again).
  const { FaceMultitask } = require(path.join(__dirname, '..', '..', 'dist', 'lib', 'index.js'))
  const poll = setInterval(() => { if (existsSync(marker)) process.exit(7) }, 1)
  const failed = (e) => { console.error(e); process.exit(1) }
  const unmarked = (what) => { clearInterval(poll); console.log(`${what} before the exit: the mark was never seen`); process.exit(1) }
  FaceMultitask.load({ model: process.argv[2], backend: 'cpu', workers: 2, threads: 1, maxBatch: 32 }).then((model) => {
    if (when === 'load') return unmarked('loaded')
    // One batch of 32 faces: a run long enough for the exit to land inside it.
    const frame = { data: new Uint8Array(256 * 256 * 3).fill(90), width: 256, height: 256, format: 'rgb' }
    const boxes = Array.from({ length: 32 }, (_, i) => [i, i, 200, 200])
    return model.detect(frame, { boxes }).then(() => unmarked('ran'))
  }).catch(failed)
}
