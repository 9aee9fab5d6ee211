// The install script's view of TensorRT: it builds the TensorRT backend from source where the
// headers the build would use are present (the prebuilt addon is made without them). The search
// is checked here against header folders made for the test; pack.test.ts runs the install itself.
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
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

const trt10 = dir('trt10/include', { 'NvInfer.h': '', 'NvOnnxParser.h': '', 'NvInferVersion.h': '#define NV_TENSORRT_MAJOR 10 //!< major\n' })
const trt11 = dir('trt11/include', { 'NvInfer.h': '', 'NvOnnxParser.h': '', 'NvInferVersion.h': '#define TRT_MAJOR_ENTERPRISE 11\n' })
const trt8 = dir('trt8/include', { 'NvInfer.h': '', 'NvOnnxParser.h': '', 'NvInferVersion.h': '#define NV_TENSORRT_MAJOR 8\n' })
const noParser = dir('noparser/include', { 'NvInfer.h': '', 'NvInferVersion.h': '#define NV_TENSORRT_MAJOR 10\n' })
const cuda = dir('cuda/include', { 'cuda.h': '', 'cuda_runtime_api.h': '' })

describe('findTensorrtHeaders (the install script)', () => {
  it('finds TensorRT 10 from TENSORRT_INCLUDE_DIR and CUDA from CUDA_INCLUDE_DIR', () => {
    expect(findTensorrtHeaders({ TENSORRT_INCLUDE_DIR: trt10, CUDA_INCLUDE_DIR: cuda }, exists)).toEqual({ include: trt10, cuda, major: 10 })
  })

  it('finds TensorRT 11 (TRT_MAJOR_ENTERPRISE) under TENSORRT_ROOT and CUDA under CUDA_HOME', () => {
    const r = findTensorrtHeaders({ TENSORRT_ROOT: path.dirname(trt11), CUDA_HOME: path.dirname(cuda) }, exists)
    expect(r).toEqual({ include: trt11, cuda, major: 11 })
  })

  it('says why not: no headers, no parser header, TensorRT older than 10, no CUDA headers', () => {
    expect(findTensorrtHeaders({}, exists).why).toMatch(/no TensorRT headers/)
    expect(findTensorrtHeaders({ TENSORRT_INCLUDE_DIR: noParser, CUDA_INCLUDE_DIR: cuda }, exists).why).toMatch(/no TensorRT headers/)
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
