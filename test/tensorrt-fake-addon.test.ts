// The TensorRT backend's JavaScript around the addon's build and load calls, over a fake addon
// (no TensorRT here): where the engine cache's notes go, a cancel that comes before the build,
// a plan TensorRT refuses, and the build command's exit codes. The native side of these calls is
// tested in test/tensorrt-binding.test.ts (stand-in build) and by ctest.
import { statSync, writeFileSync } from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { onnx } from 'onnx-proto'
import { afterEach, expect, it, vi } from 'vitest'
import type { EngineProgress } from '../lib/types'
import { makeFixtureModel } from '../scripts/make-fixture'
import { tempDir } from './helpers/temp-dir'

const dir = tempDir('trt-fake-addon')
const model = path.join(dir, 'm.onnx')
writeFileSync(model, makeFixtureModel({ generation: 'v2.5' }))
const status = { available: true, tensorrtVersion: '10.14.1', builtFor: '10.14.1', gpuName: 'Fake GPU', computeCapability: '9.0', smCount: 132, parserVersion: '0.1.0', cudaDriverVersion: '13.0' }

afterEach(() => {
  vi.doUnmock('../lib/availability')
  vi.doUnmock('../lib/native')
  vi.resetModules()
})

interface Fake {
  builds: number
  /** What the next build's promise gives. */
  plan: Uint8Array
  /** tensorrtLoad refuses the plan this many times, as TensorRT refuses one from another build. */
  refusals: number
  /** What tensorrtLoad gives once it accepts the plan (else it fails). */
  engine?: unknown
  /** Runs while the build is under way. */
  duringBuild?: () => void
  /** How long the build takes (default 20 ms); a cancel does not shorten it (TensorRT past its last step). */
  buildMs?: number
}

/** FaceMultitask over the real addon with tensorrtBuild / tensorrtLoad replaced. */
async function fakeAddon(fake: Fake) {
  vi.resetModules()
  vi.doMock('../lib/availability', async () => {
    const actual = await vi.importActual<typeof import('../lib/availability')>('../lib/availability')
    const availability = { available: true, version: '10.14.1', gpu: 'Fake GPU', computeCapability: '9.0' }
    return { ...actual, tensorrtProbe: async () => ({ availability, status }), tensorrtAvailability: async () => availability }
  })
  vi.doMock('../lib/native', async () => {
    const actual = await vi.importActual<typeof import('../lib/native')>('../lib/native')
    const addon = {
      ...(actual.loadNative() as object),
      tensorrtBuild: (_o: unknown, onProgress: (e: EngineProgress) => void) => {
        fake.builds++
        fake.duringBuild?.()
        setImmediate(() => onProgress({ type: 'phase-start', phase: 'Building', steps: 1 }))
        return { promise: new Promise((r) => setTimeout(() => r({ plan: fake.plan, messages: [], tensorrtVersion: '10.14.1', timingCacheSaved: true }), fake.buildMs ?? 20)), cancel() {} }
      },
      tensorrtLoad: async () => {
        if (fake.refusals-- > 0) throw Object.assign(new Error('deserializeCudaEngine failed: version tag mismatch'), { code: 'FM_PLAN_REFUSED' })
        if (fake.engine) return fake.engine
        throw new Error('the fake addon runs no engine')
      },
    }
    return { ...actual, loadNative: () => addon }
  })
  return (await import('../lib/face-multitask')).FaceMultitask
}

function stderrDuring<T>(f: () => Promise<T>): Promise<{ result: T | Error; stderr: string }> {
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation(() => true)
  return f().then((r) => r, (e: Error) => e).then((result) => {
    const stderr = spy.mock.calls.map((c) => String(c[0])).join('')
    spy.mockRestore()
    return { result, stderr }
  })
}

it("with onProgress the cache's notes go there once each and not to stderr; without it, to stderr", async () => {
  const fake = { builds: 0, plan: Buffer.from('plan'), refusals: 1 }
  const FM = await fakeAddon(fake)
  const notes: string[] = []
  const engineDir = path.join(dir, 'notes')
  const onProgress = (e: EngineProgress) => { if (e.type === 'message') notes.push(e.message) }
  const { result, stderr } = await stderrDuring(() => FM.load({ model, backend: 'tensorrt', engineDir, onProgress }))
  expect((result as Error).message).toMatch(/the fake addon runs no engine/)
  expect(stderr).toBe('')
  // Built, refused by the fake TensorRT (removed, said why), rebuilt.
  expect(fake.builds).toBe(2)
  expect(notes.filter((m) => /^building the TensorRT engine/.test(m))).toHaveLength(2)
  expect(notes.filter((m) => /version tag mismatch; removing it, it will be rebuilt$/.test(m))).toHaveLength(1)
  expect(notes.filter((m) => /is a fp32 export and there is no fp16 export beside it/.test(m))).toHaveLength(1)

  fake.refusals = 1
  const plain = await stderrDuring(() => FM.load({ model, backend: 'tensorrt', engineDir }))
  expect((plain.result as Error).message).toMatch(/the fake addon runs no engine/)
  expect(plain.stderr).toMatch(/version tag mismatch; removing it, it will be rebuilt/)
  expect(plain.stderr).toMatch(/building the TensorRT engine/)
})

it('a model with an output the engine could not return (an int64 one beside the heads) is refused before any build', async () => {
  const fake = { builds: 0, plan: Buffer.from('plan'), refusals: 0 }
  const FM = await fakeAddon(fake)
  const proto = onnx.ModelProto.decode(makeFixtureModel({ generation: 'v2.5' }))
  const [au] = proto.graph!.output!
  proto.graph!.output!.push({ name: 'ids', type: { tensorType: { elemType: 7, shape: au.type!.tensorType!.shape } } })
  const withIds = path.join(dir, 'ids.onnx')
  writeFileSync(withIds, onnx.ModelProto.encode(proto).finish())
  const err = await FM.load({ model: withIds, backend: 'tensorrt', engineDir: path.join(dir, 'ids'), onProgress: () => {} }).catch((e) => e)
  expect(err.message).toBe(`${withIds}: output "ids" is int64, not float32, float16 or bfloat16: a TensorRT engine cannot return it; remove it from the graph (the CPU backend ignores outputs it does not use)`)
  expect(fake.builds).toBe(0)
})

it('a signal that fires before the native build starts: no build is started, the lock is free for the next', async () => {
  const fake = { builds: 0, plan: Buffer.from('plan'), refusals: 0 }
  const FM = await fakeAddon(fake)
  const engineDir = path.join(dir, 'abort')
  const ac = new AbortController()
  // The cache's "building" note comes after the lock is taken and before the builder is called.
  const onProgress = (e: EngineProgress) => { if (e.type === 'message' && e.message.startsWith('building the TensorRT engine')) ac.abort() }
  const err = await FM.load({ model, backend: 'tensorrt', engineDir, onProgress, signal: ac.signal }).catch((e) => e)
  expect(err.name).toBe('AbortError')
  expect(fake.builds).toBe(0)
  const again = await FM.load({ model, backend: 'tensorrt', engineDir, onProgress: () => {} }).catch((e) => e)
  expect(again.message).toMatch(/the fake addon runs no engine/)
  expect(fake.builds).toBe(1)
})

it('a build that finishes after its signal fired (TensorRT past its last step) is kept in the cache, and the next load uses it', async () => {
  const ac = new AbortController()
  const fake: Fake = { builds: 0, plan: Buffer.from('plan'), refusals: 0, buildMs: 300, duringBuild: () => setTimeout(() => ac.abort(), 50) }
  const FM = await fakeAddon(fake)
  const engineDir = path.join(dir, 'abort-late')
  const err = await FM.load({ model, backend: 'tensorrt', engineDir, onProgress: () => {}, signal: ac.signal }).catch((e) => e)
  expect(err.name).toBe('AbortError')
  // The build goes on after the rejection; its lock is released once the plan is stored.
  const files = () => fsp.readdir(engineDir)
  for (let i = 0; i < 100 && (await files()).some((f) => f.endsWith('.lock')); i++) await new Promise((r) => setTimeout(r, 50))
  expect((await files()).filter((f) => f.endsWith('.plan') || f.endsWith('.lock'))).toHaveLength(1)
  expect((await files()).filter((f) => f.endsWith('.plan'))).toHaveLength(1)
  const again = await FM.load({ model, backend: 'tensorrt', engineDir, onProgress: () => {} }).catch((e) => e)
  expect(again.message).toMatch(/the fake addon runs no engine/)
  expect(fake.builds).toBe(1)
})

it('a model file rewritten while its engine builds: the plan is not stored under the old bytes\' key, and the next load builds the new bytes', async () => {
  const rewritten = path.join(dir, 'rewritten.onnx')
  writeFileSync(rewritten, makeFixtureModel({ generation: 'v2.5' }))
  const fake: Fake = { builds: 0, plan: Buffer.from('plan'), refusals: 0, duringBuild: () => writeFileSync(rewritten, makeFixtureModel({ generation: 'v2.5', seed: 99 })) }
  const FM = await fakeAddon(fake)
  const engineDir = path.join(dir, 'rewritten')
  const err = await FM.load({ model: rewritten, backend: 'tensorrt', engineDir, onProgress: () => {} }).catch((e) => e)
  expect(err.message).toBe('rewritten.onnx changed while the engine was built from rewritten.onnx (rewritten meanwhile?): the engine is not kept; load the model again')
  expect((await fsp.readdir(engineDir)).filter((f) => f.endsWith('.plan') || f.endsWith('.lock'))).toEqual([])
  fake.duringBuild = undefined
  const again = await FM.load({ model: rewritten, backend: 'tensorrt', engineDir, onProgress: () => {} }).catch((e) => e)
  expect(again.message).toMatch(/the fake addon runs no engine/)
  expect(fake.builds).toBe(2)
})

it('face-multitask build: a failure after the flags were checked is exit 1, not a usage error', async () => {
  const fake = { builds: 0, plan: new Uint8Array(0), refusals: 0 }
  await fakeAddon(fake)
  const { main } = await import('../lib/cli')
  const err: string[] = []
  const { result: code } = await stderrDuring(() => main(['build', model, '--engine-dir', path.join(dir, 'cli')], { out: () => {}, err: (l) => err.push(l) }))
  expect(fake.builds).toBe(1)
  expect(code).toBe(1)
  expect(err.join('\n')).toMatch(/returned no bytes/)
})

it('face-multitask build: a plan built but not stored (a full disk) is exit 1, not "engine ready"; stored, the file it names exists', async () => {
  const engine = {
    run: async () => ({}),
    allocFrame: (n: number) => new Uint8Array(n),
    close: async () => {},
    info: () => ({ preprocessing: 'cuda', preprocessingNote: '', maxBatch: 64, lost: '', tensors: [], stages: {} }),
  }
  const fake = { builds: 0, plan: Buffer.from('plan'), refusals: 0, engine }
  await fakeAddon(fake)
  const { main } = await import('../lib/cli')
  const engineDir = path.join(dir, 'cli-full')
  const open = fsp.open
  const full = vi.spyOn(fsp, 'open').mockImplementation(((file: string, ...rest: unknown[]) => {
    if (String(file).includes('.plan.tmp-')) return Promise.reject(Object.assign(new Error(`ENOSPC: no space left on device, open '${file}'`), { code: 'ENOSPC' }))
    return (open as (...a: unknown[]) => Promise<unknown>)(file, ...rest)
  }) as typeof fsp.open)
  const out: string[] = []
  const err: string[] = []
  const io = { out: (l: string) => out.push(l), err: (l: string) => err.push(l) }
  try {
    const { result: code, stderr } = await stderrDuring(() => main(['build', model, '--engine-dir', engineDir], io))
    expect(code).toBe(1)
    expect(stderr).toMatch(/could not keep it in .*no space left on its disk/)
    expect(err.join('\n')).toMatch(/the engine was built but could not be stored in the engine cache \(see above\): the next load builds it again/)
    expect(out.join('\n')).not.toMatch(/engine ready/)
  } finally {
    full.mockRestore()
  }
  const { result: code } = await stderrDuring(() => main(['build', model, '--engine-dir', engineDir], io))
  expect(code).toBe(0)
  const ready = /engine ready: (.*\.plan)/.exec(out.join('\n'))
  expect(ready && statSync(ready[1]).isFile()).toBe(true)
  expect(fake.builds).toBe(2)
})

it('face-multitask detect shows the engine build\'s progress, as build does (a first run on a GPU takes minutes)', async () => {
  const fake = { builds: 0, plan: new Uint8Array(0), refusals: 0 } // the build fails: nothing is stored
  await fakeAddon(fake)
  const { main } = await import('../lib/cli')
  const chip = path.join(dir, 'chip.png')
  await (await import('sharp')).default({ create: { width: 256, height: 256, channels: 3, background: '#808080' } }).png().toFile(chip)
  const err: string[] = []
  const { result: code, stderr } = await stderrDuring(() => main(['detect', chip, '--model', model, '--backend', 'tensorrt'], { out: () => {}, err: (l) => err.push(l) }))
  expect(fake.builds).toBe(1)
  expect(code).toBe(1)
  expect(err.join('\n')).toMatch(/returned no bytes/)
  expect(stderr).toMatch(/^Building\.\.\.$/m) // the fake build's phase, one line when stderr is not a terminal
  expect(stderr).toMatch(/^building the TensorRT engine m\.fp32\./m) // the cache's note, through the same view
})

it('a signal that fires while the engine loads: no model, and the engine is closed', async () => {
  let closed = 0
  const ac = new AbortController()
  const engine = {
    run: async () => ({}),
    allocFrame: (n: number) => new Uint8Array(n),
    close: async () => { closed++ },
    info: () => ({ preprocessing: 'cuda', preprocessingNote: '', maxBatch: 64, lost: '', tensors: [], stages: {} }),
  }
  // Aborted while the addon loads the plan (the build and the cache are done by then).
  const slowLoad = { builds: 0, plan: Buffer.from('plan'), refusals: 0, get engine() { ac.abort(); return engine } }
  const FM = await fakeAddon(slowLoad)
  const loading = FM.load({ model, backend: 'tensorrt', engineDir: path.join(dir, 'abort-load'), onProgress: () => {}, signal: ac.signal })
  const err = await loading.catch((e) => e)
  expect(err.name).toBe('AbortError')
  expect(err.message).toMatch(/loading the TensorRT engine for .* was cancelled/)
  expect(closed).toBe(1)
})

it('info() says when the GPU is lost (the addon reports a context-fatal error)', async () => {
  const state = { lost: '' }
  const engine = {
    run: async () => { throw new Error(state.lost) },
    allocFrame: (n: number) => new Uint8Array(n),
    close: async () => {},
    info: () => ({ preprocessing: 'cuda', preprocessingNote: '', maxBatch: 64, lost: state.lost, tensors: [], stages: {} }),
  }
  const FM = await fakeAddon({ builds: 0, plan: Buffer.from('plan'), refusals: 0, engine })
  const m = await FM.load({ model, backend: 'tensorrt', engineDir: path.join(dir, 'lost'), onProgress: () => {} })
  try {
    expect(m.info().gpuLost).toBeUndefined()
    state.lost = 'cuEventSynchronize: CUDA_ERROR_ILLEGAL_ADDRESS'
    await expect(m.detect({ data: new Uint8Array(256 * 256 * 3), width: 256, height: 256 })).rejects.toThrow(/CUDA_ERROR_ILLEGAL_ADDRESS/)
    expect(m.info().gpuLost).toBe('cuEventSynchronize: CUDA_ERROR_ILLEGAL_ADDRESS')
  } finally {
    await m.close()
  }
})
