// The TensorRT backend's JavaScript side, on a machine without TensorRT: which ONNX an engine is
// built from (options.precision against the file's own), how a batch's faces are grouped into
// frames for upload, allocFrame() on both backends, and the addon without TensorRT compiled in.
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { onnx } from 'onnx-proto'
import { describe, expect, it } from 'vitest'
import { checkEngineOutputs, checkSameModel, engineOnnx, siblingFor } from '../lib/backends/engine-onnx'
import { declaredPrecision } from '../lib/contract'
import { readModelSpec } from '../lib/contract'
import { readOnnxModel } from '../lib/onnx-model'
import { framesOf, keyParts, nativeTensorRt } from '../lib/backends/tensorrt'
import { engineCacheKey } from '../lib/engine-cache'
import { gpuOptions } from '../lib/gpu-options'
import { FaceMultitask } from '../lib/face-multitask'
import { facesToRun } from '../lib/image-input'
import { loadNative } from '../lib/native'
import { makeFixtureModel } from '../scripts/make-fixture'
import { tempDir } from './helpers/temp-dir'

const dir = tempDir('trt-backend')

function varint(n: number): number[] {
  const out: number[] = []
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80)
    n >>>= 7
  }
  out.push(n)
  return out
}

// A ModelProto with one more metadata_props entry (field 14): protobuf messages may be extended
// by appending fields, so the fixture's bytes plus this entry are a valid model.
function withMetadata(model: Uint8Array, key: string, value: string): Uint8Array {
  const k = Buffer.from(key)
  const v = Buffer.from(value)
  const entry = [0x0a, ...varint(k.length), ...k, 0x12, ...varint(v.length), ...v]
  return Buffer.concat([model, Buffer.from([0x72, ...varint(entry.length), ...entry])])
}

function write(name: string, bytes: Uint8Array): string {
  const f = path.join(dir, name)
  writeFileSync(f, bytes)
  return f
}

const fixture = makeFixtureModel({ generation: 'v2.5' })

describe('which ONNX the engine is built from', () => {
  const messages: string[] = []
  const log = (m: string) => messages.push(m)

  it('reads face_multitask.precision; a file without it is FP32', async () => {
    const precision = async (f: string) => declaredPrecision(f, (await readOnnxModel(f)).metadata)
    expect(await precision(write('plain.onnx', fixture))).toBe('fp32')
    expect(await precision(write('half.onnx', withMetadata(fixture, 'face_multitask.precision', 'fp16')))).toBe('fp16')
    await expect(precision(write('odd.onnx', withMetadata(fixture, 'face_multitask.precision', 'int8')))).rejects.toThrow(/metadata key "face_multitask\.precision" has unknown value "int8" \(expected one of fp16, bf16, fp32\)/)
  })

  it('names the export sibling of each precision', () => {
    expect(siblingFor('/m/face_multitask_v2.8.fp32.onnx', 'fp16')).toBe(path.join('/m', 'face_multitask_v2.8.fp16.onnx'))
    expect(siblingFor('/m/face_multitask_v2.8.FP16.onnx', 'fp32')).toBe(path.join('/m', 'face_multitask_v2.8.fp32.onnx'))
    expect(siblingFor('/m/model.onnx', 'bf16')).toBe(path.join('/m', 'model.bf16.onnx'))
  })

  it('takes the model itself when its precision is the one asked for', async () => {
    const f = write('a.fp32.onnx', fixture)
    expect(await engineOnnx(f, 'fp32', true, log)).toMatchObject({ path: f, precision: 'fp32' })
  })

  it('takes the FP16 sibling `face-multitask export` wrote beside the FP32 model', async () => {
    const f32 = write('b.fp32.onnx', fixture)
    const f16 = write('b.fp16.onnx', withMetadata(fixture, 'face_multitask.precision', 'fp16'))
    // With the chosen file's own graph and metadata, read once for the callers.
    expect(await engineOnnx(f32, 'fp16', false, log)).toMatchObject({ path: f16, precision: 'fp16', info: { metadata: { 'face_multitask.precision': 'fp16' } } })
    expect(await engineOnnx(f32, 'fp16', true, log)).toMatchObject({ path: f16, precision: 'fp16' })
    expect(await engineOnnx(f16, 'fp32', true, log)).toMatchObject({ path: f32, precision: 'fp32' })
  })

  it('an FP32-only model: the default builds it as it is and says so; an explicit fp16 is refused', async () => {
    const f = write('c.fp32.onnx', fixture)
    messages.length = 0
    expect(await engineOnnx(f, 'fp16', false, log)).toMatchObject({ path: f, precision: 'fp32' })
    expect(messages).toEqual([`${f} is a fp32 export and there is no fp16 export beside it (c.fp16.onnx): the TensorRT engine is built in fp32; \`face-multitask export\` writes the .fp16.onnx`])
    await expect(engineOnnx(f, 'fp16', true, log)).rejects.toThrow(`options.precision is 'fp16', but ${f} is a fp32 export and there is no fp16 export beside it (c.fp16.onnx): run \`face-multitask export\` (it writes the .fp16.onnx), or pass precision: 'fp32'`)
    await expect(engineOnnx(f, 'bf16', true, log)).rejects.toThrow(`options.precision is 'bf16', but ${f} is a fp32 export and there is no bf16 export beside it (c.bf16.onnx): \`face-multitask export\` writes FP32 and FP16 files only: convert one to BF16 yourself, declaring face_multitask.precision=bf16, or pass precision: 'fp32'`)
  })

  it('a sibling that declares another precision is not taken', async () => {
    const f = write('d.fp32.onnx', fixture)
    const wrong = write('d.fp16.onnx', fixture) // named fp16, but FP32 inside
    await expect(engineOnnx(f, 'fp16', true, log)).rejects.toThrow(`options.precision is 'fp16': ${wrong} is beside the model but declares fp32`)
    messages.length = 0
    expect(await engineOnnx(f, 'fp16', false, log)).toMatchObject({ path: f, precision: 'fp32' })
    // Said as it is, not as "no fp16 export beside it".
    expect(messages).toEqual([`${wrong} is beside d.fp32.onnx but declares fp32, not fp16: the TensorRT engine is built from the fp32 model itself`])
  })

  it('a sibling exported from another checkpoint (left by `export --no-fp16` into the same folder) is not taken', async () => {
    const sha = (c: string) => c.repeat(64)
    const f32 = write('e.fp32.onnx', withMetadata(fixture, 'face_multitask.checkpoint_sha256', sha('a')))
    const old16 = write('e.fp16.onnx', withMetadata(withMetadata(fixture, 'face_multitask.precision', 'fp16'), 'face_multitask.checkpoint_sha256', sha('b')))
    const stale = `${old16} was exported from another checkpoint than e.fp32.onnx (sha256 bbbbbbbbbbbb..., not aaaaaaaaaaaa...)`
    messages.length = 0
    expect(await engineOnnx(f32, 'fp16', false, log)).toMatchObject({ path: f32, precision: 'fp32' })
    expect(messages).toEqual([`${stale}: the TensorRT engine is built from the fp32 model itself; export again without --no-fp16 for a fp16 engine`])
    await expect(engineOnnx(f32, 'fp16', true, log)).rejects.toThrow(`options.precision is 'fp16', but ${stale}: export the checkpoint again without --no-fp16`)
    // The same checkpoint's pair is taken as before.
    const new16 = write('e.fp16.onnx', withMetadata(withMetadata(fixture, 'face_multitask.precision', 'fp16'), 'face_multitask.checkpoint_sha256', sha('a')))
    expect(await engineOnnx(f32, 'fp16', true, log)).toMatchObject({ path: new16, precision: 'fp16' })
  })
})

describe('the engine is built from the same model', () => {
  it('accepts a sibling with the same contract, refuses one of another generation', async () => {
    const f32 = write('g.fp32.onnx', fixture)
    const spec = readModelSpec(f32, await readOnnxModel(f32))
    const same = write('g.fp16.onnx', withMetadata(fixture, 'face_multitask.precision', 'fp16'))
    await expect(checkSameModel(f32, spec, same)).resolves.toBeUndefined()
    const other = write('h.fp16.onnx', withMetadata(makeFixtureModel({ generation: 'v2.4' }), 'face_multitask.precision', 'fp16'))
    // v2.4 vs v2.5: another crop (stretch), resize (centre crop) and mesh mapping, among others.
    await expect(checkSameModel(f32, spec, other)).rejects.toThrow(`${other} (the engine's source beside g.fp32.onnx) is not the same model: its generation, crop, resize, meshSpace`)
  })
})

describe("the engine's outputs are checked before a build", () => {
  it('refuses, naming it, an extra output the engine loader would refuse after the build; float ones per face pass', async () => {
    const f = write('outputs.onnx', fixture)
    const info = await readOnnxModel(f)
    expect(() => checkEngineOutputs(f, info)).not.toThrow()
    const extra = (o: { name: string; elemType: string; shape: (number | string)[] }) => ({ ...info, outputs: [...info.outputs, o] })
    for (const elemType of ['float16', 'bfloat16']) expect(() => checkEngineOutputs(f, extra({ name: 'x', elemType, shape: ['batch', 4] }))).not.toThrow()
    const cases: [{ name: string; elemType: string; shape: (number | string)[] }, string][] = [
      [{ name: 'ids', elemType: 'int64', shape: ['batch', 4] }, 'output "ids" is int64, not float32, float16 or bfloat16'],
      [{ name: 'loss', elemType: 'float32', shape: [] }, 'output "loss" is a scalar, not one value per face'],
      [{ name: 'one', elemType: 'float32', shape: [1, 4] }, 'output "one" has a fixed first axis of 1, not the batch'],
    ]
    for (const [o, why] of cases) {
      expect(() => checkEngineOutputs(f, extra(o))).toThrow(`${f}: ${why}: a TensorRT engine cannot return it; remove it from the graph (the CPU backend ignores outputs it does not use)`)
    }
  })
})

describe('the engine cache key from the probe', () => {
  it("takes the library's version and build number, not the headers the addon was compiled against", async () => {
    const f = write('key.onnx', fixture)
    const spec = readModelSpec(f, await readOnnxModel(f))
    const status = { available: true, tensorrtVersion: '10.14.1', tensorrtBuild: '48', builtFor: '10.14.1', gpuName: 'NVIDIA H100', computeCapability: '9.0', smCount: 132, parserVersion: '0.1.0', cudaDriverVersion: '13.0' }
    const load = (s: Partial<typeof status>) => ({ model: f, spec, gpu: gpuOptions({}), status: { ...status, ...s }, precisionGiven: false })
    const key = async (s: Partial<typeof status>) => engineCacheKey(await keyParts(f, 'fp32', load(s)))
    const base = await key({})
    expect((await keyParts(f, 'fp32', load({}))).tensorrt).toEqual({ version: '10.14.1', build: '10.14.1 build 48' })
    expect(await key({ builtFor: '10.16.0' })).toBe(base)
    expect(await key({ tensorrtBuild: '49' })).not.toBe(base)
    expect(await key({ tensorrtVersion: '10.14.2' })).not.toBe(base)
  })

  it('covers weights the ONNX keeps in a file beside it (external data)', async () => {
    // The fixture with its first initializer's bytes moved out to external.weights.
    const m = onnx.ModelProto.decode(fixture)
    const t = m.graph!.initializer[0]
    const weights = t.rawData
    writeFileSync(path.join(dir, 'external.weights'), weights)
    t.rawData = new Uint8Array(0)
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL
    t.externalData = [onnx.StringStringEntryProto.create({ key: 'location', value: 'external.weights' })]
    const f = write('external.onnx', onnx.ModelProto.encode(m).finish())
    const spec = readModelSpec(f, await readOnnxModel(f))
    const status = { available: true, tensorrtVersion: '10.14.1', tensorrtBuild: '48', gpuName: 'NVIDIA H100', computeCapability: '9.0', smCount: 132, cudaDriverVersion: '13.0' }
    const key = async () => engineCacheKey(await keyParts(f, 'fp32', { model: f, spec, gpu: gpuOptions({}), status, precisionGiven: false }))
    const before = await key()
    writeFileSync(path.join(dir, 'external.weights'), Buffer.alloc(weights.length, 7)) // new weights, same .onnx
    expect(await key()).not.toBe(before)
  })
})

describe('faces grouped into frames for upload', () => {
  const frameA = { data: new Uint8Array(64 * 48 * 3), width: 64, height: 48 }
  const frameB = { data: new Uint8Array(64 * 48 * 4), width: 64, height: 48, format: 'rgba' as const }

  it('a frame shared by several faces is uploaded once; faces keep their order and windows', () => {
    const { perImage } = facesToRun([frameA, frameB], { boxes: [[[1, 1, 20, 20], [30, 10, 60, 40]], [[5, 5, 25, 25]]] }, 'square')
    const jobs = perImage.flat()
    const { frames, refs } = framesOf(jobs)
    expect(frames).toHaveLength(2)
    expect(frames[0]).toEqual({ data: frameA.data, width: 64, height: 48, stride: 192, format: 0 })
    expect(frames[1]).toEqual({ data: frameB.data, width: 64, height: 48, stride: 256, format: 1 })
    expect(refs.map((r) => r.frame)).toEqual([0, 0, 1])
    expect(refs.map((r) => r.window)).toEqual(jobs.map((j) => j.window))
  })

  it('the same bytes seen with another geometry are another frame', () => {
    const data = new Uint8Array(256 * 256 * 3)
    const { perImage } = facesToRun(
      [{ data, width: 256, height: 256 }, { data, width: 128, height: 128, stride: 768 }],
      { boxes: [[[0, 0, 50, 50]], [[0, 0, 50, 50]]] },
      'stretch',
    )
    const { frames, refs } = framesOf(perImage.flat())
    expect(frames.map((f) => [f.width, f.stride])).toEqual([[256, 768], [128, 768]])
    expect(refs.map((r) => r.frame)).toEqual([0, 1])
  })

  it('chips go without a window', () => {
    const { perImage } = facesToRun({ data: new Uint8Array(256 * 256 * 3), width: 256, height: 256 }, undefined, 'square')
    expect(framesOf(perImage.flat()).refs).toEqual([{ frame: 0, window: null }])
  })
})

describe('allocFrame()', () => {
  it('on the CPU backend: an ordinary, zeroed frame that detect() takes as it is', async () => {
    const model = await FaceMultitask.load({ model: write('e.onnx', fixture), backend: 'cpu' })
    try {
      const frame = model.allocFrame(320, 240, 'bgra')
      expect(frame).toMatchObject({ width: 320, height: 240, format: 'bgra', stride: 1280 })
      expect(frame.data).toBeInstanceOf(Uint8Array)
      expect(frame.data.byteLength).toBe(320 * 240 * 4)
      expect(frame.data.every((v) => v === 0)).toBe(true)
      frame.data.fill(128)
      const [face] = await model.detect(frame, { boxes: [[100, 60, 220, 180]] })
      const [copy] = await model.detect({ ...frame, data: Uint8Array.from(frame.data) }, { boxes: [[100, 60, 220, 180]] })
      expect(face.mesh).toEqual(copy.mesh)
      expect(face.auValues).toEqual(copy.auValues)
      expect(model.allocFrame(8, 8).format).toBe('rgb')
    } finally {
      await model.close()
    }
  })

  it('checks its arguments, and refuses after close()', async () => {
    const model = await FaceMultitask.load({ model: write('f.onnx', fixture), backend: 'cpu' })
    expect(() => model.allocFrame(0, 10)).toThrow(new RangeError('width must be an integer from 1 to 65536, got 0'))
    expect(() => model.allocFrame(10, 1.5)).toThrow(new RangeError('height must be an integer from 1 to 65536, got 1.5'))
    expect(() => model.allocFrame(10, 10, 'yuv' as never)).toThrow(new TypeError('format must be one of rgb, rgba, bgr, bgra, gray, got "yuv"'))
    await model.close()
    expect(() => model.allocFrame(10, 10)).toThrow('allocFrame() called after close(): the model is closed')
  })
})

describe('the addon without TensorRT compiled in', () => {
  it('says so instead of failing later (a build with the headers exports the functions)', () => {
    const addon = loadNative() as unknown as Record<string, unknown>
    if (typeof addon.tensorrtBuild === 'function') {
      expect(nativeTensorRt()).toBe(addon)
      expect(typeof addon.tensorrtLoad).toBe('function')
    } else {
      expect(() => nativeTensorRt()).toThrow(new Error('this build of the addon has no TensorRT backend (TensorRT headers absent at build time)'))
    }
  })
})
