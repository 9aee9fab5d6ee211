// `inspect` and `export` of the CLI: reading model files in Node, and a clear message when the
// Python environment the export needs is missing.
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { onnx } from 'onnx-proto'
import { afterEach, describe, expect, it } from 'vitest'
import { main } from '../lib/cli'
import { makeFixtureModel } from '../scripts/make-fixture'

const dir = mkdtempSync(path.join(tmpdir(), 'fm-cli-files-'))

async function run(...argv: string[]) {
  const out: string[] = []
  const err: string[] = []
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) })
  return { code, out: out.join('\n'), err: err.join('\n') }
}

/** A safetensors file: 8-byte little-endian header length, the JSON header, then the data. */
function safetensors(file: string, tensors: Record<string, number[]>, config: object): void {
  const header: Record<string, unknown> = { __metadata__: { config: JSON.stringify(config) } }
  let offset = 0
  for (const [name, shape] of Object.entries(tensors)) {
    const bytes = shape.reduce((a, b) => a * b, 1) * 4
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + bytes] }
    offset += bytes
  }
  const json = Buffer.from(JSON.stringify(header))
  const len = Buffer.alloc(8)
  len.writeBigUInt64LE(BigInt(json.length))
  writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(offset)]))
}

describe('face-multitask inspect', () => {
  it('an exported ONNX: metadata, tensors, and that the runtime accepts it', async () => {
    const file = path.join(dir, 'v24.onnx')
    writeFileSync(file, makeFixtureModel({ generation: 'v2.4' }))
    const r = await run('inspect', file)
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/generation\s+v2\.4/)
    expect(r.out).toMatch(/crop\s+stretch/)
    expect(r.out).toMatch(/pose_convention\s+pitch=-p0,roll=-p2,yaw=\+p1/)
    expect(r.out).toMatch(/outputs\s+p_au float32\[N,20\]/)
    expect(r.out).toMatch(/contract\s+ok: the runtime loads it \(synthetic/)
  })

  it('an ONNX the runtime would refuse says which key', async () => {
    const m = onnx.ModelProto.decode(makeFixtureModel({ generation: 'v2.5' }))
    m.metadataProps = m.metadataProps.filter((p) => p.key !== 'face_multitask.mesh_space')
    const file = path.join(dir, 'bad.onnx')
    writeFileSync(file, onnx.ModelProto.encode(m).finish())
    const r = await run('inspect', file)
    expect(r.code).toBe(1)
    expect(r.out).toMatch(/REFUSED: .*"face_multitask\.mesh_space" is missing/)
  })

  it('a safetensors checkpoint: generation from the name, heads and gaze bins from the tensors', async () => {
    const file = path.join(dir, 'face_multitask_v28.safetensors')
    safetensors(file, { 'blendshape.mlp.0.weight': [512, 768], 'gaze.left.weight': [360, 1286], 'emotion.cls_head.weight': [7, 1024] }, { gaze_bins: 180 })
    const r = await run('inspect', file)
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/generation\s+v2\.8/)
    expect(r.out).toMatch(/heads\s+au, emotion, va, gaze, mesh, pose, blendshapes/)
    expect(r.out).toMatch(/180 bins per angle/)
    expect(r.out).toMatch(/1024 features \(no AU input\)/)
    expect(r.out).toMatch(/py-feat 2\.1\.5/)
    expect(r.out).toMatch(/"gaze_bins":180/)
  })

  it('a missing file is one message, exit 1', async () => {
    const r = await run('inspect', path.join(dir, 'nope.onnx'))
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/cannot read .*nope\.onnx: no such file/)
  })
})

describe('face-multitask export', () => {
  const saved = process.env.FACE_MULTITASK_PYTHON
  afterEach(() => {
    if (saved === undefined) delete process.env.FACE_MULTITASK_PYTHON
    else process.env.FACE_MULTITASK_PYTHON = saved
  })
  it('without the Python environment says how to set it up', async () => {
    process.env.FACE_MULTITASK_PYTHON = path.join(dir, 'no-python')
    const r = await run('export', 'face_multitask_v28.safetensors')
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/npm run setup:python/)
  })
  it('--help works without Python', async () => {
    process.env.FACE_MULTITASK_PYTHON = path.join(dir, 'no-python')
    const r = await run('export', '--help')
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/--random-weights/)
  })
})
