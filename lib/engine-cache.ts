// The on-disk cache of built TensorRT plans (serialized engines) and timing caches.
//
// A plan is only valid for the exact TensorRT build, the GPU, the ONNX bytes and the build
// settings it was made with, so its key is a SHA-256 over all of them (EngineKeyParts). Plans are
// written atomically (temp file in the same folder, fsync, rename, then the sidecar .json that
// holds the full key), under a cross-process lock file, so two processes asking for the same
// engine never corrupt or duplicate it: one builds, the other waits and loads what it wrote.
// A plan whose sidecar does not match, whose bytes do not hash to what the sidecar says, or that
// the caller reports it cannot deserialize (invalidate()) is rebuilt, not trusted; and plans of
// another TensorRT build that no process has loaded for UNUSED_DAYS are removed when a new one is
// built: users never have to clear the cache by hand.
//
// The lock is a file created with O_EXCL ('wx') holding pid, the process's start time, hostname,
// time and a random token. A lock is stale when its pid no longer runs on this host (or now runs
// another process: a restarted container reuses pids), or when its mtime (refreshed by the holder
// while it builds) is older than staleMs: then it is taken over. Waiting polls with
// backoff and honours an AbortSignal. proper-lockfile is not used: it judges staleness by mtime
// alone (a crashed builder would block the others for the whole stale timeout, which must be long
// because builds take minutes), its waiting cannot be aborted, and it brings three dependencies
// for what is ~200 lines here.
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, readFileSync, readlinkSync, unlinkSync } from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { packageRoot } from './native'
import type { EngineProgress, Precision } from './types'

/** Bump when the addon's engine layout (bindings, plugins, input/output handling) changes. */
export const ENGINE_SCHEMA_VERSION = 1

/** Plans of another TensorRT build not loaded for this long are removed after a build (removeUnused). */
export const UNUSED_DAYS = 30

/** Everything a plan depends on. All of it but onnxName goes into the key. */
export interface EngineKeyParts {
  /** The ONNX file's name, for the readable plan file name only (same bytes: same engine). */
  onnxName: string
  /** SHA-256 (hex) of the ONNX file's bytes: hashFile(). */
  onnxSha256: string
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

/** What a plan's sidecar .json holds. */
export interface EngineSidecar {
  key: string
  parts: EngineKeyParts
  planBytes: number
  planSha256: string
  createdAt: string
  builtBy: { pid: number; hostname: string }
}

const PRECISIONS: readonly Precision[] = ['fp16', 'bf16', 'fp32']

/** A sidecar's content, or undefined when it cannot be read or parsed (then it counts for nothing). */
async function readSidecar(file: string): Promise<EngineSidecar | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as EngineSidecar
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------
// Keys and names

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
function keyedParts(parts: EngineKeyParts): Omit<EngineKeyParts, 'onnxName'> {
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
  const base = path.basename(parts.onnxName).replace(/\.onnx$/i, '').replace(/\.(fp16|bf16|fp32)$/i, '').replace(/[^A-Za-z0-9._-]+/g, '-') || 'model'
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

/** SHA-256 (hex) of a file, read as a stream (1 MiB chunks): models of any size, little memory. */
export async function hashFile(file: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20, signal })) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** The key parts for an ONNX file: hashes it, fills OS, arch and the schema version. */
export async function engineKeyParts(input: Omit<EngineKeyParts, 'onnxName' | 'onnxSha256' | 'os' | 'arch' | 'schemaVersion'> & { onnx: string; signal?: AbortSignal }): Promise<EngineKeyParts> {
  const { onnx, signal, ...rest } = input
  const parts: EngineKeyParts = {
    ...rest,
    onnxName: path.basename(onnx),
    onnxSha256: await hashFile(onnx, signal),
    os: process.platform,
    arch: process.arch,
    schemaVersion: ENGINE_SCHEMA_VERSION,
  }
  checkKeyParts(parts)
  return parts
}

// ---------------------------------------------------------------------------------------------
// Aborting

/** Rejection of a call whose AbortSignal fired (name 'AbortError', code 'ABORT_ERR', like Node's own). */
export class AbortError extends Error {
  readonly code = 'ABORT_ERR'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'AbortError'
  }
}

function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new AbortError(`aborted ${what}`, { cause: signal.reason })
}

/** Settles like `promise`, or rejects with an AbortError as soon as `signal` fires. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (!signal) return promise
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new AbortError(`aborted ${what}`, { cause: signal.reason }))
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}

function sleep(ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  return abortable(new Promise((resolve) => setTimeout(resolve, ms)), signal, what)
}

// ---------------------------------------------------------------------------------------------
// Atomic writes

async function fsyncDir(dir: string): Promise<void> {
  // Makes the rename durable on POSIX; Windows cannot open a folder this way (and needs nothing).
  let fh: fs.FileHandle | undefined
  try {
    fh = await fs.open(dir, 'r')
    await fh.sync()
  } catch {
    // EISDIR / EPERM / EINVAL on platforms and filesystems that do not support it.
  } finally {
    await fh?.close().catch(() => {})
  }
}

function tempPrefix(file: string): string {
  return `.${path.basename(file)}.tmp-`
}

/**
 * Writes `file` so that readers see either the old file or the whole new one, never a part: the
 * data goes to a temp file in the same folder, is fsynced, then renamed over `file` (and the folder
 * fsynced). On any failure, the data source's included, the temp file is removed and `file` is
 * untouched. `data` may be an (async) iterable of chunks, for data made on the fly.
 */
export async function writeFileAtomic(file: string, data: Uint8Array | string | Iterable<Uint8Array> | AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<void> {
  const dir = path.dirname(file)
  const tmp = path.join(dir, `${tempPrefix(file)}${process.pid}-${randomBytes(4).toString('hex')}`)
  let fh: fs.FileHandle | undefined = await fs.open(tmp, 'wx', 0o644)
  try {
    if (typeof data === 'string' || data instanceof Uint8Array) {
      await fh.writeFile(data)
    } else {
      for await (const chunk of data) {
        throwIfAborted(signal, `writing ${file}`)
        await fh.writeFile(chunk)
      }
    }
    throwIfAborted(signal, `writing ${file}`)
    await fh.sync()
    await fh.close()
    fh = undefined
    await fs.rename(tmp, file)
  } catch (e) {
    await fh?.close().catch(() => {})
    await fs.rm(tmp, { force: true }).catch(() => {})
    throw e
  }
  await fsyncDir(dir)
}

// ---------------------------------------------------------------------------------------------
// The cross-process lock

/** What a lock file holds. */
export interface LockInfo {
  pid: number
  hostname: string
  /** When the holder process started, where the OS tells (Linux: /proc/<pid>/stat's starttime): a reused pid is told apart. */
  pidStart?: string
  /** The holder's pid namespace (Linux: /proc/self/ns/pid): containers that share a host name and a cache folder may not. */
  pidNamespace?: string
  createdAt: string
  token: string
  /** What is being built (the plan's file name). */
  what?: string
}

/** A process's start time in clock ticks since boot (Linux), else undefined. */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after "(comm)": state is the 3rd field, starttime the 22nd.
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
    return start && /^\d+$/.test(start) ? start : undefined
  } catch {
    return undefined
  }
}

let ownPidNamespace: string | null | undefined
/** This process's pid namespace (Linux), else undefined. */
function pidNamespace(): string | undefined {
  if (ownPidNamespace === undefined) {
    try {
      ownPidNamespace = readlinkSync('/proc/self/ns/pid')
    } catch {
      ownPidNamespace = null
    }
  }
  return ownPidNamespace ?? undefined
}

/** Whether `pid` runs on this host (EPERM: it runs, as another user). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

interface LockState {
  raw: string
  info: LockInfo | undefined
  ino: number
  mtimeMs: number
}

function parseLock(raw: string): LockInfo | undefined {
  try {
    const v = JSON.parse(raw) as LockInfo
    return Number.isInteger(v.pid) && typeof v.hostname === 'string' ? v : undefined
  } catch {
    return undefined // being written (created, not yet filled), or garbage: judged by age alone
  }
}

async function inspectLock(file: string): Promise<LockState | undefined> {
  try {
    const [st, raw] = await Promise.all([fs.stat(file), fs.readFile(file, 'utf8')])
    return { raw, info: parseLock(raw), ino: st.ino, mtimeMs: st.mtimeMs }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw e
  }
}

function describeHolder(info: LockInfo | undefined): string {
  return info ? `pid ${info.pid} on ${info.hostname === os.hostname() ? 'this host' : `host ${info.hostname}`}` : 'another process'
}

/** Why a lock is stale, or undefined while its holder may still be at work. */
function staleReason(state: LockState, staleMs: number, now = Date.now()): string | undefined {
  const { info } = state
  // Pids say something only within one pid namespace: a holder in another container with the
  // same host name is judged by the lock's age alone.
  if (info && info.hostname === os.hostname() && (info.pidNamespace === undefined || info.pidNamespace === pidNamespace())) {
    if (!pidAlive(info.pid)) return `its holder, pid ${info.pid} on this host, is no longer running`
    // A restarted container often gives the new process the old one's pid, this one's included
    // (the start time tells them apart; worker threads share their process's).
    const started = info.pidStart === undefined ? undefined : processStart(info.pid)
    if (started !== undefined && started !== info.pidStart) return `its holder, pid ${info.pid} on this host, is no longer running (that pid now belongs to another process)`
  }
  const age = now - state.mtimeMs
  if (age > staleMs) return `${describeHolder(info)} has not refreshed it for ${Math.round(age / 1000)} s`
  return undefined
}

/** Locks this process holds, removed if it exits while holding them (a crash leaves them to the pid check). */
const heldLocks = new Map<string, string>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const [file, token] of heldLocks) {
      try {
        if (parseLock(readFileSync(file, 'utf8'))?.token === token) unlinkSync(file)
      } catch {
        // gone already
      }
    }
  })
}

export interface LockOptions {
  /** A lock not refreshed for this long is taken over (default 10 minutes). */
  staleMs?: number
  /** How often the holder refreshes the lock's mtime (default min(10 s, staleMs / 4)). */
  refreshMs?: number
  /** The longest pause between two tries while waiting (default 1 s; it starts at 25 ms). */
  maxPollMs?: number
  signal?: AbortSignal
  /** Written into the lock, for messages. */
  what?: string
  /** Called once when the lock is held by someone else and this caller starts waiting. */
  onWait?: (holder: LockInfo | undefined) => void
  /** Called when a stale lock is taken over. */
  onStale?: (reason: string) => void
  /** Called when the held lock was removed or replaced by someone else (the holder goes on). */
  onLost?: (reason: string) => void
}

/** A held lock: keeps its mtime fresh until release(). */
export class FileLock {
  private timer: NodeJS.Timeout | undefined
  private lost = false
  private released = false

  private constructor(readonly file: string, readonly token: string, private readonly ino: number, refreshMs: number, private readonly onLost?: (why: string) => void) {
    heldLocks.set(file, token)
    installExitHook()
    this.timer = setInterval(() => { void this.refresh() }, refreshMs)
    this.timer.unref()
  }

  /** Tries once to create `file` with O_EXCL. */
  private static async tryCreate(file: string, refreshMs: number, what: string | undefined, onLost?: (why: string) => void): Promise<FileLock | undefined> {
    const info: LockInfo = { pid: process.pid, hostname: os.hostname(), pidStart: processStart(process.pid), pidNamespace: pidNamespace(), createdAt: new Date().toISOString(), token: randomBytes(12).toString('hex'), what }
    let fh: fs.FileHandle
    try {
      fh = await fs.open(file, 'wx', 0o644)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return undefined
      throw e
    }
    try {
      await fh.writeFile(JSON.stringify(info))
      const { ino } = await fh.stat()
      return new FileLock(file, info.token, ino, refreshMs, onLost)
    } catch (e) {
      await fs.rm(file, { force: true }).catch(() => {})
      throw e
    } finally {
      await fh.close().catch(() => {})
    }
  }

  /**
   * Acquires the lock `file`: creates it, or waits (polling with backoff) until its holder
   * releases it or it turns stale, then takes it. Rejects with an AbortError when `signal` fires.
   */
  static async acquire(file: string, options: LockOptions = {}): Promise<FileLock> {
    const staleMs = options.staleMs ?? 10 * 60_000
    const refreshMs = options.refreshMs ?? Math.max(10, Math.min(10_000, staleMs / 4))
    const maxPollMs = options.maxPollMs ?? 1000
    const { signal } = options
    let delay = 25
    let waiting = false
    for (;;) {
      throwIfAborted(signal, `waiting for the lock ${file}`)
      const lock = await FileLock.tryCreate(file, refreshMs, options.what, options.onLost)
      if (lock) return lock
      const state = await inspectLock(file)
      if (!state) continue // released between the two calls: try again at once
      const stale = staleReason(state, staleMs)
      if (stale !== undefined) {
        if (await FileLock.takeOver(file, state)) options.onStale?.(`took over the stale lock ${file}: ${stale}`)
        continue
      }
      if (!waiting) {
        waiting = true
        options.onWait?.(state.info)
      }
      await sleep(delay * (0.75 + Math.random() / 2), signal, `waiting for ${describeHolder(state.info)} to release ${file}`)
      delay = Math.min(delay * 1.5, maxPollMs)
    }
  }

  /**
   * Removes a lock judged stale, unless it changed since it was judged (another waiter took it
   * over and made a fresh one, or its holder refreshed it): it is first renamed aside, which only
   * one process can do, then checked; a fresh lock moved by mistake is linked back.
   */
  private static async takeOver(file: string, judged: LockState): Promise<boolean> {
    const aside = `${file}.stale-${process.pid}-${randomBytes(4).toString('hex')}`
    try {
      await fs.rename(file, aside)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw e
    }
    try {
      const [st, raw] = await Promise.all([fs.stat(aside), fs.readFile(aside, 'utf8')])
      if (st.ino === judged.ino && st.mtimeMs === judged.mtimeMs && raw === judged.raw) return true
      await fs.link(aside, file).catch(() => {}) // not the lock we judged: put it back (fails if a newer one exists)
      return false
    } finally {
      await fs.rm(aside, { force: true }).catch(() => {})
    }
  }

  private async refresh(): Promise<void> {
    if (this.lost || this.released) return
    try {
      const st = await fs.stat(this.file)
      if (st.ino !== this.ino) throw Object.assign(new Error('replaced'), { code: 'EREPLACED' })
      const now = new Date()
      await fs.utimes(this.file, now, now)
    } catch (e) {
      if (this.released) return // released while this refresh ran: nothing was lost
      this.lost = true
      try {
        this.onLost?.(`lost the lock ${this.file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); going on: the write is atomic`)
      } catch {
        // a throwing logger must not become an unhandled rejection of this timer's refresh
      }
    }
  }

  /** Stops refreshing and removes the lock file if it is still this lock's. */
  async release(): Promise<void> {
    this.released = true
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    heldLocks.delete(this.file)
    try {
      const st = await fs.stat(this.file)
      if (st.ino !== this.ino || parseLock(await fs.readFile(this.file, 'utf8'))?.token !== this.token) return
      await fs.rm(this.file, { force: true })
    } catch {
      // gone already
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The cache

export interface EngineCacheOptions {
  /** Where plans live (default: the package's engines/ folder). */
  engineDir?: string
  /** Cache notes (build, wait, rebuild and why); default: one line on stderr. Also sent to onProgress. */
  log?: (message: string) => void
  /** Lock tuning; see LockOptions. */
  staleMs?: number
  refreshMs?: number
  maxPollMs?: number
}

export interface GetOrBuildOptions {
  signal?: AbortSignal
  /** Build progress (TensorRT's phases and steps) and the cache's notes ({type: 'message'}). */
  onProgress?: (event: EngineProgress) => void
}

/**
 * Builds the plan. Called at most once per key across processes sharing the folder (while the
 * others wait); it must not block the event loop (the lock is refreshed from it). `signal` fires
 * when the caller gives up: stop early if you can (the result is discarded either way).
 */
export type EngineBuilder = (onProgress: (event: EngineProgress) => void, signal?: AbortSignal) => Promise<Uint8Array>

interface Inflight {
  promise: Promise<Uint8Array>
  listeners: Set<(event: EngineProgress) => void>
}

/** In-process builds under way, by folder and key: callers in one process share one build. */
const inflight = new Map<string, Inflight>()

interface PlanFiles {
  plan: string
  sidecar: string
  lock: string
}

export class EngineCache {
  readonly dir: string
  private readonly logSink: (message: string) => void
  private readonly lockOptions: Pick<LockOptions, 'staleMs' | 'refreshMs' | 'maxPollMs'>

  constructor(options: EngineCacheOptions = {}) {
    this.dir = path.resolve(options.engineDir ?? path.join(packageRoot(), 'engines'))
    this.logSink = options.log ?? ((m) => { process.stderr.write(`face-multitask: ${m}\n`) })
    this.lockOptions = { staleMs: options.staleMs, refreshMs: options.refreshMs, maxPollMs: options.maxPollMs }
  }

  /**
   * The plan, sidecar and lock files for a key, named after this ONNX file. The lock is named by
   * the key alone: the same bytes under another file name are the same engine, built once.
   */
  files(parts: EngineKeyParts, key = engineCacheKey(parts)): PlanFiles {
    const plan = path.join(this.dir, engineFileName(parts, key))
    const stem = plan.slice(0, -'.plan'.length)
    return { plan, sidecar: `${stem}.json`, lock: this.lockFile(key) }
  }

  private lockFile(key: string): string {
    return path.join(this.dir, `engine-${key.slice(0, 16)}.lock`)
  }

  /** The plan file the cache holds for `parts`: the one named after this ONNX, else one built under another name. */
  async planFile(parts: EngineKeyParts): Promise<string> {
    return (await this.locate(parts, engineCacheKey(parts))).plan
  }

  /** This name's files when its sidecar exists, else those of the same key under another name, else this name's. */
  private async locate(parts: EngineKeyParts, key: string): Promise<PlanFiles> {
    const own = this.files(parts, key)
    if (await fs.stat(own.sidecar).then(() => true, () => false)) return own
    return (await this.findByKey(key)) ?? own
  }

  /** The timing cache for this TensorRT build and GPU, beside the plans. */
  timingCachePath(parts: Pick<EngineKeyParts, 'tensorrt' | 'gpu'> & Partial<EngineKeyParts>): string {
    return timingCachePath(this.dir, parts)
  }

  /**
   * The plan for `parts`: read from the cache when its sidecar matches and its bytes are whole,
   * else built by `build` (once across processes: others wait, then read it) and stored atomically.
   */
  async getOrBuild(parts: EngineKeyParts, build: EngineBuilder, opts: GetOrBuildOptions = {}): Promise<Uint8Array> {
    const key = engineCacheKey(parts)
    const { signal, onProgress } = opts
    throwIfAborted(signal, 'before looking up the engine cache')
    const id = `${this.dir}\0${key}`
    for (;;) {
      const running = inflight.get(id)
      if (!running) break
      if (onProgress) running.listeners.add(onProgress)
      try {
        return await abortable(running.promise, signal, 'waiting for this process\'s build of the same engine')
      } catch (e) {
        // Our own signal, or a failed build: give up. The builder's signal: take over the build.
        if (signal?.aborted || (e as Error)?.name !== 'AbortError') throw e
      } finally {
        if (onProgress) running.listeners.delete(onProgress)
      }
    }
    const listeners = new Set<(event: EngineProgress) => void>()
    if (onProgress) listeners.add(onProgress)
    const emit = (event: EngineProgress) => {
      for (const l of listeners) {
        try {
          l(event)
        } catch {
          // a listener's bug must not break the build
        }
      }
    }
    const promise = this.loadOrBuild(parts, key, build, signal, emit)
    const entry: Inflight = { promise, listeners }
    inflight.set(id, entry)
    // A caller that gave up hears no more of a build that may go on until TensorRT's next step.
    const deafen = () => { if (onProgress) listeners.delete(onProgress) }
    signal?.addEventListener('abort', deafen, { once: true })
    try {
      return await promise
    } finally {
      signal?.removeEventListener('abort', deafen)
      if (inflight.get(id) === entry) inflight.delete(id)
    }
  }

  /**
   * Drops a cached plan the caller could not use (it failed to deserialize): says why, removes the
   * sidecar then the plan; the next getOrBuild() rebuilds it. With `refused` (the bytes that
   * failed), a plan rebuilt since by another process is kept rather than removed.
   */
  async invalidate(partsOrKey: EngineKeyParts | string, reason: string, onProgress?: (event: EngineProgress) => void, refused?: Uint8Array): Promise<void> {
    const found = typeof partsOrKey === 'string' ? await this.findByKey(partsOrKey) : await this.locate(partsOrKey, engineCacheKey(partsOrKey))
    if (!found) return
    const name = path.basename(found.plan)
    if (refused) {
      // Another process may have rebuilt it since these bytes were read: keep what it wrote.
      const sidecar = await readSidecar(found.sidecar)
      if (sidecar && sidecar.planSha256 !== createHash('sha256').update(refused).digest('hex')) {
        this.log(`${name}: ${reason}; it has been rebuilt since (another process?), so the new one is tried`, onProgress)
        return
      }
    }
    this.log(`${name}: ${reason}; removing it, it will be rebuilt`, onProgress)
    try {
      await fs.rm(found.sidecar, { force: true })
      await fs.rm(found.plan, { force: true })
    } catch (e) {
      throw new Error(`${name}: ${reason}; and it cannot be removed from "${this.dir}" (${(e as Error).message}): set options.engineDir to a writable folder`, { cause: e })
    }
  }

  private log(message: string, emit?: (event: EngineProgress) => void): void {
    this.logSink(message)
    emit?.({ type: 'message', message })
  }

  private async findByKey(key: string): Promise<PlanFiles | undefined> {
    const suffix = `.${key.slice(0, 12)}.json`
    for (const name of await fs.readdir(this.dir).catch(() => [] as string[])) {
      if (!name.endsWith(suffix)) continue
      const sidecar = path.join(this.dir, name)
      if ((await readSidecar(sidecar))?.key === key) {
        const stem = sidecar.slice(0, -'.json'.length)
        return { plan: `${stem}.plan`, sidecar, lock: this.lockFile(key) }
      }
    }
    return undefined
  }

  private async ensureDir(): Promise<void> {
    try {
      await fs.mkdir(this.dir, { recursive: true })
    } catch (e) {
      throw new Error(`cannot create the engine cache folder "${this.dir}": ${(e as Error).message} (set options.engineDir to a writable folder)`, { cause: e })
    }
  }

  /** The plan's bytes when the sidecar matches and the plan is whole; else undefined (and, with `why`, says why). */
  private async tryLoad(files: PlanFiles, parts: EngineKeyParts, key: string, why?: (m: string) => void): Promise<Uint8Array | undefined> {
    const name = path.basename(files.plan)
    let sidecarText: string
    try {
      sidecarText = await fs.readFile(files.sidecar, 'utf8')
    } catch {
      if (why && (await fs.stat(files.plan).then(() => true, () => false))) why(`${name} has no sidecar (an interrupted write?): rebuilding it`)
      return undefined
    }
    let sidecar: EngineSidecar
    try {
      sidecar = JSON.parse(sidecarText) as EngineSidecar
    } catch {
      why?.(`${name}: its sidecar ${path.basename(files.sidecar)} is not valid JSON: rebuilding it`)
      return undefined
    }
    if (sidecar.key !== key || canonicalJson(keyedParts(sidecar.parts ?? ({} as EngineKeyParts))) !== canonicalJson(keyedParts(parts))) {
      const theirs = (sidecar.parts ?? {}) as unknown as Record<string, unknown>
      const ours = keyedParts(parts) as unknown as Record<string, unknown>
      const differ = Object.keys(ours).filter((k) => canonicalJson(ours[k]) !== canonicalJson(theirs[k] ?? null))
      why?.(`${name}: its sidecar does not match this engine (${differ.length ? `${differ.join(', ')} differ` : 'key differs'}): rebuilding it`)
      return undefined
    }
    let bytes: Buffer
    try {
      bytes = await fs.readFile(files.plan)
    } catch {
      why?.(`${name}: the sidecar exists but the plan does not: rebuilding it`)
      return undefined
    }
    if (bytes.length !== sidecar.planBytes || createHash('sha256').update(bytes).digest('hex') !== sidecar.planSha256) {
      why?.(`${name}: the plan's bytes do not match its sidecar (${bytes.length} bytes, expected ${sidecar.planBytes}; corrupt or truncated): rebuilding it`)
      return undefined
    }
    // The sidecar's time says when the plan was last used: see removeUnused().
    const now = new Date()
    await fs.utimes(files.sidecar, now, now).catch(() => {})
    return bytes
  }

  /**
   * After a build: removes the plans of another TensorRT build or engine schema (which this
   * TensorRT cannot load: left by an upgrade, they would pile up) that no process has loaded for
   * UNUSED_DAYS (their sidecars' times, set at each load; another install sharing the folder keeps
   * its plans by using them). A plan removed and needed after all is rebuilt.
   */
  private async removeUnused(built: EngineKeyParts, keep: PlanFiles, say: (m: string) => void): Promise<void> {
    const before = Date.now() - UNUSED_DAYS * 86_400_000
    for (const name of await fs.readdir(this.dir).catch(() => [] as string[])) {
      if (!name.endsWith('.json')) continue
      const sidecar = path.join(this.dir, name)
      const plan = `${sidecar.slice(0, -'.json'.length)}.plan`
      if (sidecar === keep.sidecar) continue
      const st = await fs.stat(sidecar).catch(() => undefined)
      if (!st || st.mtimeMs >= before) continue
      const theirs = (await readSidecar(sidecar))?.parts
      if (!theirs || (canonicalJson(theirs.tensorrt ?? null) === canonicalJson(built.tensorrt) && theirs.schemaVersion === built.schemaVersion)) continue
      if (!(await fs.stat(plan).then((p) => p.isFile(), () => false))) continue
      await fs.rm(sidecar, { force: true }).catch(() => {})
      await fs.rm(plan, { force: true }).catch(() => {})
      say(`removed ${path.basename(plan)}: made by another TensorRT build (${theirs.tensorrt?.build ?? '?'}) and not loaded for ${UNUSED_DAYS} days`)
    }
  }

  /** Removes temp files a crashed writer left for these files (called with the lock held). */
  private async removeLeftovers(files: PlanFiles): Promise<void> {
    const prefixes = [tempPrefix(files.plan), tempPrefix(files.sidecar)]
    const staleMs = this.lockOptions.staleMs ?? 10 * 60_000
    for (const name of await fs.readdir(this.dir).catch(() => [] as string[])) {
      const prefix = prefixes.find((p) => name.startsWith(p))
      if (!prefix) continue
      const file = path.join(this.dir, name)
      const pid = Number(name.slice(prefix.length).split('-')[0])
      const st = await fs.stat(file).catch(() => undefined)
      if (st && (!pidAlive(pid) || Date.now() - st.mtimeMs > staleMs)) await fs.rm(file, { force: true }).catch(() => {})
    }
  }

  private async loadOrBuild(parts: EngineKeyParts, key: string, build: EngineBuilder, signal: AbortSignal | undefined, emit: (event: EngineProgress) => void): Promise<Uint8Array> {
    try {
      return await this.loadOrBuildIn(parts, key, build, signal, emit)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
        throw new Error(`the engine cache folder "${this.dir}" is not writable (${(e as Error).message}); set options.engineDir to a writable folder`, { cause: e })
      }
      throw e
    }
  }

  private async loadOrBuildIn(parts: EngineKeyParts, key: string, build: EngineBuilder, signal: AbortSignal | undefined, emit: (event: EngineProgress) => void): Promise<Uint8Array> {
    const files = this.files(parts, key)
    const name = path.basename(files.plan)
    const say = (m: string) => this.log(m, emit)
    await this.ensureDir()
    const cached = await this.tryLoad(await this.locate(parts, key), parts, key, say)
    if (cached) return cached

    const lock = await FileLock.acquire(files.lock, {
      ...this.lockOptions,
      signal,
      what: name,
      onWait: (holder) => say(`waiting for ${describeHolder(holder)}, which is building ${name}${holder ? ` (since ${holder.createdAt})` : ''}`),
      onStale: say,
      onLost: say,
    })
    let handedOff = false
    try {
      // Whoever held the lock may just have written it (under its own ONNX file's name, maybe).
      const ready = await this.tryLoad(await this.locate(parts, key), parts, key)
      if (ready) {
        say(`${name}: built by another process; loaded it`)
        return ready
      }
      await this.removeLeftovers(files)
      say(`building the TensorRT engine ${name} in ${this.dir}: this takes minutes the first time; later loads read it from the cache`)
      const started = Date.now()
      const building = Promise.resolve().then(() => build(emit, signal))
      building.catch(() => {}) // when abandoned on abort, its failure is handled by finishAbandoned
      let bytes: Uint8Array
      try {
        bytes = await abortable(building, signal, `building ${name}`)
        throwIfAborted(signal, `building ${name}`)
      } catch (e) {
        if (signal?.aborted) {
          handedOff = true
          void this.finishAbandoned(building, files, parts, key, lock)
        }
        throw e
      }
      await this.store(files, parts, key, bytes)
      say(`built ${name} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
      await this.removeUnused(parts, files, say)
      return bytes
    } finally {
      if (!handedOff) await lock.release()
    }
  }

  /**
   * An aborted build goes on until the builder notices (TensorRT at its next progress step). Until
   * then the lock stays held, so no second build starts beside it on the same GPU; and a plan it
   * finished anyway is kept, not thrown away.
   */
  private async finishAbandoned(building: Promise<Uint8Array>, files: PlanFiles, parts: EngineKeyParts, key: string, lock: FileLock): Promise<void> {
    try {
      const bytes = await building
      await this.store(files, parts, key, bytes)
      this.log(`${path.basename(files.plan)}: the cancelled build had already finished; kept it in the cache`)
    } catch {
      // cancelled, as asked, or failed: nothing to keep
    } finally {
      await lock.release().catch(() => {})
    }
  }

  /** Writes a built plan and then its sidecar (which makes the plan count), each atomically. */
  private async store(files: PlanFiles, parts: EngineKeyParts, key: string, bytes: Uint8Array): Promise<void> {
    const name = path.basename(files.plan)
    if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw new TypeError(`the engine build for ${name} returned no bytes`)
    await writeFileAtomic(files.plan, bytes)
    const sidecar: EngineSidecar = {
      key,
      parts,
      planBytes: bytes.length,
      planSha256: createHash('sha256').update(bytes).digest('hex'),
      createdAt: new Date().toISOString(),
      builtBy: { pid: process.pid, hostname: os.hostname() },
    }
    await writeFileAtomic(files.sidecar, `${JSON.stringify(sidecar, null, 2)}\n`)
  }
}
