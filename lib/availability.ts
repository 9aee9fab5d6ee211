// Which backends can run here, and if not, exactly why. Nothing here throws: an addon that does
// not load, a missing onnxruntime-node or an absent TensorRT each become a reason.
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { loadNative, packageRoot } from './native'

/** The reason when the addon has no tensorrtStatus() export (built without TensorRT's headers). */
export const NO_TENSORRT_BACKEND = 'this build has no TensorRT backend (headers absent at build time)'

/** What the addon's tensorrtStatus() reports. */
export interface TensorRtStatus {
  available: boolean
  reason?: string
  tensorrtVersion?: string
  gpuName?: string
  computeCapability?: string
}

export type OnnxRuntimeAvailability =
  | { available: true; device: 'cpu'; version?: string }
  | { available: false; device: 'cpu'; reason: string }

export interface TensorRtAvailability {
  available: boolean
  /** Why not, when available is false: always set then, never empty. */
  reason?: string
  /** TensorRT's version, e.g. "10.14.1". */
  version?: string
  /** The GPU's name, e.g. "NVIDIA H100 80GB HBM3". */
  gpu?: string
  /** "major.minor", e.g. "9.0". */
  computeCapability?: string
}

export interface Availability {
  onnxruntime: OnnxRuntimeAvailability
  tensorrt: TensorRtAvailability
}

function firstLine(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e)
  return text.trim().split('\n')[0].replace(/^face-multitask: /, '')
}

const packageRequire = () => createRequire(path.join(packageRoot(), 'package.json'))

/** The installed onnxruntime-node's version (its package.json), or undefined. */
export function onnxruntimeVersion(): string | undefined {
  try {
    const req = packageRequire()
    let dir = path.dirname(req.resolve('onnxruntime-node'))
    for (;;) {
      const file = path.join(dir, 'package.json')
      if (fs.existsSync(file)) {
        const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: string; version?: string }
        if (pkg.name === 'onnxruntime-node') return pkg.version
      }
      const up = path.dirname(dir)
      if (up === dir) return undefined
      dir = up
    }
  } catch {
    return undefined
  }
}

/** The CPU backend: the addon (preprocessing) loads and onnxruntime-node can be required. */
export function onnxruntimeAvailability(): OnnxRuntimeAvailability {
  try {
    loadNative()
  } catch (e) {
    return { available: false, device: 'cpu', reason: `the native addon does not load: ${firstLine(e)}` }
  }
  try {
    packageRequire()('onnxruntime-node')
  } catch (e) {
    return { available: false, device: 'cpu', reason: `onnxruntime-node cannot be loaded: ${firstLine(e)}` }
  }
  const version = onnxruntimeVersion()
  return version ? { available: true, device: 'cpu', version } : { available: true, device: 'cpu' }
}

/** The GPU backend, as the addon reports it (dlopen of TensorRT, CUDA driver, a GPU). */
export function tensorrtAvailability(): TensorRtAvailability {
  let addon: unknown
  try {
    addon = loadNative()
  } catch (e) {
    return { available: false, reason: `the native addon does not load: ${firstLine(e)}` }
  }
  const status = (addon as { tensorrtStatus?: unknown }).tensorrtStatus
  if (typeof status !== 'function') return { available: false, reason: NO_TENSORRT_BACKEND }
  let raw: TensorRtStatus
  try {
    raw = status.call(addon) as TensorRtStatus
  } catch (e) {
    return { available: false, reason: `the addon's tensorrtStatus() failed: ${firstLine(e)}` }
  }
  if (typeof raw !== 'object' || raw === null) return { available: false, reason: "the addon's tensorrtStatus() returned no status" }
  const out: TensorRtAvailability = { available: raw.available === true }
  if (typeof raw.tensorrtVersion === 'string' && raw.tensorrtVersion) out.version = raw.tensorrtVersion
  if (typeof raw.gpuName === 'string' && raw.gpuName) out.gpu = raw.gpuName
  if (typeof raw.computeCapability === 'string' && raw.computeCapability) out.computeCapability = raw.computeCapability
  if (!out.available) out.reason = typeof raw.reason === 'string' && raw.reason.trim() ? raw.reason.trim() : 'the native addon reports TensorRT unavailable and gives no reason'
  return out
}

/** Every backend: available, or the exact reason it is not. */
export async function available(): Promise<Availability> {
  return { onnxruntime: onnxruntimeAvailability(), tensorrt: tensorrtAvailability() }
}
