// The cores the process may use: the CPU affinity's count lowered to a cgroup's CPU quota. Each
// case is a file tree laid out as the kernel shows it (cgroup v2's cpu.max, v1's cfs files and
// /proc/self/mountinfo) in the setups containers run in; the machine's own count is faked to 64.
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { cgroupCpuQuota, usableCores } from '../lib/cores'
import { tempDir } from './helpers/temp-dir'

vi.mock('node:os', async (original) => ({ ...(await original<typeof import('node:os')>()), availableParallelism: () => 64 }))

const dir = tempDir('cores')
let cases = 0
/** A root holding these files (path -> content). */
function tree(files: Record<string, string>): string {
  const root = path.join(dir, String(cases++))
  for (const [file, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true })
    writeFileSync(path.join(root, file), content)
  }
  return root
}

const POD = '/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-ab12.scope'
const ID = '0123456789abcdef'
const v1Mounts = (root: string) =>
  `29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755\n` +
  `34 29 0:30 ${root} /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime master:12 - cgroup cgroup rw,cpu,cpuacct\n` +
  `35 29 0:31 ${root} /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime master:13 - cgroup cgroup rw,memory\n`
const v1Groups = (group: string) => `12:memory:${group}\n11:cpu,cpuacct:${group}\n1:name=systemd:${group}\n0::/\n`

describe('usableCores', () => {
  it('is the affinity count where no quota is set or no cgroup file can be read', () => {
    expect([cgroupCpuQuota(tree({})), usableCores(tree({}))]).toEqual([undefined, 64])
    const unlimited = tree({ 'proc/self/cgroup': '0::/\n', 'sys/fs/cgroup/cpu.max': 'max 100000\n' })
    expect([cgroupCpuQuota(unlimited), usableCores(unlimited)]).toEqual([undefined, 64])
    const garbled = tree({ 'proc/self/cgroup': '0::/\n', 'sys/fs/cgroup/cpu.max': 'two cores\n' })
    expect(usableCores(garbled)).toBe(64)
  })

  it('cgroup v2 in its own namespace (docker --cpus 2.5): the floor of quota / period', () => {
    const root = tree({ 'proc/self/cgroup': '0::/\n', 'sys/fs/cgroup/cpu.max': '250000 100000\n' })
    expect([cgroupCpuQuota(root), usableCores(root)]).toEqual([2.5, 2])
  })

  it('cgroup v2 seen from the host (a Kubernetes pod): the lowest limit of the group and its ancestors', () => {
    const files = (pod: string, container: string) => ({
      'proc/self/cgroup': `0::${POD}\n`,
      'sys/fs/cgroup/kubepods.slice/cpu.max': 'max 100000\n',
      'sys/fs/cgroup/kubepods.slice/kubepods-burstable.slice/cpu.max': 'max 100000\n',
      [`sys/fs/cgroup${path.dirname(POD)}/cpu.max`]: pod,
      [`sys/fs/cgroup${POD}/cpu.max`]: container,
    })
    expect(usableCores(tree(files('300000 100000\n', 'max 100000\n')))).toBe(3) // the pod's limit
    expect(usableCores(tree(files('300000 100000\n', '100000 50000\n')))).toBe(2) // the container's, lower
    expect(usableCores(tree(files('max 100000\n', '12800000 100000\n')))).toBe(64) // above the cores: the cores
  })

  it('a quota under one core still leaves one', () => {
    const root = tree({ 'proc/self/cgroup': '0::/\n', 'sys/fs/cgroup/cpu.max': '50000 100000\n' })
    expect([cgroupCpuQuota(root), usableCores(root)]).toEqual([0.5, 1])
  })

  it('cgroup v1 in a container: the group shown at the mount point (mountinfo root /docker/<id>)', () => {
    const root = tree({
      'proc/self/cgroup': v1Groups(`/docker/${ID}`),
      'proc/self/mountinfo': v1Mounts(`/docker/${ID}`),
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '400000\n',
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    })
    expect([cgroupCpuQuota(root), usableCores(root)]).toEqual([4, 4])
  })

  it('cgroup v1 on the host (a systemd service with CPUQuota): the group under the mount, limits on ancestors counted, -1 is none', () => {
    const service = 'sys/fs/cgroup/cpu,cpuacct/system.slice/scorer.service'
    const root = tree({
      'proc/self/cgroup': v1Groups('/system.slice/scorer.service'),
      'proc/self/mountinfo': v1Mounts('/'),
      [`${service}/cpu.cfs_quota_us`]: '-1\n',
      [`${service}/cpu.cfs_period_us`]: '100000\n',
      'sys/fs/cgroup/cpu,cpuacct/system.slice/cpu.cfs_quota_us': '600000\n',
      'sys/fs/cgroup/cpu,cpuacct/system.slice/cpu.cfs_period_us': '100000\n',
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '-1\n',
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    })
    expect(usableCores(root)).toBe(6)
  })

  it('cgroup v1: mountinfo\'s escaped paths (\\134 for a backslash, \\040 for a space) are read unescaped', () => {
    // systemd names a scope with \x2d for "-"; mountinfo then writes its backslash as \134.
    const scope = '/machine.slice/machine-web\\x2d1.scope'
    const root = tree({
      'proc/self/cgroup': v1Groups(scope),
      'proc/self/mountinfo': `34 29 0:30 ${scope.replace(/\\/g, '\\134')} /sys/fs/cgroup/cpu\\040and\\040more rw - cgroup cgroup rw,cpu,cpuacct\n`,
      'sys/fs/cgroup/cpu and more/cpu.cfs_quota_us': '200000\n',
      'sys/fs/cgroup/cpu and more/cpu.cfs_period_us': '100000\n',
    })
    expect(cgroupCpuQuota(root)).toBe(2)
  })

  it('cgroup v1: of several mounts of the cpu hierarchy, the one whose root holds the group', () => {
    const root = tree({
      'proc/self/cgroup': v1Groups(`/docker/${ID}`),
      'proc/self/mountinfo': `40 29 0:30 /other /mnt/elsewhere rw - cgroup cgroup rw,cpu,cpuacct\n${v1Mounts(`/docker/${ID}`)}`,
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '300000\n',
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    })
    expect(cgroupCpuQuota(root)).toBe(3)
  })

  it('cgroup v1: a group outside the mount\'s root is not read as if inside it', () => {
    const root = tree({
      'proc/self/cgroup': v1Groups(`/docker/${ID}0`), // shares the mount root's prefix
      'proc/self/mountinfo': v1Mounts(`/docker/${ID}`),
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us': '200000\n',
      'sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us': '100000\n',
    })
    expect(cgroupCpuQuota(root)).toBeUndefined()
  })
})
