// `npm run bench` (scripts/bench.ts) as a user meets it: a wrong --model is refused before any
// measuring, in the CLI's words, and Ctrl-C leaves no temp folder behind.
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { type BatchRow, medianRun } from '../scripts/bench'
import { percentile } from '../scripts/bench-tensorrt'
import { tempDir } from './helpers/temp-dir'

const BENCH = path.join(__dirname, '..', 'dist', 'scripts', 'bench.js')
const dir = tempDir('bench')

describe('npm run bench', () => {
  it('a --model that is a folder, missing, or not ONNX fails at once, naming --model', () => {
    for (const [model, why] of [
      [dir, `--model: cannot read "${dir}": it is a directory`],
      [path.join(dir, 'nope.onnx'), `--model: cannot read "${path.join(dir, 'nope.onnx')}": no such file`],
      [BENCH, `--model: "${BENCH}" is not a readable ONNX model (`],
    ]) {
      const r = spawnSync(process.execPath, [BENCH, '--model', model, '--seconds', '1'], { encoding: 'utf8' })
      expect(r.status).toBe(1)
      expect(r.stderr).toContain(`bench: ${why}`)
      expect(r.stderr).not.toContain('[bench]')  // nothing was measured first
    }
  }, 60_000)

  it('--backend tensorrt reads its options as the CPU bench does (--flag=value, fractional --seconds); a bare --backend is named', () => {
    for (const [args, status, said] of [
      [['--backend', 'tensorrt', '--model=x', '--seconds', '0.5', '--streams=3'], 1, /^bench: (TensorRT|--model)/],  // parsed: fails on the machine or the file
      [['--backend'], 2, /^bench: --backend must be cpu, onnxruntime or tensorrt, got no value\n/],
      [['--backend=tensorrt', '--seconds'], 2, /^bench: --seconds: missing value\n/],
      [['--backend', 'tensorrt', '--model', 'x', '--streams=0'], 2, /^bench: --streams: "0" is not an integer from 1 to 16\n/],
      [['--backend', 'tensorrt', '--model', 'x', '--seconds=0'], 2, /^bench: --seconds: "0" is not a number of seconds in \(0, 3600\]\n/],
    ] as const) {
      const r = spawnSync(process.execPath, [BENCH, ...args], { encoding: 'utf8' })
      expect(r.stderr, args.join(' ')).toMatch(said)
      expect(r.status, args.join(' ')).toBe(status)
    }
  }, 60_000)

  it('Ctrl-C while measuring removes its temp folder and exits 130', async () => {
    const tmp = path.join(dir, 'tmp')
    mkdirSync(tmp)
    const child = spawn(process.execPath, [BENCH, '--batches', '1', '--seconds', '30'], { env: { ...process.env, TMPDIR: tmp }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    await new Promise<void>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString()
        if (/pipeline detect\(\)/.test(stderr)) resolve()
      })
      child.on('exit', () => resolve())
    })
    expect(readdirSync(tmp).filter((f) => f.startsWith('fm-bench-'))).toHaveLength(1)
    child.kill('SIGINT')
    const [code] = (await once(child, 'exit')) as [number]
    expect(code).toBe(130)
    expect(stderr).toContain('bench: interrupted (SIGINT)')
    expect(readdirSync(tmp)).toEqual([])
  }, 60_000)
})

describe('npm run bench:batch-threads', () => {
  const SCRIPT = path.join(__dirname, '..', 'dist', 'scripts', 'bench-batch-threads.js')
  it('refuses a wrong --faces or --images or an unknown argument before measuring, naming it', () => {
    for (const [args, said] of [
      [['--faces', '5'], '--faces: an integer of at least 100, got "5"'],
      [['--faces', '1e3'], '--faces: an integer of at least 100, got "1e3"'],
      [['--images', '-200'], '--images: an integer of at least 100, got "-200"'],
      [['--images', '200', '--images', '300'], 'unknown arguments: --images 200 --images 300'],
      [['--faces'], 'unknown arguments: --faces'],
      [['--seconds', '3'], 'unknown arguments: --seconds 3'],
    ]) {
      const r = spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8' })
      expect([r.status, r.stderr]).toEqual([1, expect.stringContaining(`bench-batch-threads: ${said}`)])
      expect(r.stdout).toBe('')
    }
  })
})

describe('latency percentiles (bench --backend tensorrt)', () => {
  it('are nearest-rank: of 1..200 ms, p50 is 100 and p99 198; of 1..100, p99 is 99, not the maximum', () => {
    const ms = (n: number) => Array.from({ length: n }, (_, i) => i + 1)
    expect([percentile(ms(200), 50), percentile(ms(200), 99)]).toEqual([100, 198])
    expect([percentile(ms(100), 50), percentile(ms(100), 99), percentile(ms(100), 100)]).toEqual([50, 99, 100])
    expect(percentile([7], 50)).toBe(7)
  })
})

describe('--repeat', () => {
  const row = (overheadPct: number, batch = 8) => ({ batch, overheadPct, pipelineFacesPerSec: 100 - overheadPct } as BatchRow)
  it('shows the run of median overhead with the lowest and highest beside it; one run alone, as it is', () => {
    const five = [3.3, -2.3, 1.1, -1.0, 4.3].map((o) => row(o))
    expect(medianRun(five)).toMatchObject({ overheadPct: 1.1, pipelineFacesPerSec: 98.9, overheadRangePct: [-2.3, 4.3] })
    expect(medianRun([row(2), row(5)])).toMatchObject({ overheadPct: 2, overheadRangePct: [2, 5] })
    expect(medianRun([row(7)])).toEqual(row(7))
  })

  it('is an integer from 1 to 20, and not for --pyfeat', () => {
    for (const [args, said] of [
      [['--repeat', '0'], /^bench: --repeat: "0" is not an integer from 1 to 20\n/],
      [['--repeat=21'], /^bench: --repeat: "21" is not an integer from 1 to 20\n/],
      [['--model', 'm.onnx', '--pyfeat', '--repeat', '3'], /^bench: --repeat goes without --pyfeat/],
    ] as const) {
      const r = spawnSync(process.execPath, [BENCH, ...args], { encoding: 'utf8' })
      expect(r.stderr, args.join(' ')).toMatch(said)
      expect(r.status).toBe(2)
    }
  })
})
