// Which backends can run here, and if not, exactly why. Nothing here throws: an addon that does
// not load, a missing onnxruntime-node or an absent TensorRT each become a reason.
//
// The TensorRT probe (dlopen of TensorRT, cuInit) runs in a child process: a broken driver or
// library that crashes there becomes a reason instead of taking the caller's process down. The
// answer is cached for the life of the process.
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { hasTensorRtBackend, loadNative, nativeAddonPath, packageRoot } from './native'

/** The reason when the addon has no tensorrtStatus() export (built without TensorRT's headers). */
export const NO_TENSORRT_BACKEND = 'this build has no TensorRT backend (headers absent at build time)'

/** The status's first reason for an addon built without TensorRT's headers (native/tensorrt/README.md). */
export const HEADERS_ABSENT = 'headers absent at build time'

/** What the addon's tensorrtStatus() reports (native/addon.cc). */
export interface TensorRtStatus {
  available: boolean
  reason?: string
  detail?: string
  /** The TensorRT headers the addon was compiled against, e.g. "10.14.1". */
  builtFor?: string
  tensorrtVersion?: string
  /** The library's build number (getInferLibBuildVersion), e.g. "48". */
  tensorrtBuild?: string
  parserVersion?: string
  gpuName?: string
  computeCapability?: string
  smCount?: number
  /** How many GPUs the CUDA driver sees (0 also when there is no driver). */
  gpuCount?: number
  /** The newest CUDA the driver supports, e.g. "13.0". */
  cudaDriverVersion?: string
}

/** How long the TensorRT probe may take (cuInit on a machine with many GPUs takes seconds). */
export const PROBE_TIMEOUT_MS = 60_000

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
  /**
   * More, available or not: how to fix a library older than the headers, a candidate that failed
   * to load, a missing plugin library (models with RoiAlign, v2.6+, then cannot be built), the
   * driver's error.
   */
  detail?: string
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

/** What starts the probe's status line. */
const STATUS_MARK = 'face-multitask tensorrt status: '

/**
 * Runs `addonFile`'s tensorrtStatus() in a child Node.js process and resolves with what it printed,
 * or a reason: the addon lacks the export, the child crashed or did not answer in time. The
 * caller's event loop keeps running meanwhile (cuInit can take seconds on a machine with many GPUs).
 */
export function probeTensorrtStatus(addonFile: string, timeoutMs = PROBE_TIMEOUT_MS): Promise<TensorRtStatus | { reason: string }> {
  // The status goes on a line of its own after a marker: the child's stdout is shared with
  // whatever else runs in it (a NODE_OPTIONS preload such as dotenv/config, an APM agent,
  // TensorRT or the driver), whose one printed line would otherwise make the GPU unavailable.
  const script = [
    'const a = require(process.argv[1]);',
    `const say = (s) => process.stdout.write('\\n${STATUS_MARK}' + s + '\\n');`,
    "if (typeof a.tensorrtStatus !== 'function') { say('null'); process.exit(0) }",
    'say(JSON.stringify(a.tensorrtStatus()))',
  ].join('\n')
  return new Promise((resolve) => {
    execFile(process.execPath, ['-e', script, addonFile], { encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL', windowsHide: true, maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      const e = error as (NodeJS.ErrnoException & { killed?: boolean; signal?: NodeJS.Signals | null; code?: number | string | null }) | null
      if (e?.killed) return resolve({ reason: `the TensorRT probe did not answer within ${timeoutMs / 1000} s (a hung CUDA driver?)` })
      if (e?.signal) return resolve({ reason: `the TensorRT probe crashed (${e.signal}) while loading TensorRT or the CUDA driver${firstStderrLine(stderr)}` })
      if (e && typeof e.code === 'number') return resolve({ reason: `the TensorRT probe failed (exit code ${e.code})${firstStderrLine(stderr)}` })
      if (e) return resolve({ reason: `the TensorRT probe could not run: ${e.message}` })
      const line = stdout.split('\n').reverse().find((l) => l.startsWith(STATUS_MARK))
      let raw: unknown
      try {
        if (line === undefined) throw new Error('no status line')
        raw = JSON.parse(line.slice(STATUS_MARK.length))
      } catch {
        return resolve({ reason: `the TensorRT probe printed no status: ${JSON.stringify(stdout.slice(0, 200))}` })
      }
      if (raw === null) return resolve({ reason: NO_TENSORRT_BACKEND })
      if (typeof raw !== 'object') return resolve({ reason: "the addon's tensorrtStatus() returned no status" })
      resolve(raw as TensorRtStatus)
    })
  })
}

/** The child's error line (the one naming an Error, else the first): Node prints the source line first. */
function firstStderrLine(stderr: string): string {
  const lines = stderr.trim().split('\n').filter((l) => l.trim())
  const line = lines.find((l) => /^\s*\w*Error:/.test(l)) ?? lines[0]
  return line ? `: ${line.trim().slice(0, 300)}` : ''
}

/** The public description of a probe's answer. */
export function describeTensorrtStatus(raw: TensorRtStatus | { reason: string }): TensorRtAvailability {
  if (!('available' in raw)) return { available: false, reason: raw.reason }
  const out: TensorRtAvailability = { available: raw.available === true }
  if (typeof raw.tensorrtVersion === 'string' && raw.tensorrtVersion) out.version = raw.tensorrtVersion
  if (typeof raw.gpuName === 'string' && raw.gpuName) out.gpu = raw.gpuName
  if (typeof raw.computeCapability === 'string' && raw.computeCapability) out.computeCapability = raw.computeCapability
  if (typeof raw.detail === 'string' && raw.detail.trim()) out.detail = raw.detail.trim()
  const noGpu = raw.reason === HEADERS_ABSENT && raw.gpuCount === 0 ? noGpuEither(raw.cudaDriverVersion) : ''
  if (noGpu) out.detail = out.detail ? `${noGpu} ${out.detail[0].toUpperCase()}${out.detail.slice(1)}` : noGpu
  if (!out.available) out.reason = typeof raw.reason === 'string' && raw.reason.trim() ? raw.reason.trim() : 'the native addon reports TensorRT unavailable and gives no reason'
  return out
}

/**
 * An addon without the headers still asks the driver for the GPU (native/tensorrt/loader.cc): where
 * there is none, rebuilding with the headers would not help, and the headers-absent reason alone
 * suggests it would.
 */
function noGpuEither(cudaDriverVersion: unknown): string {
  const why = typeof cudaDriverVersion === 'string' && cudaDriverVersion ? `the CUDA driver (${cudaDriverVersion}) sees no GPU` : 'no CUDA driver was found'
  return `No NVIDIA GPU here either (${why}), so rebuilding with TensorRT's headers would not make the backend available on this machine; the CPU backend (onnxruntime) runs here.`
}

export interface TensorRtProbe {
  availability: TensorRtAvailability
  /** The addon's full status, when it answered. */
  status?: TensorRtStatus
}

let probed: Promise<TensorRtProbe> | undefined

/**
 * The GPU backend's availability and, when the addon answered, its full status (probed once per
 * process). `forLoad`: only to choose a backend. An addon built without TensorRT's headers (the
 * prebuild shipped) cannot run it whatever the GPU, so no child process, and no cuInit, is spent
 * to find out; available() and doctor still probe, for the GPU's details.
 */
export function tensorrtProbe(forLoad = false): Promise<TensorRtProbe> {
  if (forLoad && !tensorrtCompiledIn()) return Promise.resolve({ availability: { available: false, reason: HEADERS_ABSENT } })
  probed ??= probeOnce()
  return probed
}

function tensorrtCompiledIn(): boolean {
  try {
    return hasTensorRtBackend(loadNative())
  } catch {
    return true  // the probe says why the addon does not load
  }
}

async function probeOnce(): Promise<TensorRtProbe> {
  let addon: unknown
  try {
    addon = loadNative()
  } catch (e) {
    return { availability: { available: false, reason: `the native addon does not load: ${firstLine(e)}` } }
  }
  // An addon built without TensorRT headers has nothing to probe: no child process needed.
  if (typeof (addon as { tensorrtStatus?: unknown }).tensorrtStatus !== 'function') return { availability: { available: false, reason: NO_TENSORRT_BACKEND } }
  const file = nativeAddonPath()
  if (!file) return { availability: { available: false, reason: 'the native addon was loaded from an unknown file' } }
  const raw = await probeTensorrtStatus(file)
  return { availability: describeTensorrtStatus(raw), ...('available' in raw ? { status: raw } : {}) }
}

/** The GPU backend, as the addon reports it from a child process (dlopen of TensorRT, CUDA driver, a GPU). */
export async function tensorrtAvailability(): Promise<TensorRtAvailability> {
  return (await tensorrtProbe()).availability
}

/** Every backend: available, or the exact reason it is not. */
export async function available(): Promise<Availability> {
  return { onnxruntime: onnxruntimeAvailability(), tensorrt: await tensorrtAvailability() }
}
