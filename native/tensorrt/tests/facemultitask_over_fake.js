// FaceMultitask.load({ backend: 'tensorrt' }) end to end over the stand-in TensorRT libraries
// (fake_trt_*.cc) and the host stand-in libcuda.so.1, for scripts/check-tensorrt.sh with
// CHECK_TENSORRT_ADDON=1: the package's JavaScript with the addon built against the headers being
// checked (a copy of the package whose build/Release holds that addon):
//   node facemultitask_over_fake.js <package folder> <work folder> <model.onnx>
// The stand-in parser takes the ONNX file's inputs and outputs, and the stand-in engine copies each
// face's first preprocessed values into every output; so a face's auValues (py-feat's p_au, read
// as it is) must equal the first 20 values of the CPU preprocessing of that face. Covered: the
// availability probe, the engine cache (a build with progress, then a load from the cache), the
// binding, the pipeline, the scheduler's batches, ordinary and allocFrame() frames, close(); and the
// CLI's doctor and build, and `bench --backend tensorrt`, as child processes (their numbers mean
// nothing here: the stand-ins run on the CPU).
// Prints "facemultitask: <passed> passed, <failed> failed".
'use strict'
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const [pkg, dir, model] = process.argv.slice(2)
const { FaceMultitask, available } = require(path.join(pkg, 'dist', 'lib', 'index.js'))
const { faceCrop } = require(path.join(pkg, 'dist', 'lib', 'crop.js'))
const { loadNative } = require(path.join(pkg, 'dist', 'lib', 'native.js'))

const { check, run } = require('./checks.js')('facemultitask')

const W = 320
const H = 240
const pixels = new Uint8Array(W * H * 3).map((_, i) => (i * 37 + 11) & 255)
const boxes = [[40, 30, 190, 180], [-20, 100, 70, 190], [200, 10, 264, 74]]

/** Largest |auValues - first 20 preprocessed values| over the faces. */
function worst(faces, spec) {
  const native = loadNative()
  const floats = native.inputFloats
  const ref = new Float32Array(boxes.length * floats)
  native.preprocessSync(boxes.map((b) => ({ data: pixels, width: W, height: H, stride: W * 3, format: 0, window: faceCrop(spec.crop, b, W, H).window })),
    spec.crop === 'square' ? 1 : 0, spec.resize === 'antialias_bilinear' ? 1 : 0, ref)
  let d = faces.length === boxes.length ? 0 : Infinity
  faces.forEach((f, k) => {
    for (let j = 0; j < 20; j++) d = Math.max(d, Math.abs(f.auValues[j] - ref[k * floats + j]))
  })
  return d
}

async function main() {
  const a = await available()
  check(a.tensorrt.available === true, 'available(): TensorRT over the stand-ins', JSON.stringify(a.tensorrt))
  const engineDir = path.join(dir, 'engines')
  const events = []
  const m = await FaceMultitask.load({ model, backend: 'tensorrt', engineDir, maxBatch: 8, onProgress: (e) => events.push(e) })
  check(m.info().backend === 'tensorrt', "load({ backend: 'tensorrt' }) runs on TensorRT", JSON.stringify(m.info()))
  check(events.some((e) => e.type === 'phase-start' && e.phase === 'Building'), 'the first load builds the engine, with progress')
  const faces = await m.detect({ data: pixels, width: W, height: H, format: 'rgb' }, { boxes })
  check(worst(faces, m.spec) === 0, 'detect(): each face is the engine output for its own crop', `max |diff| ${worst(faces, m.spec)}`)
  const frame = m.allocFrame(W, H, 'rgb')
  frame.data.set(pixels)
  const again = await Promise.all([m.detect(frame, { boxes }), m.detect(frame, { boxes })])
  check(again.every((f) => worst(f, m.spec) === 0), 'detect() on an allocFrame() frame, two calls at once')
  await m.close()

  const later = []
  const cached = await FaceMultitask.load({ model, backend: 'tensorrt', engineDir, maxBatch: 8, onProgress: (e) => later.push(e) })
  check(!later.some((e) => e.type === 'phase-start'), 'a second load reads the cached engine, no build', JSON.stringify(later))
  check(worst(await cached.detect({ data: pixels, width: W, height: H, format: 'rgb' }, { boxes }), cached.spec) === 0, '... and runs it')
  await cached.close()

  const node = (script, ...args) => spawnSync(process.execPath, [path.join(pkg, 'dist', script), ...args], { encoding: 'utf8', timeout: 300_000 })
  const doctor = node('lib/cli.js', 'doctor', '--json')
  const report = doctor.status === 0 ? JSON.parse(doctor.stdout) : {}
  check(report.backends?.tensorrt?.available === true, 'face-multitask doctor: TensorRT available', doctor.stdout + doctor.stderr)
  const build = node('lib/cli.js', 'build', model, '--engine-dir', path.join(dir, 'cli-engines'), '--max-batch', '16')
  check(build.status === 0 && /engine ready: .*\.plan/.test(build.stdout + build.stderr), 'face-multitask build: exit 0, the engine ready',
    `exit ${build.status}: ${build.stdout}${build.stderr}`)
  const bench = node('scripts/bench.js', '--backend', 'tensorrt', '--model', model, '--seconds', '1', '--json')
  let rows = []
  try {
    rows = JSON.parse(bench.stdout.slice(bench.stdout.indexOf('\n{\n') + 1)).rows  // the table, then the JSON
  } catch {}
  check(bench.status === 0 && rows.length === 5 && rows.every((r) => r.facesPerSecond > 0), 'bench --backend tensorrt: a row per batch size',
    `exit ${bench.status}: ${bench.stderr.slice(-500)}`)
}

run(main)
