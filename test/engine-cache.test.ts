// The TensorRT plan cache without TensorRT: keys, names, atomic writes, the cross-process lock
// (two real processes racing, stale locks, a builder killed mid-build), AbortSignal, and rebuilds
// of plans that do not match. The child processes run test/helpers/engine-cache-child.js against
// the compiled dist/lib/engine-cache/ (the test script runs tsc first).
import { type ChildProcess, fork, spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { getEventListeners } from 'node:events'
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import fsp from 'node:fs/promises'
import { hostname, tmpdir, uptime } from 'node:os'
import path from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import {
  AbortError,
  ENGINE_SCHEMA_VERSION,
  EngineCache,
  type EngineKeyParts,
  engineCacheKey,
  engineFileName,
  engineKeyParts,
  FileLock,
  hashFile,
  processStart,
  timingCachePath,
  UNUSED_DAYS,
  writeFileAtomic,
} from '../lib/engine-cache'
import { renameReplacing, tempPath } from '../lib/engine-cache/atomic-write'
import { hashBytes } from '../lib/engine-cache/key'
import { removeIfSame } from '../lib/engine-cache/file-lock'
import type { EngineProgress } from '../lib/types'
import { onnx } from 'onnx-proto'
import { readOnnxModel } from '../lib/onnx-model'
import { tempDir } from './helpers/temp-dir'

const root = tempDir('engine-cache')
const helper = path.join(__dirname, 'helpers', 'engine-cache-child.js')
const compiled = path.join(__dirname, '..', 'dist', 'lib', 'engine-cache', 'index.js')

function baseParts(): EngineKeyParts {
  return {
    onnxName: 'face_multitask_v28.fp16.onnx',
    onnxSha256: createHash('sha256').update('model bytes').digest('hex'),
    tensorrt: { version: '10.14.1', build: '101401-10.14.1.48' },
    parserVersion: '10.14.1',
    precision: 'fp16',
    profile: { minBatch: 1, optBatch: 8, maxBatch: 64 },
    builder: { optimizationLevel: 3, workspaceMiB: 0 },
    gpu: { name: 'NVIDIA H100 80GB HBM3', computeCapability: '9.0', smCount: 132 },
    cudaMajor: 13,
    os: 'linux',
    arch: 'x64',
    schemaVersion: ENGINE_SCHEMA_VERSION,
  }
}

/** A fresh folder and distinct parts for one test. */
function fresh(name: string): { dir: string; parts: EngineKeyParts } {
  const dir = path.join(root, name)
  mkdirSync(dir, { recursive: true })
  const parts = baseParts()
  parts.onnxSha256 = createHash('sha256').update(name).digest('hex')
  return { dir, parts }
}

/** Same value, keys in reverse order at every level. */
function reversed<T>(v: T): T {
  if (typeof v !== 'object' || v === null) return v
  return Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reversed(x)])) as T
}

function sha(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/** What a folder holds besides the plan, sidecar and markers: temp files, locks, takeover guards. */
function debris(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.includes('.tmp-') || n.endsWith('.lock') || n.endsWith('.takeover'))
}

/** A fake build that counts its calls. */
function counter(ms = 0, tag = 'in-process') {
  const state = { builds: 0 }
  const build = async (onProgress: (e: EngineProgress) => void) => {
    state.builds++
    onProgress({ type: 'phase-start', phase: 'fake', steps: 1 })
    await new Promise((r) => setTimeout(r, ms))
    return Buffer.from(`plan from ${tag} #${state.builds} `.repeat(1000))
  }
  return { state, build }
}

interface ChildMessage {
  type: 'ready' | 'log' | 'building' | 'done' | 'error'
  message?: string
  pid?: number
  sha256?: string
  name?: string
}

interface Child {
  proc: ChildProcess
  messages: ChildMessage[]
  /** Resolves with the first message of this type (or rejects when the child exits without it). */
  next(type: ChildMessage['type']): Promise<ChildMessage>
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

function startChild(cfg: Record<string, unknown>): Child {
  if (!existsSync(compiled)) throw new Error(`${compiled} is missing: run \`npx tsc -p tsconfig.json\` first (npm test does)`)
  const proc = fork(helper, [JSON.stringify(cfg)], { silent: true })
  const messages: ChildMessage[] = []
  const waiters: [ChildMessage['type'], (m: ChildMessage) => void][] = []
  proc.on('message', (m: ChildMessage) => {
    messages.push(m)
    for (const w of waiters.filter(([t]) => t === m.type)) w[1](m)
  })
  let stderr = ''
  proc.stderr!.on('data', (d) => { stderr += d })
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })))
  return {
    proc,
    messages,
    exit,
    next(type) {
      const seen = messages.find((m) => m.type === type)
      if (seen) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        waiters.push([type, resolve])
        void exit.then(({ code, signal }) => {
          const got = messages.find((m) => m.type === type)
          if (got) resolve(got)
          else reject(new Error(`child exited (${code ?? signal}) before "${type}"; messages ${JSON.stringify(messages)}; stderr ${stderr}`))
        })
      })
    },
  }
}

function markers(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : []
}

/** A child process that has started building a fresh key's plan (1.5 s long) in a fresh folder. */
async function childBuilding(name: string) {
  const { dir, parts } = fresh(name)
  const markerDir = path.join(dir, 'markers')
  mkdirSync(markerDir)
  const child = startChild({ dir, parts, buildMs: 1500, markerDir })
  await child.next('building')
  return { dir, parts, markerDir, child }
}

/** A pid that surely runs no process: one that just exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' })
  return Number(r.stdout)
}

/**
 * Runs `call` (an expression on `cache`, an EngineCache of `dir`, giving a promise) in a child
 * process as user nobody (root writes anywhere), from copies of the compiled modules in `top`, a
 * folder every user can read (the checkout may not be); what it resolves to, or its error's message.
 */
function asNobody(top: string, dir: string, call: string): string {
  const lib = path.dirname(path.dirname(compiled))
  cpSync(path.dirname(compiled), path.join(top, 'engine-cache'), { recursive: true })
  for (const f of ['native.js', 'describe.js', 'gpu-options.js']) writeFileSync(path.join(top, f), readFileSync(path.join(lib, f)))
  const cacheModule = JSON.stringify(path.join(top, 'engine-cache'))
  const script = `const logs = []; const cache = new (require(${cacheModule}).EngineCache)({ engineDir: ${JSON.stringify(dir)}, log: (m) => logs.push(m) });
    (${call}).then((v) => console.log(v), (e) => console.log(e.message))`
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', uid: 65534, gid: 65534, cwd: top })
  expect(r.stderr).toBe('')
  return r.stdout.trim()
}

/** getOrBuild() as user nobody (asNobody): 'built' and what the cache said, or why not. */
function getOrBuildAsNobody(top: string, dir: string, parts: EngineKeyParts): string {
  return asNobody(top, dir, `cache.getOrBuild(${JSON.stringify(parts)}, async () => Buffer.from('plan')).then((p) => 'built ' + Buffer.from(p) + ': ' + logs.join(' | '))`)
}

describe('cache key', () => {
  const leaves: [string, (p: EngineKeyParts) => void][] = [
    ['onnxSha256', (p) => { p.onnxSha256 = createHash('sha256').update('other model').digest('hex') }],
    ['tensorrt.version', (p) => { p.tensorrt.version = '10.14.2' }],
    ['tensorrt.build', (p) => { p.tensorrt.build = '101401-10.14.1.49' }],
    ['parserVersion', (p) => { p.parserVersion = '10.14.2' }],
    ['precision', (p) => { p.precision = 'bf16' }],
    ['profile.minBatch', (p) => { p.profile.minBatch = 2 }],
    ['profile.optBatch', (p) => { p.profile.optBatch = 16 }],
    ['profile.maxBatch', (p) => { p.profile.maxBatch = 128 }],
    ['builder.optimizationLevel', (p) => { p.builder.optimizationLevel = 4 }],
    ['builder.workspaceMiB', (p) => { p.builder.workspaceMiB = 4096 }],
    ['gpu.name', (p) => { p.gpu.name = 'NVIDIA H200' }],
    ['gpu.computeCapability', (p) => { p.gpu.computeCapability = '8.9' }],
    ['gpu.smCount', (p) => { p.gpu.smCount = 114 }],
    ['cudaMajor', (p) => { p.cudaMajor = 12 }],
    ['os', (p) => { p.os = 'win32' }],
    ['arch', (p) => { p.arch = 'arm64' }],
    ['schemaVersion', (p) => { p.schemaVersion = ENGINE_SCHEMA_VERSION + 1 }],
  ]

  it('is a stable SHA-256: same parts (in any key order) give the same key', () => {
    const key = engineCacheKey(baseParts())
    expect(key).toMatch(/^[0-9a-f]{64}$/)
    expect(engineCacheKey(baseParts())).toBe(key)
    expect(engineCacheKey(reversed(baseParts()))).toBe(key)
  })

  it.each(leaves)('changes when %s changes', (_name, edit) => {
    const p = baseParts()
    edit(p)
    expect(engineCacheKey(p)).not.toBe(engineCacheKey(baseParts()))
  })

  it('gives every variant its own key', () => {
    const keys = leaves.map(([, edit]) => { const p = baseParts(); edit(p); return engineCacheKey(p) })
    expect(new Set([...keys, engineCacheKey(baseParts())]).size).toBe(leaves.length + 1)
  })

  it('ignores the ONNX file name (same bytes, same engine), which only names the file', () => {
    const p = { ...baseParts(), onnxName: 'renamed.onnx' }
    expect(engineCacheKey(p)).toBe(engineCacheKey(baseParts()))
    expect(engineFileName(p)).not.toBe(engineFileName(baseParts()))
  })

  it('names the plan readably', () => {
    const key = engineCacheKey(baseParts())
    expect(engineFileName(baseParts())).toBe(`face_multitask_v28.fp16.b1-8-64.nvidia-h100-80gb-hbm3-sm90.trt10.14.1.${key.slice(0, 12)}.plan`)
    expect(engineFileName({ ...baseParts(), onnxName: 'model.onnx' })).toBe(`model.fp16.b1-8-64.nvidia-h100-80gb-hbm3-sm90.trt10.14.1.${key.slice(0, 12)}.plan`)
    // Never a leading '-' (read as an option by tools) or '.' (hidden).
    for (const [onnxName, base] of [['模型 v2.onnx', 'v2'], ['--help.onnx', 'help'], ['.hidden.onnx', 'hidden'], ['模型.onnx', 'model']]) {
      expect(engineFileName({ ...baseParts(), onnxName })).toBe(`${base}.fp16.b1-8-64.nvidia-h100-80gb-hbm3-sm90.trt10.14.1.${key.slice(0, 12)}.plan`)
    }
    // A long ONNX name is cut: the plan's temp file (".<name>.tmp-<pid>-<hex>") must fit in a file name's 255.
    const long = engineFileName({ ...baseParts(), onnxName: `${'m'.repeat(250)}.onnx` })
    expect(long).toBe(`${'m'.repeat(64)}.fp16.b1-8-64.nvidia-h100-80gb-hbm3-sm90.trt10.14.1.${key.slice(0, 12)}.plan`)
    expect(path.basename(tempPath(long)).length).toBeLessThan(255)
  })

  it('rejects malformed parts, naming the field', () => {
    expect(() => engineCacheKey({ ...baseParts(), gpu: { ...baseParts().gpu, smCount: 0 } })).toThrow(/engine key: gpu\.smCount must be an integer >= 1/)
    expect(() => engineCacheKey({ ...baseParts(), onnxSha256: 'abc' })).toThrow(/onnxSha256 must be a hex SHA-256/)
    expect(() => engineCacheKey({ ...baseParts(), profile: { minBatch: 8, optBatch: 4, maxBatch: 64 } })).toThrow(/profile must be minBatch <= optBatch <= maxBatch/)
    expect(() => engineCacheKey({ ...baseParts(), precision: 'int8' as never })).toThrow(/precision must be one of fp16, bf16, fp32/)
  })

  it('puts the timing cache beside the plans, keyed by TensorRT build and GPU only', () => {
    const dir = '/some/engines'
    const t = timingCachePath(dir, baseParts())
    expect(path.dirname(t)).toBe(dir)
    expect(path.basename(t)).toMatch(/^timing\.nvidia-h100-80gb-hbm3-sm90\.trt10\.14\.1\.[0-9a-f]{8}\.cache$/)
    expect(timingCachePath(dir, { ...baseParts(), precision: 'fp32', profile: { minBatch: 1, optBatch: 1, maxBatch: 1 } })).toBe(t)
    expect(timingCachePath(dir, { ...baseParts(), tensorrt: { version: '10.14.1', build: 'other' } })).not.toBe(t)
    expect(timingCachePath(dir, { ...baseParts(), gpu: { ...baseParts().gpu, name: 'NVIDIA A100' } })).not.toBe(t)
    expect(new EngineCache({ engineDir: dir, log: () => {} }).timingCachePath(baseParts())).toBe(t)
  })
})

describe('hashing the ONNX', () => {
  it('streams the file and gets what hashing all its bytes at once gets', async () => {
    const file = path.join(root, 'big.onnx')
    const bytes = randomBytes(5 * 1024 * 1024 + 12345) // several 1 MiB chunks and a ragged end
    writeFileSync(file, bytes)
    expect(await hashFile(file)).toBe(sha(bytes))
    const empty = path.join(root, 'empty.onnx')
    writeFileSync(empty, '')
    expect(await hashFile(empty)).toBe(sha(Buffer.alloc(0)))
    const prefix = 3 * 1024 * 1024 + 7  // a prefix over several chunks
    expect(await hashFile(file, undefined, prefix)).toBe(sha(bytes.subarray(0, prefix)))
    expect(await hashFile(file, undefined, 0)).toBe(sha(Buffer.alloc(0)))
  })

  it('hashes a plan in memory off the event loop, to the same digest', async () => {
    // A plan is hashed at each load and store: on the JS thread a 100 MB plan held every timer of
    // the process for a third of a second. A 1 ms timer fires while 64 MiB are hashed only when
    // the digest runs elsewhere (a synchronous hash resolves before any timer can run).
    const bytes = randomBytes(64 * 1024 * 1024)
    let ticks = 0
    const timer = setInterval(() => { ticks++ }, 1)
    const digest = await hashBytes(bytes)
    clearInterval(timer)
    expect(digest).toBe(sha(bytes))
    expect(ticks).toBeGreaterThan(0)
    expect(await hashBytes(bytes.subarray(5, 9))).toBe(sha(bytes.subarray(5, 9)))
    expect(await hashBytes(new Uint8Array(0))).toBe(sha(Buffer.alloc(0)))
  })

  /** A one-initializer ONNX graph; with `location`, its weights are kept in that file (external data). */
  function onnxFile(dir: string, name: string, location?: string): { file: string; bytes: Uint8Array } {
    const weight = onnx.TensorProto.create({ name: 'w', dims: [4], dataType: onnx.TensorProto.DataType.FLOAT })
    if (location) {
      weight.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL
      weight.externalData = [onnx.StringStringEntryProto.create({ key: 'location', value: location }), onnx.StringStringEntryProto.create({ key: 'length', value: '16' })]
    } else {
      weight.rawData = new Uint8Array(16)
    }
    const graph = onnx.GraphProto.create({ name: 'g', initializer: [weight] })
    const bytes = onnx.ModelProto.encode(onnx.ModelProto.create({ irVersion: 8, graph })).finish()
    const file = path.join(dir, name)
    mkdirSync(dir, { recursive: true })
    writeFileSync(file, bytes)
    return { file, bytes }
  }

  const { onnxName: _n, onnxSha256: _h, os: _o, arch: _a, schemaVersion: _s, ...given } = baseParts()

  it('engineKeyParts hashes the file and fills OS, arch and schema', async () => {
    const { file, bytes } = onnxFile(path.join(root, 'key-parts'), 'm.onnx')
    const parts = await engineKeyParts({ ...given, onnx: file, externalData: [] })
    expect(parts).toMatchObject({ onnxName: 'm.onnx', onnxSha256: sha(bytes), os: process.platform, arch: process.arch, schemaVersion: ENGINE_SCHEMA_VERSION })
    expect(parts.externalData).toBeUndefined() // the key of a model without external data has no such part
  })

  it('weights kept outside the .onnx (external data) are part of the key: new weights, another engine', async () => {
    const dir = path.join(root, 'external-data')
    const { file } = onnxFile(dir, 'm.onnx', 'm.weights')
    const { externalData } = await readOnnxModel(file)
    expect(externalData).toEqual(['m.weights'])
    writeFileSync(path.join(dir, 'm.weights'), Buffer.alloc(16, 1))
    const before = await engineKeyParts({ ...given, onnx: file, externalData })
    expect(before.externalData).toEqual([{ location: 'm.weights', sha256: sha(Buffer.alloc(16, 1)) }])
    writeFileSync(path.join(dir, 'm.weights'), Buffer.alloc(16, 2)) // same .onnx bytes, new weights
    const after = await engineKeyParts({ ...given, onnx: file, externalData })
    expect(after.onnxSha256).toBe(before.onnxSha256)
    expect(engineCacheKey(after)).not.toBe(engineCacheKey(before))
  })

  it("external data of Constant nodes and of subgraphs is part of the key too, not only the initializers'", async () => {
    const dir = path.join(root, 'external-everywhere')
    mkdirSync(dir, { recursive: true })
    const tensor = (location: string) => onnx.TensorProto.create({
      name: location, dims: [4], dataType: onnx.TensorProto.DataType.FLOAT, dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [onnx.StringStringEntryProto.create({ key: 'location', value: location })],
    })
    const constant = (location: string) => onnx.NodeProto.create({
      opType: 'Constant', output: [location], attribute: [onnx.AttributeProto.create({ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t: tensor(location) })],
    })
    const branch = onnx.GraphProto.create({ name: 'then', node: [constant('then.bin')], initializer: [tensor('then-init.bin')] })
    const ifNode = onnx.NodeProto.create({ opType: 'If', input: ['c'], output: ['y'], attribute: [onnx.AttributeProto.create({ name: 'then_branch', type: onnx.AttributeProto.AttributeType.GRAPH, g: branch })] })
    const sparse = onnx.SparseTensorProto.create({ values: tensor('sparse-values.bin'), indices: tensor('sparse-indices.bin'), dims: [8] })
    const graph = onnx.GraphProto.create({ name: 'g', node: [constant('constant.bin'), ifNode], initializer: [tensor('init.bin')], sparseInitializer: [sparse] })
    const file = path.join(dir, 'm.onnx')
    writeFileSync(file, onnx.ModelProto.encode(onnx.ModelProto.create({ irVersion: 8, graph })).finish())
    const { externalData } = await readOnnxModel(file)
    expect([...externalData].sort()).toEqual(['constant.bin', 'init.bin', 'sparse-indices.bin', 'sparse-values.bin', 'then-init.bin', 'then.bin'])
    for (const n of externalData) writeFileSync(path.join(dir, n), Buffer.alloc(16, 1))
    const before = await engineKeyParts({ ...given, onnx: file, externalData })
    writeFileSync(path.join(dir, 'then.bin'), Buffer.alloc(16, 2)) // a subgraph's Constant: new weights, another engine
    expect(engineCacheKey(await engineKeyParts({ ...given, onnx: file, externalData }))).not.toBe(engineCacheKey(before))
  })

  it('an external-data location outside the model\'s folder, or not a regular file, is refused, not read', async () => {
    const dir = path.join(root, 'external-outside')
    for (const location of ['/etc/hostname', '../m.weights', 'sub/../../m.weights', 'C:\\weights.bin']) {
      const { file } = onnxFile(dir, 'm.onnx', location)
      await expect(engineKeyParts({ ...given, onnx: file, externalData: [location] })).rejects.toThrow(
        `${file} keeps weights in "${location}" (ONNX external data), a path outside the model's folder: ONNX external data must lie in or under that folder`)
    }
    mkdirSync(path.join(dir, 'a-folder'), { recursive: true })
    const { file } = onnxFile(dir, 'm.onnx', 'a-folder')
    await expect(engineKeyParts({ ...given, onnx: file, externalData: ['a-folder'] })).rejects.toThrow(`${file} keeps weights in "a-folder" (ONNX external data), which is not a regular file`)
    if (process.platform !== 'win32') {
      symlinkSync('/dev/zero', path.join(dir, 'zeros.bin'))  // endless: hashing it would never return
      await expect(engineKeyParts({ ...given, onnx: file, externalData: ['zeros.bin'] })).rejects.toThrow(/"zeros\.bin" \(ONNX external data\), which is not a regular file$/)
    }
  })

  it('a missing external-data file is named, with the model that needs it', async () => {
    const { file } = onnxFile(path.join(root, 'external-missing'), 'm.onnx', 'gone.bin')
    await expect(engineKeyParts({ ...given, onnx: file, externalData: (await readOnnxModel(file)).externalData })).rejects.toThrow(/m\.onnx keeps weights in "gone\.bin" \(ONNX external data\), which cannot be read: no such file/)
  })
})

describe('atomic writes', () => {
  it('on Windows, a rename refused while the target is in use is retried; elsewhere it fails at once', async () => {
    const dir = path.join(root, 'rename-retry')
    mkdirSync(dir)
    const from = path.join(dir, 'new')
    const to = path.join(dir, 'plan')
    const busy = () => Object.assign(new Error('EBUSY: resource busy or locked'), { code: 'EBUSY' })
    const real = fsp.rename.bind(fsp)
    const spy = vi.spyOn(fsp, 'rename')
    try {
      writeFileSync(from, 'new plan')
      writeFileSync(to, 'old plan')
      spy.mockRejectedValueOnce(busy()).mockRejectedValueOnce(busy()).mockImplementation(real)
      await renameReplacing(from, to, 'win32')
      expect(spy).toHaveBeenCalledTimes(3)
      expect(readFileSync(to, 'utf8')).toBe('new plan')

      spy.mockClear()
      writeFileSync(from, 'newer plan')
      spy.mockRejectedValueOnce(busy())
      await expect(renameReplacing(from, to, 'linux')).rejects.toThrow(/EBUSY/)
      expect(spy).toHaveBeenCalledTimes(1)

      spy.mockClear()
      spy.mockRejectedValue(busy()) // never clears: gives up, with the error
      await expect(renameReplacing(from, to, 'win32')).rejects.toThrow(/EBUSY/)
      expect(spy).toHaveBeenCalledTimes(9)
      expect(readFileSync(to, 'utf8')).toBe('new plan')
    } finally {
      spy.mockRestore()
    }
  })

  it('a write that fails mid-way leaves the old file whole and no temp file', async () => {
    const dir = path.join(root, 'atomic')
    mkdirSync(dir)
    const file = path.join(dir, 'timing.cache')
    await writeFileAtomic(file, Buffer.from('old contents'))
    async function* crashing() {
      yield Buffer.alloc(1 << 20, 1)
      yield Buffer.alloc(1 << 20, 2)
      throw new Error('simulated crash mid-write')
    }
    await expect(writeFileAtomic(file, crashing())).rejects.toThrow(/simulated crash/)
    expect(readFileSync(file, 'utf8')).toBe('old contents')
    expect(readdirSync(dir)).toEqual(['timing.cache'])
    await writeFileAtomic(path.join(dir, 'new.cache'), crashing()).catch(() => {})
    expect(readdirSync(dir)).toEqual(['timing.cache'])
  })

  it('a build that throws mid-way leaves no plan, no temp file, and releases the lock', async () => {
    const { dir, parts } = fresh('crash')
    const messages: string[] = []
    const cache = new EngineCache({ engineDir: dir, log: (m) => messages.push(m) })
    const progress: EngineProgress[] = []
    const failing = async (onProgress: (e: EngineProgress) => void) => {
      onProgress({ type: 'phase-start', phase: 'Building engine', steps: 10 })
      onProgress({ type: 'step', phase: 'Building engine', step: 4 })
      await new Promise((r) => setTimeout(r, 50))
      throw new Error('builder ran out of memory at step 5')
    }
    await expect(cache.getOrBuild(parts, failing, { onProgress: (e) => progress.push(e) })).rejects.toThrow(/out of memory at step 5/)
    expect(readdirSync(dir)).toEqual([])
    expect(progress.filter((e) => e.type !== 'message')).toHaveLength(2)
    expect(progress.some((e) => e.type === 'message' && /building the TensorRT engine/.test(e.message))).toBe(true)
    // The lock is free: the next call builds at once.
    const { state, build } = counter()
    const bytes = await cache.getOrBuild(parts, build)
    expect(state.builds).toBe(1)
    expect(readFileSync(cache.files(parts).plan)).toEqual(Buffer.from(bytes))
    expect(debris(dir)).toEqual([])
  })

  it('the builder takes away temp files a crashed writer left behind, not one written in the last ten minutes or dated ahead (another host\'s writer, whose pid means nothing here)', async () => {
    const { dir, parts } = fresh('leftover')
    const cache = new EngineCache({ engineDir: dir, log: () => {} })
    const plan = cache.files(parts).plan
    const leftover = path.join(dir, `.${path.basename(plan)}.tmp-${deadPid()}-deadbeef`)
    writeFileSync(leftover, 'half a plan')
    const elevenMinutesAgo = new Date(Date.now() - 11 * 60_000)
    utimesSync(leftover, elevenMinutesAgo, elevenMinutesAgo)
    const writing = path.join(dir, `.${path.basename(plan)}.tmp-${deadPid()}-0badf00d`)
    writeFileSync(writing, 'a plan being written elsewhere')
    const ahead = path.join(dir, `.${path.basename(plan)}.tmp-${deadPid()}-0fedcba9`)
    writeFileSync(ahead, 'written on a host whose clock is ahead')
    const inTwentyMinutes = new Date(Date.now() + 20 * 60_000)
    utimesSync(ahead, inTwentyMinutes, inTwentyMinutes)
    await cache.getOrBuild(parts, counter().build)
    expect(existsSync(leftover)).toBe(false)
    expect(existsSync(writing)).toBe(true)
    expect(existsSync(ahead)).toBe(true)
    rmSync(writing)
    rmSync(ahead)
    expect(debris(dir)).toEqual([])
  })
})

describe('getOrBuild', () => {
  it('builds once, then reads the cache; the sidecar holds the full key', async () => {
    const { dir, parts } = fresh('hit')
    const messages: string[] = []
    const cache = new EngineCache({ engineDir: dir, log: (m) => messages.push(m) })
    const { state, build } = counter()
    const first = await cache.getOrBuild(parts, build)
    const second = await cache.getOrBuild(parts, build)
    expect(state.builds).toBe(1)
    expect(Buffer.from(second)).toEqual(Buffer.from(first))
    const files = cache.files(parts)
    const sidecar = JSON.parse(readFileSync(files.sidecar, 'utf8'))
    expect(sidecar).toMatchObject({ key: engineCacheKey(parts), parts, planBytes: first.length, planSha256: sha(first) })
    expect(files.sidecar).toBe(files.plan.replace(/\.plan$/, '.json'))
    expect(messages.filter((m) => /building the TensorRT engine/.test(m))).toHaveLength(1)
  })

  it('callers in one process share one build', async () => {
    const { dir, parts } = fresh('in-process')
    const cache = new EngineCache({ engineDir: dir, log: () => {} })
    const { state, build } = counter(200)
    const results = await Promise.all([cache.getOrBuild(parts, build), cache.getOrBuild(parts, build), new EngineCache({ engineDir: dir, log: () => {} }).getOrBuild(parts, build)])
    expect(state.builds).toBe(1)
    expect(new Set(results.map(sha)).size).toBe(1)
  })

  it('a sidecar that does not match triggers a rebuild, with a message saying what differs', async () => {
    const { dir, parts } = fresh('mismatch')
    const messages: string[] = []
    const cache = new EngineCache({ engineDir: dir, log: (m) => messages.push(m) })
    const { state, build } = counter()
    await cache.getOrBuild(parts, build)
    const { sidecar } = cache.files(parts)
    const s = JSON.parse(readFileSync(sidecar, 'utf8'))
    s.parts.builder.workspaceMiB = 1234
    writeFileSync(sidecar, JSON.stringify(s))
    const progress: EngineProgress[] = []
    await cache.getOrBuild(parts, build, { onProgress: (e) => progress.push(e) })
    expect(state.builds).toBe(2)
    expect(messages.some((m) => /sidecar does not match this engine \(builder differ\): rebuilding/.test(m))).toBe(true)
    expect(progress.some((e) => e.type === 'message' && /does not match/.test(e.message))).toBe(true)
    // The rebuilt sidecar matches again.
    await cache.getOrBuild(parts, build)
    expect(state.builds).toBe(2)
  })

  it('a plan whose bytes do not match its sidecar (truncated, corrupt) is rebuilt', async () => {
    const { dir, parts } = fresh('corrupt')
    const messages: string[] = []
    const cache = new EngineCache({ engineDir: dir, log: (m) => messages.push(m) })
    const { state, build } = counter()
    const good = await cache.getOrBuild(parts, build)
    writeFileSync(cache.files(parts).plan, Buffer.from(good).subarray(0, 100))
    await cache.getOrBuild(parts, build)
    expect(state.builds).toBe(2)
    expect(messages.some((m) => /plan's bytes do not match its sidecar/.test(m))).toBe(true)
  })

  it('a sidecar that is valid JSON but not an object (null, a number) is rebuilt, not a crash', async () => {
    const { dir, parts } = fresh('null-sidecar')
    const messages: string[] = []
    const cache = new EngineCache({ engineDir: dir, log: (m) => messages.push(m) })
    const { state, build } = counter()
    await cache.getOrBuild(parts, build)
    for (const text of ['null', '7', '[]']) {
      writeFileSync(cache.files(parts).sidecar, text)
      await cache.getOrBuild(parts, build)
    }
    expect(state.builds).toBe(4)
    expect(messages.filter((m) => /its sidecar .*\.json is not a JSON object: rebuilding it$/.test(m))).toHaveLength(3)
  })

  it('a plan that cannot be kept, or locked (a full disk), is still built and used by this process, said so; no half-stored plan is left', async () => {
    const { dir, parts } = fresh('disk-full')
    const messages: string[] = []
    const cache = new EngineCache({ engineDir: dir, log: (m) => messages.push(m) })
    const notKept = /^built .*\.plan in \d+\.\d s, but could not keep it in ".*disk-full" \(no space left on its disk\): this process uses it; the next one builds it again \(free space there, or set options\.engineDir\)$/
    const notLocked = /^cannot lock .*\.plan in ".*disk-full" \(no space left on its disk\): building it without the cache; this process uses it, the next one builds it again \(free space there, or set options\.engineDir\)$/
    // The plan's write, the sidecar's, the lock's.
    for (const [failing, said] of [['.plan.tmp-', notKept], ['.json.tmp-', notKept], ['.lock', notLocked]] as const) {
      const open = fsp.open
      const spy = vi.spyOn(fsp, 'open').mockImplementation(((file: string, ...rest: unknown[]) => {
        if (String(file).includes(failing)) return Promise.reject(Object.assign(new Error(`ENOSPC: no space left on device, open '${file}'`), { code: 'ENOSPC' }))
        return (open as (...a: unknown[]) => Promise<unknown>)(file, ...rest)
      }) as typeof fsp.open)
      try {
        const { state, build } = counter()
        const bytes = await cache.getOrBuild(parts, build)
        expect(state.builds).toBe(1)
        expect(Buffer.from(bytes).toString()).toContain('plan from in-process #1')
      } finally {
        spy.mockRestore()
      }
      expect(messages.at(-1)).toMatch(said)
      expect(readdirSync(dir)).toEqual([])
    }
    // A plan stored before the disk filled is loaded, not built again without the lock.
    const { state, build } = counter()
    await cache.getOrBuild(parts, build)
    const open = fsp.open
    const full = vi.spyOn(fsp, 'open').mockImplementation(((file: string, ...rest: unknown[]) => {
      if (String(file).endsWith('.lock')) return Promise.reject(Object.assign(new Error(`ENOSPC: no space left on device, open '${file}'`), { code: 'ENOSPC' }))
      return (open as (...a: unknown[]) => Promise<unknown>)(file, ...rest)
    }) as typeof fsp.open)
    try {
      // Its sidecar made unreadable for the first look, as if stored just after it.
      const read = vi.spyOn(fsp, 'readFile').mockRejectedValueOnce(Object.assign(new Error('ENOENT'), { code: 'ENOENT' }))
      try {
        expect(Buffer.from(await cache.getOrBuild(parts, build)).toString()).toContain('plan from in-process #1')
      } finally {
        read.mockRestore()
      }
    } finally {
      full.mockRestore()
    }
    expect(state.builds).toBe(1)
  })

  it('a build sweeps what crashed processes left over a day ago (temp files, a plan without its sidecar, locks), and nothing younger', async () => {
    const { dir, parts } = fresh('debris')
    const messages: string[] = []
    const cache = new EngineCache({ engineDir: dir, log: (m) => messages.push(m) })
    const names = ['.other.fp16.plan.tmp-4242-0a1b2c3d', '.other.fp16.json.tmp-4242-0a1b2c3d', 'timing.gpu.trt10.abcd1234.cache.tmp.4242', 'timing.gpu.trt10.abcd1234.cache.tmp.4242.7', 'orphan.fp16.0123456789ab.plan',
      'engine-0123456789abcdef.lock', 'engine-fedcba9876543210.lock.takeover']
    // The same kind of name, just written (a lock: another key's, held now).
    const young = (n: string) => (n.startsWith('engine-') ? n.replace('engine-0', 'engine-1').replace('engine-f', 'engine-e') : n.replace(/^(\.?)/, '$1young-'))
    const twoDays = new Date(Date.now() - 2 * 86_400_000)
    // A lock: its holder's (a pid no longer running on this host).
    const content = (n: string) => (n.endsWith('.lock') ? JSON.stringify({ pid: deadPid(), hostname: hostname(), createdAt: twoDays.toISOString(), token: 'l' }) : 'left over')
    // Another host's lock that old is left to acquire(), which watches it first (its clock may lag).
    const remote = 'engine-abababababababab.lock'
    writeFileSync(path.join(dir, remote), JSON.stringify({ pid: 1, hostname: 'some-other-host', createdAt: twoDays.toISOString(), token: 'r' }))
    utimesSync(path.join(dir, remote), twoDays, twoDays)
    for (const n of names) {
      writeFileSync(path.join(dir, n), content(n))
      writeFileSync(path.join(dir, young(n)), content(n))
      utimesSync(path.join(dir, n), twoDays, twoDays)
    }
    await cache.getOrBuild(parts, counter().build)
    const left = readdirSync(dir)
    for (const n of names) {
      expect(left).not.toContain(n)
      expect(left).toContain(young(n))
    }
    expect(left).toContain(remote)
    expect(messages.filter((m) => /^removed .*: (an unfinished write|a plan without its sidecar|a lock never released) left by a process that stopped \(over a day old\)$/.test(m))).toHaveLength(names.length)
    // The timing cache's lock is flock()ed, never removed, however old.
    const timingLock = 'timing.gpu.trt10.abcd1234.cache.lock'
    writeFileSync(path.join(dir, timingLock), '')
    utimesSync(path.join(dir, timingLock), twoDays, twoDays)
    rmSync(cache.files(parts).sidecar)
    await cache.getOrBuild(parts, counter().build)
    expect(readdirSync(dir)).toContain(timingLock)
  })

  it('invalidate() (the plan failed to deserialize) says why and the next call rebuilds', async () => {
    const { dir, parts } = fresh('invalidate')
    const messages: string[] = []
    const cache = new EngineCache({ engineDir: dir, log: (m) => messages.push(m) })
    const { state, build } = counter()
    await cache.getOrBuild(parts, build)
    await cache.invalidate(parts, 'deserializeCudaEngine failed: version tag mismatch')
    expect(existsSync(cache.files(parts).plan)).toBe(false)
    expect(messages.some((m) => /version tag mismatch; removing it, it will be rebuilt/.test(m))).toBe(true)
    await cache.getOrBuild(parts, build)
    expect(state.builds).toBe(2)
  })

  it("a build removes other TensorRT builds' plans unused for UNUSED_DAYS, and keeps the rest", async () => {
    const { dir, parts } = fresh('unused')
    const cache = new EngineCache({ engineDir: dir, log: () => {} })
    const old = Date.now() / 1000 - (UNUSED_DAYS + 1) * 86_400
    const upgraded = (v: string): EngineKeyParts => ({ ...parts, tensorrt: { version: v, build: `${v} build 1` } })
    const all = [upgraded('10.13.0'), upgraded('10.12.0'), { ...parts, precision: 'fp32' as const }, upgraded('10.11.0')]
    for (const p of all) await cache.getOrBuild(p, counter().build)
    const [stale, inUse, sameTrt, loaded] = all.map((p) => cache.files(p))
    const usedAgo = (f: { sidecar: string }, seconds: number) => utimesSync(f.sidecar, old, Date.now() / 1000 - seconds)
    usedAgo(stale, (UNUSED_DAYS + 1) * 86_400) // another TensorRT, unused
    usedAgo(inUse, 86_400) // another TensorRT, loaded yesterday
    usedAgo(sameTrt, (UNUSED_DAYS + 1) * 86_400) // this TensorRT, unused
    usedAgo(loaded, (UNUSED_DAYS + 1) * 86_400)
    await cache.getOrBuild(all[3], counter().build) // a load marks it used
    const messages: string[] = []
    await new EngineCache({ engineDir: dir, log: (m) => messages.push(m) }).getOrBuild(parts, counter().build)
    expect(existsSync(stale.plan) || existsSync(stale.sidecar)).toBe(false)
    for (const f of [inUse, sameTrt, loaded]) expect(existsSync(f.plan) && existsSync(f.sidecar)).toBe(true)
    expect(messages).toContain(`removed ${path.basename(stale.plan)}: made by another TensorRT build (10.13.0 build 1) and not loaded for ${UNUSED_DAYS} days`)
  })

  it('a plan being loaded is not pruned from under its loader by a build finishing meanwhile', async () => {
    const { dir, parts } = fresh('prune-while-loading')
    const older: EngineKeyParts = { ...parts, tensorrt: { version: '10.13.0', build: '10.13.0 build 1' } }  // another TensorRT build
    const cache = new EngineCache({ engineDir: dir, log: () => {} })
    const original = await cache.getOrBuild(older, counter(0, 'older').build)
    const files = cache.files(older)
    const monthAgo = Date.now() / 1000 - (UNUSED_DAYS + 1) * 86_400
    utimesSync(files.sidecar, monthAgo, monthAgo)  // unused for a month: what pruning removes
    // The loader's read of the plan is slow; a build of another plan finishes (and prunes) meanwhile.
    const readFile = fsp.readFile
    let pruned: Promise<unknown> | undefined
    const spy = vi.spyOn(fsp, 'readFile').mockImplementation((async (file: unknown, ...rest: unknown[]) => {
      if (file === files.plan && !pruned) {
        pruned = new EngineCache({ engineDir: dir, log: () => {} }).getOrBuild(parts, counter(0, 'newer').build)
        await pruned
      }
      return (readFile as (...a: unknown[]) => Promise<unknown>)(file, ...rest)
    }) as typeof fsp.readFile)
    const { state, build } = counter(0, 'rebuilt')
    let loaded: Uint8Array
    try {
      loaded = await cache.getOrBuild(older, build)
    } finally {
      spy.mockRestore()
    }
    expect(pruned).toBeDefined()
    expect(state.builds).toBe(0)
    expect(Buffer.from(loaded).equals(Buffer.from(original))).toBe(true)
    expect(existsSync(files.plan) && existsSync(files.sidecar)).toBe(true)
  })

  it('invalidate() with the refused bytes keeps a plan another process rebuilt meanwhile', async () => {
    const { dir, parts } = fresh('invalidate-rebuilt')
    const messages: string[] = []
    const cache = new EngineCache({ engineDir: dir, log: (m) => messages.push(m) })
    const old = await cache.getOrBuild(parts, counter(0, 'first').build)
    // Meanwhile another process refused the same plan, removed it and built a new one.
    await cache.invalidate(parts, 'refused elsewhere')
    const rebuilt = await cache.getOrBuild(parts, counter(0, 'second').build)
    await cache.invalidate(parts, 'refused here', { refused: old })
    expect(readFileSync(cache.files(parts).plan)).toEqual(Buffer.from(rebuilt))
    expect(messages.at(-1)).toMatch(/refused here; it has been rebuilt since \(another process\?\), so the new one is tried$/)
    await cache.invalidate(parts, 'refused here too', { refused: rebuilt })
    expect(existsSync(cache.files(parts).plan)).toBe(false)
    // Another process, having removed the sidecar, is storing a new plan (its sidecar comes next): left alone.
    writeFileSync(cache.files(parts).plan, 'a new plan being stored')
    await cache.invalidate(parts, 'refused here again', { refused: rebuilt })
    expect(readFileSync(cache.files(parts).plan, 'utf8')).toBe('a new plan being stored')
  })

  it("invalidate() waits for the plan's lock: a plan another process stores meanwhile is kept, not removed as it lands", async () => {
    const { dir, parts } = fresh('invalidate-locked')
    const messages: string[] = []
    const cache = new EngineCache({ engineDir: dir, log: (m) => messages.push(m), maxPollMs: 20 })
    const refused = await cache.getOrBuild(parts, counter(0, 'refused').build)
    const files = cache.files(parts)
    // Another process refused the plan too and holds the lock to rebuild it.
    const held = await FileLock.acquire(files.lock, { refreshMs: 50 })
    const gaveUp = new AbortController()
    const abandoned = cache.invalidate(parts, 'refused, then cancelled', { refused, signal: gaveUp.signal })
    const invalidating = cache.invalidate(parts, 'refused here', { refused })
    await new Promise((r) => setTimeout(r, 200))
    expect(existsSync(files.plan) && existsSync(files.sidecar)).toBe(true)
    gaveUp.abort()
    await expect(abandoned).rejects.toMatchObject({ name: 'AbortError' })
    // It stores its new plan (built elsewhere here), then releases the lock.
    const elsewhere = new EngineCache({ engineDir: path.join(dir, 'elsewhere'), log: () => {} })
    const rebuilt = await elsewhere.getOrBuild(parts, counter(0, 'rebuilt').build)
    renameSync(elsewhere.files(parts).plan, files.plan)
    renameSync(elsewhere.files(parts).sidecar, files.sidecar)
    await held.release()
    await invalidating
    expect(readFileSync(files.plan)).toEqual(Buffer.from(rebuilt))
    expect(messages.at(-1)).toMatch(/refused here; it has been rebuilt since \(another process\?\), so the new one is tried$/)
  })

  it('an AbortSignal aborts a build: AbortError at once; the lock is held until the builder stops; a plan it finished anyway is kept', async () => {
    const { dir, parts } = fresh('abort-build')
    const logs: string[] = []
    const cache = new EngineCache({ engineDir: dir, log: (m) => logs.push(m) })
    const ac = new AbortController()
    let sawSignal: AbortSignal | undefined
    let finished = false
    const slow = async (_p: unknown, signal?: AbortSignal) => {
      sawSignal = signal
      await new Promise((r) => setTimeout(r, 1500)) // ignores the signal, as a TensorRT step that is past its last check
      finished = true
      return Buffer.from('late')
    }
    setTimeout(() => ac.abort(), 100)
    const t0 = Date.now()
    const err = await cache.getOrBuild(parts, slow, { signal: ac.signal }).catch((e) => e)
    expect(err.name).toBe('AbortError')
    expect(Date.now() - t0).toBeLessThan(1000)
    expect(sawSignal?.aborted).toBe(true)  // the build's own signal: every caller of it aborted
    // The builder still runs: its lock stays, so no second build starts beside it.
    expect(finished).toBe(false)
    expect(existsSync(cache.files(parts).lock)).toBe(true)
    expect(existsSync(cache.files(parts).plan)).toBe(false)
    // The next caller waits for it and loads what it finished, without building.
    const { state, build } = counter()
    const plan = await cache.getOrBuild(parts, build)
    expect(finished).toBe(true)
    expect(state.builds).toBe(0)
    expect(Buffer.from(plan).toString()).toBe('late')
    expect(logs.some((m) => /the cancelled build had already finished; kept it/.test(m))).toBe(true)
    expect(readdirSync(dir).sort()).toEqual([path.basename(cache.files(parts).sidecar), path.basename(cache.files(parts).plan)].sort())
  })

  it('a builder that honours the abort leaves no plan and releases the lock once it has stopped', async () => {
    const { dir, parts } = fresh('abort-honoured')
    const cache = new EngineCache({ engineDir: dir, log: () => {} })
    const ac = new AbortController()
    let stopped = false
    const honours = (_p: unknown, signal?: AbortSignal) =>
      new Promise<Uint8Array>((_resolve, reject) => {
        // Stops a little after the abort, as TensorRT does at its next step.
        signal?.addEventListener('abort', () => setTimeout(() => { stopped = true; reject(new AbortError('cancelled')) }, 300), { once: true })
      })
    setTimeout(() => ac.abort(), 50)
    const err = await cache.getOrBuild(parts, honours, { signal: ac.signal }).catch((e) => e)
    expect(err.name).toBe('AbortError')
    expect(stopped).toBe(false)
    expect(existsSync(cache.files(parts).lock)).toBe(true)
    await new Promise((r) => setTimeout(r, 600))
    expect(stopped).toBe(true)
    expect(readdirSync(dir)).toEqual([])
    const { state, build } = counter()
    await cache.getOrBuild(parts, build)
    expect(state.builds).toBe(1)
  })

  it('a caller that aborted hears no more progress; another caller of the same build still gets the plan', async () => {
    const { dir, parts } = fresh('abort-deafens')
    const cache = new EngineCache({ engineDir: dir, log: () => {}, maxPollMs: 20 })
    let builds = 0
    const steps = async (onProgress: (e: EngineProgress) => void) => {
      builds++
      for (let step = 0; step < 8; step++) {
        await new Promise((r) => setTimeout(r, 40))
        onProgress({ type: 'step', phase: 'fake', step })
      }
      return Buffer.from('plan')
    }
    const ac = new AbortController()
    const owner: EngineProgress[] = []
    const first = cache.getOrBuild(parts, steps, { signal: ac.signal, onProgress: (e) => owner.push(e) })
    await new Promise((r) => setTimeout(r, 20))
    const second = cache.getOrBuild(parts, steps)
    await new Promise((r) => setTimeout(r, 130))
    ac.abort()
    const heard = owner.length
    const stepsHeard = owner.filter((e) => e.type === 'step').length
    expect((await first.catch((e) => e)).name).toBe('AbortError')
    expect(Buffer.from(await second).toString()).toBe('plan')
    await new Promise((r) => setTimeout(r, 100))
    expect(stepsHeard).toBeGreaterThan(0) // it heard the build's steps until it gave up
    expect(owner).toHaveLength(heard)
    expect(builds).toBe(1) // the second caller waited for the build the first started, and loaded its plan
  })

  it('a build shared by callers in one process is cancelled only once every one of them has aborted', async () => {
    // A builder that honours its signal, as TensorRT does at its next step.
    let builds = 0
    let cancelled = 0
    const honours = async (_p: unknown, signal?: AbortSignal) => {
      builds++
      for (let step = 0; step < 10; step++) {
        await new Promise((r) => setTimeout(r, 40))
        if (signal?.aborted) {
          cancelled++
          throw new AbortError('cancelled')
        }
      }
      return Buffer.from('plan')
    }
    const started = (cache: EngineCache, parts: EngineKeyParts, signal?: AbortSignal) => cache.getOrBuild(parts, honours, signal ? { signal } : {})
    // One caller's timeout: the others (one without a signal) still get the one build's plan.
    {
      const { dir, parts } = fresh('shared-one-aborts')
      const cache = new EngineCache({ engineDir: dir, log: () => {}, maxPollMs: 20 })
      const a = new AbortController()
      const first = started(cache, parts, a.signal)
      await new Promise((r) => setTimeout(r, 20))
      const second = started(cache, parts)
      const third = started(cache, parts, new AbortController().signal)
      await new Promise((r) => setTimeout(r, 100))
      a.abort()
      const err = await first.catch((e) => e)
      expect([err.name, err.message]).toEqual(['AbortError', 'aborted waiting for the engine build, which goes on for the other callers in this process'])
      expect(Buffer.from(await second).toString()).toBe('plan')
      expect(Buffer.from(await third).toString()).toBe('plan')
      expect([builds, cancelled]).toEqual([1, 0])
    }
    // Every caller aborted: the build is cancelled, and a later caller builds afresh.
    {
      builds = 0
      const { dir, parts } = fresh('shared-all-abort')
      const cache = new EngineCache({ engineDir: dir, log: () => {}, maxPollMs: 20 })
      const a = new AbortController()
      const b = new AbortController()
      const first = started(cache, parts, a.signal)
      const second = started(cache, parts, b.signal)
      await new Promise((r) => setTimeout(r, 60))
      a.abort()
      b.abort()
      expect((await first.catch((e) => e)).name).toBe('AbortError')
      expect((await second.catch((e) => e)).name).toBe('AbortError')
      expect(Buffer.from(await started(cache, parts)).toString()).toBe('plan')
      expect([builds, cancelled]).toEqual([2, 1])
    }
    // The only caller aborted as its plan was stored: an AbortError all the same; the plan is kept.
    {
      builds = 0
      const { dir, parts } = fresh('shared-abort-when-ready')
      const a = new AbortController()
      const cache = new EngineCache({ engineDir: dir, log: (m) => { if (m.startsWith('built ')) a.abort() }, maxPollMs: 20 })
      const err = await started(cache, parts, a.signal).catch((e) => e)
      expect([err.name, err.message]).toEqual(['AbortError', 'aborted as the engine was ready (it is kept in the cache)'])
      expect(Buffer.from(await started(cache, parts)).toString()).toBe('plan')
      expect(builds).toBe(1)
    }
  })

  it('a signal that never fires, given to every load (a service\'s shutdown signal), keeps no listener once each load is done', async () => {
    const { dir, parts } = fresh('long-lived-signal')
    const cache = new EngineCache({ engineDir: dir, log: () => {} })
    const shutdown = new AbortController()
    const { state, build } = counter(50)
    // A build, callers joining it, then reads of the cache.
    await Promise.all([cache.getOrBuild(parts, build, { signal: shutdown.signal }), cache.getOrBuild(parts, build, { signal: shutdown.signal })])
    for (let i = 0; i < 20; i++) await cache.getOrBuild(parts, build, { signal: shutdown.signal })
    expect(state.builds).toBe(1)
    // One listener left per load grew without bound (Node warns past 10) and kept each build's controller.
    expect(getEventListeners(shutdown.signal, 'abort')).toHaveLength(0)
  })

  it.skipIf(process.platform === 'win32')('a folder it cannot write to or make (the package\'s own, installed by root): the plan is built and used without the cache, saying so', async () => {
    const { parts } = fresh('read-only')
    // Root writes anywhere: then the cache runs in a child process as user nobody, from copies
    // of the compiled modules in a folder every user can read (the checkout may not be).
    const asRoot = process.getuid?.() === 0
    const top = mkdtempSync(path.join(tmpdir(), 'fm-read-only-'))
    chmodSync(top, 0o755)
    const dir = path.join(top, 'read-only')
    mkdirSync(dir, { mode: 0o755 })
    // With a stale lock in it, as a crashed build leaves: what stops it is still the folder.
    writeFileSync(new EngineCache({ engineDir: dir }).files(parts).lock, JSON.stringify({ pid: deadPid(), hostname: hostname(), createdAt: new Date().toISOString(), token: 'ro' }))
    chmodSync(dir, 0o555)
    const getOrBuild = async (folder: string) => {
      if (asRoot) return getOrBuildAsNobody(top, folder, parts)
      const logs: string[] = []
      const plan = await new EngineCache({ engineDir: folder, log: (m) => logs.push(m) }).getOrBuild(parts, async () => Buffer.from('plan'))
      return `built ${Buffer.from(plan)}: ${logs.join(' | ')}`
    }
    const name = path.basename(new EngineCache({ engineDir: dir }).files(parts).plan)
    const advice = 'building it without the cache; this process uses it, the next one builds it again'
    try {
      expect(await getOrBuild(dir)).toBe(`built plan: cannot lock ${name} in "${dir}" (the folder is not writable): ${advice} (make it writable, or set options.engineDir)`)
      const unmade = path.join(dir, 'engines')
      expect(await getOrBuild(unmade)).toBe(`built plan: cannot lock ${name} in "${unmade}" (the folder cannot be made here): ${advice} (make it, or set options.engineDir)`)
      expect(readdirSync(dir)).toEqual([path.basename(new EngineCache({ engineDir: dir }).files(parts).lock)])  // nothing written
    } finally {
      rmSync(top, { recursive: true, force: true })
    }
  })

  it.skipIf(process.platform === 'win32')('invalidate() in a folder it cannot write to: a plan rebuilt since is kept; one to remove says it cannot be', async () => {
    const { parts } = fresh('read-only-invalidate')
    const asRoot = process.getuid?.() === 0  // then as user nobody, as above
    const top = mkdtempSync(path.join(tmpdir(), 'fm-read-only-'))
    chmodSync(top, 0o755)
    const dir = path.join(top, 'read-only')
    mkdirSync(dir, { mode: 0o755 })
    const plan = await new EngineCache({ engineDir: dir, log: () => {} }).getOrBuild(parts, counter().build)
    chmodSync(dir, 0o555)
    const invalidate = async (refused: Uint8Array) => {
      if (asRoot) {
        const bytes = `Buffer.from(${JSON.stringify(Buffer.from(refused).toString('base64'))}, 'base64')`
        return asNobody(top, dir, `cache.invalidate(${JSON.stringify(parts)}, 'refused', { refused: ${bytes} }).then(() => 'done')`)
      }
      return new EngineCache({ engineDir: dir, log: () => {} }).invalidate(parts, 'refused', { refused }).then(() => 'done', (e: Error) => e.message)
    }
    try {
      // Bytes other than the plan's: another process rebuilt it since; nothing to remove (no lock needed).
      expect(await invalidate(Buffer.from('an older plan'))).toBe('done')
      expect(await invalidate(plan)).toMatch(/: refused; and it cannot be removed from ".*read-only" \(.*\): set options\.engineDir to a writable folder$/)
      expect(readFileSync(new EngineCache({ engineDir: dir }).files(parts).plan)).toEqual(Buffer.from(plan))
    } finally {
      rmSync(top, { recursive: true, force: true })
    }
  })

  it('an already aborted signal rejects before anything happens', async () => {
    const { dir, parts } = fresh('pre-aborted')
    const { state, build } = counter()
    const err = await new EngineCache({ engineDir: dir, log: () => {} }).getOrBuild(parts, build, { signal: AbortSignal.abort() }).catch((e) => e)
    expect(err.name).toBe('AbortError')
    expect(state.builds).toBe(0)
  })
})

describe('across processes', () => {
  it('two processes racing on one key: exactly one builds, both get identical bytes', async () => {
    const { dir, parts } = fresh('race')
    const markerDir = path.join(dir, 'markers')
    mkdirSync(markerDir)
    // A short stale timeout with a faster refresh: the lock must stay fresh through the 1.5 s build.
    const cfg = { dir, parts, buildMs: 1500, markerDir, staleMs: 1000, refreshMs: 100, waitForGo: true }
    const a = startChild(cfg)
    const b = startChild(cfg)
    await Promise.all([a.next('ready'), b.next('ready')])
    a.proc.send('go')
    b.proc.send('go')
    const [da, db] = await Promise.all([a.next('done'), b.next('done')])
    await Promise.all([a.exit, b.exit])
    expect(markers(markerDir)).toHaveLength(1)
    expect(da.sha256).toBe(db.sha256)
    const builder = Number(markers(markerDir)[0].replace('built-by-', ''))
    const waiter = builder === a.proc.pid ? b : a
    const waiterLog = waiter.messages.filter((m) => m.type === 'log').map((m) => m.message).join('\n')
    expect(waiterLog).toMatch(/waiting for pid \d+ on this host, which is building|built by another process/)
    expect(waiterLog).not.toMatch(/stale/)
    const cache = new EngineCache({ engineDir: dir, log: () => {} })
    expect(sha(readFileSync(cache.files(parts).plan))).toBe(da.sha256)
    expect(readFileSync(cache.files(parts).plan, 'utf8')).toContain(`built by pid ${builder} `)
    expect(debris(dir)).toEqual([])
  }, 20_000)

  it('the same ONNX bytes under another file name: one build across processes, the other name loads it', async () => {
    const { dir, parts, child } = await childBuilding('renamed')
    const renamed = { ...parts, onnxName: 'copy-of-the-model.onnx' }
    const cache = new EngineCache({ engineDir: dir, log: () => {} })
    const { state, build } = counter()
    const bytes = await cache.getOrBuild(renamed, build)
    const done = await child.next('done')
    expect(state.builds).toBe(0) // waited for the other process's build of the same key
    expect(sha(bytes)).toBe(done.sha256)
    expect(await cache.planFile(renamed)).toBe(cache.files(parts).plan)
    expect(existsSync(cache.files(renamed).plan)).toBe(false)
    // And later, in a process that never saw the first name.
    const again = await new EngineCache({ engineDir: dir, log: () => {} }).getOrBuild(renamed, build)
    expect(state.builds).toBe(0)
    expect(sha(again)).toBe(done.sha256)
    expect((await child.exit).code).toBe(0)
    // invalidate() by the other name removes the plan that was loaded.
    await cache.invalidate(renamed, 'refused')
    expect(existsSync(cache.files(parts).plan)).toBe(false)
  }, 20_000)

  it('a waiting caller aborted by its signal gets an AbortError; the builder goes on unaffected', async () => {
    const { dir, parts, markerDir, child } = await childBuilding('abort-wait')
    const messages: string[] = []
    const cache = new EngineCache({ engineDir: dir, log: (m) => messages.push(m) })
    const { state, build } = counter()
    const ac = new AbortController()
    setTimeout(() => ac.abort(), 200)
    const err = await cache.getOrBuild(parts, build, { signal: ac.signal }).catch((e) => e)
    expect(err.name).toBe('AbortError')
    expect(err.message).toMatch(/aborted waiting for pid \d+ on this host/)
    expect(messages.some((m) => /waiting for pid \d+ on this host/.test(m))).toBe(true)
    expect(state.builds).toBe(0)
    const done = await child.next('done')
    expect((await child.exit).code).toBe(0)
    const bytes = await cache.getOrBuild(parts, build)
    expect(state.builds).toBe(0)
    expect(sha(bytes)).toBe(done.sha256)
    expect(markers(markerDir)).toHaveLength(1)
  }, 20_000)

  it('a lock whose pid now runs another process (a restarted container reuses pids, ours too) is recovered at once', async () => {
    const { dir, parts } = fresh('reused-pid')
    const cache = new EngineCache({ engineDir: dir, log: () => {} })
    const own = processStart(process.pid)
    if (own === undefined) throw new Error('no /proc/<pid>/stat here: this check is for Linux')
    const earlier = String(Number(own) - 100)
    for (const pid of [process.pid, process.ppid]) {
      writeFileSync(cache.files(parts).lock, JSON.stringify({ pid, hostname: hostname(), pidStart: earlier, createdAt: new Date().toISOString(), token: 'x' }))
      const messages: string[] = []
      const t0 = Date.now()
      await new EngineCache({ engineDir: dir, log: (m) => messages.push(m) }).getOrBuild(parts, counter().build)
      expect(Date.now() - t0).toBeLessThan(3000)
      expect(messages.some((m) => m.includes(`took over the stale lock ${cache.files(parts).lock}: its holder, pid ${pid} on this host, is no longer running (that pid now belongs to another process)`))).toBe(true)
      await cache.invalidate(parts, 'next case')
    }
    // The same pid with its own start time: a live holder (another thread of this process), waited for.
    writeFileSync(cache.files(parts).lock, JSON.stringify({ pid: process.pid, hostname: hostname(), pidStart: own, createdAt: new Date().toISOString(), token: 'x' }))
    const waited = await new EngineCache({ engineDir: dir, log: () => {} }).getOrBuild(parts, counter().build, { signal: AbortSignal.timeout(500) }).catch((e) => e)
    expect(waited.name).toBe('AbortError')
    expect(existsSync(cache.files(parts).lock)).toBe(true)
  })

  it("a lock from another pid namespace with this host's name (containers sharing a host name) is judged by age alone", async () => {
    const { dir, parts } = fresh('other-namespace')
    const cache = new EngineCache({ engineDir: dir, log: () => {} })
    writeFileSync(cache.files(parts).lock, JSON.stringify({ pid: deadPid(), hostname: hostname(), pidNamespace: 'pid:[1]', createdAt: new Date().toISOString(), token: 'x' }))
    const waited = await cache.getOrBuild(parts, counter().build, { signal: AbortSignal.timeout(500) }).catch((e) => e)
    expect(waited.name).toBe('AbortError') // its pid means nothing here: not taken over
    utimesSync(cache.files(parts).lock, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000))
    const { state, build } = counter()
    await new EngineCache({ engineDir: dir, log: () => {}, staleMs: 30_000, refreshMs: 50 }).getOrBuild(parts, build)
    expect(state.builds).toBe(1)
  })

  it('a holder alive on this host is waited for, however old its lock looks (a wall clock stepped forward)', async () => {
    const { dir, parts } = fresh('live-old-lock')
    const cache = new EngineCache({ engineDir: dir, staleMs: 1000, log: () => {} })
    const pidStart = processStart(process.ppid)
    if (pidStart === undefined) throw new Error('no /proc/<pid>/stat here: this check is for Linux')
    writeFileSync(cache.files(parts).lock, JSON.stringify({ pid: process.ppid, hostname: hostname(), pidStart, createdAt: new Date().toISOString(), token: 'x' }))
    const hourAgo = new Date(Date.now() - 3_600_000)
    utimesSync(cache.files(parts).lock, hourAgo, hourAgo)
    const { state, build } = counter()
    const waited = await cache.getOrBuild(parts, build, { signal: AbortSignal.timeout(500) }).catch((e) => e)
    expect(waited.name).toBe('AbortError')
    expect(state.builds).toBe(0)
    expect(existsSync(cache.files(parts).lock)).toBe(true)
  })

  it('a refresh that fails for a moment (out of file handles, an NFS hiccup) does not stop the next ones: the lock stays fresh', async () => {
    const { dir } = fresh('refresh-hiccup')
    const file = path.join(dir, 'x.lock')
    const notes: string[] = []
    const lock = await FileLock.acquire(file, { staleMs: 600, refreshMs: 50, onLost: (m) => notes.push(m) })
    const utimes = fsp.utimes
    const hiccup = vi.spyOn(fsp, 'utimes').mockImplementationOnce(async () => { throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' }) })
    try {
      await new Promise((r) => setTimeout(r, 120))
      expect(hiccup).toHaveBeenCalled()
      const before = statSync(file).mtimeMs
      await new Promise((r) => setTimeout(r, 200))
      expect(statSync(file).mtimeMs).toBeGreaterThan(before)
      expect(notes).toEqual([])
      // Failing for good: said (once), and still tried.
      hiccup.mockImplementation(async () => { throw Object.assign(new Error('EIO'), { code: 'EIO' }) })
      await new Promise((r) => setTimeout(r, 400))
      expect(notes).toEqual([`cannot refresh the lock ${file} (EIO); trying again: while this goes on, another process may take it over`])
      hiccup.mockImplementation(utimes)
      const calls = hiccup.mock.calls.length
      await new Promise((r) => setTimeout(r, 150))
      expect(hiccup.mock.calls.length).toBeGreaterThan(calls)
    } finally {
      hiccup.mockRestore()
      await lock.release()
    }
    expect(existsSync(file)).toBe(false)
  })

  it('a holder alive on this host that stops refreshing (a worker thread terminated mid-build) is taken over once watched that long', async () => {
    const { dir, parts } = fresh('live-stuck-lock')
    const pidStart = processStart(process.pid)
    if (pidStart === undefined) throw new Error('no /proc/<pid>/stat here: this check is for Linux')
    const cache = new EngineCache({ engineDir: dir, log: () => {} })
    writeFileSync(cache.files(parts).lock, JSON.stringify({ pid: process.pid, hostname: hostname(), pidStart, createdAt: new Date().toISOString(), token: 'x' }))
    const messages: string[] = []
    const { state, build } = counter()
    const t0 = Date.now()
    await new EngineCache({ engineDir: dir, staleMs: 400, maxPollMs: 50, log: (m) => messages.push(m) }).getOrBuild(parts, build, { signal: AbortSignal.timeout(5000) })
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400)
    expect(state.builds).toBe(1)
    expect(messages.some((m) => m.includes(`its holder, pid ${process.pid} on this host, runs but has not refreshed it for 0 s`))).toBe(true)
  })

  it('a process killed the moment its lock appears leaves a lock that says whose it is: the next one takes it over at once, not after staleMs', async () => {
    const { dir } = fresh('killed-at-create')
    const file = path.join(dir, 'engine-0123456789abcdef.lock')
    // The child dies (SIGKILL) right after the call that put the lock's name in place returns.
    const child = `
      const fsp = require('node:fs/promises')
      for (const name of ['open', 'link']) {
        const real = fsp[name]
        fsp[name] = async (...args) => {
          const r = await real(...args)
          if (String(args[name === 'link' ? 1 : 0]) === ${JSON.stringify(file)}) process.kill(process.pid, 'SIGKILL')
          return r
        }
      }
      require(${JSON.stringify(compiled)}).FileLock.acquire(${JSON.stringify(file)})`
    const ran = spawnSync(process.execPath, ['-e', child], { encoding: 'utf8' })
    expect(ran.signal).toBe('SIGKILL')
    expect(existsSync(file)).toBe(true)
    const stale: string[] = []
    // The default staleMs (10 minutes): only the lock's content can show its holder is gone.
    const lock = await FileLock.acquire(file, { signal: AbortSignal.timeout(5000), onStale: (m) => stale.push(m) })
    await lock.release()
    expect(stale).toEqual([`took over the stale lock ${file}: its holder, pid ${ran.pid} on this host, is no longer running`])
    // Besides, the crash left only the temp file the lock was written in: kept while it may be a
    // live maker's (10 s), removed by the next lock taken once it cannot be.
    const left = readdirSync(dir)
    expect(left).toEqual([expect.stringMatching(new RegExp(`^\\.engine-0123456789abcdef\\.lock\\.new\\.tmp-${ran.pid}-[0-9a-f]+$`))])
    const old = new Date(Date.now() - 20_000)
    utimesSync(path.join(dir, left[0]), old, old)
    // One naming another host sharing the folder is that host's to judge: kept.
    const theirs = path.join(dir, `.engine-0123456789abcdef.lock.new.tmp-${deadPid()}-0badf00d`)
    writeFileSync(theirs, JSON.stringify({ pid: deadPid(), hostname: 'another-host', createdAt: old.toISOString(), token: 't' }))
    utimesSync(theirs, old, old)
    await (await FileLock.acquire(file)).release()
    expect(readdirSync(dir)).toEqual([path.basename(theirs)])
  })

  it('a lock is made where the file system has no hard links (in place), and when an NFS link is answered EEXIST though it was made', async () => {
    const { dir } = fresh('link-refused')
    const file = path.join(dir, 'x.lock')
    const link = fsp.link
    for (const [how, fake] of [
      ['no hard links', () => Promise.reject(Object.assign(new Error('EPERM: operation not permitted, link'), { code: 'EPERM' }))],
      ['a lost reply', async (from: string, to: string) => {
        await link(from, to)
        throw Object.assign(new Error('EEXIST: file already exists, link'), { code: 'EEXIST' })
      }],
    ] as const) {
      const spy = vi.spyOn(fsp, 'link').mockImplementation(fake as typeof fsp.link)
      try {
        const lock = await FileLock.acquire(file, { signal: AbortSignal.timeout(3000) })
        expect(JSON.parse(readFileSync(file, 'utf8')).pid, how).toBe(process.pid)
        expect(readdirSync(dir), how).toEqual(['x.lock'])
        // Held: another try finds it taken.
        await expect(FileLock.acquire(file, { signal: AbortSignal.timeout(200) }), how).rejects.toThrow(AbortError)
        await lock.release()
        expect(readdirSync(dir), how).toEqual([])
      } finally {
        spy.mockRestore()
      }
    }
  })

  const ownMachineId = (() => {
    try {
      return readFileSync('/etc/machine-id', 'utf8').trim() || undefined
    } catch {
      return undefined
    }
  })()
  it('a lock from before this machine restarted (its machine id, another boot id) is recovered at once', async (ctx) => {
    if (ownMachineId === undefined) ctx.skip('no /etc/machine-id here: a restart cannot be told from another host of the same name')
    const { dir, parts } = fresh('rebooted')
    const cache = new EngineCache({ engineDir: dir, log: () => {} }) // default stale timeout: 10 minutes
    writeFileSync(cache.files(parts).lock, JSON.stringify({ pid: process.pid, hostname: hostname(), machineId: ownMachineId, bootId: 'a-boot-before-this-one', createdAt: new Date().toISOString(), token: 'x' }))
    const beforeBoot = new Date(Date.now() - uptime() * 1000 - 60_000)
    utimesSync(cache.files(parts).lock, beforeBoot, beforeBoot)
    const messages: string[] = []
    const { state, build } = counter()
    await new EngineCache({ engineDir: dir, log: (m) => messages.push(m) }).getOrBuild(parts, build, { signal: AbortSignal.timeout(3000) })
    expect(state.builds).toBe(1)
    expect(messages.some((m) => m.includes(`its holder, pid ${process.pid}, ran before this host restarted`))).toBe(true)
  })

  it('a lock with this machine id and another boot id refreshed since this boot (a VM cloned with its machine id) is waited for', async (ctx) => {
    if (ownMachineId === undefined) ctx.skip('no /etc/machine-id here')
    const { dir, parts } = fresh('cloned-vm')
    const cache = new EngineCache({ engineDir: dir, log: () => {}, maxPollMs: 50 })
    writeFileSync(cache.files(parts).lock, JSON.stringify({ pid: deadPid(), hostname: hostname(), machineId: ownMachineId, bootId: 'another-boot', createdAt: new Date().toISOString(), token: 'x' }))
    const { state, build } = counter()
    const err = await cache.getOrBuild(parts, build, { signal: AbortSignal.timeout(500) }).catch((e) => e)
    expect(err.name).toBe('AbortError')
    expect(state.builds).toBe(0)
  })

  it("a lock from another machine with this host's name (other machine and boot ids) is judged by age alone", async () => {
    const { dir, parts } = fresh('same-name-host')
    const cache = new EngineCache({ engineDir: dir, log: () => {} })
    writeFileSync(cache.files(parts).lock, JSON.stringify({ pid: deadPid(), hostname: hostname(), machineId: 'another-machine', bootId: 'another-boot', createdAt: new Date().toISOString(), token: 'x' }))
    const waited = await cache.getOrBuild(parts, counter().build, { signal: AbortSignal.timeout(500) }).catch((e) => e)
    expect(waited.name).toBe('AbortError') // its pid is another machine's: not taken over while fresh
    utimesSync(cache.files(parts).lock, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000))
    const { state, build } = counter()
    await new EngineCache({ engineDir: dir, log: () => {}, staleMs: 30_000, refreshMs: 50 }).getOrBuild(parts, build)
    expect(state.builds).toBe(1)
  })

  it('a lock left by a dead pid on this host is recovered at once', async () => {
    const { dir, parts } = fresh('stale-pid')
    const cache = new EngineCache({ engineDir: dir, log: () => {} }) // default stale timeout: 10 minutes
    const pid = deadPid()
    writeFileSync(cache.files(parts).lock, JSON.stringify({ pid, hostname: hostname(), createdAt: new Date().toISOString(), token: 'x' }))
    const messages: string[] = []
    const { state, build } = counter()
    const t0 = Date.now()
    await new EngineCache({ engineDir: dir, log: (m) => messages.push(m) }).getOrBuild(parts, build)
    expect(Date.now() - t0).toBeLessThan(3000)
    expect(state.builds).toBe(1)
    expect(messages.some((m) => new RegExp(`took over the stale lock .*pid ${pid} on this host, is no longer running`).test(m))).toBe(true)
    expect(debris(dir)).toEqual([])
  })

  it('a lock from another host is taken over only once it has not been refreshed for staleMs', async () => {
    const { dir, parts } = fresh('stale-age')
    const messages: string[] = []
    // refreshMs 50: an old lock is taken over once watched unchanged for 9 refreshes (450 ms).
    const cache = new EngineCache({ engineDir: dir, staleMs: 60_000, refreshMs: 50, maxPollMs: 50, log: (m) => messages.push(m) })
    const lock = cache.files(parts).lock
    writeFileSync(lock, JSON.stringify({ pid: 1, hostname: 'some-other-host', createdAt: new Date().toISOString(), token: 'y' }))
    // Fresh: waited on (then aborted).
    const { state, build } = counter()
    const err = await cache.getOrBuild(parts, build, { signal: AbortSignal.timeout(300) }).catch((e) => e)
    expect(err.name).toBe('AbortError')
    expect(messages.some((m) => /waiting for pid 1 on host some-other-host/.test(m))).toBe(true)
    expect(state.builds).toBe(0)
    // Not refreshed for 2 minutes: taken over.
    const old = new Date(Date.now() - 120_000)
    utimesSync(lock, old, old)
    await cache.getOrBuild(parts, build)
    expect(state.builds).toBe(1)
    expect(messages.some((m) => /took over the stale lock .*pid 1 on host some-other-host has not refreshed it for 1[12]\d s/.test(m))).toBe(true)
  })

  it('a lock from another host whose clock lags is not taken over while its holder refreshes it, however old its time', async () => {
    const { dir, parts } = fresh('lagging-clock')
    const cache = new EngineCache({ engineDir: dir, staleMs: 60_000, refreshMs: 50, maxPollMs: 50, log: () => {} })
    const lock = cache.files(parts).lock
    writeFileSync(lock, JSON.stringify({ pid: 1, hostname: 'some-other-host', createdAt: new Date().toISOString(), token: 'l' }))
    // The holder refreshes every 50 ms with its own clock, 11 minutes behind this one.
    const refresh = () => { const t = new Date(Date.now() - 660_000); utimesSync(lock, t, t) }
    refresh()
    const timer = setInterval(refresh, 50)
    try {
      const { state, build } = counter()
      const err = await cache.getOrBuild(parts, build, { signal: AbortSignal.timeout(1500) }).catch((e) => e)
      expect(err.name).toBe('AbortError')
      expect(state.builds).toBe(0)
    } finally {
      clearInterval(timer)
    }
    // Once it stops refreshing, it is taken over.
    const { state, build } = counter()
    await cache.getOrBuild(parts, build, { signal: AbortSignal.timeout(5000) })
    expect(state.builds).toBe(1)
  })

  it('a lock from another host dated in the future (its clock ahead) is taken over once watched unrefreshed for staleMs', async () => {
    const { dir, parts } = fresh('future-lock')
    const cache = new EngineCache({ engineDir: dir, log: () => {} })
    writeFileSync(cache.files(parts).lock, JSON.stringify({ pid: 1, hostname: 'some-other-host', createdAt: new Date().toISOString(), token: 'f' }))
    const inAnHour = new Date(Date.now() + 3_600_000)
    utimesSync(cache.files(parts).lock, inAnHour, inAnHour)
    const { state, build } = counter()
    await new EngineCache({ engineDir: dir, staleMs: 300, maxPollMs: 50, log: () => {} }).getOrBuild(parts, build, { signal: AbortSignal.timeout(5000) })
    expect(state.builds).toBe(1)
  })

  it('a long wait for another process\'s build says, now and then, that it still waits and for whom', async () => {
    const { dir, parts } = fresh('wait-notes')
    const messages: string[] = []
    const cache = new EngineCache({ engineDir: dir, waitNoteMs: 200, maxPollMs: 50, log: (m) => messages.push(m) })
    writeFileSync(cache.files(parts).lock, JSON.stringify({ pid: 1, hostname: 'some-other-host', createdAt: new Date().toISOString(), token: 'z' }))
    const err = await cache.getOrBuild(parts, counter().build, { signal: AbortSignal.timeout(1100) }).catch((e) => e)
    expect(err.name).toBe('AbortError')
    expect(messages.filter((m) => /^waiting for pid 1 on host some-other-host, which is building/.test(m))).toHaveLength(1)
    const still = messages.filter((m) => /^still waiting for pid 1 on host some-other-host to finish building .*\.plan \(\d s so far; if it dies, this process builds it\)$/.test(m))
    expect(still.length).toBeGreaterThanOrEqual(3) // ~1 s of waiting, polled every 50 ms: a note each 200 ms
    expect(still.length).toBeLessThanOrEqual(5)
  })

  it('a builder killed mid-build leaves a lock that the next caller recovers', async () => {
    const { dir, parts } = fresh('killed')
    const markerDir = path.join(dir, 'markers')
    mkdirSync(markerDir)
    const child = startChild({ dir, parts, buildMs: 1500, markerDir, mode: 'die-while-building' })
    const { signal } = await child.exit
    expect(signal).toBe('SIGKILL')
    const cache = new EngineCache({ engineDir: dir, log: () => {} })
    expect(existsSync(cache.files(parts).lock)).toBe(true)
    expect(existsSync(cache.files(parts).plan)).toBe(false)
    const { state, build } = counter()
    await cache.getOrBuild(parts, build)
    expect(state.builds).toBe(1)
    expect(statSync(cache.files(parts).plan).size).toBeGreaterThan(0)
    expect(debris(dir)).toEqual([])
  }, 20_000)
})

describe('sleep (the lock\'s polling)', () => {
  it('an abort rejects at once and leaves no timer to hold the process', async () => {
    const { sleep } = await import('../lib/engine-cache/abort')
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
    const before = timers()
    const stop = new AbortController()
    const slept = sleep(60_000, stop.signal, 'waiting')
    expect(timers()).toBe(before + 1)
    stop.abort()
    await expect(slept).rejects.toMatchObject({ name: 'AbortError' })
    expect(timers()).toBe(before)
  })
})

describe('taking over a stale lock', () => {
  const judge = (file: string) => {
    const raw = readFileSync(file, 'utf8')
    const st = statSync(file)
    return { raw, info: JSON.parse(raw), ino: st.ino, mtimeMs: st.mtimeMs }
  }
  const deadLock = (file: string, token: string) => writeFileSync(file, JSON.stringify({ pid: deadPid(), hostname: hostname(), createdAt: new Date().toISOString(), token }))
  /** A dead holder's lock, judged stale, and a waiter's takeover guard beside it. */
  const lockWithGuard = (name: string) => {
    const { dir } = fresh(name)
    const file = path.join(dir, 'x.lock')
    const guard = `${file}.takeover`
    deadLock(file, 'judged')
    const judged = judge(file)
    writeFileSync(guard, '')
    return { dir, file, guard, judged }
  }
  /** Dated a minute ago: a guard that old was left by a crashed waiter. */
  const makeOld = (file: string) => {
    const old = new Date(Date.now() - 60_000)
    utimesSync(file, old, old)
  }

  it('removes the lock it judged and no other: one replaced since (another waiter took it over first) stays', async () => {
    const { dir } = fresh('takeover-replaced')
    const file = path.join(dir, 'x.lock')
    deadLock(file, 'judged')
    const judged = judge(file)
    rmSync(file)
    writeFileSync(file, JSON.stringify({ pid: process.pid, hostname: hostname(), createdAt: new Date().toISOString(), token: 'fresh' }))
    const freshIno = statSync(file).ino
    expect(await FileLock.takeOver(file, judged)).toBe(false)
    expect(statSync(file).ino).toBe(freshIno)
    expect(JSON.parse(readFileSync(file, 'utf8')).token).toBe('fresh')
    expect(await FileLock.takeOver(file, judge(file))).toBe(true)
    expect(existsSync(file)).toBe(false)
    expect(debris(dir)).toEqual([])
  })

  it.skipIf(process.platform === 'win32')('a lock path that is a dangling symbolic link is named, not retried for ever', async () => {
    const { dir, parts } = fresh('lock-symlink')
    const cache = new EngineCache({ engineDir: dir, log: () => {} })
    symlinkSync(path.join(dir, 'nowhere'), cache.files(parts).lock)
    const err = await cache.getOrBuild(parts, counter().build, { signal: AbortSignal.timeout(3000) }).catch((e) => e)
    expect(err.message).toBe(`cannot lock ${cache.files(parts).lock}: it is not a lock file (a symbolic link); remove it`)
  })

  it('a waiter that finds another taking over (its guard there) waits with backoff, not in a busy loop', async () => {
    const { dir, parts } = fresh('takeover-backoff')
    const cache = new EngineCache({ engineDir: dir, maxPollMs: 50, log: () => {} })
    deadLock(cache.files(parts).lock, 'judged')
    writeFileSync(`${cache.files(parts).lock}.takeover`, '')  // fresh: another waiter is at it
    const open = vi.spyOn(fsp, 'open')
    try {
      const err = await cache.getOrBuild(parts, counter().build, { signal: AbortSignal.timeout(600) }).catch((e) => e)
      expect(err.name).toBe('AbortError')
      expect(open.mock.calls.length).toBeLessThan(100) // polls every 50 ms at most; a busy loop makes thousands
    } finally {
      open.mockRestore()
    }
  })

  it('while another waiter is taking over (its guard exists) nothing is touched; a guard left by a crash is cleared', async () => {
    const { dir, file, guard, judged } = lockWithGuard('takeover-guard')
    expect(await FileLock.takeOver(file, judged)).toBe(false)
    expect(existsSync(file) && existsSync(guard)).toBe(true)
    makeOld(guard)
    expect(await FileLock.takeOver(file, judged)).toBe(false) // clears the crashed waiter's guard
    expect(existsSync(guard)).toBe(false)
    expect(await FileLock.takeOver(file, judged)).toBe(true)
    expect(debris(dir)).toEqual([])
  })

  it("a crashed waiter's guard is cleared, not a fresh guard another waiter made in its place between the look and the removal", async () => {
    const { dir, file, guard, judged } = lockWithGuard('takeover-guard-race')
    makeOld(guard)
    const stat = fsp.stat
    const look = vi.spyOn(fsp, 'stat').mockImplementationOnce(async (...args: Parameters<typeof fsp.stat>) => {
      const st = await stat(...args)  // the crashed waiter's guard, judged stale
      rmSync(guard)  // meanwhile another waiter clears it and takes its own (often on the same inode)
      writeFileSync(guard, 'fresh')
      return st
    })
    try {
      expect(await FileLock.takeOver(file, judged)).toBe(false)
    } finally {
      look.mockRestore()
    }
    expect(readFileSync(guard, 'utf8')).toBe('fresh')
    expect(existsSync(file)).toBe(true)
    expect(debris(dir).sort()).toEqual(['x.lock', 'x.lock.takeover'])
  })

  it('removeIfSame removes the file judged, and puts back one that took its place (same inode, new time or content)', async () => {
    const { dir } = fresh('remove-if-same')
    const file = path.join(dir, 'x.lock')
    writeFileSync(file, 'a')
    const old = new Date(Date.now() - 60_000)
    utimesSync(file, old, old)
    const st = statSync(file)
    // Not the file judged: left in place, never moved aside (its holder would find it gone).
    const moved = vi.spyOn(fsp, 'rename')
    try {
      expect(await removeIfSame(file, { ino: st.ino, mtimeMs: st.mtimeMs, raw: 'b' })).toBe(false)
      utimesSync(file, new Date(), new Date())  // refreshed since it was judged
      expect(await removeIfSame(file, { ino: st.ino, mtimeMs: st.mtimeMs, raw: 'a' })).toBe(false)
      expect(await removeIfSame(file, { ino: st.ino + 1 })).toBe(false)
      expect(moved).not.toHaveBeenCalled()
    } finally {
      moved.mockRestore()
    }
    expect(readFileSync(file, 'utf8')).toBe('a')
    expect(statSync(file).ino).toBe(st.ino)
    expect(debris(dir)).toEqual(['x.lock'])
    expect(await removeIfSame(file, { ino: st.ino, raw: 'a' })).toBe(true)
    expect(await removeIfSame(file, { ino: st.ino })).toBe(false)  // gone already
    expect(readdirSync(dir)).toEqual([])
  })

  it('removeIfSame puts back a file that took the judged one\'s place just before the move, by renaming where there are no hard links', async () => {
    const { dir } = fresh('remove-if-same-race')
    const file = path.join(dir, 'x.lock')
    writeFileSync(file, 'judged')
    const judged = { ino: statSync(file).ino, raw: 'judged' }
    const rename = fsp.rename
    const move = vi.spyOn(fsp, 'rename').mockImplementationOnce(async (from, to) => {
      rmSync(file)
      writeFileSync(file, 'fresh')  // another waiter's, made between the check and the move
      return rename(from, to)
    })
    const link = vi.spyOn(fsp, 'link').mockRejectedValue(Object.assign(new Error('ENOTSUP: operation not supported'), { code: 'ENOTSUP' }))
    try {
      expect(await removeIfSame(file, judged)).toBe(false)
    } finally {
      move.mockRestore()
      link.mockRestore()
    }
    expect(readFileSync(file, 'utf8')).toBe('fresh')
    expect(readdirSync(dir)).toEqual(['x.lock'])
  })

  it.skipIf(process.platform === 'win32')("a stale lock of another user in a shared sticky folder (as /tmp) is named, with whose it is", async (ctx) => {
    if (process.getuid?.() !== 0) ctx.skip('needs root, to leave a lock that belongs to another user')
    const { parts } = fresh('sticky')
    const top = mkdtempSync(path.join(tmpdir(), 'fm-sticky-'))
    chmodSync(top, 0o755)
    const dir = path.join(top, 'shared')
    mkdirSync(dir)
    chmodSync(dir, 0o1777)
    try {
      const lock = new EngineCache({ engineDir: dir }).files(parts).lock
      deadLock(lock, 'root')
      const message = getOrBuildAsNobody(top, dir, parts)
      expect(message).toBe(`cannot remove the stale lock ${lock}, left by pid ${JSON.parse(readFileSync(lock, 'utf8')).pid} on this host (EPERM): it belongs to another user (uid 0); its owner (or root) can remove it, or use a folder of your own`)
      // A takeover guard that user's crashed waiter left: said too, not retried for ever.
      writeFileSync(`${lock}.takeover`, '')
      const old = new Date(Date.now() - 60_000)
      utimesSync(`${lock}.takeover`, old, old)
      expect(getOrBuildAsNobody(top, dir, parts)).toMatch(/^cannot remove the stale lock .*\.lock\.takeover \(EPERM\): it belongs to another user \(uid 0\)/)
    } finally {
      rmSync(top, { recursive: true, force: true })
    }
  })
})
