// The install script's view of TensorRT: it builds the TensorRT backend from source where the
// headers the build would use are present (the prebuilt addon is made without them). The search
// is checked here against header folders made for the test; pack.test.ts runs the install itself.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadError, NAPI_VERSION } from '../lib/native'
import { tempDir } from './helpers/temp-dir'
const { findTensorrtHeaders } = require('../scripts/tensorrt-headers.js') as {
  findTensorrtHeaders: (
    env: NodeJS.ProcessEnv,
    exists?: (f: string) => boolean,
    read?: (f: string) => string,
  ) => { include?: string; cuda?: string; major?: number; why?: string }
}

const tmp = tempDir('headers')

function dir(name: string, files: Record<string, string>): string {
  const d = path.join(tmp, name)
  fs.mkdirSync(d, { recursive: true })
  for (const [f, text] of Object.entries(files)) fs.writeFileSync(path.join(d, f), text)
  return d
}
// Only the test's folders exist: the machine's own /usr/local/cuda or /usr/include play no part.
const exists = (f: string) => f.startsWith(tmp) && fs.existsSync(f)

const trt10 = dir('trt10/include', { 'NvInfer.h': '', 'NvOnnxParser.h': '', 'NvInferPlugin.h': '', 'NvInferVersion.h': '#define NV_TENSORRT_MAJOR 10 //!< major\n' })
const trt11 = dir('trt11/include', { 'NvInfer.h': '', 'NvOnnxParser.h': '', 'NvInferPlugin.h': '', 'NvInferVersion.h': '#define TRT_MAJOR_ENTERPRISE 11\n' })
const trt8 = dir('trt8/include', { 'NvInfer.h': '', 'NvOnnxParser.h': '', 'NvInferPlugin.h': '', 'NvInferVersion.h': '#define NV_TENSORRT_MAJOR 8\n' })
const noParser = dir('noparser/include', { 'NvInfer.h': '', 'NvInferPlugin.h': '', 'NvInferVersion.h': '#define NV_TENSORRT_MAJOR 10\n' })
// Debian/Ubuntu ship NvInferPlugin.h in a package of its own, which the loader includes.
const noPlugin = dir('noplugin/include', { 'NvInfer.h': '', 'NvOnnxParser.h': '', 'NvInferVersion.h': '#define NV_TENSORRT_MAJOR 10\n' })
const cuda = dir('cuda/include', { 'cuda.h': '', 'cuda_runtime_api.h': '' })

describe('building from source', () => {
  it("cmake-js takes Node's headers from npm (node-api-headers), not nodejs.org: package.json names the N-API version", () => {
    // A user's machine: no ~/.npmrc with nodedir (this one has), no ~/.cmake-js; only the npm registry reachable.
    const home = path.join(tmp, 'home')
    fs.mkdirSync(home)
    const out = path.join(tmp, 'cmake-build')
    const r = spawnSync(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'configure', '--out', out, '--log-level', 'warn'], {
      cwd: path.join(__dirname, '..'), env: { ...process.env, HOME: home, USERPROFILE: home, npm_config_nodedir: '' }, encoding: 'utf8', timeout: 180_000,
    })
    expect(r.status, r.stderr + r.stdout).toBe(0)
    expect(fs.existsSync(path.join(home, '.cmake-js'))).toBe(false)  // nothing downloaded
    expect(fs.readFileSync(path.join(out, 'CMakeCache.txt'), 'utf8')).toMatch(/^CMAKE_JS_INC:\w+=.*node-api-headers[\\/]include/m)
    expect(require('../package.json').binary.napi_versions).toEqual([NAPI_VERSION])
  }, 180_000)
})

describe('an addon that does not load', () => {
  it('is told with fixes that work where the package is: npm rebuild when installed, npm run compile or prebuild in a clone', () => {
    const installed = loadError(path.join('/app', 'node_modules', 'face-multitask'), undefined, new Error('no addon found')).message
    expect(installed).toMatch(/^could not load face-multitask's native addon for /)  // the CLI adds "face-multitask: "
    expect(installed).toMatch(/`FACE_MULTITASK_BUILD_FROM_SOURCE=1 npm rebuild face-multitask` in your project/)
    // prebuildify is a dev dependency: `npm run prebuild` fails in an installed package.
    expect(installed).not.toMatch(/npm run (prebuild|compile)/)
    const clone = loadError(path.join('/src', 'face-multitask'), '/src/face-multitask/build/Release/face_multitask.node', new Error('invalid ELF header')).message
    expect(clone).toMatch(/Found \/src\/face-multitask\/build\/Release\/face_multitask\.node, but it failed to load: invalid ELF header/)
    expect(clone).toMatch(/`npm run compile`/)
    expect(clone).toMatch(/`npm run prebuild`/)
    expect(clone).not.toMatch(/npm rebuild/)
  })
})

describe('the install script on a machine that gained TensorRT headers', () => {
  it('configures a build folder afresh, so the addon is built with the backend (tried here: the headers are empty), and a failed build leaves the addon that loads', (ctx) => {
    const built = path.join(__dirname, '..', 'build', 'Release', 'face_multitask.node')
    if (!fs.existsSync(built)) ctx.skip('no addon built in this checkout (npm run compile)')
    if (typeof (require(built) as { tensorrtLoad?: unknown }).tensorrtLoad === 'function') ctx.skip('this checkout\'s addon has the TensorRT backend already')
    // The package as installed: its sources and node_modules; a build folder configured without
    // the headers, holding the CPU-only addon it built.
    const pkg = path.join(tmp, 'pkg')
    const root = path.join(__dirname, '..')
    for (const f of ['package.json', 'CMakeLists.txt', 'cmake', 'native', 'scripts/install.js', 'scripts/tensorrt-headers.js']) {
      fs.cpSync(path.join(root, f), path.join(pkg, f), { recursive: true })
    }
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(pkg, 'node_modules'))
    const env = { ...process.env, TENSORRT_INCLUDE_DIR: '', TENSORRT_ROOT: '', CUDA_INCLUDE_DIR: '', FACE_MULTITASK_PREBUILT_ONLY: '' }
    const cmakeJs = require.resolve('cmake-js/bin/cmake-js')
    const before = spawnSync(process.execPath, [cmakeJs, 'configure', '--log-level', 'warn'], { cwd: pkg, env, encoding: 'utf8', timeout: 120_000 })
    expect(before.status, before.stderr).toBe(0)
    expect(before.stdout).toMatch(/TensorRT backend OFF/)
    fs.mkdirSync(path.join(pkg, 'build', 'Release'), { recursive: true })
    fs.copyFileSync(built, path.join(pkg, 'build', 'Release', 'face_multitask.node'))
    const headers = dir('gained', { 'NvInfer.h': '', 'NvOnnxParser.h': '', 'NvInferPlugin.h': '', 'NvInferVersion.h': '#define NV_TENSORRT_MAJOR 10\n', 'cuda.h': '', 'cuda_runtime_api.h': '' })
    const r = spawnSync(process.execPath, [path.join(pkg, 'scripts', 'install.js')], {
      cwd: pkg, env: { ...env, TENSORRT_INCLUDE_DIR: headers, CUDA_INCLUDE_DIR: headers }, encoding: 'utf8', timeout: 600_000,
    })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toContain(`TensorRT 10 headers at ${headers}: building the addon with its TensorRT backend`)
    expect(r.stdout).toMatch(/TensorRT backend ON \(headers /)  // CMake saw them: the folder was configured again
    expect(r.stdout).toContain('that build failed (see its first error above); keeping the addon that loads')
    // The addon that loaded is still there, unchanged: the failed build was made in a folder of its own.
    expect(fs.readFileSync(path.join(pkg, 'build', 'Release', 'face_multitask.node')).equals(fs.readFileSync(built))).toBe(true)
  }, 600_000)
})

describe('findTensorrtHeaders (the install script)', () => {
  it('finds TensorRT 10 from TENSORRT_INCLUDE_DIR and CUDA from CUDA_INCLUDE_DIR', () => {
    expect(findTensorrtHeaders({ TENSORRT_INCLUDE_DIR: trt10, CUDA_INCLUDE_DIR: cuda }, exists)).toEqual({ include: trt10, cuda, major: 10 })
  })

  it('finds TensorRT 11 (TRT_MAJOR_ENTERPRISE) under TENSORRT_ROOT and CUDA under CUDA_HOME', () => {
    const r = findTensorrtHeaders({ TENSORRT_ROOT: path.dirname(trt11), CUDA_HOME: path.dirname(cuda) }, exists)
    expect(r).toEqual({ include: trt11, cuda, major: 11 })
  })

  it('says why not: no headers, no parser or plugin header, TensorRT older than 10, no CUDA headers', () => {
    expect(findTensorrtHeaders({}, exists).why).toMatch(/no TensorRT headers/)
    expect(findTensorrtHeaders({ TENSORRT_INCLUDE_DIR: noParser, CUDA_INCLUDE_DIR: cuda }, exists).why).toBe(`TensorRT headers at ${noParser} lack NvOnnxParser.h (Debian/Ubuntu: libnvinfer-headers-plugin-dev, libnvonnxparsers-dev)`)
    expect(findTensorrtHeaders({ TENSORRT_INCLUDE_DIR: noPlugin, CUDA_INCLUDE_DIR: cuda }, exists).why).toBe(`TensorRT headers at ${noPlugin} lack NvInferPlugin.h (Debian/Ubuntu: libnvinfer-headers-plugin-dev, libnvonnxparsers-dev)`)
    expect(findTensorrtHeaders({ TENSORRT_INCLUDE_DIR: trt8, CUDA_INCLUDE_DIR: cuda }, exists).why).toMatch(/not 10\.x or later/)
    expect(findTensorrtHeaders({ TENSORRT_INCLUDE_DIR: trt10 }, exists).why).toMatch(/no CUDA headers/)
  })

  it('looks where CMakeLists.txt looks', () => {
    const cmake = fs.readFileSync(path.join(__dirname, '..', 'CMakeLists.txt'), 'utf8')
    const seen = new Set<string>()
    // TensorRT is found at the last place looked, so every place (then every CUDA one) is tried.
    const r = findTensorrtHeaders(
      { TENSORRT_INCLUDE_DIR: '/a', TENSORRT_ROOT: '/b', CUDA_INCLUDE_DIR: '/c', CUDA_PATH: '/d', CUDA_HOME: '/e' },
      (f) => {
        seen.add(path.dirname(f))
        return f.startsWith('/usr/local/tensorrt/include/')
      },
      () => '#define NV_TENSORRT_MAJOR 10\n',
    )
    expect(r.why).toMatch(/no CUDA headers/)
    expect([...seen]).toEqual(['/a', '/b/include', '/usr/include/x86_64-linux-gnu', '/usr/include/aarch64-linux-gnu', '/usr/local/tensorrt/include',
      '/c', '/d/include', '/e/include', '/usr/local/cuda/include', '/usr/include'])
    for (const d of seen) if (d.startsWith('/usr')) expect(cmake).toContain(d)
  })
})
