// `inspect` and `export` of the CLI: reading model files in Node, and a clear message when the
// Python environment the export needs is missing.
import { execFile, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { onnx } from 'onnx-proto'
import { afterEach, describe, expect, it } from 'vitest'
import { packageRoot } from '../lib/native'
import { makeFixtureModel } from '../scripts/make-fixture'
import { FaceMultitask } from '../lib/face-multitask'
import { withExternalData } from './helpers/external-data'
import { tempDir } from './helpers/temp-dir'
import { run } from './helpers/run-cli'

const dir = tempDir('cli-files')

/** A safetensors file: 8-byte little-endian header length, the JSON header, then the data. */
/** config: an object (as JSON), the metadata's text itself (a string), or null for none. */
function safetensors(file: string, tensors: Record<string, number[]>, config: object | string | null): void {
  const header: Record<string, unknown> = { __metadata__: config === null ? {} : { config: typeof config === 'string' ? config : JSON.stringify(config) } }
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

/** The tensors that make a v2.7/v2.8 structure as scripts/export_onnx.py tells it (values: shapes). */
const V27_TENSORS: Record<string, number[]> = {
  'backbone.stem.0.weight': [96, 3, 4, 4],
  'sc.s': [20, 512],
  'lmk.mlp.0.weight': [512, 768],
  'pose.mlp.0.weight': [256, 768],
  'emotion.cls_head.weight': [7, 1044],
  'emotion.va_head.weight': [2, 1044],
  'gaze_eye_enc.enc.0.weight': [64, 3, 3, 3],
  'gaze.left.weight': [360, 1286],
  'blendshape.mlp.0.weight': [512, 768],
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

  it('an ONNX whose weights are in a file beside it (external data): listed; that file missing is said and exit 1, as load() fails', async () => {
    const split = withExternalData(makeFixtureModel({ generation: 'v2.5' }), 'weights.bin')
    const folder = path.join(dir, 'external')
    mkdirSync(folder, { recursive: true })
    writeFileSync(path.join(folder, 'weights.bin'), split.weights)
    const file = path.join(folder, 'ext.onnx')
    writeFileSync(file, split.onnx)
    const ok = await run('inspect', file)
    expect([ok.code, ok.out]).toEqual([0, expect.stringMatching(/external data\s+weights\.bin\n\s+contract\s+ok: the runtime loads it/)])
    await (await FaceMultitask.load({ model: file, backend: 'cpu' })).close()  // it does
    rmSync(path.join(folder, 'weights.bin'))
    const r = await run('inspect', file)
    expect(r.code).toBe(1)
    expect(r.out).toMatch(/external data\s+weights\.bin \(MISSING\)\n\s+contract\s+ok, but the runtime cannot load it: its external data is missing/)
    expect(r.err).toBe(`face-multitask: ${file}: the file holding its weights "weights.bin" is not beside it (copy it with the model)`)
    await expect(FaceMultitask.load({ model: file, backend: 'cpu' })).rejects.toThrow()  // and it cannot
  })

  it("metadata other than its generation's conventions (a hand-edited file) is a warning, since the runtime follows the file", async () => {
    const m = onnx.ModelProto.decode(makeFixtureModel({ generation: 'v2.8' }))
    m.metadataProps.find((p) => p.key === 'face_multitask.crop')!.value = 'stretch'
    m.metadataProps.find((p) => p.key === 'face_multitask.pose_convention')!.value = 'pitch=+p0,roll=-p2,yaw=+p1'
    const file = path.join(dir, 'edited.onnx')
    writeFileSync(file, onnx.ModelProto.encode(m).finish())
    const r = await run('inspect', file)
    expect(r.code).toBe(0)
    expect(r.err.split('\n')).toEqual([
      'face-multitask: warning: crop is "stretch", not v2.8\'s "square" (py-feat 2.1.5): the runtime follows the file',
      'face-multitask: warning: pose_convention is "pitch=+p0,roll=-p2,yaw=+p1", not v2.8\'s "pitch=-p0,roll=-p2,yaw=+p1" (py-feat 2.1.5): the runtime follows the file',
    ])
    expect((await run('inspect', path.join(dir, 'v24.onnx'))).err).toBe('')  // an exported file's own values: no warning
  })

  it('an ONNX declaring a precision load() does not know is refused, as load() refuses it', async () => {
    const m = onnx.ModelProto.decode(makeFixtureModel({ generation: 'v2.5' }))
    m.metadataProps.push(onnx.StringStringEntryProto.create({ key: 'face_multitask.precision', value: 'int8' }))
    const file = path.join(dir, 'int8.onnx')
    writeFileSync(file, onnx.ModelProto.encode(m).finish())
    const r = await run('inspect', file)
    expect(r.code).toBe(1)
    expect(r.out).toMatch(/REFUSED: .*"face_multitask\.precision" has unknown value "int8" \(expected one of fp16, bf16, fp32\)/)
    await expect(FaceMultitask.load({ model: file, backend: 'cpu' })).rejects.toThrow(/"face_multitask\.precision" has unknown value "int8"/)
  })

  it('a safetensors checkpoint: generation from the name, heads and gaze bins from the tensors', async () => {
    const file = path.join(dir, 'face_multitask_v28.safetensors')
    safetensors(file, { ...V27_TENSORS, 'emotion.cls_head.weight': [7, 1024] }, { gaze_bins: 180 })
    const r = await run('inspect', file)
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/generation\s+v2\.8 \(from the file name: the tensors fit v2\.7 and v2\.8, the same architecture\)/)
    expect(r.out).toMatch(/heads\s+au, emotion, va, gaze, mesh, pose, blendshapes$/m)
    expect(r.out).toMatch(/180 bins per angle/)
    expect(r.out).toMatch(/1024 features \(no AU input\)/)
    expect(r.out).toMatch(/py-feat 2\.1\.5/)
    expect(r.out).toMatch(/"gaze_bins":180/)
    expect(r.err).toBe('')
  })

  it('a safetensors checkpoint whose config export would refuse (none, not JSON, not an object) is said to be, on stderr', async () => {
    for (const [name, config, why] of [
      ['none', null, "its metadata has no 'config'"],
      ['text', '{gaze', "its metadata 'config' is not JSON"],
      ['list', '[1]', "its metadata 'config' is not a JSON object"],
    ] as const) {
      const file = path.join(dir, `config-${name}`, 'face_multitask_v28.safetensors')
      mkdirSync(path.dirname(file), { recursive: true })
      safetensors(file, V27_TENSORS, config)
      const r = await run('inspect', file)
      expect(r.code).toBe(0)
      expect(r.err).toBe(`face-multitask: warning: ${why}${name === 'none' ? " (py-feat's files keep the model config there as JSON)" : ''}: \`face-multitask export\` refuses it`)
    }
  })

  it("the gaze head's other layouts a v2.7 checkpoint may have: a head-frame direction, per-eye MLPs, pose-fed scalar FCs", async () => {
    const { 'gaze.left.weight': _, ...rest } = V27_TENSORS
    const headFrame = path.join(dir, 'head-frame', 'face_multitask_v27.safetensors')
    mkdirSync(path.dirname(headFrame), { recursive: true })
    safetensors(headFrame, { ...rest, 'gaze.left.weight': [3, 1286] }, { gaze_head_frame: true, gaze_bins: 0 })
    const hf = await run('inspect', headFrame)
    expect(hf.out).toMatch(/generation\s+v2\.7 \(from the file name/)
    expect(hf.out).toMatch(/^ {2}gaze head +eye-window RoIAlign head, a direction in the head frame \(gaze_head_frame\), turned by the head pose into yaw and pitch$/m)
    const mlp = path.join(dir, 'gaze-mlp', 'face_multitask_v27.safetensors')
    mkdirSync(path.dirname(mlp), { recursive: true })
    safetensors(mlp, { ...rest, 'gaze.left.0.weight': [256, 1286], 'gaze.left.2.weight': [360, 256] }, { gaze_hidden: 256, gaze_bins: 180 })
    const m = await run('inspect', mlp)
    expect(m.out).toMatch(/generation\s+v2\.7 \(from the file name/)
    expect(m.out).toMatch(/^ {2}gaze head +eye-window RoIAlign head, 180 bins per angle; an MLP per eye \(256 hidden\)$/m)
    // v2.5's four scalar FCs, but reading the 6D pose too (gaze_pose_6d, no eye windows): py-feat 2.1.x only.
    const { 'gaze_eye_enc.enc.0.weight': __, ...noEye } = rest
    const poseFed = path.join(dir, 'pose-fed', 'face_multitask_v27.safetensors')
    mkdirSync(path.dirname(poseFed), { recursive: true })
    const unified = { 'unified.norm_bb.weight': [768], 'unified.norm_lmk.weight': [256] }
    safetensors(poseFed, { ...noEye, ...unified, 'gaze.left_yaw.weight': [1, 1030] }, { gaze_eye_roi: false, gaze_bins: 0 })
    expect((await run('inspect', poseFed)).out).toMatch(/generation\s+v2\.7 \(from the file name: the tensors fit v2\.7 and v2\.8/)
    // Per-eye layers without the eye windows (gaze_eye_roi off) are not said to have them.
    const noWindows = path.join(dir, 'no-windows', 'face_multitask_v27.safetensors')
    mkdirSync(path.dirname(noWindows), { recursive: true })
    safetensors(noWindows, { ...noEye, ...unified, 'gaze.left.weight': [360, 1024] }, { gaze_eye_roi: false, gaze_bins: 180 })
    expect((await run('inspect', noWindows)).out).toMatch(/^ {2}gaze head +per-eye layers on the unified features \(no eye windows\), 180 bins per angle$/m)
    // The same FCs reading the unified features alone are v2.5's.
    const v25 = path.join(dir, 'pose-fed', 'face_multitask_v2.safetensors')
    safetensors(v25, { ...noEye, ...unified, 'gaze.left_yaw.weight': [1, 1024] }, {})
    expect((await run('inspect', v25)).out).toMatch(/generation\s+v2\.5 \(from the tensors\)/)
  })

  it('lists only the heads whose tensors the checkpoint holds', async () => {
    const file = path.join(dir, 'partial.safetensors')
    safetensors(file, { 'backbone.stem.0.weight': [96, 3, 4, 4], 'gaze.left_yaw.weight': [1, 1024], 'emotion.cls_head.weight': [7, 1044], 'lmk.mlp.0.weight': [512, 768] }, {})
    const r = await run('inspect', file)
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/generation\s+v2\.4 \(from the tensors\)/)
    expect(r.out).toMatch(/^ {2}heads\s+emotion, gaze, mesh \(no tensors for: au, va, pose\)$/m)
    expect(r.out).toMatch(/1044 features \(reads the AU probabilities\)/)
  })

  it('a v2.7/v2.8 structure with no telling name or config: says so, names no conventions', async () => {
    const file = path.join(dir, 'renamed.safetensors')
    safetensors(file, V27_TENSORS, { gaze_bins: 180 })
    const r = await run('inspect', file)
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/generation\s+v2\.7 or v2\.8 \(the same architecture: neither the file name nor the config tells them apart\)/)
    expect(r.out).not.toMatch(/conventions/)
    expect(r.err).toContain('needs --generation v2.7|v2.8')
    // The config can tell them, as it does for the export.
    safetensors(file, V27_TENSORS, { generation: 'v2.7' })
    expect((await run('inspect', file)).out).toMatch(/generation\s+v2\.7 \(from the config/)
  })

  it('tensors that fit no generation: a warning, not a generation taken from the file name', async () => {
    const file = path.join(dir, 'face_multitask_v27.safetensors')
    safetensors(file, { 'blendshape.mlp.0.weight': [512, 768], 'pose.mlp.0.weight': [256, 768] }, {})
    const r = await run('inspect', file)
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/generation\s+unknown: the tensors fit no known generation \(backbone: no;/)
    expect(r.out).not.toMatch(/v2\.7|conventions/)
    expect(r.out).toMatch(/heads\s+pose, blendshapes \(no tensors for: au, emotion, va, gaze, mesh\)/)
    expect(r.err).toBe(`face-multitask: warning: the tensors of "${file}" fit no known face_multitask_v2 generation: \`face-multitask export\` would refuse it`)
  })

  it('a file name that contradicts the tensors is reported, not believed', async () => {
    const file = path.join(dir, 'v25-named', 'face_multitask_v2.safetensors')
    mkdirSync(path.dirname(file), { recursive: true })
    safetensors(file, V27_TENSORS, {})
    const r = await run('inspect', file)
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/generation\s+v2\.7 or v2\.8 by the tensors, but the file name says v2\.5$/m)
    expect(r.err).toMatch(/warning: the file name of .* says v2\.5, but its tensors are a v2\.7\/v2\.8 architecture/)
  })

  it('a missing file is one message, exit 1', async () => {
    const r = await run('inspect', path.join(dir, 'nope.onnx'))
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/cannot read ".*nope\.onnx": no such file/)
  })

  it('a directory says it is one, exit 1', async () => {
    const r = await run('inspect', dir)
    expect(r.code).toBe(1)
    expect(r.err).toBe(`face-multitask: cannot read "${dir}": it is a directory`)
  })

  /** A .safetensors file whose 8-byte length prefix is followed by this header text. */
  function rawHeader(name: string, header: string): string {
    const file = path.join(dir, name)
    const json = Buffer.from(header)
    const len = Buffer.alloc(8)
    len.writeBigUInt64LE(BigInt(json.length))
    writeFileSync(file, Buffer.concat([len, json]))
    return file
  }

  it.each([
    ['header not JSON', '{"a": ', 'the header is not JSON (Unexpected end of JSON input)'],
    ['header null', 'null', 'the header is null, not a JSON object'],
    ['header an array', '[1, 2]', 'the header is an array, not a JSON object'],
    ['an entry without a shape', '{"x.weight": {"dtype": "F32", "data_offsets": [0, 0]}}', 'tensor "x.weight" has no shape array of sizes (got none)'],
    ['an entry without a dtype', '{"x.weight": {"shape": [2], "data_offsets": [0, 8]}}', 'tensor "x.weight" has no dtype string'],
    ['an entry that is not an object', '{"x.weight": 3}', 'tensor "x.weight" is a number, not an object with a dtype and a shape'],
    ['a shape of non-sizes', '{"x.weight": {"dtype": "F32", "shape": [2, "3"]}}', 'tensor "x.weight" has no shape array of sizes (got [2,"3"])'],
    ['metadata not strings', '{"__metadata__": {"config": 1}}', '"__metadata__" is not an object of strings'],
    ['an entry without data_offsets', '{"x.weight": {"dtype": "F32", "shape": [2]}}', 'tensor "x.weight" has no data_offsets [begin, end] (got none)'],
    ['data_offsets past the file', '{"x.weight": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
      'it is cut off: its tensors need 8 bytes of data after the header, the file holds 0 (an interrupted download or copy?)'],
  ])('a malformed safetensors file (%s): one line naming the file, exit 1', async (_what, header, why) => {
    const file = rawHeader('bad.safetensors', header)
    const r = await run('inspect', file)
    expect(r.code).toBe(1)
    expect(r.err).toBe(`face-multitask: "${file}" is not a readable safetensors checkpoint: ${why}`)
    expect(r.out).toBe('')
  })

  it('a checkpoint is told by its content, not its name: a renamed safetensors is read, a .pth pickle is named as one', async () => {
    const file = path.join(dir, 'renamed-checkpoint.bin')
    safetensors(file, V27_TENSORS, { n_au: 20 })
    const r = await run('inspect', file)
    // Read as a checkpoint; its name no longer tells v2.7 from v2.8, which is said.
    expect([r.code, r.err]).toEqual([0, `face-multitask: warning: "${file}" may be v2.7 or v2.8: \`face-multitask export\` needs --generation v2.7|v2.8`])
    const pickle = path.join(dir, 'weights.pth')
    writeFileSync(pickle, Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00]))
    expect((await run('inspect', pickle)).err).toBe(`face-multitask: ${pickle} is a torch pickle (as py-feat's v2.4 checkpoint is): Node cannot read it; export it and inspect the .onnx`)
    // Named .pt but neither zip nor pickle (an HTML error page saved as the download): said so.
    const page = path.join(dir, 'face_multitask_v2.pt')
    writeFileSync(page, '<!DOCTYPE html><html>Not Found</html>')
    const p = await run('inspect', page)
    expect([p.code, p.err]).toEqual([1, `face-multitask: ${page} is named as a torch checkpoint but is not one: it begins with bytes ` +
      '3c 21 44 4f 43 54 59 50 45, neither a zip nor a pickle (a cut-off download, or another file renamed?)'])
    const empty = path.join(dir, 'empty.pt')
    writeFileSync(empty, '')
    expect((await run('inspect', empty)).err).toBe(`face-multitask: ${empty} is empty (0 bytes)`)
  })

  it('a safetensors file too short for its header: one line naming the file, exit 1', async () => {
    const file = path.join(dir, 'short.safetensors')
    writeFileSync(file, Buffer.from([1, 2, 3]))
    const r = await run('inspect', file)
    expect(r.code).toBe(1)
    expect(r.err).toBe(`face-multitask: "${file}" is not a readable safetensors checkpoint: it is 3 bytes long, too short for the 8-byte header length`)
    const long = rawHeader('long.safetensors', '{}')
    writeFileSync(long, Buffer.concat([Buffer.from([0xff, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{}')]))
    expect((await run('inspect', long)).err).toBe(`face-multitask: "${long}" is not a readable safetensors checkpoint: its header length (255 bytes) does not fit the file (10 bytes)`)
  })

  it('an unknown option is a usage error (exit 2), not a file name', async () => {
    const r = await run('inspect', '--bogus')
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/^face-multitask: inspect: Unknown option '--bogus'/)
    expect(r.err).toMatch(/face-multitask inspect --help/)
    expect((await run('inspect')).code).toBe(2)
    expect((await run('inspect', 'a.onnx', 'b.onnx')).err).toMatch(/give exactly one file: .*, got 2/)
  })
})

describe('face-multitask export', () => {
  const saved = process.env.FACE_MULTITASK_PYTHON
  afterEach(() => {
    if (saved === undefined) delete process.env.FACE_MULTITASK_PYTHON
    else process.env.FACE_MULTITASK_PYTHON = saved
  })
  /** A checkpoint file that exists (the environment's check comes before its contents are read). */
  function checkpoint(): string {
    const file = path.join(dir, 'no-env', 'face_multitask_v28.safetensors')
    mkdirSync(path.dirname(file), { recursive: true })
    writeFileSync(file, 'weights')
    return file
  }

  it('without the Python environment says how to set it up', async () => {
    process.env.FACE_MULTITASK_PYTHON = path.join(dir, 'no-python')
    const r = await run('export', checkpoint())
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/npm run setup:python/)
    expect((await run('export', '--random-weights', '--generation', 'v2.8', '--out', dir)).err).toMatch(/npm run setup:python/)
  })

  it("without the Python environment a wrong argument is still said first, in the script's own words and exit code", async () => {
    process.env.FACE_MULTITASK_PYTHON = path.join(dir, 'no-python')
    const noGeneration = await run('export', '--random-weights')
    expect([noGeneration.code, noGeneration.err]).toEqual([2, expect.stringMatching(/^usage: export_onnx\.py [^]*\nexport_onnx\.py: error: --random-weights needs --generation v2\.4\|v2\.5\|v2\.7\|v2\.8$/)])
    const missing = path.join(dir, 'not-there.safetensors')
    expect(await run('export', missing)).toMatchObject({ code: 1, err: `[export] error: ${missing}: no such file` })
    expect((await run('export', checkpoint(), '--seed', '3')).code).toBe(2)  // --seed goes with --random-weights only
    expect((await run('export', checkpoint(), '--out', path.join(checkpoint(), 'sub'))).err).toMatch(/^\[export\] error: --out .*: cannot be made, .* is a file, not a folder$/)
  })
  it('FACE_MULTITASK_VENV (where `npm run setup:python` was told to make the venv) is where its Python is looked for', async () => {
    const saved = { python: process.env.FACE_MULTITASK_PYTHON, venv: process.env.FACE_MULTITASK_VENV }
    delete process.env.FACE_MULTITASK_PYTHON
    process.env.FACE_MULTITASK_VENV = path.join(dir, 'other-disk', 'venv')
    try {
      const r = await run('export', checkpoint())
      expect(r.code).toBe(1)
      expect(r.err).toContain(`and ${path.join(dir, 'other-disk', 'venv', 'bin', 'python')} does not exist.`)
      expect(r.err).toContain('with the same FACE_MULTITASK_VENV.')
    } finally {
      if (saved.venv === undefined) delete process.env.FACE_MULTITASK_VENV
      else process.env.FACE_MULTITASK_VENV = saved.venv
      if (saved.python !== undefined) process.env.FACE_MULTITASK_PYTHON = saved.python
    }
  })

  it('a Python that is a broken link (the interpreter the venv was made with is gone or out of reach) says so', async () => {
    const link = path.join(dir, 'python-link')
    symlinkSync(path.join(dir, 'gone', 'python3.11'), link)
    process.env.FACE_MULTITASK_PYTHON = link
    const r = await run('export', checkpoint())
    expect(r.code).toBe(1)
    expect(r.err).toContain(`and ${link} is a link to ${path.join(dir, 'gone', 'python3.11')}, which cannot be used: no such file.\nSet it up once with`)
  })

  it('--help works without Python', async () => {
    process.env.FACE_MULTITASK_PYTHON = path.join(dir, 'no-python')
    const r = await run('export', '--help')
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/--random-weights/)
  })

  it("--help says where --out defaults to: the checkpoint's folder, with --random-weights the current directory", async () => {
    const r = await run('export', '--help')
    expect(r.out).toMatch(/--out DIR +where to write \(default: the checkpoint's own folder; with --random-weights,\n\s+the current directory/)
    expect(r.out).not.toMatch(/default: the current directory\)/)
  })

  /** A stand-in "python" that records its arguments and exits with the given status. */
  function fakePython(status: number): string {
    const file = path.join(dir, `python-exit-${status}`)
    writeFileSync(file, `#!/bin/sh\nexit ${status}\n`)
    chmodSync(file, 0o755)
    return file
  }

  it('the script path it runs: relative inside the current directory, absolute outside it (never ../..)', async () => {
    process.env.FACE_MULTITASK_PYTHON = fakePython(0)
    const script = path.join(packageRoot(), 'scripts', 'export_onnx.py')
    const cwd = process.cwd()
    try {
      process.chdir(dir)
      const outside = await run('export', 'x.safetensors')
      expect(outside.code).toBe(0)
      expect(outside.err).toBe(`face-multitask: running ${script} with ${process.env.FACE_MULTITASK_PYTHON}`)
      process.chdir(packageRoot())
      expect((await run('export', 'x.safetensors')).err).toContain(`running ${path.join('scripts', 'export_onnx.py')} with`)
    } finally {
      process.chdir(cwd)
    }
  })

  it("exit codes: the script's 1 (failed) and 2 (bad arguments) pass through; anything else is 1", async () => {
    for (const [status, code] of [[1, 1], [2, 2], [3, 1], [139, 1]]) {
      process.env.FACE_MULTITASK_PYTHON = fakePython(status)
      expect((await run('export', 'x.safetensors')).code, `python exit ${status}`).toBe(code)
    }
  })

  it('--help names the options that pass through to the script, and they do', async () => {
    const help = await run('export', '--help')
    expect(help.out).toMatch(/Other options go to scripts\/export_onnx\.py as they are: --trust-pickle/)
    const file = path.join(dir, 'python-args')
    const args = path.join(dir, 'python-args.txt')
    writeFileSync(file, `#!/bin/sh\nshift\necho "$@" > ${args}\n`)
    chmodSync(file, 0o755)
    process.env.FACE_MULTITASK_PYTHON = file
    expect((await run('export', 'face_multitask_v2.pt', '--trust-pickle', '--threads', '2')).code).toBe(0)
    expect(readFileSync(args, 'utf8')).toBe('face_multitask_v2.pt --trust-pickle --threads 2\n')
  })

  it('a Python killed by a signal (the OOM killer, kill -9): exit 1 with a message saying so', async () => {
    const file = path.join(dir, 'python-killed')
    writeFileSync(file, '#!/bin/sh\necho "[export    1.0s] building the network"\nkill -9 $$\n')
    chmodSync(file, 0o755)
    process.env.FACE_MULTITASK_PYTHON = file
    const r = await run('export', 'x.safetensors')
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/\nface-multitask: the export was killed by SIGKILL \(out of memory\?\) before it finished$/)
  })

  // A stand-in script that, as export_onnx.py does, cleans up and exits 130 on the signal.
  it.each([
    ['SIGINT', 'Ctrl-C: the CLI waits for the script to stop and exits 1, as --help says; a SIGINT to the CLI alone is passed on', undefined],
    ['SIGTERM', 'SIGTERM to the CLI (a process manager) stops the script too, which cleans up; exit 1 saying so', 'face-multitask: the export was stopped (SIGTERM) before it finished'],
  ] as const)('%s: %s', async (sig, _what, said) => {
    const file = path.join(dir, `python-${sig}`)
    const started = path.join(dir, `python-${sig}-started`)
    const trapped = path.join(dir, `python-${sig}-trapped`)
    writeFileSync(file, `#!/bin/sh\ntrap 'echo trapped > ${trapped}; exit 130' ${sig.slice(3)}\ntouch ${started}\nwhile :; do sleep 0.05; done\n`)
    chmodSync(file, 0o755)
    process.env.FACE_MULTITASK_PYTHON = file
    const listeners = process.listenerCount(sig)
    const running = run('export', 'x.safetensors')
    for (let i = 0; i < 200 && !existsSync(started); i++) await new Promise((r) => setTimeout(r, 25))
    expect(existsSync(started)).toBe(true)
    process.emit(sig, sig)  // this process's handlers only, as `kill -<sig> <cli pid>` would reach it
    const r = await running
    expect(r.code).toBe(1)
    if (said) expect(r.err.split('\n').at(-1)).toBe(said)
    expect(readFileSync(trapped, 'utf8')).toBe('trapped\n')
    expect(process.listenerCount(sig)).toBe(listeners)
  }, 20_000)

  // export_onnx.py checks the checkpoint path before it imports torch: any Python 3 runs this.
  const python = [path.join(packageRoot(), '.venv', 'bin', 'python'), '/usr/bin/python3'].find((p) => existsSync(p))
  it('scripts/export_onnx.py: a directory says so and exits 1; bad arguments exit 2', async (ctx) => {
    if (python === undefined) ctx.skip('no Python 3 here (.venv/bin/python or /usr/bin/python3)')
    const script = path.join(packageRoot(), 'scripts', 'export_onnx.py')
    const runScript = (...args: string[]) => promisify(execFile)(python!, [script, ...args]).then(() => ({ code: 0, stderr: '' }), (e) => e as { code: number; stderr: string })
    const folder = await runScript(dir)
    expect(folder.code).toBe(1)
    expect(folder.stderr).toBe(`[export] error: ${dir}: is a directory, not a checkpoint file (give the .pt or .safetensors file in it)\n`)
    const missing = await runScript(path.join(dir, 'nope.safetensors'))
    expect(missing.code).toBe(1)
    expect(missing.stderr).toMatch(/nope\.safetensors: no such file/)
    const bogus = await runScript('--bogus')
    expect(bogus.code).toBe(2)
    expect(bogus.stderr).toMatch(/unrecognized arguments: --bogus/)
    // Through the CLI (the script's output goes to the terminal): the same exit codes.
    process.env.FACE_MULTITASK_PYTHON = python
    expect((await run('export', dir)).code).toBe(1)
    expect((await run('export', '--bogus')).code).toBe(2)
  })

  it("scripts/export_onnx.py's strict load takes a file without BatchNorm's num_batches_tracked (py-feat's load does), and still refuses a missing weight", async (ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    const code = `
import sys, torch
sys.path.insert(0, ${JSON.stringify(path.join(packageRoot(), 'scripts'))})
import export_onnx as e
m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
state = {k: v for k, v in m.state_dict().items() if not k.endswith('num_batches_tracked')}
state['1.running_mean'] = torch.full((4,), 0.5)
e.load_strict(m, state, 'ckpt')
print('loaded', float(m[1].running_mean[0]), int(m[1].num_batches_tracked))
del state['1.weight']
try:
    e.load_strict(m, state, 'ckpt')
except e.ExportError as err:
    print('refused:', err)
`
    const r = await promisify(execFile)(venvPython, ['-c', code])
    const lines = r.stdout.trim().split('\n').map((l) => l.trim())
    expect(lines.filter((l) => /^(loaded|refused)/.test(l))).toEqual(['loaded 0.5 0', 'refused: ckpt: the weights do not fit the model; missing 1: 1.weight'])
    expect(lines[0]).toMatch(/^ckpt: no num_batches_tracked for 1 BatchNorm layer\(s\)/)
  }, 60_000) // torch's first import on a cold disk takes seconds

  /** scripts/export_onnx.py run directly: its exit code, stdout and stderr. */
  const runScript = (py: string, ...args: string[]) =>
    promisify(execFile)(py, [path.join(packageRoot(), 'scripts', 'export_onnx.py'), ...args], { cwd: dir })
      .then((r) => ({ code: 0, ...r }), (e) => e as { code: number; stdout: string; stderr: string })

  it('scripts/export_onnx.py: a safetensors file cut off in its header, and --contract-metadata that is not an object, are one line each', async (ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    const full = path.join(dir, 'cut-header', 'full.safetensors')
    mkdirSync(path.dirname(full), { recursive: true })
    safetensors(full, V27_TENSORS, { n_au: 20 })
    const cut = path.join(dir, 'cut-header', 'face_multitask_v28.safetensors')
    writeFileSync(cut, readFileSync(full).subarray(0, 100))  // a download stopped inside the header
    const c = await runScript(venvPython, cut, '--no-fp16')
    expect(c.code).toBe(1)
    expect(c.stderr).toMatch(new RegExp(`^\\[export\\] error: .*face_multitask_v28\\.safetensors: a safetensors file cut off: its header alone is \\d+ bytes, the file 100 \\(an interrupted download or copy\\?\\)\\n$`))
    // Cut off after its header, in its tensors' bytes: the same advice, not safetensors' own words alone.
    const size = statSync(full).size
    writeFileSync(cut, readFileSync(full).subarray(0, size - 4))
    const t = await runScript(venvPython, cut, '--no-fp16')
    expect([t.code, t.stderr]).toEqual([1, expect.stringMatching(new RegExp(`^\\[export\\] error: .*face_multitask_v28\\.safetensors: a safetensors file cut off: its tensors end at byte ${size}, the file has ${size - 4} \\(an interrupted download or copy\\?\\): `))])
    const meta = path.join(dir, 'cut-header', 'meta.json')
    for (const [text, why] of [['{"a": ', 'not JSON'], ['[1, 2]', 'must be a JSON object of strings']]) {
      writeFileSync(meta, text)
      const r = await runScript(venvPython, '--random-weights', '--generation', 'v2.5', '--no-fp16', '--contract-metadata', meta, '--out', path.join(dir, 'cut-header', 'out'))
      expect(r.code).toBe(1)
      expect(r.stderr).not.toMatch(/Traceback/)
      expect(r.stderr).toContain(`[export] error: --contract-metadata ${meta}: ${why}`)
    }
  }, 180_000)

  it('scripts/export_onnx.py: an --out that cannot be a folder is one line naming it, exit 1, before any work', async (ctx) => {
    if (python === undefined) ctx.skip('no Python 3 here (.venv/bin/python or /usr/bin/python3)')
    const ckpt = path.join(dir, 'out-check', 'face_multitask_v28.safetensors')
    mkdirSync(path.dirname(ckpt), { recursive: true })
    writeFileSync(ckpt, 'not read: the folder is checked first')
    const file = path.join(dir, 'out-check', 'a-file')
    writeFileSync(file, '')
    for (const args of [[ckpt, '--out', file], ['--random-weights', '--generation', 'v2.5', '--out', file]]) {
      const r = await runScript(python!, ...args)
      expect(r.code, args.join(' ')).toBe(1)
      expect(r.stderr).toBe(`[export] error: --out ${file}: ${file} is a file, not a folder\n`)
      expect(r.stdout).toBe('') // nothing ran: not even torch was imported
    }
    const below = await runScript(python!, ckpt, '--out', path.join(file, 'models'))
    expect(below.code).toBe(1)
    expect(below.stderr).toBe(`[export] error: --out ${path.join(file, 'models')}: cannot be made, ${file} is a file, not a folder\n`)
    process.env.FACE_MULTITASK_PYTHON = python
    expect((await run('export', ckpt, '--out', file)).code).toBe(1)
  })

  it('scripts/export_onnx.py: flags it would ignore or crash on are bad arguments (exit 2)', async (ctx) => {
    if (python === undefined) ctx.skip('no Python 3 here (.venv/bin/python or /usr/bin/python3)')
    const ckpt = path.join(dir, 'face_multitask_v28.safetensors')
    writeFileSync(ckpt, 'never read')
    const cases: [string[], string][] = [
      [[ckpt, '--seed', '3'], '--seed goes with --random-weights only'],
      [['--random-weights', '--generation', 'v2.5', '--seed', String(2n ** 64n)], '--seed must be an integer from'],
      [['--random-weights', '--generation', 'v2.5', '--threads', '-1'], '--threads must be 0'],
      [[ckpt, '--zero-au-node', '7'], '--zero-au-node goes with --random-weights only'],
      [['--random-weights', '--generation', 'v2.5', '--zero-au-node', '20'], '--zero-au-node must be an AU node from 0 to 19, got 20'],
      [[ckpt, '--out', ''], '--out: empty path'],
      [[ckpt, '--contract-metadata', path.join(dir, 'none.json')], `--contract-metadata ${path.join(dir, 'none.json')}: no such file`],
      // argparse keeps the last of a flag given twice; the CLI's other commands refuse it, and so does this.
      [['--random-weights', '--generation', 'v2.5', '--generation', 'v2.8'], '--generation given more than once ("v2.5", then "v2.8"): give it once'],
      [[ckpt, '--out=a', '--out', 'b'], '--out given more than once ("a", then "b"): give it once'],
      [['--random-weights', '--gen', 'v2.5'], 'unrecognized arguments: --gen'],  // named in full, as elsewhere
      // Said before a random checkpoint is made (and a checkpoint read) rather than after.
      [['--random-weights', '--generation', 'v2.5', '--opset', '5'], '--opset 5 is too old for the FP16 file'],
      [['--random-weights', '--generation', 'v2.8', '--opset', '15', '--no-fp16'], '--opset 15 is too old for v2.8'],
    ]
    for (const [args, message] of cases) {
      const r = await runScript(python!, ...args)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stderr).toContain(`export_onnx.py: error: ${message}`)
      expect(r.stderr).not.toMatch(/Traceback/)
    }
  })

  // These need torch and safetensors: the project's .venv (npm run setup:python).
  const venvPython = path.join(packageRoot(), '.venv', 'bin', 'python')

  it('scripts/export_onnx.py: a safetensors file whose config is not a JSON object: one line, exit 1', async (ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    const file = path.join(dir, 'config-array', 'face_multitask_v28.safetensors')
    mkdirSync(path.dirname(file), { recursive: true })
    safetensors(file, V27_TENSORS, [1, 2])
    const r = await runScript(venvPython, file, '--no-fp16')
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(`[export] error: ${file}: safetensors metadata 'config' is an array, not a JSON object of the model's settings\n`)
  }, 60_000)

  it.each(['SIGINT', 'SIGTERM'] as const)('scripts/export_onnx.py: %s during an export says so, without a traceback, and leaves no partial file', async (sig, ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    const out = path.join(dir, `interrupted-${sig}`)
    const child = spawn(venvPython, [path.join(packageRoot(), 'scripts', 'export_onnx.py'), '--random-weights', '--generation', 'v2.5', '--no-fp16', '--out', out])
    let stderr = ''
    child.stderr.on('data', (d) => { stderr += d })
    // The first progress line comes once torch is imported; the export is seconds from done then.
    child.stdout.once('data', () => child.kill(sig))
    const [code, signal] = await once(child, 'exit')
    expect(stderr).not.toMatch(/Traceback/)
    expect(stderr).toBe('[export] interrupted (Ctrl-C, SIGTERM or SIGHUP)\n')
    expect([code, signal]).toEqual([130, null])
    const left = existsSync(out) ? readdirSync(out, { recursive: true }).map(String) : []
    expect(left.filter((f) => f.endsWith('.partial'))).toEqual([])
  }, 120_000)

  it('scripts/export_onnx.py: a bare state dict, and a pickle beyond tensors, are said in one readable line', async (ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    const bare = path.join(dir, 'bare', 'face_multitask_v2.pt')
    const obj = path.join(dir, 'obj', 'face_multitask_v2.pt')
    const make = `import torch, argparse, os
for d in (${JSON.stringify(path.dirname(bare))}, ${JSON.stringify(path.dirname(obj))}): os.makedirs(d, exist_ok=True)
torch.save({f"layer{i}.weight": torch.zeros(2) for i in range(300)}, ${JSON.stringify(bare)})
torch.save({"model": {"a": torch.zeros(1)}, "config": argparse.Namespace(n_au=20)}, ${JSON.stringify(obj)})`
    await promisify(execFile)(venvPython, ['-c', make])
    const b = await runScript(venvPython, bare, '--no-fp16')
    expect(b.code).toBe(1)
    expect(b.stderr).toBe(`[export] error: ${bare}: a torch pickle, but not py-feat's {'model': state_dict, 'config': dict} checkpoint: ` +
      'it holds a bare state dict of 300 tensors (layer0.weight, layer1.weight, layer10.weight, ...), without the config\n')
    const o = await runScript(venvPython, obj, '--no-fp16')
    expect(o.code).toBe(1)
    expect(o.stderr).toMatch(/^\[export\] error: .*: the pickle holds objects beyond tensors and plain containers, which torch\.load\(weights_only=True\) refuses\. If you trust the file, pass --trust-pickle\. \(Unsupported global: GLOBAL argparse\.Namespace\)\n$/)
    expect(o.stderr).not.toContain('\x1b[')  // no terminal colour codes
  }, 120_000)

  /**
   * A random v2.5 checkpoint made by the export script in `out`, then changed by `edit` (Python
   * lines over `state`, its tensors, and `meta`, its metadata; torch and json imported): its path.
   */
  async function derivedCheckpoint(out: string, edit: string, generation = 'v2.5'): Promise<string> {
    const make = `import sys, json; from pathlib import Path; sys.path.insert(0, ${JSON.stringify(path.join(packageRoot(), 'scripts'))})
import export_onnx as e, torch
from safetensors import safe_open
from safetensors.torch import save_file
p = e.make_random_checkpoint(${JSON.stringify(generation)}, 0, Path(${JSON.stringify(out)}))
with safe_open(str(p), 'pt') as f:
    meta = f.metadata(); state = {k: f.get_tensor(k) for k in f.keys()}
${edit}
save_file(state, str(p), metadata=meta)
print(p)`
    const made = await promisify(execFile)(venvPython, ['-c', make], { cwd: dir })
    return made.stdout.trim().split('\n').pop()!
  }

  it('scripts/export_onnx.py: a second export of the same files into the same folder is refused while the first runs, not renamed over its verified file', async (ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    const out = path.join(dir, 'two-exports')
    mkdirSync(out, { recursive: true })
    const lock = (hold: boolean) => `import sys; from pathlib import Path; sys.path.insert(0, ${JSON.stringify(path.join(packageRoot(), 'scripts'))})
import export_onnx as e
try:
    e.lock_outputs(Path(${JSON.stringify(out)}), 'face_multitask_v2.8')
    print('held', flush=True)
except e.ExportError as err:
    print(err, flush=True)
${hold ? 'sys.stdin.read()' : ''}`
    const first = spawn(venvPython, ['-c', lock(true)], { stdio: ['pipe', 'pipe', 'inherit'] })
    try {
      const [held] = (await once(first.stdout, 'data')) as [Buffer]
      expect(held.toString().trim()).toBe('held')
      const second = await promisify(execFile)(venvPython, ['-c', lock(false)])
      expect(second.stdout).toBe(`another export is writing face_multitask_v2.8.fp32.onnx and .fp16.onnx in ${out} now: wait for it to end, or give another --out\n`)
    } finally {
      first.stdin.end()
      if (first.exitCode === null) await once(first, 'exit')
    }
    expect((await promisify(execFile)(venvPython, ['-c', lock(false)])).stdout).toBe('held\n')  // released with its process
  }, 60_000)

  it('scripts/export_onnx.py: out of memory is one line saying so (not a traceback, not blamed on the checkpoint); a package that is installed but cannot load is not called missing; SIGHUP stops it as Ctrl-C does', async (ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    const mods = path.join(dir, 'broken-module')
    mkdirSync(mods, { recursive: true })
    writeFileSync(path.join(mods, 'brokenmod.py'), 'raise ImportError("libbroken.so: failed to map segment from shared object")\n')
    const script = `import os, signal, sys, time; sys.path.insert(0, ${JSON.stringify(path.join(packageRoot(), 'scripts'))}); sys.path.insert(0, ${JSON.stringify(mods)})
import export_onnx as e
def oom(*a, **k): raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 4194304 bytes. Error code 12 (Cannot allocate memory)")
e.make_random_checkpoint = oom
print('oom', e.main(['--random-weights', '--generation', 'v2.8', '--out', ${JSON.stringify(path.join(dir, 'oom'))}]), flush=True)
e.release_config = oom  # building the network runs out of memory: not the config's fault
try:
    e.build_network('v2.8', None, {})
except e.ExportError as err:
    print('blamed the config', flush=True)
except RuntimeError as err:
    print('oom passed through', e.out_of_memory(err), flush=True)
try:
    e.REQUIRED_MODULES = [('brokenmod', 'brokenmod')]
    e.require_packages()
except e.ExportError as err:
    print(err, flush=True)
def hangup(*a, **k):
    os.kill(os.getpid(), signal.SIGHUP)
    time.sleep(5)
e.REQUIRED_MODULES = []
e.make_random_checkpoint = hangup
print('hup', e.main(['--random-weights', '--generation', 'v2.8', '--out', ${JSON.stringify(path.join(dir, 'oom'))}]), flush=True)`
    const r = await promisify(execFile)(venvPython, ['-c', script]).catch((e) => e as { stdout: string; stderr: string })
    expect(r.stdout.split('\n').filter((l) => l !== '' && !l.startsWith('[export'))).toEqual([
      'oom 1',
      'oom passed through True',
      `the Python package brokenmod of ${venvPython} is installed but cannot be loaded (ImportError: libbroken.so: failed to map segment from shared object); out of memory, or a broken install`,
      'hup 130',
    ])
    expect(r.stderr).toContain("[export] error: out of memory (RuntimeError: [enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 4194304 bytes. Error code 12 (Cannot allocate memory)); the export needs a few GB: close other programs, or use a machine with more\n")
    expect(r.stderr).toContain('[export] interrupted (Ctrl-C, SIGTERM or SIGHUP)\n')
    expect(r.stderr).not.toContain('Traceback')
  }, 120_000)

  it('scripts/export_onnx.py: a closed stdout (`export ... | head -1`) ends the progress lines, not the export', async (ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    const script = `import sys; sys.path.insert(0, ${JSON.stringify(path.join(packageRoot(), 'scripts'))})
import export_onnx as e
e.step('one')
sys.stdin.read()  # until the test has closed the pipe's reading end
for i in range(3): e.step(f'more {i}'); e.note('detail')
print('still running', file=sys.stderr)`
    const child = spawn(venvPython, ['-c', script], { stdio: ['pipe', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const [first] = (await once(child.stdout, 'data')) as [Buffer]
    expect(first.toString()).toMatch(/^\[export +[\d.]+s\] one/)
    child.stdout.destroy()
    child.stdin.end()
    const [code] = (await once(child, 'exit')) as [number]
    expect(stderr).toBe('still running\n')
    expect(code).toBe(0)
  }, 60_000)

  it('scripts/export_onnx.py: a config that does not fit the tensors is said of that checkpoint, naming the settings', async (ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    const out = path.join(dir, 'bad-config')
    const ckpt = await derivedCheckpoint(out, `cfg = json.loads(meta['config']); cfg['n_au'] = 24; meta['config'] = json.dumps(cfg)`)
    const r = await runScript(venvPython, ckpt, '--no-fp16', '--out', out)
    expect(r.code).toBe(1)
    expect(r.stderr).toContain(`[export] error: ${ckpt}: the checkpoint's config does not fit its tensors under py-feat 2.0.3's class: `)
    expect(r.stderr).toContain('n_au=24, but log_var_au has 20')
  }, 120_000)

  it("scripts/export_onnx.py: a gaze config that does not fit the gaze head's tensors names both settings and the layer", async (ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    const out = path.join(dir, 'bad-gaze-config')
    const ckpt = await derivedCheckpoint(out, `cfg = json.loads(meta['config']); cfg['gaze_head_frame'] = True; cfg['gaze_bins'] = 0; meta['config'] = json.dumps(cfg)`, 'v2.7')
    const r = await runScript(venvPython, ckpt, '--no-fp16', '--out', out)
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('gaze_bins=0 and gaze_head_frame=True mean 3 gaze outputs per eye, but gaze.left.weight is [360, 1286]')
  }, 120_000)

  it('scripts/export_onnx.py --random-config: a JSON object of the release config\'s settings, with --random-weights only', async (ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    const out = path.join(dir, 'random-config')
    const notObject = await runScript(venvPython, '--random-weights', '--generation', 'v2.7', '--random-config', '[1]', '--out', out)
    expect(notObject.code).toBe(2)
    expect(notObject.stderr).toContain('argument --random-config: a JSON object of config settings, got [1]')
    const notJson = await runScript(venvPython, '--random-weights', '--generation', 'v2.7', '--random-config', '{gaze', '--out', out)
    expect(notJson.code).toBe(2)
    expect(notJson.stderr).toContain('argument --random-config: not JSON (')
    const alone = await runScript(venvPython, 'x.safetensors', '--random-config', '{}')
    expect(alone.code).toBe(2)
    expect(alone.stderr).toContain("--random-config goes with --random-weights only (a checkpoint's config is its own)")
    const unknown = await runScript(venvPython, '--random-weights', '--generation', 'v2.7', '--random-config', '{"gaze_hiden": 64}', '--no-fp16', '--out', out)
    expect(unknown.code).toBe(2)  // a bad argument, found once py-feat's config class is loaded
    expect(unknown.stderr).toMatch(/^\[export\] error: --random-config: gaze_hiden: not a setting of v2\.7's config \(py-feat 2\.1\.1\); its settings: afg_channels, .*gaze_hidden, /)
    const unbuildable = await runScript(venvPython, '--random-weights', '--generation', 'v2.7', '--random-config', '{"gaze_bins": "x"}', '--no-fp16', '--out', out)
    expect(unbuildable.code).toBe(2)
    expect(unbuildable.stderr).toMatch(/^\[export\] error: --random-config \{"gaze_bins": "x"\}: py-feat 2\.1\.1's network cannot be built with it \(ValueError: invalid literal for int\(\) with base 10: 'x'\)$/m)
    expect(existsSync(path.join(out, 'random-seed0'))).toBe(false)
  }, 120_000)

  it('scripts/export_onnx.py: a checkpoint whose backbone is not ConvNeXt V2-Tiny (a fine-tuned variant py-feat loads) exports and runs', async (ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    const out = path.join(dir, 'atto')
    // The emotion head's input is the backbone's width (320 for Atto, not Tiny's 768) + the landmark projection.
    const r = await runScript(venvPython, '--random-weights', '--generation', 'v2.5', '--random-config', '{"backbone": "convnextv2_atto"}', '--no-fp16', '--out', out)
    expect(r.code, r.stderr).toBe(0)
    const model = await FaceMultitask.load({ model: path.join(out, 'face_multitask_v2.5.random-seed0.fp32.onnx'), backend: 'cpu' })
    try {
      const faces = await model.detect({ data: new Uint8Array(256 * 256 * 3).fill(128), width: 256, height: 256 })
      expect(faces).toHaveLength(1)
      expect(Object.keys(faces[0].aus)).toHaveLength(20)
    } finally {
      await model.close()
    }
  }, 120_000)

  it('scripts/export_onnx.py --random-weights: a second export of the seed is refused before it writes the checkpoint; a checkpoint that cannot be written is one line, no folder left', async (ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    const out = path.join(dir, 'seed-lock')
    mkdirSync(out, { recursive: true })
    // Another export of the seed holds the outputs' lock (flock, as the script takes it).
    const lock = path.join(out, '.face_multitask_v2.5.random-seed3.lock')
    const holder = spawn(venvPython, ['-c', `import fcntl, os, sys, time\nfd = os.open(${JSON.stringify(lock)}, os.O_RDWR | os.O_CREAT)\nfcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(120)`])
    try {
      await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()))
      const r = await runScript(venvPython, '--random-weights', '--generation', 'v2.5', '--seed', '3', '--no-fp16', '--out', out)
      expect([r.code, r.stderr]).toEqual([1, `[export] error: another export is writing face_multitask_v2.5.random-seed3.fp32.onnx and .fp16.onnx in ${out} now: wait for it to end, or give another --out\n`])
      expect(existsSync(path.join(out, 'random-seed3'))).toBe(false)
    } finally {
      holder.kill()
    }
    // A file size limit (as a full disk): safetensors' own error, which is no OSError, said in one line.
    const limited = spawnSync('bash', ['-c', `ulimit -f 20000 && exec "$0" "$@"`, venvPython, path.join(packageRoot(), 'scripts', 'export_onnx.py'),
      '--random-weights', '--generation', 'v2.5', '--seed', '4', '--no-fp16', '--out', out], { encoding: 'utf8', cwd: dir })
    expect(limited.status).toBe(1)
    expect(limited.stderr).not.toMatch(/Traceback/)
    expect(limited.stderr).toMatch(new RegExp(`\\[export\\] error: cannot write ${out}/random-seed4/face_multitask_v2\\.safetensors: SafetensorError: .*File too large`))
    expect(existsSync(path.join(out, 'random-seed4'))).toBe(false)
  }, 180_000)

  it('scripts/export_onnx.py run by a FACE_MULTITASK_PYTHON without torch: the advice is to fix that Python, not to make the venv', async (ctx) => {
    const system = '/usr/bin/python3'
    if (!existsSync(system) || spawnSync(system, ['-c', 'import torch']).status === 0) ctx.skip('no /usr/bin/python3 without torch here')
    const r = spawnSync(system, [path.join(packageRoot(), 'scripts', 'export_onnx.py'), '--random-weights', '--generation', 'v2.5', '--out', path.join(dir, 'no-torch')],
      { encoding: 'utf8', env: { ...process.env, FACE_MULTITASK_PYTHON: system } })
    expect(r.status).toBe(1)
    expect(r.stderr).toMatch(/^\[export\] error: missing Python package\(s\) for \/usr\/bin\/python3 \(FACE_MULTITASK_PYTHON\): .*torch \(ModuleNotFoundError.*\. Install .*requirements-python\.txt into it \(\/usr\/bin\/python3 -m pip install -r \.\.\.\), or unset FACE_MULTITASK_PYTHON to use the project's \.venv\n$/)
  })

  it('scripts/export_onnx.py: a weight stored as an integer is refused by name; an int32 counter (num_batches_tracked) is not', async (ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    const out = path.join(dir, 'int-weights')
    const ckpt = await derivedCheckpoint(out, [
      "state['afg.heads.0.1.num_batches_tracked'] = state['afg.heads.0.1.num_batches_tracked'].to(torch.int32)  # py-feat loads it",
      "state['log_var_au'] = state['log_var_au'].to(torch.int64)",
    ].join('\n'))
    const r = await runScript(venvPython, ckpt, '--no-fp16', '--out', out)
    expect([r.code, r.stderr]).toEqual([1, `[export] error: ${ckpt}: weights stored as integers, not floating point: log_var_au (int64)\n`])
  }, 120_000)

  it('scripts/export_onnx.py: --opset below 16 for v2.7+ (RoiAlign\'s aligned mode), or below 17 with the FP16 file, is refused before the export', async (ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    const out = path.join(dir, 'old-opset')
    mkdirSync(out, { recursive: true })
    // A checkpoint's generation is known once it is read: refused then, before the network is built.
    const file = path.join(out, 'face_multitask_v28.safetensors')
    safetensors(file, V27_TENSORS, {})
    const r = await runScript(venvPython, file, '--no-fp16', '--opset', '15', '--out', out)
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/\[export\] error: .*face_multitask_v28\.safetensors: --opset 15 is too old for v2\.8: its gaze head's RoiAlign needs opset 16 or later/)
    // With --random-weights the generation is given: refused with the arguments, before a checkpoint is made.
    const random = await runScript(venvPython, '--random-weights', '--generation', 'v2.8', '--no-fp16', '--opset', '15', '--out', out)
    expect(random.code).toBe(2)
    expect(random.stderr).toContain("export_onnx.py: error: --opset 15 is too old for v2.8: its gaze head's RoiAlign needs opset 16 or later")
    // Below 17 the FP16 file cannot be made (LayerNorm is spelt out in primitive ops): whatever the generation.
    const fp16 = await runScript(venvPython, '--random-weights', '--generation', 'v2.5', '--opset', '16', '--out', out)
    expect(fp16.code).toBe(2)
    expect(fp16.stderr).toMatch(/export_onnx\.py: error: --opset 16 is too old for the FP16 file: its FP32 islands keep LayerNormalization, an op of opset 17 and later; give --opset 17 or later \(the default is 17\), or --no-fp16 for the FP32 file alone\n$/)
    expect(readdirSync(out).sort()).toEqual(['face_multitask_v28.safetensors'])  // no random checkpoint, no .onnx
  }, 180_000)

  it('scripts/export_onnx.py: an export whose check against PyTorch fails leaves no .onnx the runtime would load', async (ctx) => {
    if (!existsSync(venvPython)) ctx.skip('no .venv (npm run setup:python)')
    const out = path.join(dir, 'failed-check')
    // A random v2.5 checkpoint with one head's bias made NaN: the export runs, the check finds non-finite outputs.
    const ckpt = await derivedCheckpoint(out, [
      "name = next(k for k in sorted(state) if k.endswith('.bias') and state[k].dtype == torch.float32)",
      "state[name] = torch.full_like(state[name], float('nan'))",
    ].join('\n'))
    const r = await runScript(venvPython, ckpt, '--no-fp16', '--out', out)
    expect(r.code).toBe(1)
    // Said of the checkpoint (not of the .partial file, which is gone), and blamed on its weights.
    expect(r.stderr).toContain(`[export] error: ${ckpt}: the ONNX file does not match PyTorch on a random batch, so none was written: `)
    expect(r.stderr).toMatch(/: PyTorch itself gives \d+ non-finite values \(NaN or Inf in the checkpoint's weights\?\)/)
    expect(readdirSync(out).filter((f) => f.includes('.onnx'))).toEqual([])
  }, 180_000)
})
