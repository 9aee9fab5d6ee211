// The cross-process lock that makes one process build an engine while the others wait.
//
// The lock is a file created whole (written aside, then linked to its name, which fails if it
// exists) holding pid, the process's start time, hostname, boot and machine ids, time and a
// random token. A lock held on this host is stale when its pid no
// longer runs (or now runs another process: a restarted container reuses pids, and a host that
// restarted runs none of the old ones); a holder seen alive there is taken over only once the
// waiter has watched its lock go unrefreshed for staleMs (its own clock: a wall clock stepped
// forward or a suspended laptop makes no live lock look old). A lock of another host
// (or one whose holder cannot be checked) is stale when its mtime, refreshed by the holder while
// it builds, is older than staleMs and the waiter has also watched it stay unrefreshed (the
// holder's clock may lag): then it is taken over, by one waiter at a time (takeOver()). Waiting
// polls with backoff and honours an AbortSignal. proper-lockfile is not used: it judges staleness by mtime
// alone (a crashed builder would block the others for the whole stale timeout, which must be long
// because builds take minutes), its waiting cannot be aborted, and it brings three dependencies.
import { randomBytes } from 'node:crypto'
import { readFileSync, readlinkSync, unlinkSync } from 'node:fs'
import fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { sleep, throwIfAborted } from './abort'
import { tempPath, tempPrefix } from './atomic-write'

/** What a lock file holds. */
export interface LockInfo {
  pid: number
  hostname: string
  /** When the holder process started, where the OS tells (Linux: /proc/<pid>/stat's starttime): a reused pid is told apart. */
  pidStart?: string
  /** The holder's pid namespace (Linux: /proc/self/ns/pid): containers that share a host name and a cache folder may not. */
  pidNamespace?: string
  /** The holder host's boot (Linux: /proc/sys/kernel/random/boot_id): hosts that share a name have different ones. */
  bootId?: string
  /** The holder host's machine id (/etc/machine-id): another boot of the same machine tells a restart from another host. */
  machineId?: string
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

/** One of this host's ids (Linux), read once and kept; undefined where the OS has none. */
const hostIds = new Map<string, string | undefined>()
function hostId(file: string, read: (file: string) => string): string | undefined {
  if (!hostIds.has(file)) {
    try {
      hostIds.set(file, read(file).trim().split('\n')[0] || undefined)
    } catch {
      hostIds.set(file, undefined)
    }
  }
  return hostIds.get(file)
}
const readText = (file: string) => readFileSync(file, 'utf8')
/** This process's pid namespace, the host's boot and its machine. */
const pidNamespace = () => hostId('/proc/self/ns/pid', readlinkSync)
const bootId = () => hostId('/proc/sys/kernel/random/boot_id', readText)
const machineId = () => hostId('/etc/machine-id', readText)

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

/** Where tryCreate writes a lock before linking it to its name. */
const newLockPath = (file: string) => tempPath(`${file}.new`)

/**
 * Removes the locks that processes killed between writing one and linking it left (tryCreate):
 * hidden files of a few bytes, beside a user's results otherwise for good. Only those of a pid
 * not alive here, untouched for 10 s (a live maker's exists for a moment only), empty or naming
 * this host (one of another host sharing the folder is its own: its pid means nothing here).
 */
async function removeDeadTemps(file: string): Promise<void> {
  const prefix = tempPrefix(`${file}.new`)
  const dir = path.dirname(file)
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(prefix) || pidAlive(Number(name.slice(prefix.length).split('-')[0]))) continue
    const temp = path.join(dir, name)
    const st = await fs.stat(temp).catch(() => undefined)
    if (!st?.isFile() || Date.now() - st.mtimeMs < 10_000) continue
    const raw = await fs.readFile(temp, 'utf8').catch(() => undefined)
    if (raw === undefined || (raw !== '' && parseLock(raw)?.hostname !== os.hostname())) continue
    await fs.rm(temp, { force: true }).catch(() => {})
  }
}

export interface LockState {
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

export function describeHolder(info: LockInfo | undefined): string {
  return info ? `pid ${info.pid} on ${info.hostname === os.hostname() ? 'this host' : `host ${info.hostname}`}` : 'another process'
}

/** Two ids that both exist and differ (an id one side lacks says nothing). */
const differ = (a: string | undefined, b: string | undefined) => a !== undefined && b !== undefined && a !== b

/**
 * Why a lock is stale, or undefined while its holder may still be at work. `unchangedMs`: how long
 * this waiter has watched the same lock file go unrefreshed, on its own monotonic clock.
 */
function staleReason(state: LockState, staleMs: number, unchangedMs: number, confirmMs: number, now = Date.now()): string | undefined {
  const { info } = state
  // Pids say something only within one pid namespace of one boot of one host: a holder in another
  // container, or on another host with the same name, is judged by the lock's age alone.
  if (info && info.hostname === os.hostname() && !differ(info.pidNamespace, pidNamespace()) && !differ(info.machineId, machineId())) {
    if (differ(info.bootId, bootId())) {
      // The same machine (its machine id) since restarted: nothing of the old boot runs, when the
      // lock was last refreshed before this boot. Without a machine id on both sides, or refreshed
      // since (a VM cloned with its machine id: another host), it is judged by age below.
      const booted = now - os.uptime() * 1000
      if (info.machineId !== undefined && machineId() !== undefined && state.mtimeMs < booted) return `its holder, pid ${info.pid}, ran before this host restarted`
    } else {
      if (!pidAlive(info.pid)) return `its holder, pid ${info.pid} on this host, is no longer running`
      // A restarted container often gives the new process the old one's pid, this one's included
      // (the start time tells them apart; worker threads share their process's).
      const started = info.pidStart === undefined ? undefined : processStart(info.pid)
      if (started !== undefined && started !== info.pidStart) return `its holder, pid ${info.pid} on this host, is no longer running (that pid now belongs to another process)`
      // Seen alive: judged by watching its lock, not by the lock's time against the wall clock (a
      // clock stepped forward, a machine that slept would make a working holder look stale, and
      // taking over would build twice and pull its files from under it). A live process whose lock
      // stays unrefreshed that long has lost its builder (a worker thread terminated mid-build).
      if (started !== undefined) {
        return unchangedMs > staleMs ? `its holder, pid ${info.pid} on this host, runs but has not refreshed it for ${Math.round(unchangedMs / 1000)} s` : undefined
      }
    }
  }
  const age = now - state.mtimeMs
  // Its time as the holder's clock wrote it, or, when that clock runs ahead of this one (a lock
  // dated in the future), as long as this waiter has seen it unchanged. An old time alone is not
  // enough: a live holder whose clock runs behind this one's writes old times at every refresh, so
  // the waiter must also have watched it unchanged for confirmMs (several refreshes).
  const idle = Math.max(age, unchangedMs)
  if (idle > staleMs && unchangedMs >= confirmMs) return `${describeHolder(info)} has not refreshed it for ${Math.round(idle / 1000)} s`
  return undefined
}

/** A takeover guard dated this far from now (either way: clocks differ) was left by a crash. */
const GUARD_STALE_MS = 30_000

/**
 * Throws what keeps this process from removing `file` (`e`, from rename or unlink), in words when
 * it is another user's (a shared folder with the sticky bit, as /tmp, lets only its owner remove
 * it); other errors (a folder this process cannot write) pass as they are. Gone meanwhile is fine.
 */
async function sayWhyNotRemoved(file: string, e: unknown, holder?: LockInfo): Promise<void> {
  const code = (e as NodeJS.ErrnoException).code
  if (code === 'ENOENT') return
  const st = code === 'EACCES' || code === 'EPERM' ? await fs.stat(file).catch((s: NodeJS.ErrnoException) => s) : undefined
  if ((st as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') return  // removed meanwhile
  const owner = (st as { uid?: number } | undefined)?.uid
  if (owner === undefined || process.getuid === undefined || owner === process.getuid()) throw e
  const whose = holder ? `, left by ${describeHolder(holder)}` : ''
  throw Object.assign(new Error(`cannot remove the stale lock ${file}${whose} (${code}): it belongs to another user (uid ${owner}); ` +
    'its owner (or root) can remove it, or use a folder of your own', { cause: e }), { code: 'ELOCKPERM' })
}

/** What identifies the file that was judged: its inode, and its time and content where known. */
interface Judged { ino: number; mtimeMs?: number; raw?: string }

/**
 * Removes `file` if it is still the file judged, and says whether it did. A stat then an unlink
 * would remove whatever took its place between the two (another waiter's fresh lock or guard).
 * So the file is checked in place first (one that is not the judged one is left untouched), then
 * moved aside (rename is atomic) and checked again there: in the moment between the two checks
 * another may have taken its place, and is put back (with link(), which refuses to replace a
 * newer one; where the file system has no hard links, renamed back). The aside name is a temp
 * file's, which removeDebris clears should a crash leave it.
 */
export async function removeIfSame(file: string, judged: Judged, holder?: LockInfo): Promise<boolean> {
  if (!(await isJudged(file, judged))) return false
  const aside = tempPath(file)
  try {
    await fs.rename(file, aside)
  } catch (e) {
    await sayWhyNotRemoved(file, e, holder)
    return false
  }
  let same = false
  try {
    same = await isJudged(aside, judged)
  } finally {
    if (!same) await putBack(aside, file)
    else await fs.unlink(aside).catch(() => {})
  }
  return same
}

/** Whether `file` is the file judged: its inode, and its time and content where given. */
async function isJudged(file: string, judged: Judged): Promise<boolean> {
  const st = await fs.stat(file).catch(() => undefined)
  if (!st || st.ino !== judged.ino || (judged.mtimeMs !== undefined && st.mtimeMs !== judged.mtimeMs)) return false
  return judged.raw === undefined || (await fs.readFile(file, 'utf8').catch(() => undefined)) === judged.raw
}

/** Puts a file moved aside by mistake back in its place, unless a newer one has taken it. */
async function putBack(aside: string, file: string): Promise<void> {
  try {
    await fs.link(aside, file)
  } catch (e) {
    // EEXIST: a newer one is there (its holder goes on; this one's finds its lock replaced).
    // Another error (no hard links: FAT, exFAT, some SMB and FUSE mounts): renamed back instead.
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return void (await fs.rename(aside, file).catch(() => {}))
  }
  await fs.unlink(aside).catch(() => {})
}

/** Locks this process holds (with what each holds), removed if it exits while holding them (a crash leaves them to the pid check). */
const heldLocks = new Map<string, string>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.on('exit', () => {
    for (const [file, raw] of heldLocks) {
      try {
        if (readFileSync(file, 'utf8') === raw) unlinkSync(file)
      } catch {
        // gone already
      }
    }
  })
}

export interface LockOptions {
  /** A lock not refreshed for this long is taken over (default 10 minutes). */
  staleMs?: number
  /**
   * How often the holder refreshes the lock's mtime (default min(10 s, staleMs / 4)). A lock judged
   * by its time (another host's) must also be seen unrefreshed for min(staleMs, 9 × refreshMs)
   * before it is taken over: a holder's clock may lag, and NFS shows a refresh up to a minute late.
   */
  refreshMs?: number
  /** The longest pause between two tries while waiting (default 1 s; it starts at 25 ms). */
  maxPollMs?: number
  signal?: AbortSignal
  /** Written into the lock, for messages. */
  what?: string
  /**
   * Called when the lock is held by someone else and this caller starts waiting (waitedMs 0), then
   * every waitNoteMs while it still waits: a long wait shows it is alive, and for whom it waits.
   */
  onWait?: (holder: LockInfo | undefined, waitedMs: number) => void
  /** How often onWait is called again during a wait (default 60 s). */
  waitNoteMs?: number
  /** Called when a stale lock is taken over. */
  onStale?: (reason: string) => void
  /** Called when the held lock was removed or replaced by someone else (the holder goes on), or fails to refresh three times in a row. */
  onLost?: (reason: string) => void
}

/** A held lock: keeps its mtime fresh until release(). */
export class FileLock {
  private timer: NodeJS.Timeout | undefined
  private lost = false
  private released = false
  private failures = 0  // refreshes in a row that failed without the lock being gone

  private constructor(readonly file: string, private readonly raw: string, private readonly ino: number, refreshMs: number, private readonly onLost?: (why: string) => void) {
    heldLocks.set(file, raw)
    installExitHook()
    this.timer = setInterval(() => { void this.refresh() }, refreshMs)
    this.timer.unref()
  }

  /**
   * Tries once to create `file`, whole: its content is written to a temp file first, then linked
   * to the lock's name (link() fails if the name exists, as O_EXCL does). A lock made with
   * open('wx') and then written is empty for a moment: a process killed then left a lock no pid
   * check could judge, which blocked every waiter until it aged past staleMs (10 minutes). A
   * crash now leaves at most the temp file, which removeDebris clears. Where the file system has
   * no hard links, the lock is made with open('wx') as before.
   */
  private static async tryCreate(file: string, refreshMs: number, what: string | undefined, onLost?: (why: string) => void): Promise<FileLock | undefined> {
    const info: LockInfo = {
      pid: process.pid, hostname: os.hostname(), pidStart: processStart(process.pid), pidNamespace: pidNamespace(), bootId: bootId(), machineId: machineId(),
      createdAt: new Date().toISOString(), token: randomBytes(12).toString('hex'), what,
    }
    const raw = JSON.stringify(info)
    const tmp = newLockPath(file)
    const fh = await fs.open(tmp, 'wx', 0o644)
    try {
      await fh.writeFile(raw)
    } catch (e) {
      await fh.close().catch(() => {})
      await fs.rm(tmp, { force: true }).catch(() => {})
      throw e
    }
    await fh.close()
    let ino: number
    try {
      await fs.link(tmp, file)
      ino = (await fs.stat(tmp)).ino
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      // NFS: a link whose reply was lost is retried and answered EEXIST although it was made;
      // the temp file's link count says which (nothing else links to it).
      const st = code === 'EEXIST' ? await fs.stat(tmp).catch(() => undefined) : undefined
      if (st?.nlink === 2) ino = st.ino
      else {
        await fs.rm(tmp, { force: true }).catch(() => {})
        if (code === 'EEXIST') return undefined
        if (code === 'EPERM' || code === 'ENOTSUP' || code === 'ENOSYS' || code === 'EOPNOTSUPP') return FileLock.tryCreateInPlace(file, raw, refreshMs, onLost)
        throw e
      }
    }
    await fs.rm(tmp, { force: true }).catch(() => {})
    return new FileLock(file, raw, ino, refreshMs, onLost)
  }

  /** tryCreate() on a file system without hard links (FAT, exFAT, some SMB and FUSE mounts): O_EXCL, then the write. */
  private static async tryCreateInPlace(file: string, raw: string, refreshMs: number, onLost?: (why: string) => void): Promise<FileLock | undefined> {
    let fh: fs.FileHandle
    try {
      fh = await fs.open(file, 'wx', 0o644)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return undefined
      throw e
    }
    try {
      await fh.writeFile(raw)
      const { ino } = await fh.stat()
      return new FileLock(file, raw, ino, refreshMs, onLost)
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
    const confirmMs = Math.min(staleMs, 9 * refreshMs)
    const maxPollMs = options.maxPollMs ?? 1000
    const { signal } = options
    const waitNoteMs = options.waitNoteMs ?? 60_000
    let delay = 25
    let waitingSince: number | undefined
    let noted = 0
    let watched: { ino: number; mtimeMs: number; since: number } | undefined  // the lock as first seen unchanged
    let vanished = 0  // tries in a row that found the lock gone
    for (;;) {
      throwIfAborted(signal, `waiting for the lock ${file}`)
      const lock = await FileLock.tryCreate(file, refreshMs, options.what, options.onLost)
      if (lock) {
        await removeDeadTemps(file)
        return lock
      }
      const state = await inspectLock(file)
      if (!state) {
        // Released between the two calls: try again at once. Twice in a row, the path itself may
        // be what stops the create (a dangling symlink): said, not retried for ever.
        if (vanished++ > 0) {
          const st = await fs.lstat(file).catch(() => undefined)
          if (st && !st.isFile()) throw new Error(`cannot lock ${file}: it is not a lock file (${st.isSymbolicLink() ? 'a symbolic link' : 'not a regular file'}); remove it`)
          await sleep(delay, signal, `waiting for the lock ${file}`)
        }
        continue
      }
      vanished = 0
      if (watched?.ino !== state.ino || watched.mtimeMs !== state.mtimeMs) watched = { ino: state.ino, mtimeMs: state.mtimeMs, since: performance.now() }
      const stale = staleReason(state, staleMs, performance.now() - watched.since, confirmMs)
      if (stale !== undefined && (await FileLock.takeOver(file, state))) {
        options.onStale?.(`took over the stale lock ${file}: ${stale}`)
        continue
      }
      // Not stale, or another waiter is taking it over: wait (a retry at once would spin).
      const now = Date.now()
      waitingSince ??= now
      if (waitingSince === now || now - noted >= waitNoteMs) {
        noted = now
        options.onWait?.(state.info, now - waitingSince)
      }
      await sleep(delay * (0.75 + Math.random() / 2), signal, `waiting for ${describeHolder(state.info)} to release ${file}`)
      delay = Math.min(delay * 1.5, maxPollMs)
    }
  }

  /**
   * Removes a lock judged stale, unless it changed since it was judged (another waiter took it
   * over and made a fresh one, or its holder refreshed it). Waiters take over one at a time, under
   * a guard file created with O_EXCL: the lock is checked again and removed while no other waiter
   * can remove or replace it (removeIfSame leaves a lock that is not the judged one in place). A guard is held
   * for milliseconds; one whose time is more than GUARD_STALE_MS from now was left by a crash.
   */
  static async takeOver(file: string, judged: LockState): Promise<boolean> {
    const guard = `${file}.takeover`
    let fh: fs.FileHandle
    try {
      fh = await fs.open(guard, 'wx', 0o644)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e // a folder this process cannot write
      const st = await fs.stat(guard).catch(() => undefined)
      if (st && Math.abs(Date.now() - st.mtimeMs) > GUARD_STALE_MS) await removeIfSame(guard, { ino: st.ino, mtimeMs: st.mtimeMs })
      return false // another waiter is taking it over: see what it left
    }
    let mine: Judged | undefined
    try {
      mine = { ino: (await fh.stat()).ino }
      await fh.close()
      return await removeIfSame(file, judged, judged.info)
    } finally {
      // Only this waiter's guard: one that stalled past GUARD_STALE_MS may have had it cleared.
      if (mine) await removeIfSame(guard, mine).catch(() => false)
      else await fh.close().catch(() => {}).then(() => fs.rm(guard, { force: true })).catch(() => {})
    }
  }

  /**
   * Removes the lock `file` if it has gone unrefreshed for `ageMs` (a crashed process's, left for
   * good: a holder refreshes it every few seconds), under the takeover guard; whether it did.
   */
  static async removeAbandoned(file: string, ageMs: number): Promise<boolean> {
    const state = await inspectLock(file).catch(() => undefined)
    if (!state || Date.now() - state.mtimeMs < ageMs) return false
    // Only a holder shown dead on this host: another host's clock may lag by as much (acquire()
    // watches such a lock before taking it over).
    if (staleReason(state, ageMs, 0, Infinity) === undefined) return false
    return FileLock.takeOver(file, state).catch(() => false)
  }

  private async refresh(): Promise<void> {
    if (this.lost || this.released) return
    try {
      const st = await fs.stat(this.file)
      if (st.ino !== this.ino) throw Object.assign(new Error('replaced'), { code: 'EREPLACED' })
      const now = new Date()
      await fs.utimes(this.file, now, now)
      this.failures = 0
    } catch (e) {
      if (this.released) return // released while this refresh ran: nothing was lost
      const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message
      // Replaced: lost. Anything else may pass (out of file handles, an NFS hiccup; gone for the
      // moment a waiter checks it aside, see removeIfSame): the next refreshes try again, or a
      // waiter would take over a lock this process still holds. Gone three times in a row: lost.
      ++this.failures
      if (code !== 'EREPLACED' && !(code === 'ENOENT' && this.failures >= 3)) {
        if (this.failures === 3) this.say(`cannot refresh the lock ${this.file} (${code}); trying again: while this goes on, another process may take it over`)
        return
      }
      this.lost = true
      this.say(`lost the lock ${this.file} (${code}); going on: the write is atomic`)
    }
  }

  private say(message: string): void {
    try {
      this.onLost?.(message)
    } catch {
      // a throwing logger must not become an unhandled rejection of this timer's refresh
    }
  }

  /** Stops refreshing and removes the lock file if it is still this lock's. */
  async release(): Promise<void> {
    this.released = true
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    heldLocks.delete(this.file)
    // Not a waiter's fresh lock, should this one have been taken over meanwhile.
    await removeIfSame(this.file, { ino: this.ino, raw: this.raw }).catch(() => false)
  }
}
