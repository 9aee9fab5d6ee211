// The fixture must satisfy our own contract reader, run in onnxruntime-node, and compute what
// its graph says: the last is checked against a plain-JS recomputation from the stored weights.
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { onnx } from 'onnx-proto'
import * as ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { main, makeFixtureModel } from '../scripts/make-fixture'
import { GENERATIONS, HEAD_OUTPUTS, META_PREFIX, parseSignedChannels, readModelSpec } from '../lib/contract'
import { contractMetadata } from '../lib/contract-metadata'
import { GENERATION_CONVENTIONS } from '../lib/generations'
import { parseOnnxModel } from '../lib/onnx-model'

const S = 224
const BATCH = 3

/** Inputs whose 32x32 blocks differ (plus noise), so the pooled features differ per sample. */
function randomInput(batch: number, seed: number): Float32Array {
  let a = seed >>> 0
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = Math.imul(a ^ (a >>> 15), a | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const x = new Float32Array(batch * 3 * S * S)
  const block = Array.from({ length: batch * 3 * 49 }, () => rand() * 4 - 2)
  for (let i = 0; i < x.length; i++) {
    const n = Math.floor(i / (3 * S * S))
    const c = Math.floor(i / (S * S)) % 3
    const y = Math.floor(i / S) % S
    const xx = i % S
    x[i] = block[(n * 3 + c) * 49 + Math.floor(y / 32) * 7 + Math.floor(xx / 32)] + (rand() - 0.5) * 0.2
  }
  return x
}

function floats(t: onnx.ITensorProto): Float64Array {
  const raw = t.rawData as Uint8Array
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength)
  return Float64Array.from({ length: raw.byteLength / 4 }, (_, i) => view.getFloat32(i * 4, true))
}

/** va for one sample, from the model's own Gemm weights, without onnxruntime. */
function referenceVa(model: Uint8Array, input: Float32Array, sample: number): number[] {
  // Decoded messages are full classes: repeated fields are arrays, never null.
  const g = onnx.ModelProto.decode(model).graph as onnx.GraphProto
  const byOutput = new Map((g.node as onnx.NodeProto[]).map((n) => [n.output[0], n]))
  const tanh = byOutput.get('va')!
  expect(tanh.opType).toBe('Tanh')
  const gemm = byOutput.get(tanh.input[0])!
  expect(gemm.opType).toBe('Gemm')
  expect(gemm.attribute ?? []).toEqual([]) // alpha=beta=1, no transposes
  const init = new Map((g.initializer as onnx.TensorProto[]).map((t) => [t.name, t]))
  const wT = init.get(gemm.input[1])!
  expect(wT.dims.map(Number)).toEqual([147, 2])
  const w = floats(wT)
  const b = floats(init.get(gemm.input[2])!)

  const feat: number[] = []
  const base = sample * 3 * S * S
  for (let c = 0; c < 3; c++) {
    for (let oy = 0; oy < 7; oy++) {
      for (let ox = 0; ox < 7; ox++) {
        let sum = 0
        for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) sum += input[base + c * S * S + (oy * 32 + y) * S + ox * 32 + x]
        feat.push(sum / 1024)
      }
    }
  }
  return [0, 1].map((j) => Math.tanh(feat.reduce((acc, f, k) => acc + f * w[k * 2 + j], b[j])))
}

describe.each(GENERATIONS)('fixture %s', (generation) => {
  const conv = GENERATION_CONVENTIONS[generation]
  const model = makeFixtureModel({ generation })

  it('passes the contract reader with the table values', () => {
    const spec = readModelSpec('fixture.onnx', parseOnnxModel(model))
    expect(spec.generation).toBe(generation)
    expect(spec.crop).toBe(conv.crop)
    expect(spec.resize).toBe(conv.resize)
    expect(spec.meshSpace).toBe(conv.meshSpace)
    expect(spec.conventionRelease).toBe(conv.conventionRelease)
    expect(spec.heads).toEqual(conv.heads)
    expect(spec.synthetic).toBe(true)
    expect(spec.pose).toEqual(parseSignedChannels('t', 'p', conv.poseConvention, 'p', ['pitch', 'roll', 'yaw'] as const, 3))
    expect(spec.gaze).toEqual(parseSignedChannels('t', 'g', conv.gazeConvention, 'g', ['pitch', 'yaw'] as const, 2))
    expect(spec.metadata).toEqual(contractMetadata(generation, { synthetic: 'true' }))
    expect(parseOnnxModel(model).opset).toBe(17)
  })

  it('is small and deterministic', () => {
    expect(model.length).toBeLessThan(2 * 1024 * 1024)
    expect(Buffer.from(makeFixtureModel({ generation, seed: 1 })).equals(Buffer.from(model))).toBe(true)
    expect(Buffer.from(makeFixtureModel({ generation, seed: 2 })).equals(Buffer.from(model))).toBe(false)
  })

  it('runs in onnxruntime-node: valence/arousal match a plain-JS recomputation, the other heads their ranges', async () => {
    const session = await ort.InferenceSession.create(model)
    try {
      const input = randomInput(BATCH, 7)
      const out = await session.run({ input: new ort.Tensor('float32', input, [BATCH, 3, S, S]) })
      expect(Object.keys(out).sort()).toEqual(conv.heads.map((h) => HEAD_OUTPUTS[h].name).sort())
      for (const h of conv.heads) expect(out[HEAD_OUTPUTS[h].name].dims).toEqual([BATCH, ...HEAD_OUTPUTS[h].dims])

      const data = (name: string) => Array.from(out[name].data as Float32Array)
      const inRange = (xs: number[], lo: number, hi: number) => xs.every((v) => v >= lo && v <= hi)
      expect(inRange(data('p_au'), 0, 1)).toBe(true)
      expect(inRange(data('va'), -1, 1)).toBe(true)
      expect(inRange(data('gaze'), -1, 1)).toBe(true)
      expect(inRange(data('pose'), -1, 1)).toBe(true)
      const mesh = data('mesh')
      const meshMax = conv.meshSpace === 'crop224_px' ? 224 : 1
      expect(inRange(mesh, 0, meshMax)).toBe(true)
      // A pixel mesh must really be scaled, not left in the unit square.
      if (conv.meshSpace === 'crop224_px') expect(Math.max(...mesh)).toBeGreaterThan(1)
      if (conv.heads.includes('blendshapes')) expect(inRange(data('blendshapes'), 0, 1)).toBe(true)

      const va = data('va')
      // The outputs follow the input: samples differ visibly.
      expect(Math.abs(va[0] - va[2]) + Math.abs(va[1] - va[3])).toBeGreaterThan(1e-2)
      for (let n = 0; n < BATCH; n++) {
        const ref = referenceVa(model, input, n)
        expect(Math.abs(va[n * 2] - ref[0])).toBeLessThan(1e-5)
        expect(Math.abs(va[n * 2 + 1] - ref[1])).toBeLessThan(1e-5)
      }
    } finally {
      await session.release()
    }
  })
})

describe('contractMetadata', () => {
  it('lists blendshape names only for generations with that head', () => {
    expect(contractMetadata('v2.4')[META_PREFIX + 'blendshape_names']).toBeUndefined()
    expect(contractMetadata('v2.5')[META_PREFIX + 'blendshape_names']).toBeDefined()
  })
  it('prefixes extra keys and refuses to override contract keys', () => {
    expect(contractMetadata('v2.5', { synthetic: 'true' })[META_PREFIX + 'synthetic']).toBe('true')
    expect(() => contractMetadata('v2.5', { [META_PREFIX + 'crop']: 'stretch' })).toThrow(/override/)
  })
})

describe('make-fixture CLI', () => {
  let dir = ''
  beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'make-fixture-')) })
  afterAll(async () => { await rm(dir, { recursive: true, force: true }) })

  function capture() {
    const lines = { out: [] as string[], err: [] as string[] }
    return { lines, io: { out: (l: string) => lines.out.push(l), err: (l: string) => lines.err.push(l) } }
  }

  it('writes the default generation into a new directory', async () => {
    const { lines, io } = capture()
    const file = join(dir, 'nested', 'a.onnx')
    expect(await main([file], io)).toBe(0)
    const bytes = await readFile(file)
    expect(bytes.equals(Buffer.from(makeFixtureModel({ generation: 'v2.5' })))).toBe(true)
    expect(lines.out.join('\n')).toMatch(/a\.onnx.*v2\.5.*synthetic/)
  })

  it('accepts --variant as an alias and --seed', async () => {
    const file = join(dir, 'b.onnx')
    expect(await main([file, '--variant', 'v2.4', '--seed', '5'], capture().io)).toBe(0)
    expect((await readFile(file)).equals(Buffer.from(makeFixtureModel({ generation: 'v2.4', seed: 5 })))).toBe(true)
  })

  it('rejects bad arguments with exit code 2', async () => {
    const bad = capture()
    expect(await main([join(dir, 'c.onnx'), '--generation', 'v9'], bad.io)).toBe(2)
    expect(bad.lines.err.join('\n')).toMatch(/--generation.*v9/)
    for (const argv of [[], [join(dir, 'd.onnx'), '--seed', 'x'], [join(dir, 'e.onnx'), '--bogus']]) {
      expect(await main(argv, capture().io)).toBe(2)
    }
  })

  it('prints usage for --help', async () => {
    const { lines, io } = capture()
    expect(await main(['--help'], io)).toBe(0)
    expect(lines.out.join('\n')).toMatch(/usage: make-fixture/)
  })
})
