// lib/backends/close-at-exit.ts in a child process that calls process.exit(): the engines still
// registered are closed in the 'exit' event, once each, and then the afterClosing hooks run; one unregistered (its own close() done)
// is not; one collected is not kept alive by the registry; a close that throws is reported on
// stderr without changing the exit code.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { expect, it } from 'vitest'

const MODULE = path.join(__dirname, '..', 'dist', 'lib', 'backends', 'close-at-exit.js')

it('engines still open at process.exit() are closed synchronously in the exit event, and only those', () => {
  const script = `
    const { afterClosing, closeAtExit } = require(${JSON.stringify(MODULE)})
    afterClosing(() => console.log('after'))
    const engine = (name, fail) => ({ closeAtExit() { if (fail) throw new Error(name + ' refused'); console.log('closed ' + name) } })
    const a = engine('a')
    closeAtExit(a)
    const b = engine('b')
    const forgetB = closeAtExit(b)
    const c = engine('c', true)
    closeAtExit(c)
    const d = engine('d')
    closeAtExit(d)
    forgetB()
    closeAtExit(engine('dropped'))  // held by nothing but the registry's weak reference
    setTimeout(() => {
      globalThis.gc()
      process.exit(7)
      console.log('not reached', a, b, c, d)
    }, 10)
  `
  const r = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 30_000 })
  expect(r.status).toBe(7)
  expect(r.stdout.trim().split('\n')).toEqual(['closed a', 'closed d', 'after'])
  expect(r.stderr).toBe('face-multitask: closing a TensorRT engine at exit: c refused\n')
})
