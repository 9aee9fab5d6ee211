// Run as a child process by test/errors.test.ts: Worker threads that preprocess detect()-sized
// batches on libuv's pool are terminated while the batches run, 20 times. Prints "survived" and
// exits 0 unless the process dies (it ended in std::terminate when a batch completed into the
// dying worker's environment).
const { Worker } = require('node:worker_threads')
const path = require('node:path')

const native = path.join(__dirname, '..', '..', 'dist', 'lib', 'native.js')
const code = `
const { parentPort } = require('node:worker_threads')
const a = require(${JSON.stringify(native)}).loadNative()
const W = 2000, H = 2000
const data = new Uint8Array(W * H * 3)
const faces = Array.from({ length: 32 }, () => ({ data, width: W, height: H, stride: W * 3, format: 0, window: [0, 0, W, H] }))
const out = new Float32Array(32 * a.inputFloats)
for (let i = 0; i < 4; i++) a.preprocess(faces, 1, 1, out)
parentPort.postMessage('running')
`

;(async () => {
  for (let round = 0; round < 20; round++) {
    const w = new Worker(code, { eval: true })
    await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject) })
    await new Promise((resolve) => setTimeout(resolve, round % 5))
    await w.terminate()
  }
  console.log('survived')
})().catch((e) => { console.error(e); process.exit(1) })
