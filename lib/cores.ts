// How many cores this process may keep busy, for sizing its threads. os.availableParallelism()
// counts the CPUs of its affinity mask (a cpuset) but, in Node 20 (libuv 1.46), not a cgroup's
// CPU quota: a container given 2 CPUs (`docker --cpus 2`, Kubernetes' limits.cpu) on a 64-core
// host was told 64, and ONNX Runtime's 64 threads were throttled to 2 cores' time. libuv reads
// the quota itself from 1.49 (Node 22); taking the lower of the two is right on both.
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import path from 'node:path'

/** The cores this process may use: its CPU affinity, lowered to its cgroups' CPU quota (the floor of quota / period, at least 1). */
export function usableCores(root = '/'): number {
  const quota = cgroupCpuQuota(root)
  const cores = availableParallelism()
  return quota === undefined ? cores : Math.max(1, Math.min(cores, Math.floor(quota)))
}

/** The lowest CPU quota (in cores) of the process's cgroup and its ancestors, v2 or v1; undefined where none is set or none can be read. */
export function cgroupCpuQuota(root = '/'): number | undefined {
  const own = read(root, 'proc/self/cgroup')
  if (own === undefined) return undefined
  let lowest: number | undefined
  const take = (q: number | undefined) => {
    if (q !== undefined && q > 0 && (lowest === undefined || q < lowest)) lowest = q
  }
  for (const line of own.split('\n')) {
    const [, controllers, group] = line.match(/^\d+:([^:]*):(\/.*)$/) ?? []
    if (group === undefined) continue
    if (controllers === '') {
      // v2: "0::/path", its files under /sys/fs/cgroup; a limit may sit on any ancestor.
      for (const dir of upFrom(path.posix.join('sys/fs/cgroup', group), 'sys/fs/cgroup')) {
        const [q, p] = (read(root, `${dir}/cpu.max`) ?? '').trim().split(/\s+/)
        take(Number(q) / Number(p)) // "max 100000" is NaN: no limit
      }
    } else if (controllers.split(',').includes('cpu')) {
      const mount = v1CpuMount(root, group)
      if (mount === undefined) continue
      for (const dir of upFrom(path.posix.join(mount.point, mount.rel), mount.point)) {
        const q = Number(read(root, `${dir}/cpu.cfs_quota_us`))
        take(q / Number(read(root, `${dir}/cpu.cfs_period_us`))) // a quota of -1: no limit
      }
    }
  }
  return lowest
}

/**
 * Where the v1 hierarchy holding the cpu controller shows `group` (/proc/self/mountinfo: the
 * mount's root within the hierarchy and its mount point, fields 4 and 5): the point and the
 * group's path under it. A mount may show a subtree of the hierarchy (a container sees its own
 * group at the mount point), so the first whose root holds the group.
 */
function v1CpuMount(root: string, group: string): { point: string; rel: string } | undefined {
  for (const line of (read(root, 'proc/self/mountinfo') ?? '').split('\n')) {
    const [head, tail] = line.split(' - ')
    const [fstype, , options] = (tail ?? '').split(' ')
    const [, , , top, point] = head.split(' ').map(unescapeMountField)
    if (fstype !== 'cgroup' || !options?.split(',').includes('cpu') || point === undefined) continue
    if (top === '/') return { point: point.replace(/^\/+/, ''), rel: group }
    if (group === top || group.startsWith(`${top}/`)) return { point: point.replace(/^\/+/, ''), rel: group.slice(top.length) }
  }
  return undefined
}

/** mountinfo writes a space, tab, newline and backslash in a path as \040, \011, \012, \134. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))
}

/** dir, its parent, ... up to and including top (all relative to the file system's root). */
function upFrom(dir: string, top: string): string[] {
  const dirs = [dir.replace(/\/+$/, '')]
  while (dirs[dirs.length - 1] !== top && dirs[dirs.length - 1].startsWith(`${top}/`)) dirs.push(path.posix.dirname(dirs[dirs.length - 1]))
  return dirs
}

function read(root: string, file: string): string | undefined {
  try {
    return readFileSync(path.join(root, file), 'utf8')
  } catch {
    return undefined
  }
}
