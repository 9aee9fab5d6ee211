// The on-disk cache of built TensorRT plans (serialized engines) and timing caches.
//
// A plan is only valid for the exact TensorRT build, the GPU, the ONNX bytes and the build
// settings it was made with, so its key is a SHA-256 over all of them (EngineKeyParts). Plans are
// written atomically (temp file in the same folder, fsync, rename, then the sidecar .json that
// holds the full key), under a cross-process lock file, so two processes asking for the same
// engine never corrupt or duplicate it: one builds, the other waits and loads what it wrote.
// A plan whose sidecar does not match, whose bytes do not hash to what the sidecar says, or that
// the caller reports it cannot deserialize (invalidate()) is rebuilt, not trusted. When a new plan
// is built, plans of another TensorRT build that no process has loaded for UNUSED_DAYS (left by an
// upgrade) are removed, and so are a day-old temp file or plan without its sidecar (left by a
// crash). Plans of the TensorRT in use stay until removed by hand (`face-multitask doctor` lists
// the folder).
//
// The key is in key.ts, the lock in file-lock.ts, the atomic writes in atomic-write.ts.
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { notWritable } from '../describe'
import { packageRoot } from '../native'
import type { EngineProgress } from '../types'
import { AbortError, abortable, reasonOf, throwIfAborted } from './abort'
import { tempPrefix, writeFileAtomic } from './atomic-write'
import { describeHolder, FileLock, type LockOptions, pidAlive, removeIfSame } from './file-lock'
import { canonicalJson, type EngineKeyParts, engineCacheKey, engineFileName, hashBytes, keyedParts, timingCachePath } from './key'

/** Plans of another TensorRT build not loaded for this long are removed after a build (removeUnused). */
export const UNUSED_DAYS = 30
/** A temp file or a plan without its sidecar this old is a crash's leftover (no write takes a day). */
const DEBRIS_MS = 86_400_000
/**
 * A temp file unwritten this long, whose writer's pid is not alive here, was abandoned: well past
 * a write's seconds and NFS's attribute caching (up to a minute by default).
 */
const LEFTOVER_QUIET_MS = 10 * 60_000

/** What a plan's sidecar .json holds. */
export interface EngineSidecar {
  key: string
  parts: EngineKeyParts
  planBytes: number
  planSha256: string
  createdAt: string
  builtBy: { pid: number; hostname: string }
}

/** "45 s", "3 min": how long a wait has lasted, for notes. */
function duration(ms: number): string {
  return ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`
}

/** A sidecar's text as one: a JSON object, else undefined (null, a number, an array count as none). */
function parseSidecar(text: string): EngineSidecar | undefined {
  try {
    const v: unknown = JSON.parse(text)
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as EngineSidecar) : undefined
  } catch {
    return undefined
  }
}

/** A sidecar's content, or undefined when it cannot be read or parsed (then it counts for nothing). */
async function readSidecar(file: string): Promise<EngineSidecar | undefined> {
  return parseSidecar(await fs.readFile(file, 'utf8').catch(() => ''))
}

export interface EngineCacheOptions {
  /** Where plans live (default: the package's engines/ folder). */
  engineDir?: string
  /** Cache notes (build, wait, rebuild and why); default: one line on stderr. Also sent to onProgress. */
  log?: (message: string) => void
  /** Lock tuning; see LockOptions. */
  staleMs?: number
  refreshMs?: number
  maxPollMs?: number
  waitNoteMs?: number
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

export interface InvalidateOptions {
  /** Where the note goes besides the log ({type: 'message'}). */
  onProgress?: (event: EngineProgress) => void
  /** The plan's bytes that failed: a plan rebuilt since (other bytes) is kept. */
  refused?: Uint8Array
  /** Stops waiting for the lock (another process building the same plan). */
  signal?: AbortSignal
}

interface Inflight {
  promise: Promise<Uint8Array>
  listeners: Set<(event: EngineProgress) => void>
  /**
   * Takes a caller into the build: it is cancelled only once every caller in it has aborted.
   * Returns what the caller calls once it stops waiting, which stops listening to its signal.
   */
  join(signal: AbortSignal | undefined): () => void
}

/**
 * The signal a shared build runs under: it fires once every caller that joined has aborted; never
 * while one without a signal is in. One caller's timeout must not throw away minutes of building
 * that the others still wait for.
 */
function sharedSignal(): { signal: AbortSignal; join(signal: AbortSignal | undefined): () => void } {
  const controller = new AbortController()
  let live = 0
  let pinned = false
  const stay = () => {}
  return {
    signal: controller.signal,
    join(signal) {
      if (!signal) {
        pinned = true
        return stay
      }
      if (signal.aborted) return stay
      live++
      const onAbort = () => {
        if (--live === 0 && !pinned) controller.abort(reasonOf(signal))
      }
      signal.addEventListener('abort', onAbort, { once: true })
      // A caller stops waiting once the build has settled or its own signal has fired: the listener
      // goes then, or a signal given to every load (a service's shutdown signal) would gather one
      // per load, each keeping its build's controller, until it fires.
      return () => {
        try {
          signal.removeEventListener('abort', onAbort)
        } catch {
          // a look-alike signal's: nothing more to do
        }
      }
    },
  }
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
  private readonly lockOptions: Pick<LockOptions, 'staleMs' | 'refreshMs' | 'maxPollMs' | 'waitNoteMs'>

  constructor(options: EngineCacheOptions = {}) {
    this.dir = path.resolve(options.engineDir ?? path.join(packageRoot(), 'engines'))
    this.logSink = options.log ?? ((m) => { process.stderr.write(`face-multitask: ${m}\n`) })
    this.lockOptions = { staleMs: options.staleMs, refreshMs: options.refreshMs, maxPollMs: options.maxPollMs, waitNoteMs: options.waitNoteMs }
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

  /** The plan file the cache holds for `parts`: the one named after this ONNX, else one built under
   * another name; undefined when none is stored (a plan built that could not be kept). */
  async planFile(parts: EngineKeyParts): Promise<string | undefined> {
    const { plan, sidecar } = await this.locate(parts, engineCacheKey(parts))
    const stored = await Promise.all([plan, sidecar].map((f) => fs.stat(f).then((s) => s.isFile(), () => false)))
    return stored.every(Boolean) ? plan : undefined
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
      const leave = running.join(signal)
      try {
        return await abortable(running.promise, signal, 'waiting for this process\'s build of the same engine')
      } catch (e) {
        // Our own signal, or a failed build: give up. A build every caller in it had abandoned
        // (cancelled before this one joined): take over the build.
        if (signal?.aborted || (e as Error)?.name !== 'AbortError') throw e
      } finally {
        leave()
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
    const shared = sharedSignal()
    const leave = shared.join(signal)
    const promise = this.loadOrBuild(parts, key, build, shared.signal, emit)
    const entry: Inflight = { promise, listeners, join: shared.join }
    inflight.set(id, entry)
    // Settled, the build is gone, whichever caller is still waiting (this one may have aborted).
    promise.then(() => {}, () => {}).finally(() => { if (inflight.get(id) === entry) inflight.delete(id) })
    // A caller that gave up hears no more of a build that may go on for the others, or until TensorRT's next step.
    const deafen = () => { if (onProgress) listeners.delete(onProgress) }
    signal?.addEventListener('abort', deafen, { once: true })
    try {
      return await abortable(promise, signal, 'waiting for the engine build, which goes on for the other callers in this process')
    } catch (e) {
      if (!(signal?.aborted && shared.signal.aborted)) throw e  // the build's failure, or others still wait for it
      // Every caller gone: the build's own AbortError (at once) says where it stopped, waiting for
      // another process's lock or building; a plan done just before is in the cache.
      throw await promise.then(() => new AbortError('aborted as the engine was ready (it is kept in the cache)', { cause: reasonOf(signal) }), (stopped: unknown) => stopped)
    } finally {
      leave()
      signal?.removeEventListener('abort', deafen)
    }
  }

  /**
   * Drops a cached plan the caller could not use (it failed to deserialize): says why, removes the
   * sidecar then the plan; the next getOrBuild() rebuilds it. With `refused` (the bytes that
   * failed), a plan rebuilt since by another process is kept rather than removed. Done under the
   * plan's lock, so that a plan another process is storing meanwhile is not removed as it lands
   * (this waits for a build under way, which `signal` can abandon).
   */
  async invalidate(parts: EngineKeyParts, reason: string, opts: InvalidateOptions = {}): Promise<void> {
    const { onProgress, refused, signal } = opts
    const key = engineCacheKey(parts)
    const first = await this.locate(parts, key)
    const name = path.basename(first.plan)
    const say = (m: string) => this.log(m, onProgress)
    const cannotRemove = (e: unknown) => new Error(`${name}: ${reason}; and it cannot be removed from "${this.dir}" (${(e as Error).message}): set options.engineDir to a writable folder`, { cause: e })
    let lock: FileLock | undefined
    try {
      lock = await this.acquire(first, name, signal, say)
    } catch (e) {
      if ((e as Error).name === 'AbortError') throw e
      // No lock file (a full disk, a folder this process may only read): checked and removed
      // unlocked, as best it can be; a removal that is needed and fails says so below.
    }
    try {
      const found = await this.locate(parts, key)
      if (refused) {
        // Another process may have rebuilt it since these bytes were read: keep what it wrote. No
        // sidecar: another process removed it (and may be storing a new plan): nothing to do here.
        const sidecar = await readSidecar(found.sidecar)
        if (!sidecar) return
        if (sidecar.planSha256 !== (await hashBytes(refused))) {
          say(`${name}: ${reason}; it has been rebuilt since (another process?), so the new one is tried`)
          return
        }
      }
      say(`${name}: ${reason}; removing it, it will be rebuilt`)
      try {
        await fs.rm(found.sidecar, { force: true })
        await fs.rm(found.plan, { force: true })
      } catch (e) {
        throw cannotRemove(e)
      }
    } finally {
      await lock?.release()
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

  /** Makes the folder; false where this process may not (then it builds without the cache). */
  private async ensureDir(): Promise<boolean> {
    try {
      await fs.mkdir(this.dir, { recursive: true })
      return true
    } catch (e) {
      if (notWritable(e)) return false
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
    const sidecar = parseSidecar(sidecarText)
    if (!sidecar) {
      why?.(`${name}: its sidecar ${path.basename(files.sidecar)} is not a JSON object: rebuilding it`)
      return undefined
    }
    if (sidecar.key !== key || canonicalJson(keyedParts(sidecar.parts ?? ({} as EngineKeyParts))) !== canonicalJson(keyedParts(parts))) {
      const theirs = (sidecar.parts ?? {}) as unknown as Record<string, unknown>
      const ours = keyedParts(parts) as unknown as Record<string, unknown>
      const differ = Object.keys(ours).filter((k) => canonicalJson(ours[k]) !== canonicalJson(theirs[k] ?? null))
      why?.(`${name}: its sidecar does not match this engine (${differ.length ? `${differ.join(', ')} differ` : 'key differs'}): rebuilding it`)
      return undefined
    }
    // The sidecar's time says when the plan was last used (see removeUnused()): set before the
    // read, so a process pruning unused plans meanwhile sees this one in use.
    const now = new Date()
    await fs.utimes(files.sidecar, now, now).catch(() => {})
    let bytes: Buffer
    try {
      bytes = await fs.readFile(files.plan)
    } catch {
      why?.(`${name}: the sidecar exists but the plan does not: rebuilding it`)
      return undefined
    }
    if (bytes.length !== sidecar.planBytes || (await hashBytes(bytes)) !== sidecar.planSha256) {
      why?.(`${name}: the plan's bytes do not match its sidecar (${bytes.length} bytes, expected ${sidecar.planBytes}; corrupt or truncated): rebuilding it`)
      return undefined
    }
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
      // Loaded since it was judged (a loader stamps the sidecar before reading the plan): kept.
      if ((await fs.stat(sidecar).catch(() => undefined))?.mtimeMs !== st.mtimeMs) continue
      await fs.rm(sidecar, { force: true }).catch(() => {})
      await fs.rm(plan, { force: true }).catch(() => {})
      say(`removed ${path.basename(plan)}: made by another TensorRT build (${theirs.tensorrt?.build ?? '?'}) and not loaded for ${UNUSED_DAYS} days`)
    }
    await this.removeDebris(say)
  }

  /**
   * Removes what crashed processes left, a day on: temp files, plans whose sidecar was never
   * written, and engine locks (a live holder refreshes its lock every few seconds; a killed one's
   * stays until the same engine is loaded again, which may be never).
   */
  private async removeDebris(say: (m: string) => void): Promise<void> {
    const names = await fs.readdir(this.dir).catch(() => [] as string[])
    const present = new Set(names)
    for (const name of names) {
      // writeFileAtomic's temp files, and the timing cache's (native/tensorrt/builder.cc).
      const temp = /^\..+\.tmp-\d+-[0-9a-f]+$/.test(name) || /\.cache\.tmp\.\d+(\.\d+)?$/.test(name)
      const orphan = name.endsWith('.plan') && !present.has(`${name.slice(0, -'.plan'.length)}.json`)
      // Not the timing cache's lock (timing.*.cache.lock): flock()ed, never removed (file_lock.h).
      const lock = /^engine-[0-9a-f]{16}\.lock(\.takeover)?$/.test(name)
      if (!temp && !orphan && !lock) continue
      const file = path.join(this.dir, name)
      let removed: boolean
      if (name.endsWith('.lock')) {
        // Under the takeover guard: a waiter taking it over meanwhile keeps its fresh one.
        removed = await FileLock.removeAbandoned(file, DEBRIS_MS)
      } else {
        const st = await fs.stat(file).catch(() => undefined)
        if (!st?.isFile() || Date.now() - st.mtimeMs < DEBRIS_MS) continue
        // The one judged, not a waiter's fresh takeover guard made in its place meanwhile.
        removed = await removeIfSame(file, { ino: st.ino, mtimeMs: st.mtimeMs }).catch(() => false)
      }
      if (!removed) continue
      const what = temp ? 'an unfinished write' : orphan ? 'a plan without its sidecar' : 'a lock never released'
      say(`removed ${name}: ${what} left by a process that stopped (over a day old)`)
    }
  }

  /**
   * Removes temp files a crashed writer left for these files (called with the lock held). A live
   * writer's is kept (one that lost the lock still finishes its write): its pid is alive here or,
   * for a writer on another host sharing the folder (whose pid means nothing here), the file was
   * written in the last ten minutes. removeDebris() sweeps any left a day on.
   */
  private async removeLeftovers(files: PlanFiles): Promise<void> {
    const prefixes = [tempPrefix(files.plan), tempPrefix(files.sidecar)]
    for (const name of await fs.readdir(this.dir).catch(() => [] as string[])) {
      const prefix = prefixes.find((p) => name.startsWith(p))
      if (!prefix) continue
      const pid = Number(name.slice(prefix.length).split('-')[0])
      if (pidAlive(pid)) continue
      const file = path.join(this.dir, name)
      const st = await fs.stat(file).catch(() => undefined)
      // A time ahead of this clock (another host's) counts as recent.
      if (st && Date.now() - st.mtimeMs >= LEFTOVER_QUIET_MS) await fs.rm(file, { force: true }).catch(() => {})
    }
  }

  private async loadOrBuild(parts: EngineKeyParts, key: string, build: EngineBuilder, signal: AbortSignal | undefined, emit: (event: EngineProgress) => void): Promise<Uint8Array> {
    try {
      return await this.loadOrBuildIn(parts, key, build, signal, emit)
    } catch (e) {
      if (notWritable(e)) {
        throw new Error(`the engine cache folder "${this.dir}" is not writable (${(e as Error).message}); set options.engineDir to a writable folder`, { cause: e })
      }
      throw e
    }
  }

  /** Takes the plan's lock, saying for whom it waits meanwhile. */
  private acquire(files: PlanFiles, name: string, signal: AbortSignal | undefined, say: (m: string) => void): Promise<FileLock> {
    return FileLock.acquire(files.lock, {
      ...this.lockOptions,
      signal,
      what: name,
      onWait: (holder, waitedMs) => say(waitedMs === 0
        ? `waiting for ${describeHolder(holder)}, which is building ${name}${holder ? ` (since ${holder.createdAt})` : ''}`
        : `still waiting for ${describeHolder(holder)} to finish building ${name} (${duration(waitedMs)} so far; if it dies, this process builds it)`),
      onStale: say,
      onLost: say,
    })
  }

  private async loadOrBuildIn(parts: EngineKeyParts, key: string, build: EngineBuilder, signal: AbortSignal | undefined, emit: (event: EngineProgress) => void): Promise<Uint8Array> {
    const files = this.files(parts, key)
    const name = path.basename(files.plan)
    const say = (m: string) => this.log(m, emit)
    const made = await this.ensureDir()
    const cached = made ? await this.tryLoad(await this.locate(parts, key), parts, key, say) : undefined
    if (cached) return cached
    // A full disk, or a folder this process may not write to (the package's own, installed by
    // root), stops the lock and the plan's file, not the build: this process still uses it,
    // rather than a backend 'auto' falling back to the CPU for want of a folder.
    const withoutCache = (why: string, fix: string) => {
      say(`cannot lock ${name} in "${this.dir}" (${why}): building it without the cache; this process uses it, ` +
        `the next one builds it again (${fix}, or set options.engineDir)`)
      return abortable(Promise.resolve().then(() => build(emit, signal)), signal, `building ${name}`)
    }
    if (!made) return withoutCache('the folder cannot be made here', 'make it')

    let lock: FileLock
    try {
      lock = await this.acquire(files, name, signal, say)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code !== 'ENOSPC' && code !== 'EDQUOT' && !notWritable(e)) throw e
      // Unless a process that held the lock stored the plan before the disk filled.
      const ready = await this.tryLoad(await this.locate(parts, key), parts, key)
      if (ready) return ready
      return withoutCache(storeFailure(e), notWritable(e) ? 'make it writable' : 'free space there')
    }
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
      const seconds = ((Date.now() - started) / 1000).toFixed(1)
      try {
        await this.store(files, parts, key, bytes)
      } catch (e) {
        // Minutes of building are not thrown away for want of disk space: this process uses the plan.
        if (e instanceof TypeError) throw e
        say(`built ${name} in ${seconds} s, but could not keep it in "${this.dir}" (${storeFailure(e)}): this process uses it; ` +
          'the next one builds it again (free space there, or set options.engineDir)')
        return bytes
      }
      say(`built ${name} in ${seconds} s`)
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

  /**
   * Writes a built plan and then its sidecar (which makes the plan count), each atomically; a plan
   * whose sidecar cannot be written is removed again, not left to look like an interrupted write.
   */
  private async store(files: PlanFiles, parts: EngineKeyParts, key: string, bytes: Uint8Array): Promise<void> {
    const name = path.basename(files.plan)
    if (!(bytes instanceof Uint8Array) || bytes.length === 0) throw new TypeError(`the engine build for ${name} returned no bytes`)
    await writeFileAtomic(files.plan, bytes)
    const sidecar: EngineSidecar = {
      key,
      parts,
      planBytes: bytes.length,
      planSha256: await hashBytes(bytes),
      createdAt: new Date().toISOString(),
      builtBy: { pid: process.pid, hostname: os.hostname() },
    }
    try {
      await writeFileAtomic(files.sidecar, `${JSON.stringify(sidecar, null, 2)}\n`)
    } catch (e) {
      await fs.rm(files.plan, { force: true }).catch(() => {})
      throw e
    }
  }
}

/** Why a plan could not be written, in words (a full disk, a read-only folder), else the error's. */
function storeFailure(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code
  if (code === 'ENOSPC') return 'no space left on its disk'
  if (code === 'EDQUOT') return 'the disk quota is used up'
  if (notWritable(e)) return 'the folder is not writable'
  return (e as Error).message
}
