// The engine cache's key: everything a TensorRT plan depends on (EngineKeyParts), hashed
// (SHA-256 of canonical JSON) into the key, and the readable file names built from it.
import { createHash, webcrypto } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { stat } from 'node:fs/promises'
import path from 'node:path'
import { fileErrorReason } from '../describe'
import { PRECISIONS } from '../gpu-options'
import type { Precision } from '../types'

/** Bump when the addon's engine layout (bindings, plugins, input/output handling) or build recipe changes (2: TF32 off). */
export const ENGINE_SCHEMA_VERSION = 2
/** Everything a plan depends on. All of it but onnxName goes into the key. */
export interface EngineKeyParts {
  /** The ONNX file's name, for the readable plan file name only (same bytes: same engine). */
  onnxName: string
  /** SHA-256 (hex) of the ONNX file's bytes: hashFile(). */
  onnxSha256: string
  /**
   * The files that hold the model's weights when they are stored outside the .onnx (ONNX external
   * data), by location relative to it, with their SHA-256; absent when there are none.
   */
  externalData?: { location: string; sha256: string }[]
  /** `version`: e.g. "10.14.1"; `build`: the library's exact build, e.g. "10.14.1 build 48" (getInferLibBuildVersion()). */
  tensorrt: { version: string; build: string }
  /** The ONNX parser's version (nvonnxparser's getNvOnnxParserVersion / onnx-tensorrt). */
  parserVersion: string
  precision: Precision
  /** The optimization profile of the batch dimension (kMIN / kOPT / kMAX). */
  profile: { minBatch: number; optBatch: number; maxBatch: number }
  /** Builder options. workspaceMiB 0: TensorRT's default (the device's memory). */
  builder: { optimizationLevel: number; workspaceMiB: number }
  /** computeCapability as "major.minor", e.g. "9.0". */
  gpu: { name: string; computeCapability: string; smCount: number }
  /** The major of the newest CUDA the driver supports (a driver of another major rebuilds: conservative). */
  cudaMajor: number
  /** process.platform and process.arch. */
  os: string
  arch: string
  /** ENGINE_SCHEMA_VERSION of the addon that builds and reads the plan. */
  schemaVersion: number
}

function fail(field: string, what: string, value: unknown): never {
  throw new TypeError(`engine key: ${field} must be ${what}, got ${JSON.stringify(value)}`)
}

function str(v: unknown, field: string): void {
  if (typeof v !== 'string' || v === '') fail(field, 'a non-empty string', v)
}

function int(v: unknown, field: string, min: number): void {
  if (!Number.isInteger(v) || (v as number) < min) fail(field, `an integer >= ${min}`, v)
}

function obj(v: unknown, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(field, 'an object', v)
  return v as Record<string, unknown>
}

/** Throws a TypeError naming the first missing or malformed field (catches integration mistakes early). */
export function checkKeyParts(parts: EngineKeyParts): void {
  const p = obj(parts, 'parts')
  str(p.onnxName, 'onnxName')
  if (typeof p.onnxSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(p.onnxSha256)) fail('onnxSha256', 'a hex SHA-256', p.onnxSha256)
  if (p.externalData !== undefined) {
    if (!Array.isArray(p.externalData)) fail('externalData', 'an array', p.externalData)
    for (const [i, e] of (p.externalData as unknown[]).entries()) {
      const entry = obj(e, `externalData[${i}]`)
      str(entry.location, `externalData[${i}].location`)
      if (typeof entry.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(entry.sha256)) fail(`externalData[${i}].sha256`, 'a hex SHA-256', entry.sha256)
    }
  }
  const trt = obj(p.tensorrt, 'tensorrt')
  str(trt.version, 'tensorrt.version')
  str(trt.build, 'tensorrt.build')
  str(p.parserVersion, 'parserVersion')
  if (!PRECISIONS.includes(p.precision as Precision)) fail('precision', `one of ${PRECISIONS.join(', ')}`, p.precision)
  const prof = obj(p.profile, 'profile')
  int(prof.minBatch, 'profile.minBatch', 1)
  int(prof.optBatch, 'profile.optBatch', 1)
  int(prof.maxBatch, 'profile.maxBatch', 1)
  if (!((prof.minBatch as number) <= (prof.optBatch as number) && (prof.optBatch as number) <= (prof.maxBatch as number))) {
    fail('profile', 'minBatch <= optBatch <= maxBatch', prof)
  }
  const b = obj(p.builder, 'builder')
  int(b.optimizationLevel, 'builder.optimizationLevel', 0)
  int(b.workspaceMiB, 'builder.workspaceMiB', 0)
  const gpu = obj(p.gpu, 'gpu')
  str(gpu.name, 'gpu.name')
  if (typeof gpu.computeCapability !== 'string' || !/^\d+\.\d+$/.test(gpu.computeCapability)) fail('gpu.computeCapability', '"major.minor"', gpu.computeCapability)
  int(gpu.smCount, 'gpu.smCount', 1)
  int(p.cudaMajor, 'cudaMajor', 1)
  str(p.os, 'os')
  str(p.arch, 'arch')
  int(p.schemaVersion, 'schemaVersion', 1)
}

/** JSON with object keys sorted at every level: the same value always gives the same text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`canonicalJson: ${value} has no JSON form`)
    return JSON.stringify(value)
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined)
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  throw new TypeError(`canonicalJson: a ${typeof value} has no JSON form`)
}

/** The parts that make the key: all but the ONNX file's name. */
export function keyedParts(parts: EngineKeyParts): Omit<EngineKeyParts, 'onnxName'> {
  const { onnxName: _name, ...rest } = parts
  return rest
}

/** The cache key: SHA-256 (hex) of the canonical JSON of every part but onnxName. */
export function engineCacheKey(parts: EngineKeyParts): string {
  checkKeyParts(parts)
  return createHash('sha256').update(canonicalJson(keyedParts(parts))).digest('hex')
}

/** Lower case, runs of anything but [a-z0-9.] as one '-': "NVIDIA H100 80GB HBM3" -> "nvidia-h100-80gb-hbm3". */
function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9.]+/g, '-').replace(/^[-.]+|[-.]+$/g, '') || 'x'
}

/** "nvidia-h100-80gb-hbm3-sm90": the GPU's name and compute capability. */
export function gpuSlug(gpu: EngineKeyParts['gpu']): string {
  return `${slug(gpu.name)}-sm${gpu.computeCapability.replace('.', '')}`
}

/** `<onnx-basename>.<precision>.b<min>-<opt>-<max>.<gpu-slug>.trt<ver>.<key12>.plan` */
export function engineFileName(parts: EngineKeyParts, key = engineCacheKey(parts)): string {
  // The export's own precision suffix (model.fp16.onnx) is not repeated: the plan's follows.
  // Never leading '-' or '.' (a name tools would read as an option, or a hidden file): "模型 v2" -> "v2".
  // At most 64 characters of it (the key tells plans apart): with the rest and a temp file's
  // prefix and suffix the name stays under the 255 a file name may have.
  const base = path.basename(parts.onnxName).replace(/\.onnx$/i, '').replace(/\.(fp16|bf16|fp32)$/i, '').replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^[-.]+/, '').slice(0, 64) || 'model'
  const { minBatch, optBatch, maxBatch } = parts.profile
  return `${base}.${parts.precision}.b${minBatch}-${optBatch}-${maxBatch}.${gpuSlug(parts.gpu)}.trt${slug(parts.tensorrt.version)}.${key.slice(0, 12)}.plan`
}

/**
 * The timing cache for one TensorRT build on one GPU model, in `dir` beside the plans:
 * `timing.<gpu-slug>.trt<ver>.<hash8>.cache`, the hash over TensorRT's version and build, the GPU,
 * the OS/arch and the schema version (a timing cache is valid for the same TensorRT build and device only).
 */
export function timingCachePath(dir: string, parts: Pick<EngineKeyParts, 'tensorrt' | 'gpu'> & Partial<Pick<EngineKeyParts, 'os' | 'arch' | 'schemaVersion'>>): string {
  const keyed = {
    tensorrt: parts.tensorrt,
    gpu: parts.gpu,
    os: parts.os ?? process.platform,
    arch: parts.arch ?? process.arch,
    schemaVersion: parts.schemaVersion ?? ENGINE_SCHEMA_VERSION,
  }
  const hash = createHash('sha256').update(canonicalJson(keyed)).digest('hex').slice(0, 8)
  return path.join(dir, `timing.${gpuSlug(parts.gpu)}.trt${slug(parts.tensorrt.version)}.${hash}.cache`)
}

/**
 * SHA-256 (hex) of a file, or of its first `bytes` bytes, read as a stream (1 MiB chunks): models
 * of any size, little memory.
 */
export async function hashFile(file: string, signal?: AbortSignal, bytes?: number): Promise<string> {
  const hash = createHash('sha256')
  if (bytes !== 0) {
    const range = bytes === undefined ? {} : { end: bytes - 1 }
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20, signal, ...range })) hash.update(chunk as Buffer)
  }
  return hash.digest('hex')
}

/**
 * SHA-256 (hex) of bytes in memory, computed on libuv's thread pool (Web Crypto's digest): a
 * 100 MB plan hashed with createHash() held the event loop ~0.3 s at each load and store.
 */
export async function hashBytes(bytes: Uint8Array): Promise<string> {
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', bytes)).toString('hex')
}

/**
 * The weights files an ONNX keeps outside itself (external data, by location relative to it),
 * hashed. TensorRT's parser reads them from beside the .onnx, so new weights there with the same
 * .onnx must make another engine.
 */
export async function hashExternalData(onnx: string, locations: readonly string[], signal?: AbortSignal): Promise<EngineKeyParts['externalData']> {
  if (locations.length === 0) return undefined
  const hashed: NonNullable<EngineKeyParts['externalData']> = []
  for (const location of [...new Set(locations)].sort()) {
    const where = `${onnx} keeps weights in "${location}" (ONNX external data)`
    // ONNX allows only paths relative to the model's folder, without "..": anything else is
    // refused here rather than read (a device file such as /dev/zero would be hashed for ever).
    const parts = location.split(/[\\/]/)
    if (path.isAbsolute(location) || path.win32.isAbsolute(location) || parts.includes('..')) {
      throw new Error(`${where}, a path outside the model's folder: ONNX external data must lie in or under that folder`)
    }
    const file = path.resolve(path.dirname(onnx), location)
    try {
      if (!(await stat(file)).isFile()) throw new Error(`${where}, which is not a regular file`)
      hashed.push({ location, sha256: await hashFile(file, signal) })
    } catch (e) {
      if ((e as Error).name === 'AbortError' || (e as Error).message.startsWith(where)) throw e
      throw new Error(`${where}, which cannot be read: ${fileErrorReason(e)}`, { cause: e })
    }
  }
  return hashed
}

/**
 * Which of the ONNX file and its external-data files no longer holds the bytes `parts` hashed
 * (rewritten meanwhile: a build reads them again, minutes after the key was made), or undefined.
 */
export async function changedSince(onnx: string, parts: Pick<EngineKeyParts, 'onnxSha256' | 'externalData'>, signal?: AbortSignal): Promise<string | undefined> {
  const now = (file: string) => hashFile(file, signal).catch((e) => { if ((e as Error).name === 'AbortError') throw e })
  if ((await now(onnx)) !== parts.onnxSha256) return path.basename(onnx)
  for (const { location, sha256 } of parts.externalData ?? []) {
    if ((await now(path.resolve(path.dirname(onnx), location))) !== sha256) return location
  }
  return undefined
}

/**
 * The key parts for an ONNX file: hashes it and the external-data files it names (`externalData`:
 * OnnxModelInfo.externalData), fills OS, arch and the schema version.
 */
export async function engineKeyParts(
  input: Omit<EngineKeyParts, 'onnxName' | 'onnxSha256' | 'externalData' | 'os' | 'arch' | 'schemaVersion'> & { onnx: string; externalData: readonly string[]; signal?: AbortSignal },
): Promise<EngineKeyParts> {
  const { onnx, externalData, signal, ...rest } = input
  const parts: EngineKeyParts = {
    ...rest,
    onnxName: path.basename(onnx),
    onnxSha256: await hashFile(onnx, signal),
    externalData: await hashExternalData(onnx, externalData, signal),
    os: process.platform,
    arch: process.arch,
    schemaVersion: ENGINE_SCHEMA_VERSION,
  }
  checkKeyParts(parts)
  return parts
}
