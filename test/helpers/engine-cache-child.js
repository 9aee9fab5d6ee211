// A second process for test/engine-cache.test.ts: runs EngineCache.getOrBuild from the compiled
// dist/lib/engine-cache with a slow fake build, and reports over IPC what happened.
// argv[2]: JSON { dir, parts, buildMs, markerDir, staleMs?, refreshMs?, waitForGo?, mode?: 'build' | 'die-while-building' }
'use strict'
const crypto = require('node:crypto')
const fs = require('node:fs')
const path = require('node:path')
const { EngineCache } = require('../../dist/lib/engine-cache')

const cfg = JSON.parse(process.argv[2])
const send = (m) => process.send && process.send(m)
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function main() {
  if (cfg.waitForGo) {
    // Start together: each child reports ready, the test says go to all at once.
    const go = new Promise((resolve) => process.once('message', resolve))
    send({ type: 'ready', pid: process.pid })
    await go
  }
  const cache = new EngineCache({
    engineDir: cfg.dir,
    staleMs: cfg.staleMs,
    refreshMs: cfg.refreshMs,
    log: (message) => send({ type: 'log', message }),
  })
  const bytes = await cache.getOrBuild(cfg.parts, async (onProgress) => {
    fs.writeFileSync(path.join(cfg.markerDir, `built-by-${process.pid}`), '')
    send({ type: 'building', pid: process.pid })
    onProgress({ type: 'phase-start', phase: 'fake build', steps: 2 })
    if (cfg.mode === 'die-while-building') {
      await sleep(100)
      process.kill(process.pid, 'SIGKILL')
    }
    await sleep(cfg.buildMs)
    onProgress({ type: 'phase-end', phase: 'fake build' })
    // Which process built it is in the bytes: identical bytes in two processes mean one build.
    return Buffer.from(`plan built by pid ${process.pid} `.repeat(20000))
  })
  send({ type: 'done', pid: process.pid, sha256: crypto.createHash('sha256').update(bytes).digest('hex'), length: bytes.length })
}

main().then(
  () => process.disconnect && process.disconnect(),
  (e) => {
    send({ type: 'error', name: e.name, message: e.message })
    process.exitCode = 1
    process.disconnect && process.disconnect()
  },
)
