// lib/backends/close-at-exit.ts in child processes that call process.exit(): the function given
// runs in the main thread's 'exit' event, once, before listeners registered earlier; one that
// throws is reported on stderr without changing the exit code; in a worker nothing is registered
// (a worker's exit tears its environment down, which closes its engines).
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { expect, it } from 'vitest'

const MODULE = JSON.stringify(path.join(__dirname, '..', 'dist', 'lib', 'backends', 'close-at-exit.js'))

function child(script: string) {
  return spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 })
}

it('the function runs once in the exit event, before listeners registered earlier', () => {
  const r = child(`
    process.on('exit', () => console.log('user listener'))
    const { closeAtExit } = require(${MODULE})
    closeAtExit(() => console.log('closed'))
    closeAtExit(() => console.log('closed again'))
    setTimeout(() => process.exit(7), 10)
  `)
  expect(r.status).toBe(7)
  expect(r.stdout.trim().split('\n')).toEqual(['closed', 'user listener'])
  expect(r.stderr).toBe('')
})

it('a close that throws is reported on stderr; the exit code stays', () => {
  const r = child(`
    const { closeAtExit } = require(${MODULE})
    closeAtExit(() => { throw new Error('driver gone') })
    process.exit(3)
  `)
  expect(r.status).toBe(3)
  expect(r.stderr).toBe('face-multitask: closing the TensorRT engines at exit: driver gone\n')
})

it('in a worker thread nothing is registered', () => {
  const r = child(`
    const { Worker } = require('node:worker_threads')
    const w = new Worker(\`
      const { closeAtExit } = require(${MODULE.replace(/\\/g, '\\\\')})
      closeAtExit(() => console.log('closed in the worker'))
      process.exit(0)
    \`, { eval: true })
    w.on('exit', (code) => console.log('worker exit ' + code))
  `)
  expect(r.status).toBe(0)
  expect(r.stdout.trim()).toBe('worker exit 0')
})
