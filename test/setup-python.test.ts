// scripts/setup-python.sh keeps a working .venv and makes a broken or too old one again. Python is
// played by stub scripts: the test checks which branch runs and what it says, and stops the
// script at its next step (pip), so nothing is installed.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { tempDir } from './helpers/temp-dir'

const tmp = tempDir('setup-python')

function script(file: string, body: string): string {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 })
  return file
}

// A venv's Python: runs, is 3.11, has pip (unless withPip is false); `pip install` fails (exit 7).
const VENV_PYTHON = (withPip = true) => `case "$1" in
  -c) exit 0 ;;
  --version) echo "Python 3.11.4" ;;
  -m) [ "$2 $3" = "pip --version" ] && [ ${withPip ? 1 : 0} = 1 ] && exit 0; exit 7 ;;
  *) exit 7 ;;
esac`

// The system Python: 3.11; `-m venv [--clear] DIR` makes DIR/bin/python, such a venv Python.
function systemPython(log: string, withPip = true): string {
  const made = script(path.join(tmp, `venv-python${withPip ? '' : '-no-pip'}`), VENV_PYTHON(withPip))
  return script(path.join(tmp, `system-python${withPip ? '' : '-no-pip'}`), `echo "$*" >> '${log}'
case "$1" in
  -c) exit 0 ;;
  --version) echo "Python 3.11.9" ;;
  -m) for d; do :; done; mkdir -p "$d/bin"; rm -f "$d/bin/python"; cp '${made}' "$d/bin/python" ;;
esac`)
}

function run(venv: string, env: NodeJS.ProcessEnv = {}, venvWithPip = true) {
  const log = path.join(tmp, `${path.basename(venv)}.log`)
  const r = spawnSync('bash', ['scripts/setup-python.sh'], {
    env: { ...process.env, FACE_MULTITASK_VENV: venv, PYTHON: systemPython(log, venvWithPip), ...env },
    encoding: 'utf8',
  })
  const calls = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : ''
  return { status: r.status, out: r.stdout + r.stderr, venvCalls: calls.split('\n').filter((l) => l.startsWith('-m venv')) }
}

describe('setup-python.sh: the venv', () => {
  it('a venv whose Python is older than 3.11 is made again, emptied, saying why', () => {
    const venv = path.join(tmp, 'old')
    script(path.join(venv, 'bin/python'), `case "$2" in *print*) echo "Python 3.9.18" ;; *) exit 1 ;; esac`)
    const r = run(venv)
    expect(r.out).toContain(`venv: ${venv} has Python 3.9.18, not Python 3.11+: recreating it (emptied) with Python 3.11.9`)
    expect(r.venvCalls).toEqual([`-m venv --clear ${venv}`])
    expect(r.out).toContain('pip install failed (exit 7)')  // went on with the new venv's Python
    expect(r.status).toBe(7)
  })

  it('a venv whose Python no longer runs (its interpreter removed) is made again', () => {
    const venv = path.join(tmp, 'dangling')
    fs.mkdirSync(path.join(venv, 'bin'), { recursive: true })
    fs.symlinkSync(path.join(tmp, 'removed-python3.11'), path.join(venv, 'bin/python'))
    const r = run(venv)
    expect(r.out).toContain(`venv: ${venv} has a Python that does not run, not Python 3.11+: recreating it (emptied)`)
    expect(r.venvCalls).toEqual([`-m venv --clear ${venv}`])
    expect(r.status).toBe(7)
  })

  it('a venv without pip (its creation interrupted, or Debian\'s python3-venv missing) is made again; one that still has none is said so', () => {
    const venv = path.join(tmp, 'no-pip')
    script(path.join(venv, 'bin/python'), VENV_PYTHON(false))
    const r = run(venv)
    expect(r.out).toContain(`venv: ${venv} has no pip (its creation failed or was interrupted): recreating it (emptied) with Python 3.11.9`)
    expect(r.venvCalls).toEqual([`-m venv --clear ${venv}`])
    expect(r.out).toContain('pip install failed (exit 7)')  // went on with the new venv's pip
    const still = path.join(tmp, 'no-pip-again')
    const s2 = run(still, {}, false)
    expect(s2.venvCalls).toEqual([`-m venv ${still}`])
    expect(s2.out).toContain(`error: ${still} has no pip: `)
    expect(s2.out).toContain('apt install python3-venv')
    expect(s2.out).not.toContain('pip install')
    expect(s2.status).toBe(1)
  })

  it('a working 3.11+ venv is kept; a missing one is created', () => {
    const kept = path.join(tmp, 'good')
    script(path.join(kept, 'bin/python'), VENV_PYTHON())
    const r = run(kept)
    expect(r.out).toContain(`venv: ${kept} exists (Python 3.11.4), kept`)
    expect(r.venvCalls).toEqual([])
    const fresh = path.join(tmp, 'fresh')
    const f = run(fresh)
    expect(f.out).toContain(`venv: creating ${fresh} with Python 3.11.9`)
    expect(f.venvCalls).toEqual([`-m venv ${fresh}`])
  })
})

describe('setup-python.sh: disk space', () => {
  // `df` played by a stub reporting 900 MB free on the venv's disk.
  const bin = path.join(tmp, 'small-disk-bin')
  script(path.join(bin, 'df'), `echo "Filesystem 1048576-blocks Used Available Capacity Mounted on"; echo "/dev/x 100000 99100 900 99% /"`)

  it('a disk with too little room for torch is said before pip starts, with where else the venv can go', () => {
    const venv = path.join(tmp, 'small-disk')
    const r = run(venv, { PATH: `${bin}:${process.env.PATH}` })
    expect(r.out).toContain(`error: the disk of ${venv} has 900 MB free, and the install needs about 9000 MB (torch's CUDA wheels, downloaded then unpacked); free some space, or make the venv on another disk with FACE_MULTITASK_VENV=DIR`)
    expect(r.out).not.toContain('pip install')
    expect(r.status).toBe(1)
  })

  it('a venv that already has torch is not held to it (a re-run installs little)', () => {
    const venv = path.join(tmp, 'small-disk-torch')
    script(path.join(venv, 'bin/python'), VENV_PYTHON())
    fs.mkdirSync(path.join(venv, 'lib/python3.11/site-packages/torch'), { recursive: true })
    fs.writeFileSync(path.join(venv, 'lib/python3.11/site-packages/torch/__init__.py'), '')
    const r = run(venv, { PATH: `${bin}:${process.env.PATH}` })
    expect(r.out).not.toContain('MB free')
    expect(r.out).toContain('pip install failed (exit 7)')
  })
})
