// Which backends run here and why not: FaceMultitask.available(), backend 'auto' falling back to
// the CPU with the reason in info(), backend 'tensorrt' refused with the reason, and the TensorRT
// options checked on every machine. CI has no GPU: TensorRT is unavailable here.
import { readFileSync, writeFileSync } from 'node:fs'
import { createRequire, syncBuiltinESMExports } from 'node:module'
import path from 'node:path'
import { onnx } from 'onnx-proto'
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { FaceMultitask } from '../lib/face-multitask'
import { available } from '../lib/index'
import { loadNative } from '../lib/native'
import { withoutTensorrt } from './helpers/without-tensorrt'
import type { LoadOptions } from '../lib/types'
import { makeFixtureModel } from '../scripts/make-fixture'
import { tempDir } from './helpers/temp-dir'

const dir = tempDir('availability')
const file = path.join(dir, 'fixture.onnx')
const ortVersion = JSON.parse(readFileSync(path.join(__dirname, '..', 'node_modules', 'onnxruntime-node', 'package.json'), 'utf8')).version

beforeAll(() => {
  writeFileSync(file, makeFixtureModel({ generation: 'v2.5' }))
})

describe('available()', () => {
  it('reports the CPU backend available and TensorRT unavailable with a reason', async (ctx) => {
    await withoutTensorrt(ctx)
    const a = await FaceMultitask.available()
    expect(a.onnxruntime).toEqual({ available: true, device: 'cpu', version: ortVersion })
    expect(a.tensorrt.available).toBe(false)
    expect(typeof a.tensorrt.reason).toBe('string')
    expect(a.tensorrt.reason!.trim().length).toBeGreaterThan(10)
    expect(await available()).toEqual(a)
  })
})

describe('backend choice', () => {
  it("'auto' runs on the CPU and info().fallbackReason says why TensorRT was not taken", async (ctx) => {
    await withoutTensorrt(ctx)
    const { tensorrt } = await FaceMultitask.available()
    const model = await FaceMultitask.load({ model: file, backend: 'auto' })
    try {
      const info = model.info()
      expect(info.backend).toBe('onnxruntime')
      expect(info.device).toMatch(/cpu/i)
      expect(info.fallbackReason).toBe(`TensorRT is not available: ${tensorrt.reason}`)
      expect(info.maxBatch).toBe(8) // the CPU's default; TensorRT's is 64
    } finally {
      await model.close()
    }
  })

  it('info().precision on the CPU is what the model declares (FP32 when it says nothing)', async () => {
    const m = onnx.ModelProto.decode(makeFixtureModel({ generation: 'v2.5' }))
    m.metadataProps.push(onnx.StringStringEntryProto.create({ key: 'face_multitask.precision', value: 'fp16' }))
    const labelled = path.join(dir, 'labelled.fp16.onnx')
    writeFileSync(labelled, onnx.ModelProto.encode(m).finish())
    for (const [f, want] of [[file, 'fp32'], [labelled, 'fp16']]) {
      const model = await FaceMultitask.load({ model: f, backend: 'cpu' })
      expect(model.info().precision).toBe(want)
      await model.close()
    }
  })

  it("'auto' is the default", async (ctx) => {
    await withoutTensorrt(ctx)
    const model = await FaceMultitask.load({ model: file })
    expect(model.info().fallbackReason).toMatch(/^TensorRT is not available: ./)
    await model.close()
  })

  it("'cpu' asked for: no fallback to report", async () => {
    const model = await FaceMultitask.load({ model: file, backend: 'cpu' })
    expect(model.info().fallbackReason).toBeUndefined()
    expect('fallbackReason' in model.info()).toBe(false)
    await model.close()
  })

  it("'tensorrt' is refused with an Error naming options.backend and the exact reason", async (ctx) => {
    await withoutTensorrt(ctx)
    const { tensorrt } = await FaceMultitask.available()
    const err = await FaceMultitask.load({ model: file, backend: 'tensorrt' }).catch((e) => e)
    expect(err).toBeInstanceOf(Error)
    expect(err.message).toContain("options.backend: 'tensorrt' is not available: ")
    expect(err.message).toContain(tensorrt.reason)
    expect(err.message).toMatch(/use 'auto' or 'cpu'/)
  })

  it("'tensorrt' is refused before the model file is read", async (ctx) => {
    await withoutTensorrt(ctx)
    await expect(FaceMultitask.load({ model: path.join(dir, 'missing.onnx'), backend: 'tensorrt' })).rejects.toThrow(/options\.backend: 'tensorrt' is not available/)
  })
})

describe('TensorRT options, checked on a CPU-only machine', () => {
  const bad: [string, Partial<LoadOptions>, RegExp, ErrorConstructor][] = [
    ['precision unknown', { precision: 'int8' as never }, /options\.precision must be one of fp16, bf16, fp32, got "int8"/, TypeError],
    ['precision not a string', { precision: 16 as never }, /options\.precision must be one of fp16, bf16, fp32, got 16/, TypeError],
    ['precision null', { precision: null as never }, /options\.precision must be one of fp16, bf16, fp32, got null/, TypeError],
    ['a misspelt option', { maxbatch: 4 } as never, /^options has unknown key "maxbatch"; the options are model, backend, maxBatch, workers, threads, spinWait, precision, minBatch, optBatch, streams, engineDir, builderOptimizationLevel, workspaceMiB, cudaGraphs, onProgress, signal$/, TypeError],
    ['two misspelt options', { worker: 2, engineDirectory: '/tmp' } as never, /^options has unknown keys "worker", "engineDirectory"; the options are /, TypeError],
    ['minBatch zero', { minBatch: 0 }, /options\.minBatch must be an integer from 1 to 4096, got 0/, RangeError],
    ['minBatch fractional', { minBatch: 1.5 }, /options\.minBatch must be an integer from 1 to 4096, got 1\.5/, RangeError],
    ['minBatch a string', { minBatch: '2' as never }, /options\.minBatch must be an integer from 1 to 4096, got "2"/, TypeError],
    ['optBatch too large', { optBatch: 5000 }, /options\.optBatch must be an integer from 1 to 4096, got 5000/, RangeError],
    ['optBatch NaN', { optBatch: NaN }, /options\.optBatch must be an integer from 1 to 4096, got NaN/, RangeError],
    ['minBatch above optBatch', { minBatch: 16, optBatch: 8 }, /options\.minBatch \(16\) must not exceed options\.optBatch \(8\): minBatch <= optBatch <= maxBatch/, RangeError],
    ['minBatch above maxBatch', { minBatch: 16, maxBatch: 8 }, /options\.minBatch \(16\) must not exceed options\.maxBatch \(8\)/, RangeError],
    ['minBatch above the TensorRT default maxBatch', { minBatch: 100 }, /options\.minBatch \(100\) must not exceed options\.maxBatch \(64, the TensorRT default\)/, RangeError],
    ['optBatch above maxBatch', { optBatch: 32, maxBatch: 16 }, /options\.optBatch \(32\) must not exceed options\.maxBatch \(16\)/, RangeError],
    ['optBatch above the TensorRT default maxBatch', { optBatch: 100 }, /options\.optBatch \(100\) must not exceed options\.maxBatch \(64, the TensorRT default\)/, RangeError],
    ['streams zero', { streams: 0 }, /options\.streams must be an integer from 1 to 16, got 0/, RangeError],
    ['streams 17', { streams: 17 }, /options\.streams must be an integer from 1 to 16, got 17/, RangeError],
    ['streams a string', { streams: 'two' as never }, /options\.streams must be an integer from 1 to 16, got "two"/, TypeError],
    ['engineDir empty', { engineDir: '' }, /options\.engineDir must be the path of a folder \(a non-empty string\), got ""/, TypeError],
    ['engineDir a number', { engineDir: 7 as never }, /options\.engineDir must be the path of a folder .*got 7/, TypeError],
    ['builderOptimizationLevel 6', { builderOptimizationLevel: 6 }, /options\.builderOptimizationLevel must be an integer from 0 to 5, got 6/, RangeError],
    ['builderOptimizationLevel -1', { builderOptimizationLevel: -1 }, /options\.builderOptimizationLevel must be an integer from 0 to 5, got -1/, RangeError],
    ['workspaceMiB zero', { workspaceMiB: 0 }, /options\.workspaceMiB must be an integer from 1 to 4194304, got 0/, RangeError],
    ['workspaceMiB fractional', { workspaceMiB: 10.5 }, /options\.workspaceMiB must be an integer .*got 10\.5/, RangeError],
    ['cudaGraphs not a boolean', { cudaGraphs: 'yes' as never }, /options\.cudaGraphs must be true or false, got "yes"/, TypeError],
    ['onProgress not a function', { onProgress: 'log' as never }, /options\.onProgress must be a function \(event\) => void, got "log"/, TypeError],
    ['signal not an AbortSignal', { signal: {} as never }, /options\.signal must be an AbortSignal \(from an AbortController\), got an object \(Object\)/, TypeError],
  ]

  it.each(bad)('%s', async (_name, opts, message, type) => {
    for (const backend of ['auto', 'cpu', 'tensorrt'] as const) {
      const err = await FaceMultitask.load({ model: file, backend, ...opts }).catch((e) => e)
      if (err instanceof FaceMultitask) await err.close()
      expect(err).toBeInstanceOf(type)
      expect(err.message).toMatch(message)
    }
  })

  it('accepts every valid TensorRT option on the CPU', async () => {
    const model = await FaceMultitask.load({
      model: file,
      backend: 'cpu',
      precision: 'bf16',
      minBatch: 2,
      optBatch: 4,
      maxBatch: 16,
      streams: 16,
      engineDir: dir,
      builderOptimizationLevel: 0,
      workspaceMiB: 2048,
      cudaGraphs: false,
      onProgress: () => {},
      signal: new AbortController().signal,
    })
    expect(model.info().maxBatch).toBe(16)
    await model.close()
  })

  it('a small maxBatch or a large minBatch alone stays valid (optBatch\'s default follows)', async () => {
    const model = await FaceMultitask.load({ model: file, maxBatch: 4 })
    expect(model.info().maxBatch).toBe(4)
    await model.close()
    await (await FaceMultitask.load({ model: file, minBatch: 16 })).close()
  })

  it('an aborted signal stops load()', async () => {
    const err = await FaceMultitask.load({ model: file, signal: AbortSignal.abort() }).catch((e) => e)
    expect(err.name).toBe('AbortError')
  })

  it('an aborted signal of a polyfill (an EventTarget with aborted and reason) stops load() too', async () => {
    const signal = Object.assign(new EventTarget(), { aborted: true, reason: 'no longer needed' })
    const err = await FaceMultitask.load({ model: file, signal: signal as unknown as AbortSignal }).catch((e) => e)
    expect(err).toMatchObject({ name: 'AbortError', cause: 'no longer needed' })
  })

  it.each(['cpu', 'auto'] as const)('a signal that fires while load() runs (backend %s) gives no model', async (backend) => {
    const ac = new AbortController()
    const loading = FaceMultitask.load({ model: file, backend, signal: ac.signal })
    ac.abort()
    const err = await loading.catch((e) => e)
    if (err instanceof FaceMultitask) await err.close()
    expect(err.name).toBe('AbortError')
  })
})

describe('the TensorRT probe runs in a child process', () => {
  // Stand-in addons: plain modules the child requires in place of the .node file.
  function addon(name: string, body: string): string {
    const f = path.join(dir, `${name}.js`)
    writeFileSync(f, body)
    return f
  }

  it("passes the addon's status on word for word", async () => {
    const { probeTensorrtStatus, describeTensorrtStatus } = await import('../lib/availability')
    const reason = 'no TensorRT library (searched: libnvinfer.so.10 in the default library path)'
    const f = addon('says-no', `exports.tensorrtStatus = () => (${JSON.stringify({ available: false, reason, tensorrtVersion: '', smCount: 0 })})`)
    const raw = await probeTensorrtStatus(f)
    expect(raw).toEqual({ available: false, reason, tensorrtVersion: '', smCount: 0 })
    expect(describeTensorrtStatus(raw)).toEqual({ available: false, reason })
  })

  it('output of others in the probe (a NODE_OPTIONS preload such as dotenv/config, the library itself) does not hide the status', async () => {
    const { probeTensorrtStatus } = await import('../lib/availability')
    const status = { available: true, tensorrtVersion: '10.14.1', smCount: 132 }
    const noisy = addon('prints-too', `console.log('[TRT] loaded {'); exports.tensorrtStatus = () => { process.stdout.write('no newline after this'); return ${JSON.stringify(status)} }`)
    const preload = addon('preload', "console.log('[dotenv@17.2.3] injecting env (2) from .env')")
    const before = process.env.NODE_OPTIONS
    process.env.NODE_OPTIONS = `${before ?? ''} --require ${preload}`
    try {
      expect(await probeTensorrtStatus(noisy)).toEqual(status)
    } finally {
      if (before === undefined) delete process.env.NODE_OPTIONS
      else process.env.NODE_OPTIONS = before
    }
    const none = addon('prints-only', "console.log('{}'); process.exit(0)")
    expect(await probeTensorrtStatus(none)).toEqual({ reason: 'the TensorRT probe printed no status: "{}\\n"' })
  })

  it('describes an available TensorRT', async () => {
    const { probeTensorrtStatus, describeTensorrtStatus } = await import('../lib/availability')
    const status = { available: true, tensorrtVersion: '10.14.1', gpuName: 'NVIDIA H100 80GB HBM3', computeCapability: '9.0', smCount: 132 }
    const f = addon('says-yes', `exports.tensorrtStatus = () => (${JSON.stringify(status)})`)
    const raw = await probeTensorrtStatus(f)
    expect(raw).toEqual(status)
    expect(describeTensorrtStatus(raw)).toEqual({ available: true, version: '10.14.1', gpu: 'NVIDIA H100 80GB HBM3', computeCapability: '9.0' })
  })

  it('passes the detail on, available or not (a missing plugin library leaves TensorRT available)', async () => {
    const { describeTensorrtStatus } = await import('../lib/availability')
    const plugins = 'libnvinfer_plugin.so.10 not loaded (models with RoiAlign, v2.6+, cannot be built or run)'
    expect(describeTensorrtStatus({ available: true, tensorrtVersion: '10.14.1', detail: ` ${plugins} ` })).toEqual({ available: true, version: '10.14.1', detail: plugins })
    expect(describeTensorrtStatus({ available: false, reason: 'no CUDA driver', detail: 'cuInit: 100' })).toEqual({ available: false, reason: 'no CUDA driver', detail: 'cuInit: 100' })
    expect(describeTensorrtStatus({ available: false, reason: 'no GPU', detail: '' })).toEqual({ available: false, reason: 'no GPU' })
  })

  it('a crash in the probe (a broken driver) becomes a reason; this process keeps running', async () => {
    const { probeTensorrtStatus } = await import('../lib/availability')
    const f = addon('crashes', "exports.tensorrtStatus = () => { process.kill(process.pid, 'SIGSEGV') }")
    expect(await probeTensorrtStatus(f)).toEqual({ reason: 'the TensorRT probe crashed (SIGSEGV) while loading TensorRT or the CUDA driver' })
  })

  it('a hung probe times out without blocking the event loop; a throwing one gives its error line', async () => {
    const { probeTensorrtStatus } = await import('../lib/availability')
    const hang = addon('hangs', 'exports.tensorrtStatus = () => { for (;;) {} }')
    let ticks = 0
    const timer = setInterval(() => ticks++, 100)
    try {
      expect(await probeTensorrtStatus(hang, 1500)).toEqual({ reason: 'the TensorRT probe did not answer within 1.5 s (a hung CUDA driver?)' })
    } finally {
      clearInterval(timer)
    }
    expect(ticks).toBeGreaterThanOrEqual(8) // the caller's event loop ran while the probe hung
    const throws = addon('throws', "exports.tensorrtStatus = () => { throw new Error('cuInit failed: 100') }")
    expect(((await probeTensorrtStatus(throws)) as { reason: string }).reason).toBe('the TensorRT probe failed (exit code 1): Error: cuInit failed: 100')
    const silent = addon('no-export', 'exports.other = 1')
    const { NO_TENSORRT_BACKEND } = await import('../lib/availability')
    expect(await probeTensorrtStatus(silent)).toEqual({ reason: NO_TENSORRT_BACKEND })
  })

  it("this machine's real addon answers through the probe, with the same reason as available()", async (ctx) => {
    await withoutTensorrt(ctx)
    const { tensorrtProbe } = await import('../lib/availability')
    const p = await tensorrtProbe()
    expect(p.availability.available).toBe(false)
    expect(p.availability.reason).toBe((await FaceMultitask.available()).tensorrt.reason)
    if (p.status) expect(p.status.reason).toBe(p.availability.reason)
  })

  it('choosing a backend with an addon built without TensorRT starts no probe process: the reason is the one the probe gives', async (ctx) => {
    if (typeof (loadNative() as { tensorrtLoad?: unknown }).tensorrtLoad === 'function') ctx.skip('this addon has the TensorRT backend compiled in')
    vi.resetModules()
    const { tensorrtProbe, HEADERS_ABSENT } = await import('../lib/availability')
    // Counted through the builtin's own exports (an ES module namespace cannot be spied on).
    const child = createRequire(__filename)('node:child_process') as typeof import('node:child_process')
    const spawned = vi.spyOn(child, 'execFile')
    syncBuiltinESMExports()
    try {
      // No `status`: only the child process's answer has one.
      expect(await tensorrtProbe(true)).toEqual({ availability: { available: false, reason: HEADERS_ABSENT } })
      expect(spawned).not.toHaveBeenCalled()
      const probed = await tensorrtProbe()
      expect(spawned).toHaveBeenCalledTimes(1)  // the spy sees the probe's own process
      expect(probed.availability.reason).toBe(HEADERS_ABSENT)
    } finally {
      spawned.mockRestore()
      syncBuiltinESMExports()
    }
  })

  it('an addon without the headers on a machine without a GPU says that rebuilding would not help', async () => {
    const { describeTensorrtStatus, HEADERS_ABSENT } = await import('../lib/availability')
    const rebuild = 'this build of the addon has no TensorRT backend: ... `npm rebuild face-multitask` builds it with one'
    const headersOnly = { available: false, reason: HEADERS_ABSENT, detail: rebuild }
    const noDriver = describeTensorrtStatus({ ...headersOnly, gpuCount: 0, cudaDriverVersion: null as unknown as string })
    expect(noDriver.reason).toBe(HEADERS_ABSENT)
    expect(noDriver.detail).toBe(`No NVIDIA GPU here either (no CUDA driver was found), so rebuilding with TensorRT's headers would not make the backend available on this machine; the CPU backend (onnxruntime) runs here. T${rebuild.slice(1)}`)
    expect(describeTensorrtStatus({ ...headersOnly, gpuCount: 0, cudaDriverVersion: '13.0' }).detail).toMatch(/^No NVIDIA GPU here either \(the CUDA driver \(13\.0\) sees no GPU\)/)
    // A GPU is there (or the count is unknown): the rebuild advice stands alone.
    expect(describeTensorrtStatus({ ...headersOnly, gpuCount: 1, gpuName: 'NVIDIA L4', cudaDriverVersion: '13.0' })).toEqual({ available: false, reason: HEADERS_ABSENT, gpu: 'NVIDIA L4', detail: rebuild })
    expect(describeTensorrtStatus(headersOnly).detail).toBe(rebuild)
    // Another reason with no GPU is already about the GPU.
    expect(describeTensorrtStatus({ available: false, reason: 'no GPU', gpuCount: 0, cudaDriverVersion: '13.0' }).detail).toBeUndefined()
  })

  it('describes a status without a reason, and a missing status', async () => {
    const { describeTensorrtStatus } = await import('../lib/availability')
    expect(describeTensorrtStatus({ available: false }).reason).toMatch(/gives no reason/)
    expect(describeTensorrtStatus({ reason: 'the TensorRT probe crashed (SIGBUS)' })).toEqual({ available: false, reason: 'the TensorRT probe crashed (SIGBUS)' })
  })
})

describe('backend choice when TensorRT reports itself available (mocked probe)', () => {
  afterEach(() => {
    vi.doUnmock('../lib/availability')
    vi.resetModules()
  })

  async function withProbe(probe: unknown) {
    vi.resetModules()
    vi.doMock('../lib/availability', async () => {
      const actual = await vi.importActual<typeof import('../lib/availability')>('../lib/availability')
      return { ...actual, tensorrtProbe: async () => probe }
    })
    return (await import('../lib/face-multitask')).FaceMultitask
  }

  it("a reason from the probe reaches backend 'tensorrt' word for word", async () => {
    const reason = 'libnvinfer.so.10: cannot open shared object file: No such file or directory'
    const FM = await withProbe({ availability: { available: false, reason } })
    await expect(FM.load({ model: file, backend: 'tensorrt' })).rejects.toThrow(`options.backend: 'tensorrt' is not available: ${reason}; use 'auto' or 'cpu'`)
  })

  it("an engine that cannot be made: 'tensorrt' rejects, 'auto' serves on the CPU and says why", async () => {
    // This addon has no TensorRT backend compiled in (CI has no headers), so making the engine fails.
    const status = { available: true, tensorrtVersion: '10.14.1', gpuName: 'NVIDIA H100', computeCapability: '9.0', smCount: 132, parserVersion: '10.14.1', cudaDriverVersion: '13.0' }
    const FM = await withProbe({ availability: { available: true, version: '10.14.1', gpu: 'NVIDIA H100', computeCapability: '9.0' }, status })
    const err = await FM.load({ model: file, backend: 'tensorrt', engineDir: dir }).catch((e) => e)
    expect(err).toBeInstanceOf(Error)
    const compiledIn = typeof (loadNative() as { tensorrtBuild?: unknown }).tensorrtBuild === 'function'
    // Without the backend compiled in, exactly why; with it, the engine cannot be built for this fake status.
    expect(err.message).toMatch(compiledIn ? /^TensorRT could not be used|TensorRT/ : /this build of the addon has no TensorRT backend \(TensorRT headers absent at build time\)/)
    const model = await FM.load({ model: file, backend: 'auto', engineDir: dir })
    try {
      expect(model.backend).toBe('onnxruntime')
      expect(model.info().fallbackReason).toBe(`TensorRT could not be used: ${err.message}`)
    } finally {
      await model.close()
    }
  })
})
