// Run as a child process by test/errors.test.ts, with itself preloaded (--require) so that it also
// runs in the inference worker threads. There it marks the moment onnxruntime-node enters its
// native session load (a file, written just before it); the main thread, which is loading a model, calls process.exit(7)
// as soon as it sees the mark. onnxruntime-node's binding aborts the process (std::terminate)
// when a thread is torn down inside that call: the exit must wait for it.
const { existsSync, writeFileSync } = require('node:fs')
const path = require('node:path')
const { isMainThread } = require('node:worker_threads')

const marker = process.env.FM_TEST_LOAD_MARKER
if (!isMainThread) {
  if (marker) {
    // The session handler calls initOrt() and then, in the same tick, the native loadModel (whose
    // own property cannot be replaced).
    const binding = require('onnxruntime-node/dist/binding')
    const initOrt = binding.initOrt
    binding.initOrt = (...args) => {
      writeFileSync(marker, 'loading')
      return initOrt(...args)
    }
  }
} else if (path.resolve(process.argv[1] ?? '') === __filename) {
  // Preloaded in the main thread too (the script itself then runs from the module cache: not again).
  const { FaceMultitask } = require(path.join(__dirname, '..', '..', 'dist', 'lib', 'index.js'))
  const poll = setInterval(() => { if (existsSync(marker)) process.exit(7) }, 1)
  FaceMultitask.load({ model: process.argv[2], backend: 'cpu', workers: 2 }).then(() => {
    clearInterval(poll)
    console.log('loaded before the exit: the mark was never seen')
    process.exit(1)
  }, (e) => { console.error(e); process.exit(1) })
}
