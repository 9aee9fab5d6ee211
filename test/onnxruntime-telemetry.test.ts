// ONNX Runtime's Linux builds start Microsoft's usage telemetry with their first session unless
// ORT_DISABLE_TELEMETRY is set; the package sets it (to 1) where the user has not. Each case runs in
// a fresh process: the variable is read once per process. The telemetry's one local trace,
// /tmp/mat-debug-<pid>.log, tells whether it started (the user's own 0 shows that it does).
import { spawnSync } from 'node:child_process'
import { existsSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { makeFixtureModel } from '../scripts/make-fixture'
import { tempDir } from './helpers/temp-dir'

const dir = tempDir('telemetry')
const fixture = path.join(dir, 'fixture.onnx')
writeFileSync(fixture, makeFixtureModel({ generation: 'v2.5' }))
const venvPython = path.resolve('.venv/bin/python')

/** The environment with neither the variable nor CI (ONNX Runtime keeps its telemetry off under CI). */
function env(telemetry?: string): NodeJS.ProcessEnv {
  const { ORT_DISABLE_TELEMETRY: _, CI: __, ORT_RUNNING_UNIT_TESTS: ___, ...rest } = process.env
  return telemetry === undefined ? rest : { ...rest, ORT_DISABLE_TELEMETRY: telemetry }
}

function detectInChild(telemetry?: string): { pid: number; variable: string; trace: boolean } {
  const script = `
    const { FaceMultitask } = require(${JSON.stringify(path.resolve('dist/lib/index.js'))})
    FaceMultitask.load({ model: ${JSON.stringify(fixture)}, backend: 'cpu' }).then(async (m) => {
      await m.detect({ data: new Uint8Array(256 * 256 * 3).fill(90), width: 256, height: 256 })
      await m.close()
      console.log(JSON.stringify({ pid: process.pid, variable: process.env.ORT_DISABLE_TELEMETRY }))
    })`
  const r = spawnSync(process.execPath, ['-e', script], { env: env(telemetry), encoding: 'utf8', timeout: 60_000 })
  expect(r.status, r.stderr).toBe(0)
  const { pid, variable } = JSON.parse(r.stdout)
  const trace = path.join('/tmp', `mat-debug-${pid}.log`)
  const found = existsSync(trace)
  rmSync(trace, { force: true })
  return { pid, variable, trace: found }
}

describe.skipIf(process.platform !== 'linux')('ONNX Runtime telemetry', () => {
  it('is off by default: the package sets ORT_DISABLE_TELEMETRY=1 before the first session', () => {
    const r = detectInChild()
    expect(r.variable).toBe('1')
    expect(r.trace).toBe(false)
  }, 60_000)

  it("a user's own setting is kept: ORT_DISABLE_TELEMETRY=0 lets ONNX Runtime start it", () => {
    const r = detectInChild('0')
    expect(r.variable).toBe('0')
    expect(r.trace).toBe(true)
  }, 60_000)

  it('the Python scripts that run ONNX Runtime set it too, unless the user did', (ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    for (const script of ['export_onnx', 'onnx_fp16']) {
      const code = `import sys, os; sys.path.insert(0, 'scripts'); import ${script}; print(os.environ['ORT_DISABLE_TELEMETRY'])`
      expect(spawnSync(venvPython, ['-c', code], { env: env(), encoding: 'utf8' }).stdout.trim()).toBe('1')
      expect(spawnSync(venvPython, ['-c', code], { env: env('0'), encoding: 'utf8' }).stdout.trim()).toBe('0')
    }
  })
})
