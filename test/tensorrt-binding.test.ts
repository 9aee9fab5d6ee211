// The TensorRT backend's N-API binding (native/tensorrt_binding.cc) run from Node without a GPU or
// TensorRT: `npm run build:standin` builds the addon with FM_ENGINE_STANDIN, whose
// tensorrtLoadStandIn starts the real pipeline and binding over a stand-in engine (CopyEngine:
// its outputs are three 16-float slices of each face's preprocessed input), and the host
// stand-in libcuda.so.1 runs the CUDA kernels' source on the CPU. Each scenario runs in a child
// process (test/helpers/tensorrt-standin-child.js) with that driver on LD_LIBRARY_PATH; the
// slices are compared with the CPU preprocessing (preprocessSync) of the same faces. This covers
// what lib/backends/tensorrt.ts relies on: run(frames, faces) with frames shared by faces,
// pinned allocFrame frames, more batches than streams, outputs by name through the thread-safe
// function, info() and its stage counts, argument refusals (leaving nothing behind), close(), a context-fatal CUDA error,
// an idle engine letting the process exit, a worker terminated with batches queued over a
// pinned frame, process.exit() with batches queued or a collected engine still closing
// (close-at-exit.ts), and close() settling after every batch. TensorRT itself is not involved.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { npmCli } from './helpers/npm'

const ROOT = path.join(__dirname, '..')
const OUT = path.join(ROOT, 'build', 'standin')
const ADDON = path.join(OUT, 'Release', 'face_multitask.node')
const CHILD = path.join(__dirname, 'helpers', 'tensorrt-standin-child.js')

/** One scenario's child process, over the stand-in driver; what it printed and how it ended. */
function runChild(name: string, env: NodeJS.ProcessEnv = {}, nodeArgs: string[] = []) {
  return spawnSync(process.execPath, [...nodeArgs, CHILD, ADDON, name], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, LD_LIBRARY_PATH: path.join(OUT, 'host-cuda'), ...env },
  })
}

/** One scenario in a child process: its JSON line (fields as the child writes them). */
function scenario(name: string, env: NodeJS.ProcessEnv = {}): any {
  const r = runChild(name, env)
  expect(r.error, `${name}: ${r.error?.message}`).toBeUndefined()
  const line = r.stdout.trim().split('\n').pop() ?? ''
  expect(r.status, `${name} exited ${r.status} (signal ${r.signal}):\n${r.stdout}\n${r.stderr}`).toBe(0)
  const out = JSON.parse(line)
  expect(out.gpu).toBe('Host stand-in') // the stand-in driver, never a real one
  return out
}

// Each scenario runs a child process synchronously: generous time on a loaded 2-core machine.
describe.skipIf(process.platform !== 'linux')('the TensorRT binding over a stand-in engine and driver', { timeout: 120_000 }, () => {
  let kernels = false
  beforeAll(() => {
    const r = spawnSync(process.execPath, [npmCli(), 'run', '-s', 'build:standin'], { cwd: ROOT, encoding: 'utf8', timeout: 600_000 })
    if (r.status !== 0) throw new Error(`npm run build:standin failed (${r.error?.message ?? `exit ${r.status}`}):\n${r.stdout}\n${r.stderr}`)
    expect(fs.existsSync(ADDON)).toBe(true)
    // With nvcc at build time the kernels are embedded and run (their source, on the CPU); without
    // it the pipeline preprocesses on the CPU and says so. Both are compared with the CPU path.
    kernels = fs.existsSync(path.join(OUT, 'preprocess_kernels.fatbin'))
    // CI's machines have nvcc: there the kernels must have been built, not quietly left out.
    if (process.env.CI) expect(kernels, 'CI builds with nvcc, so the stand-in addon embeds the kernels').toBe(true)
  }, 660_000)

  const preprocessing = (out: { preprocessing: string; note: string }) => {
    expect(out.preprocessing).toBe(kernels ? 'cuda' : 'cpu')
    expect(out.note === '').toBe(kernels)
  }

  it.each([
    ['square', 'square crop, antialiased resize'],
    ['stretch', 'stretched crop, centre crop'],
  ])('%s (%s): three sampled slices of every face of twelve concurrent batches equal the CPU preprocessing exactly', (name) => {
    const out = scenario(name)
    preprocessing(out)
    expect(out.tensors).toEqual(['input:float32:-1x3x224x224', 'head:float32:-1x16', 'mid:float32:-1x16', 'tail:float32:-1x16'])
    expect(out.outputs).toEqual(['head', 'mid', 'tail'])
    expect(out.worst).toBe(0) // float32: bit for bit
    expect(out.batches).toBe(12)
    // cudaGraphs (on by default): batch sizes a stream saw before replay a graph of its copies.
    expect(out.graphs).toBeGreaterThan(0)
    expect(out.graphFallbacks).toBe(0)
    expect(out.faces).toBe(out.expectedFaces)
  })

  it('a float16 engine: half input written, half outputs converted, within half\'s rounding', () => {
    const out = scenario('half')
    preprocessing(out)
    expect(out.tensors[0]).toBe('input:float16:-1x3x224x224')
    expect(out.worst).toBeLessThanOrEqual(1) // in units of half's rounding of each value
    expect(out.faces).toBe(out.expectedFaces)
  })

  it('bad calls are refused with the argument named; the engine stays usable; close() twice is fine', () => {
    const out = scenario('errors')
    expect(out.oversized).toBe('RangeError: a batch holds 1..4 faces, got 5')
    expect(out.empty).toBe('RangeError: a batch holds 1..4 faces, got 0')
    expect(out.badFrameIndex).toBe('RangeError: faces[0].frame is not an index into frames')
    expect(out.shortData).toMatch(/^RangeError: frames\[0\]\.data is shorter than/)
    expect(out.notAChip).toBe('RangeError: faces[0] has no window and is not a 256x256 chip')
    expect(out.hugeAlloc).toMatch(/^RangeError: allocFrame: bytes must be/)
    expect(out.detachedByGetter).toMatch(/^RangeError: frames\[0\]\.data is shorter than/)
    expect(out.pinnedAfterTransfer).toBe(64 * 48 * 3) // allocFrame memory stays attached: never freed under a batch
    expect(out.afterRefusals).toBe(0)
    expect(out.afterClose).toBe('Error: the TensorRT engine is closed')
    expect(out.closedTwice).toBe(true)
  })

  it('a refused run() leaves nothing behind: thousands of refusals hold no global handle (nor the promise it kept)', () => {
    // Before, the batch's promise was made before the arguments were read, and a refusal left
    // its deferred unsettled: one global handle (and the promise) for ever per refused call.
    const r = runChild('refusedRuns', {}, ['--expose-gc'])
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0)
    const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '')
    expect(out.refused).toBe(30_000)
    expect(out.handleBytesPerCall).toBeLessThan(1) // 32 (one handle) per call before
    expect(out.worst).toBe(0) // and the engine still runs
  })

  it('a context-fatal CUDA error: the batches it hits reject, nothing hangs, and every later call says the GPU is lost', () => {
    // The stand-in driver fails its 20th device-to-device copy with CUDA_ERROR_CONTAINED, and
    // everything after it (a sticky error, as on a GPU).
    const out = scenario('lost', { FM_HOST_CUDA_CONTAIN_AT: '20' })
    expect(out.statuses).toContain('fulfilled')
    expect(out.statuses).toContain('rejected')
    expect(out.firstError).toMatch(/^TensorRT: .*CUDA_ERROR_CONTAINED/)
    expect(out.later).toMatch(/^TensorRT: the GPU is lost for this model: .*CUDA_ERROR_CONTAINED/)
    expect(out.lost).toMatch(/CUDA_ERROR_CONTAINED/)
  })

  it('two engines open at exit, one closed and one not, end with the process, not crash it; so do two in a terminated worker', () => {
    expect(scenario('two').worst).toBe(0)
    expect(scenario('twoInWorker').terminated).toBe(1)
  })

  it('a worker terminated with batches queued over a pinned frame ends cleanly: the frame is not freed under them', () => {
    // The frame's finalizer runs at the worker's teardown before the engine's close; before the
    // pipeline held pinned frames per batch, this faulted in the batches still queued.
    expect(scenario('pinnedInTerminatedWorker').terminated).toBe(1)
  })

  /**
   * A scenario that ends with process.exit(), run with the exit event's close (tensorrtCloseAll)
   * and without it (NO_CLOSE_AT_EXIT): the device allocations the host stand-in finds live as each
   * process ends, and the first run's output.
   */
  function liveAtExit(name: string, env: NodeJS.ProcessEnv, args: string[] = []) {
    const live = (r: ReturnType<typeof runChild>) => {
      expect(r.status, r.stderr).toBe(0)
      return Number(/^host-cuda at exit: (\d+) device allocations live$/m.exec(r.stderr)?.[1])
    }
    const closed = runChild(name, { FM_HOST_CUDA_REPORT_AT_EXIT: '1', ...env }, args)
    const unclosed = runChild(name, { FM_HOST_CUDA_REPORT_AT_EXIT: '1', NO_CLOSE_AT_EXIT: '1', ...env }, args)
    return { closed, live: [live(closed), live(unclosed)] }
  }

  it('process.exit() with batches queued: the engine is closed in the exit event, so no device memory is left to the driver\'s teardown', () => {
    const { closed, live } = liveAtExit('exitWithQueued', {})
    expect(JSON.parse(closed.stdout.trim())).toEqual({ gpu: 'Host stand-in', queued: 40 })
    // Not registered: the pipeline's buffers are still allocated when the process ends.
    expect(live[0]).toBe(0)
    expect(live[1]).toBeGreaterThan(0)
  })

  it('process.exit() while an engine collected unclosed is still closing on the addon\'s thread: the exit event waits for it', () => {
    // Without it, the close is still freeing (slowly) when the process ends.
    const { live } = liveAtExit('exitWhileDroppedCloses', { FM_HOST_CUDA_SLOW_FREE_MS: '200' }, ['--expose-gc'])
    expect(live[0]).toBe(0)
    expect(live[1]).toBeGreaterThan(0)
  })

  it('process.exit() while an engine is still loading: the exit event waits for the load and closes what it made', () => {
    // Without it, the load is still allocating when the process ends.
    const { live } = liveAtExit('exitWhileLoading', { FM_HOST_CUDA_SLOW_ALLOC_MS: '40' })
    expect(live[0]).toBe(0)
    expect(live[1]).toBeGreaterThan(0)
  })

  it('close() with batches running and queued resolves after every one of their promises', () => {
    const { order } = scenario('closeAfterRuns')
    expect(order).toHaveLength(9)
    expect(order[8]).toBe('close')
    expect(order.filter((o: string) => o.endsWith('failed'))).toEqual([])
  })

  it('an idle engine never closed lets the process exit', () => {
    expect(scenario('idle').worst).toBe(0)
  })
})
