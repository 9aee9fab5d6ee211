// The published package installs and runs without a compiler: `npm run prebuild` puts the addon
// in prebuilds/, `npm pack` ships it, and `npm install <tarball>` in a fresh folder whose PATH
// holds node and nothing else (no cmake, cc, c++, gcc, g++, make, ninja) builds nothing and loads
// the prebuild through node-gyp-build. Dependencies come from npm's cache (--prefer-offline).
import { spawnSync, type SpawnSyncOptions } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FaceMultitask } from '../lib/face-multitask'
import { makeFixtureModel } from '../scripts/make-fixture'
import { npmCli } from './helpers/npm'

const ROOT = path.resolve(__dirname, '..')
const TUPLE = `${process.platform}-${process.arch}`
const COMPILERS = ['cmake', 'cc', 'c++', 'gcc', 'g++', 'clang', 'clang++', 'make', 'ninja']

interface PackResult {
  filename: string
  size: number
  unpackedSize: number
  entryCount: number
  files: { path: string; size: number }[]
}

function run(cmd: string, args: string[], opts: SpawnSyncOptions & { timeout: number }): string {
  const t0 = Date.now()
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts })
  const what = `${path.basename(cmd)} ${args[0] === '-e' ? '-e <script>' : args.join(' ')}`
  if (r.error || r.status !== 0) {
    throw new Error(`${what} failed (${r.error?.message ?? `exit ${r.status}, signal ${r.signal}`}):\n${r.stdout}\n${r.stderr}`)
  }
  console.log(`[pack.test] ${what}: ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  return String(r.stdout)
}

function newest(dir: string, ext: string): number {
  let t = 0
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) t = Math.max(t, newest(p, ext))
    else if (e.name.endsWith(ext) && !e.name.endsWith('.d.ts')) t = Math.max(t, fs.statSync(p).mtimeMs)
  }
  return t
}

/** Compiles with tsc (what `prepare` does) unless dist/ is newer than every source. */
function ensureDist(): void {
  const stale = ['lib', 'scripts'].some((d) => {
    const out = path.join(ROOT, 'dist', d)
    return !fs.existsSync(out) || newest(path.join(ROOT, d), '.ts') > newest(out, '.js')
  })
  if (!stale) return
  try {
    run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: ROOT, timeout: 120_000 })
  } catch (e) {
    // tsc emits despite type errors; the files this test needs are checked below.
    console.warn(`[pack.test] tsc reported errors (continuing with what it emitted):\n${(e as Error).message.slice(0, 2000)}`)
  }
  for (const f of ['dist/lib/native.js', 'dist/scripts/prebuild.js']) {
    if (!fs.existsSync(path.join(ROOT, f))) throw new Error(`${f} is missing after tsc`)
  }
}

/** The environment of the fresh install: PATH = a folder holding only `node`, npm's cache kept. */
function bareEnv(binDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (/^path$/i.test(k) || k === 'INIT_CWD' || k === 'NODE_OPTIONS') continue
    if (/^npm_/i.test(k) && !/^npm_config_(cache|userconfig|registry)$/i.test(k)) continue
    env[k] = v
  }
  return {
    ...env,
    PATH: binDir,
    npm_config_script_shell: '/bin/sh', // npm otherwise looks `sh` up on PATH
    npm_config_onnxruntime_node_install: 'skip',
    ONNXRUNTIME_NODE_INSTALL: 'skip', // onnxruntime-node downloads nothing
    npm_config_update_notifier: 'false',
  }
}

describe.skipIf(process.platform === 'win32')('npm pack with a prebuild, installed without a compiler', () => {
  let work = ''
  let binDir = ''
  let appDir = ''
  let installed = ''
  let pack: PackResult
  let env: NodeJS.ProcessEnv
  const npm = npmCli()

  beforeAll(() => {
    const t0 = Date.now()
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'fm-pack-'))
    ensureDist()
    // npm run prebuild: cmake-js build + prebuildify layout + a node-gyp-build load check.
    console.log(run(process.execPath, [npm, 'run', 'prebuild'], { cwd: ROOT, timeout: 180_000 }).trim())

    // prepare (tsc) has just been handled by ensureDist(), so pack runs no scripts.
    const out = run(process.execPath, [npm, 'pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: ROOT, timeout: 60_000 })
    pack = (JSON.parse(out) as PackResult[])[0]
    const tarball = path.join(work, pack.filename)
    console.log(`[pack.test] ${pack.filename}: ${(pack.size / 1024).toFixed(1)} KiB packed, ${(pack.unpackedSize / 1024).toFixed(1)} KiB unpacked, ${pack.entryCount} files`)

    binDir = path.join(work, 'bin')
    fs.mkdirSync(binDir)
    fs.symlinkSync(fs.realpathSync(process.execPath), path.join(binDir, 'node'))
    env = bareEnv(binDir)

    appDir = path.join(work, 'app')
    fs.mkdirSync(appDir)
    const probe = `for c in node ${COMPILERS.join(' ')}; do command -v "$c" || echo "missing $c"; done`
    fs.writeFileSync(
      path.join(appDir, 'package.json'),
      // allowScripts: as README tells a project on npm 12, which runs no dependency's install script otherwise.
      JSON.stringify({ name: 'fresh-app', version: '1.0.0', private: true, scripts: { probe }, allowScripts: { 'face-multitask': true } }, null, 2),
    )
    run(
      process.execPath,
      [npm, 'install', tarball, '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts=false', '--foreground-scripts', '--loglevel=warn'],
      { cwd: appDir, env, timeout: 180_000 },
    )
    installed = path.join(appDir, 'node_modules', 'face-multitask')
    console.log(`[pack.test] setup took ${((Date.now() - t0) / 1000).toFixed(1)} s`)
  }, 300_000)

  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true })
  })

  it('packs dist/lib, dist/scripts and the prebuild, but no build/, node_modules/ or test/', () => {
    const files = pack.files.map((f) => f.path)
    for (const need of ['package.json', 'dist/lib/native.js', 'dist/lib/native.d.ts', 'dist/scripts/prebuild.js', 'CMakeLists.txt', 'cmake/embed.cmake', 'native/addon.cc',
      'scripts/install.js', 'scripts/tensorrt-headers.js']) {
      expect(files).toContain(need)
    }
    const prebuilds = files.filter((f) => f.startsWith(`prebuilds/${TUPLE}/`))
    expect(prebuilds.length).toBe(1)
    expect(prebuilds[0]).toMatch(/^prebuilds\/[^/]+\/face-multitask\.napi(\.[a-z0-9]+)*\.node$/)
    for (const f of files) expect(f).not.toMatch(/^(build|node_modules|test|engines|lib)\//)
    // Source maps name lib/*.ts, which is not shipped: a stack trace would point at missing files.
    expect(files.filter((f) => f.endsWith('.map'))).toEqual([])
    // A few hundred KiB today; ONNX Runtime and libvips come from their own packages.
    expect(pack.size).toBeLessThan(5 << 20)
  })

  it('runs the install scripts with a PATH on which no compiler or build tool can be found', () => {
    // Run through npm so the PATH is the one install scripts get (node_modules/.bin folders added).
    const out = run(process.execPath, [npm, 'run', '--silent', 'probe'], { cwd: appDir, env, timeout: 60_000 })
    const lines = out.trim().split('\n')
    expect(lines[0]).toBe(path.join(binDir, 'node'))
    expect(lines.slice(1)).toEqual(COMPILERS.map((c) => `missing ${c}`))
  })

  it('the Linux prebuild loads on glibc 2.28 (RHEL 8, Debian 10; Ubuntu 20.04 has 2.31): no newer symbol version is needed', (ctx) => {
    if (process.platform !== 'linux') ctx.skip('a Linux prebuild only')
    const file = path.join(installed, 'prebuilds', TUPLE, fs.readdirSync(path.join(installed, 'prebuilds', TUPLE)).find((f) => f.endsWith('.node'))!)
    const dump = spawnSync('objdump', ['-T', file], { encoding: 'utf8', maxBuffer: 64 << 20 })
    if (dump.error) ctx.skip('no objdump here (binutils)')
    const versions = [...dump.stdout.matchAll(/\bGLIBC_(\d+)\.(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])])
    expect(versions.length).toBeGreaterThan(0)
    const newest = versions.reduce((a, b) => (b[0] > a[0] || (b[0] === a[0] && b[1] > a[1]) ? b : a))
    expect(newest[0] < 2 || (newest[0] === 2 && newest[1] <= 28), `needs GLIBC_${newest.join('.')}`).toBe(true)
  })

  it('installed without building, and node-gyp-build loads the prebuild', () => {
    expect(fs.existsSync(path.join(installed, 'build'))).toBe(false) // the install script compiled nothing
    const script = [
      "const path = require('path')",
      "const { loadNative, nativeAddonPath } = require('face-multitask/dist/lib/native')",
      'const addon = loadNative()',
      "const root = path.dirname(require.resolve('face-multitask/package.json'))",
      "const resolved = require('node-gyp-build').resolve(root)",
      'console.log(JSON.stringify({ inputFloats: addon.inputFloats, used: nativeAddonPath(), resolved, root }))',
    ].join('\n')
    const out = run(process.execPath, ['-e', script], { cwd: appDir, env, timeout: 60_000 })
    const r = JSON.parse(out.trim().split('\n').pop()!) as { inputFloats: number; used: string; resolved: string; root: string }
    expect(r.inputFloats).toBe(150528)
    expect(r.root).toBe(fs.realpathSync(installed))
    expect(r.used).toBe(r.resolved)
    expect(path.relative(r.root, r.used)).toMatch(new RegExp(`^prebuilds/${TUPLE}/face-multitask\\.napi[^/]*\\.node$`))
  })

  it('detects a face end to end with the installed package, as the code in this checkout does', async () => {
    for (const f of ['dist/lib/index.js', 'dist/scripts/make-fixture.js']) expect(fs.existsSync(path.join(installed, f)), `${f} is in the package`).toBe(true)
    const script = `
      const { FaceMultitask } = require('face-multitask')
      const { makeFixtureModel } = require('face-multitask/dist/scripts/make-fixture')
      const model = require('path').join(process.cwd(), 'fixture.onnx')
      require('fs').writeFileSync(model, makeFixtureModel({ generation: 'v2.5', seed: 1 }))
      ;(async () => {
        const m = await FaceMultitask.load({ model, backend: 'cpu', threads: 1 })
        const data = new Uint8Array(256 * 256 * 3).map((_, i) => (i * 7) % 251)
        const faces = await m.detect({ data, width: 256, height: 256 })
        await m.close()
        const f = faces[0]
        console.log(JSON.stringify({ n: faces.length, backend: m.backend, valence: f.valence, arousal: f.arousal, emotion: f.emotion, aus: Array.from(f.auValues), mesh0: Array.from(f.mesh.subarray(0, 6)) }))
      })().catch((e) => { console.error(e); process.exit(1) })`
    const out = run(process.execPath, ['-e', script], { cwd: appDir, env, timeout: 60_000 })
    const r = JSON.parse(out.trim().split('\n').pop()!) as { n: number; backend: string; valence: number; arousal: number; emotion: string; aus: number[]; mesh0: number[] }
    expect(r.n).toBe(1)
    expect(r.backend).toBe('onnxruntime')
    // The same model and pixels through this checkout's code: the package must compute the same.
    const local = path.join(work, 'fixture-local.onnx')
    fs.writeFileSync(local, makeFixtureModel({ generation: 'v2.5', seed: 1 }))
    const m = await FaceMultitask.load({ model: local, backend: 'cpu', threads: 1 })
    try {
      const [f] = await m.detect({ data: new Uint8Array(256 * 256 * 3).map((_, i) => (i * 7) % 251), width: 256, height: 256 })
      expect(r).toEqual({ n: 1, backend: 'onnxruntime', valence: f.valence, arousal: f.arousal, emotion: f.emotion, aus: Array.from(f.auValues), mesh0: Array.from(f.mesh.subarray(0, 6)) })
    } finally {
      await m.close()
    }
  })

  it("the export script, run from the installed package, gets the contract's metadata (the package has no lib/ sources)", (ctx) => {
    const python = ['/usr/bin/python3', path.join(ROOT, '.venv', 'bin', 'python')].find((p) => fs.existsSync(p))
    if (!python) ctx.skip('no Python 3 here (/usr/bin/python3 or .venv/bin/python)')
    expect(fs.existsSync(path.join(installed, 'lib'))).toBe(false)
    const script = [
      'import json, sys',
      `sys.path.insert(0, ${JSON.stringify(path.join(installed, 'scripts'))})`,
      'import export_onnx',
      "print(json.dumps(export_onnx.contract_metadata('v2.8', {}, None)))",
    ].join('\n')
    const out = run(python!, ['-c', script], { cwd: appDir, env, timeout: 60_000 })
    expect(JSON.parse(out.trim().split('\n').pop()!)['face_multitask.generation']).toBe('v2.8')
  })

  it('export from the installed package without a venv says how to make one for an installed package (no npm script of the project)', () => {
    const r = spawnSync(process.execPath, [path.join(installed, 'dist', 'lib', 'cli.js'), 'export', 'face_multitask_v28.safetensors'],
      { cwd: appDir, env: { ...env, FACE_MULTITASK_VENV: '', FACE_MULTITASK_PYTHON: '' }, encoding: 'utf8', timeout: 60_000 })
    expect(r.status).toBe(1)
    expect(r.stderr).toContain('Set it up once with `FACE_MULTITASK_VENV=DIR npm explore face-multitask -- npm run setup:python`')
  })

  it('on a machine with TensorRT headers, tries to build the TensorRT backend and keeps the prebuild when it cannot', () => {
    // Headers made for the test (TensorRT 10, CUDA); no compiler on PATH, so that build fails.
    const headers = path.join(work, 'trt-headers')
    fs.mkdirSync(headers)
    for (const f of ['NvInfer.h', 'NvOnnxParser.h', 'NvInferPlugin.h', 'cuda.h', 'cuda_runtime_api.h']) fs.writeFileSync(path.join(headers, f), '')
    fs.writeFileSync(path.join(headers, 'NvInferVersion.h'), '#define NV_TENSORRT_MAJOR 10\n')
    const install = (extra: NodeJS.ProcessEnv) =>
      spawnSync(process.execPath, [path.join(installed, 'scripts', 'install.js')], {
        cwd: installed, env: { ...env, TENSORRT_INCLUDE_DIR: headers, CUDA_INCLUDE_DIR: headers, ...extra }, encoding: 'utf8', timeout: 120_000,
      })
    const r = install({})
    expect(r.status).toBe(0)
    expect(r.stdout).toContain(`TensorRT 10 headers at ${headers}: building the addon with its TensorRT backend`)
    expect(r.stdout).toContain('that build failed (see its first error above); keeping the addon that loads')
    const resolved = run(process.execPath, ['-e', "console.log(require('node-gyp-build').resolve(require('path').dirname(require.resolve('face-multitask/package.json'))))"],
      { cwd: appDir, env, timeout: 60_000 })
    expect(path.relative(installed, fs.realpathSync(resolved.trim()))).toMatch(new RegExp(`^prebuilds/${TUPLE}/`))
    // FACE_MULTITASK_PREBUILT_ONLY=1: no attempt at all.
    const skipped = install({ FACE_MULTITASK_PREBUILT_ONLY: '1' })
    expect(skipped.status).toBe(0)
    expect(skipped.stdout).toBe('')
    fs.rmSync(path.join(installed, 'build'), { recursive: true, force: true })
  })
})
