// `face-multitask build`: arguments, the refusal where TensorRT is absent (CI), and the progress
// view that renders TensorRT's IProgressMonitor events.
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import sharp from 'sharp'
import { describe, expect, it, vi } from 'vitest'
import { HEADERS_ABSENT, tensorrtAvailability } from '../lib/availability'
import { BuildProgressView } from '../lib/cli/progress'
import { FaceMultitask } from '../lib/face-multitask'
import { makeFixtureModel } from '../scripts/make-fixture'
import { withoutTensorrt } from './helpers/without-tensorrt'
import { tensorrtReason } from '../lib/cli/run-model'
import { spyOnLoad } from './helpers/spy-load'
import { tempDir } from './helpers/temp-dir'
import { run } from './helpers/run-cli'

const dir = tempDir('cli-build')
const model = path.join(dir, 'fixture.onnx')
writeFileSync(model, makeFixtureModel({ generation: 'v2.5' }))

describe('face-multitask build', () => {
  it('--help works without a GPU, and the main help lists the command', async () => {
    const r = await run('build', '--help')
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/^usage: face-multitask build <onnx>/)
    expect(r.out).toMatch(/--max-batch N/)
    expect((await run('--help')).out).toMatch(/build <onnx>/)
  })

  it('bad arguments exit 2 naming the flag', async () => {
    const cases: [string[], string][] = [
      [[], '<onnx>: give one model file, got 0'],
      [[model, '--precision', 'int8'], '--precision must be one of fp16, bf16, fp32, got "int8"'],
      [[model, '--max-batch', '1.5'], '--max-batch must be a whole number, got "1.5"'],
      [[model, '--max-batch', '99999999999999999999999'], '--max-batch must be a whole number up to 9007199254740991, got "99999999999999999999999"'],
      [[model, '--max-batch', '0'], '--max-batch must be an integer from 1 to 4096, got 0'],
      [[model, '--min-batch', '100'], '--min-batch (100) must not exceed --max-batch (64, the TensorRT default): the batches must be --min-batch <= --opt-batch <= --max-batch'],
      [[model, '--min-batch', '4', '--opt-batch', '2'], '--min-batch (4) must not exceed --opt-batch (2): the batches must be --min-batch <= --opt-batch <= --max-batch'],
      [[model, '--opt-batch', '16', '--max-batch', '8'], '--opt-batch (16) must not exceed --max-batch (8): the batches must be --min-batch <= --opt-batch <= --max-batch'],
      [[model, '--opt-batch', '100'], '--opt-batch (100) must not exceed --max-batch (64, the TensorRT default)'],
      [[model, '--max-batch', '5000', '--min-batch', '4'], '--max-batch must be an integer from 1 to 4096, got 5000'],
      [[model, '--max-batch', '8', '--max-batch', '16'], '--max-batch given more than once ("8", then "16"): give it once'],
      [[model, '--opt-level', '9'], '--opt-level must be an integer from 0 to 5, got 9'],
      [[model, '--streams', '2'], "Unknown option '--streams'"],
    ]
    // detect and batch take the same engine flags (to load the engine build made), checked alike.
    const list = path.join(dir, 'list.jsonl')
    writeFileSync(list, '')
    const commands = [['build'], ['detect', path.join(dir, 'chip.png'), '--model', model], ['batch', list, '--model', model, '--out', path.join(dir, 'out.jsonl')]]
    for (const command of commands) {
      for (const [argv, message] of command[0] === 'build' ? cases : cases.slice(1).map(([a, m]) => [a.slice(1), m] as const)) {
        const r = await run(...command, ...argv)
        expect(r.code, [...command, ...argv].join(' ')).toBe(2)
        expect(r.err).toContain(message)
        expect(r.err, argv.join(' ')).not.toMatch(/minBatch|optBatch|maxBatch|options\./)
      }
    }
  })

  it('detect and batch load with the engine flags given (so they find the engine build made); on the CPU --max-batch is the faces per batch', async () => {
    await sharp({ create: { width: 256, height: 256, channels: 3, background: { r: 120, g: 90, b: 60 } } }).png().toFile(path.join(dir, 'chip.png'))
    const list = path.join(dir, 'one.jsonl')
    writeFileSync(list, '{"image": "chip.png"}\n')
    const flags = ['--precision', 'fp32', '--max-batch', '7', '--opt-batch', '4', '--min-batch', '2', '--opt-level', '1', '--workspace-mib', '512', '--engine-dir', dir]
    const want = { precision: 'fp32', maxBatch: 7, optBatch: 4, minBatch: 2, builderOptimizationLevel: 1, workspaceMiB: 512, engineDir: dir, model, backend: 'cpu' }
    for (const command of [['detect', path.join(dir, 'chip.png')], ['batch', list, '--out', path.join(dir, 'one-out.jsonl')]]) {
      const { spy, infos } = spyOnLoad()
      try {
        const r = await run(...command, '--model', model, '--backend', 'cpu', ...flags)
        expect([r.code, r.err], command[0]).toEqual([0, expect.any(String)])
        expect(spy).toHaveBeenCalledWith(expect.objectContaining(want))
        expect(infos.map((i) => i.maxBatch)).toEqual([7])
      } finally {
        spy.mockRestore()
      }
    }
    // No flags: none passed (the library's defaults, the engine build makes without flags).
    const spy = vi.spyOn(FaceMultitask, 'load')
    try {
      await run('detect', path.join(dir, 'chip.png'), '--model', model, '--backend', 'cpu')
      expect(Object.keys(spy.mock.calls[0][0]).sort()).toEqual(['backend', 'model', 'onProgress', 'signal'])
    } finally {
      spy.mockRestore()
    }
  })

  it('checks the model file before TensorRT: missing, a directory (exit 1, as detect words it)', async () => {
    const missing = path.join(dir, 'none.onnx')
    const r = await run('build', missing)
    expect(r.code).toBe(1)
    expect(r.err).toBe(`face-multitask: <onnx>: cannot read "${missing}": no such file`)
    const folder = await run('build', dir)
    expect(folder.code).toBe(1)
    expect(folder.err).toBe(`face-multitask: <onnx>: cannot read "${dir}": it is a directory`)
  })

  it('where TensorRT is not available: exit 1 with the exact reason', async (ctx) => {
    await withoutTensorrt(ctx)
    const trt = await tensorrtAvailability()
    expect(trt.available).toBe(false)
    const r = await run('build', model, '--engine-dir', dir)
    expect(r.code).toBe(1)
    expect(r.err).toBe(`face-multitask: cannot build a TensorRT engine here: ${tensorrtReason(trt.reason ?? '')} (\`face-multitask doctor\` says more)`)
    if (trt.reason === HEADERS_ABSENT) expect(r.err).toMatch(/here: this build of the native addon has no TensorRT backend \(TensorRT's headers were absent when it was compiled\) /)
    expect(r.out).toBe('')
  })
})

describe('the build progress view', () => {
  const events = [
    { type: 'message', message: 'building the TensorRT engine m.plan' },
    { type: 'phase-start', phase: 'Building engine', steps: 3 },
    { type: 'phase-start', phase: 'Tactic search', parent: 'Building engine', steps: 4 },
    { type: 'step', phase: 'Tactic search', step: 0 },
    { type: 'step', phase: 'Tactic search', step: 1 },
    { type: 'phase-end', phase: 'Tactic search' },
    { type: 'step', phase: 'Building engine', step: 0 },
    { type: 'phase-end', phase: 'Building engine' },
  ] as const

  it('on a terminal: one line redrawn in place, the innermost phase with steps as the bar', () => {
    let screen = ''
    const lines: string[] = []
    const view = new BuildProgressView((t) => { screen += t }, true)
    for (const e of events) {
      view.on(e)
      lines.push(view.line())
    }
    expect(lines).toEqual([
      '',
      'Building engine [------------------------] 0/3',
      'Building engine > Tactic search [------------------------] 0/4',
      'Building engine > Tactic search [######------------------] 1/4',
      'Building engine > Tactic search [############------------] 2/4',
      'Building engine [------------------------] 0/3',
      'Building engine [########----------------] 1/3',
      '',
    ])
    expect(screen.startsWith('building the TensorRT engine m.plan\n')).toBe(true)
    expect(screen.split('\n')).toHaveLength(2) // the message; every bar after it redraws with \r
    expect(screen).toContain('\r\x1b[2KBuilding engine > Tactic search [######------------------] 1/4')
  })

  it('elsewhere (a log, CI): a line per top-level phase and per message, none per step', () => {
    const written: string[] = []
    const view = new BuildProgressView((t) => written.push(t), false)
    for (const e of events) view.on(e)
    view.clear()
    expect(written).toEqual(['building the TensorRT engine m.plan\n', 'Building engine...\n'])
  })
})
