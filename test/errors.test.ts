// Bad input gets a clear error naming the argument, and nothing else breaks: requests in flight
// still resolve, the model stays usable, the process keeps running.
import { execFileSync, spawnSync } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { Worker } from 'node:worker_threads'
import { onnx } from 'onnx-proto'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { OnnxRuntimeBackend } from '../lib/backends/onnxruntime'
import { FaceMultitask } from '../lib/face-multitask'
import { loadNative } from '../lib/native'
import { AU_NAMES, BLENDSHAPE_NAMES, EMOTION_NAMES, LANDMARK68_MESH_INDEX, NonFiniteOutputError } from '../lib/index'
import type { Box, LoadOptions } from '../lib/types'
import { makeFixtureModel } from '../scripts/make-fixture'
import { withExternalData } from './helpers/external-data'
import { tempDir } from './helpers/temp-dir'

const dir = tempDir('errors')
const file = path.join(dir, 'fixture.onnx')
const W = 64
const H = 48
const frame = { data: new Uint8Array(W * H * 3).fill(90), width: W, height: H }
const box = [10, 10, 40, 40] as const

/** The fixture with its metadata or graph edited. */
function variant(name: string, edit: (m: onnx.ModelProto) => void): string {
  const m = onnx.ModelProto.decode(makeFixtureModel({ generation: 'v2.5' }))
  edit(m)
  const out = path.join(dir, name)
  writeFileSync(out, onnx.ModelProto.encode(m).finish())
  return out
}

/**
 * The fixture with head output `head` computed by `nodes` from the original, renamed `<head>_raw`,
 * and the 1-D int64 constants `ints`.
 */
function headRewritten(name: string, head: string, ints: Record<string, number[]>, nodes: onnx.INodeProto[]): string {
  return variant(name, (m) => {
    for (const n of m.graph!.node) n.output = n.output.map((o) => (o === head ? `${head}_raw` : o))
    for (const [c, v] of Object.entries(ints)) m.graph!.initializer.push(onnx.TensorProto.create({ name: c, dims: [v.length], dataType: onnx.TensorProto.DataType.INT64, int64Data: v }))
    m.graph!.node.push(...nodes.map((n) => onnx.NodeProto.create(n)))
  })
}

/** `body` run on the model in `file` (one worker, one thread), closed after. */
async function withModel(file: string, body: (m: FaceMultitask) => Promise<void>, options: Partial<LoadOptions> = {}): Promise<void> {
  const m = await FaceMultitask.load({ model: file, workers: 1, threads: 1, ...options })
  try {
    await body(m)
  } finally {
    await m.close()
  }
}

describe('errors', () => {
  let model: FaceMultitask
  beforeAll(async () => {
    writeFileSync(file, makeFixtureModel({ generation: 'v2.5' }))
    model = await FaceMultitask.load({ model: file })
  })
  afterAll(() => model?.close())

  /** A canvas ImageData's shape: RGBA bytes, width and height as getters of its prototype. */
  class ImageDataLike {
    readonly #size: [number, number]
    constructor(readonly data: Uint8ClampedArray, width: number, height: number) {
      this.#size = [width, height]
    }
    get width() { return this.#size[0] }
    get height() { return this.#size[1] }
  }

  const badCalls: [string, () => Promise<unknown>, RegExp, ErrorConstructor][] = [
    ['unknown format', () => model.detect({ ...frame, format: 'yuv' as never }, { boxes: [box] }), /image\.format must be one of rgb, rgba, bgr, bgra, gray/, TypeError],
    ['a format that is not a string', () => model.detect({ ...frame, format: Object.create(null) }, { boxes: [box] }), /^image\.format must be one of rgb, rgba, bgr, bgra, gray, got an object \(Object\)$/, TypeError],
    ['a bigint format', () => model.detect({ ...frame, format: 4n as never }, { boxes: [box] }), /^image\.format must be one of rgb, rgba, bgr, bgra, gray, got 4n$/, TypeError],
    ['data shorter than the frame', () => model.detect({ ...frame, stride: W * 3 + 4 }, { boxes: [box] }), /image\.data holds 9216 bytes; a 64x48 rgb frame with stride 196 needs 9404 \(stride \* \(height - 1\) \+ width \* channels\)/, RangeError],
    ['stride below width x channels', () => model.detect({ ...frame, stride: 10 }, { boxes: [box] }), /image\.stride must be/, RangeError],
    ['data whose buffer was transferred', () => { const data = new Uint8Array(W * H * 3); structuredClone(data.buffer, { transfer: [data.buffer] }); return model.detect({ ...frame, data }, { boxes: [box] }) },
      /^image\.data holds 0 bytes \(its buffer was detached: transferred elsewhere\?\); a 64x48 rgb frame/, RangeError],
    ['empty data', () => model.detect({ ...frame, data: new Uint8Array(0) }, { boxes: [box] }), /^image\.data holds 0 bytes; a 64x48 rgb frame/, RangeError],
    ['data not bytes', () => model.detect({ ...frame, data: new Float32Array(10) as never }, { boxes: [box] }), /image\.data must be a Buffer/, TypeError],
    ['zero-size box', () => model.detect(frame, { boxes: [[10, 10, 10, 30]] }), /options\.boxes\[0\] = \[10, 10, 10, 30\] has zero or negative size/, RangeError],
    ['negative-size box', () => model.detect(frame, { boxes: [box, [30, 30, 20, 40]] }), /options\.boxes\[1\].*zero or negative size/, RangeError],
    ['a signal that is not an AbortSignal', () => model.detect(frame, { boxes: [box], signal: { aborted: false } as never }), /^options\.signal must be an AbortSignal \(from an AbortController\), got an object \(Object\)$/, TypeError],
    ['NaN in a box', () => model.detect(frame, { boxes: [[NaN, 1, 2, 3]] }), /options\.boxes\[0\] must hold 4 finite numbers/, RangeError],
    ['infinite box', () => model.detect(frame, { boxes: [[0, 0, Infinity, 3]] }), /options\.boxes\[0\] must hold 4 finite numbers/, RangeError],
    ['box entirely outside', () => model.detect(frame, { boxes: [[100, 100, 120, 130]] }), /options\.boxes\[0\].*lies entirely outside the 64x48 frame/, RangeError],
    ['a box too large for float32', () => model.detect(frame, { boxes: [box, [0, 0, 1e39, 40]] }), /options\.boxes\[1\] = \[0, 0, 1e\+39, 40\] has no usable crop in float32/, RangeError],
    ['boxes passed as options', () => model.detect(frame, [box] as never), /options must be an object \{ boxes\?, signal\? \}, got an array \(pass the boxes as \{ boxes: \[\.\.\.\] \}\)/, TypeError],
    ['an unknown option', () => model.detect(frame, { box: [box] } as never), /options has unknown key "box"; the options are boxes and signal/, TypeError],
    ['an unknown option inherited (a defaults object as prototype)', () => model.detect(frame, Object.assign(Object.create({ box: [box] }), { signal: undefined })), /^options has unknown key "box"; the options are boxes and signal$/, TypeError],
    ['a hole in the images', () => model.detect([frame, , frame] as never), /images\[1\] must be an object/, TypeError],
    ['a hole in a box list', () => model.detect(frame, { boxes: [box, , box] as never }), /options\.boxes\[1\] must be \[x1, y1, x2, y2\], got undefined/, TypeError],
    ['a hole in a box', () => model.detect(frame, { boxes: [[10, , 40, 40] as never] }), /^options\.boxes\[0\] must hold 4 finite numbers, got \[10, undefined, 40, 40\]$/, RangeError],
    ['a bigint in a box', () => model.detect(frame, { boxes: [[10n, 10, 40, 40] as never] }), /^options\.boxes\[0\] must hold 4 finite numbers, got \[10n, 10, 40, 40\]$/, RangeError],
    ['a bigint as a box', () => model.detect(frame, { boxes: [10n as never] }), /^options\.boxes\[0\] must be \[x1, y1, x2, y2\], got 10n$/, TypeError],
    ['a box that holds itself', () => { const b: unknown[] = [1, 2]; b.push(b); return model.detect(frame, { boxes: [b as never] }) }, /^options\.boxes\[0\] must be \[x1, y1, x2, y2\], got \[1, 2, \[1, 2, \[\.\.\.\]\]\]$/, TypeError],
    ['a typed array as a box', () => model.detect(frame, { boxes: [new Float32Array([10, 10, 40, 40]) as never] }),
      /^options\.boxes\[0\] must be \[x1, y1, x2, y2\] \(a plain array: Array\.from\(box\)\), got a Float32Array \[10, 10, 40, 40\]$/, TypeError],
    ['boxes not an array', () => model.detect(frame, { boxes: 5 as never }), /^options\.boxes must be an array of \[x1, y1, x2, y2\] boxes, got 5$/, TypeError],
    ['boxes NaN', () => model.detect(frame, { boxes: NaN as never }), /^options\.boxes must be an array of \[x1, y1, x2, y2\] boxes, got NaN$/, TypeError],
    ['a null stride', () => model.detect({ ...frame, stride: null as never }, { boxes: [box] }), /^image\.stride must be an integer of at least width \* channels \(192\), got null$/, TypeError],
    ['box of 3 numbers', () => model.detect(frame, { boxes: [[1, 2, 3] as never] }), /options\.boxes\[0\] must be \[x1, y1, x2, y2\]/, TypeError],
    ['no boxes for a frame that is not a chip', () => model.detect(frame), /options\.boxes is required: image is 64x48/, RangeError],
    ['one box for two images', () => model.detect([frame, frame], { boxes: [box] as never }),
      /^options\.boxes must hold one list of \[x1, y1, x2, y2\] boxes per image \(2 images\): options\.boxes\[0\] is \[10, 10, 40, 40\], a box: put each image's boxes in a list, \[\[x1, y1, x2, y2\]\]$/, TypeError],
    ['a typed array as a box, with an array of images', () => model.detect([frame], { boxes: [[new Float32Array([10, 10, 40, 40]) as never]] }),
      /^options\.boxes\[0\]\[0\] must be \[x1, y1, x2, y2\] \(a plain array: Array\.from\(box\)\), got a Float32Array \[10, 10, 40, 40\]$/, TypeError],
    ['a sparse box-list array of 2^32 - 1 for one image', () => model.detect([frame], { boxes: new Array(2 ** 32 - 1) }),
      /^options\.boxes must hold one list of \[x1, y1, x2, y2\] boxes per image \(1 image\): options\.boxes\[0\] is undefined, not a list of boxes$/, TypeError],
    ['one box list for two images', () => model.detect([frame, frame], { boxes: [[box]] }), /^options\.boxes must hold one list of \[x1, y1, x2, y2\] boxes per image \(2 images\), got 1 list$/, TypeError],
    ['box lists not in an array', () => model.detect([frame], { boxes: 'all' as never }), /^options\.boxes must hold .* per image \(1 image\), got "all"$/, TypeError],
    ['a box list that is not one', () => model.detect([frame, frame], { boxes: [[box], 7] as never }), /^options\.boxes must hold .* \(2 images\): options\.boxes\[1\] is 7, not a list of boxes$/, TypeError],
    ['width not an integer', () => model.detect({ ...frame, width: 3.5 }, { boxes: [box] }), /image\.width must be an integer/, RangeError],
    ['width a string', () => model.detect({ ...frame, width: '64' as never }, { boxes: [box] }), /image\.width must be an integer from 1 to 65536, got "64"/, TypeError],
    ['a stride past 2^53 on a one-row frame', () => model.detect({ data: new Uint8Array(W * 3), width: W, height: 1, stride: 2 ** 60 }, { boxes: [[0, 0, 10, 1]] }), /^image\.stride must be at most 2\^53 - 1/, RangeError],
    ['stride a string', () => model.detect({ ...frame, stride: '192' as never }, { boxes: [box] }), /image\.stride must be an integer of at least width \* channels \(192\), got "192"/, TypeError],
    ['second image bad', () => model.detect([frame, { ...frame, height: 0 }], { boxes: [[box], [box]] }), /images\[1\]\.height must be an integer/, RangeError],
    ['a misspelt frame key (the format left at rgb)', () => model.detect({ ...frame, fromat: 'rgba' } as never, { boxes: [box] }),
      /^image has unknown key "fromat"; a frame is \{ data, width, height, format, stride \} \(format: rgb, rgba, bgr, bgra, gray\)$/, TypeError],
    ["a decoder's channels instead of a format", () => model.detect([frame, { ...frame, channels: 4, rowStride: 256 }] as never, { boxes: [[box], [box]] }),
      /^images\[1\] has unknown keys "channels", "rowStride"; a frame is /, TypeError],
    ['four bytes a pixel and no format (a canvas ImageData)', () => model.detect(new ImageDataLike(new Uint8ClampedArray(W * H * 4), W, H) as never, { boxes: [box] }),
      /^image has no format and holds 12288 bytes, 4 per pixel of 64x48: give its format \('rgba' or 'bgra'; 'rgb' for an rgb frame in a larger buffer\)$/, TypeError],
    // Refused by kind before its keys are listed: a Buffer's keys are its byte indices (listing a
    // 1080p frame's took 9 s and a 67 MB message), a Map or a Promise has none of its own.
    ['raw pixels as the image', () => model.detect(Buffer.alloc(1920 * 1080 * 3), { boxes: [box] }),
      /^image must be an object \{ data, width, height, format\?, stride\? \}, got a Buffer: pixels as \{ data, width, height, format \}; an image file's bytes through readImage\(\)$/, TypeError],
    ['raw pixels in the images', () => model.detect([frame, new Uint8ClampedArray(W * H * 4)] as never, { boxes: [[box], [box]] }),
      /^images\[1\] must be an object \{ data, width, height, format\?, stride\? \}, got a Uint8ClampedArray: pixels as/, TypeError],
    ['an image not awaited', () => model.detect(Promise.resolve(frame) as never, { boxes: [box] }), /^image must be an object .*, got a Promise \(await it first\)$/, TypeError],
    ['a typed array as the options', () => model.detect(frame, new Float32Array(1 << 20) as never), /^options must be an object \{ boxes\?, signal\? \}, got a Float32Array$/, TypeError],
    ['a Map as the options (it would pass as no options, the boxes unread)', () => model.detect(frame, new Map([['boxes', [box]]]) as never), /^options must be an object \{ boxes\?, signal\? \}, got a Map$/, TypeError],
    ['many unknown frame keys: 8 named, the rest counted', () => model.detect({ ...frame, ...Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i])) } as never, { boxes: [box] }),
      /^image has unknown keys "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7" and 12 more; a frame is /, TypeError],
    // Shown in a few items: a 4K frame's pixels as the boxes made a 75-million-character message.
    ['a frame\'s pixels as the boxes', () => model.detect(frame, { boxes: new Uint8Array(3840 * 2160 * 3) as never }),
      /^options\.boxes must be an array of \[x1, y1, x2, y2\] boxes, got a Uint8Array of 24883200 \[0, 0, 0, 0, 0, 0, 0, 0, \.\.\.\]$/, TypeError],
    ['a long flat array as a box', () => model.detect(frame, { boxes: [Array.from({ length: 1e6 }, (_, i) => i) as never] }),
      /^options\.boxes\[0\] must be \[x1, y1, x2, y2\], got \[0, 1, 2, 3, 4, 5, 6, 7, \.\.\. \(1000000 items\)\]$/, TypeError],
    ['a detector\'s box object', () => model.detect(frame, { boxes: [{ x: 10, y: 10, width: 30, height: 30 } as never] }),
      /^options\.boxes\[0\] must be \[x1, y1, x2, y2\], got \{"x": 10, "y": 10, "width": 30, "height": 30\}$/, TypeError],
    ['signed bytes as data', () => model.detect({ ...frame, data: new Int8Array(frame.data) as never }, { boxes: [box] }),
      /^image\.data must be a Buffer, Uint8Array or Uint8ClampedArray, got an Int8Array$/, TypeError],
    ['a Proxy of a Uint8Array as data', () => model.detect({ ...frame, data: new Proxy(frame.data, {}) }, { boxes: [box] }),
      /^image\.data must be a Buffer, Uint8Array or Uint8ClampedArray, got an object \(Object\)$/, TypeError],
    ['a square crop reaching past 2^24 px', () => model.detect(frame, { boxes: [box, [-2e7, -2e7, 2e7, 2e7]] }),
      /^options\.boxes\[1\] = \[-20000000, -20000000, 20000000, 20000000\] gives a crop window \[-24000000, -24000000, 48000000, 48000000\] reaching past ±2\^24 px, where float32/, RangeError],
  ]

  it('a frame of four bytes a pixel with its format given runs, and a square window just inside 2^24 px', async () => {
    const rgbInLarger = { ...frame, data: Buffer.concat([frame.data, new Uint8Array(W * H)]), format: 'rgb' as const }
    expect(await model.detect(rgbInLarger, { boxes: [box] })).toEqual(await model.detect(frame, { boxes: [box] }))
    const rgba = { data: new Uint8Array(W * H * 4), width: W, height: H, format: 'rgba' as const }
    expect(await model.detect(rgba, { boxes: [box, [-6e6, -6e6, 6e6, 6e6]] })).toHaveLength(2)
  })

  it.each(badCalls)('%s', async (_name, call, message, type) => {
    const err = await call().catch((e) => e)
    expect(err).toBeInstanceOf(type)
    expect(err.message).toMatch(message)
  })

  it('a box that collapses in float32 (v2.4\'s stretched crop) is refused, naming it', async () => {
    const v24 = path.join(dir, 'v24.onnx')
    writeFileSync(v24, makeFixtureModel({ generation: 'v2.4' }))
    const m = await FaceMultitask.load({ model: v24 })
    try {
      const err = await m.detect(frame, { boxes: [box, [10, 10, 10 + 1e-9, 30]] }).catch((e) => e)
      expect(err).toBeInstanceOf(RangeError)
      expect(err.message).toMatch(/options\.boxes\[1\] = \[10, 10, 10\.000000001, 30\] has no usable crop in float32/)
      expect(await m.detect(frame, { boxes: [box] })).toHaveLength(1)
    } finally {
      await m.close()
    }
  })

  it('a frame narrower than 2 pixels is refused for v2.4\'s stretched crop, naming the image', async () => {
    const v24 = path.join(dir, 'v24-thin.onnx')
    writeFileSync(v24, makeFixtureModel({ generation: 'v2.4' }))
    const m = await FaceMultitask.load({ model: v24 })
    try {
      const thin = { data: new Uint8Array(1 * 40 * 3), width: 1, height: 40 }
      const err = await m.detect([frame, thin], { boxes: [[box], [[0, 0, 1, 20]]] }).catch((e) => e)
      expect(err).toBeInstanceOf(RangeError)
      expect(err.message).toMatch(/images\[1\] is 1x40: this model's stretched crop \(py-feat v2\.4\) needs a frame of at least 2x2 pixels/)
    } finally {
      await m.close()
    }
  })

  it('frames in shared or resizable memory: read as any other; a resize during the call cannot pull memory from under it', async () => {
    const want = await model.detect(frame, { boxes: [box] })
    const sab = new SharedArrayBuffer(frame.data.length)
    new Uint8Array(sab).set(frame.data)
    const shared = await model.detect({ ...frame, data: new Uint8Array(sab) }, { boxes: [box] })
    expect(shared[0].mesh).toEqual(want[0].mesh)
    const rab = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer & { resize(n: number): void })(frame.data.length, { maxByteLength: frame.data.length })
    new Uint8Array(rab).set(frame.data)
    const pending = model.detect({ ...frame, data: new Uint8Array(rab) }, { boxes: [box, box] })
    rab.resize(0)
    const resized = await pending
    expect(resized[1].mesh).toEqual(want[0].mesh)
  })

  it('a box is read once: a coordinate getter cannot pass the checks with one value and crop with another', async () => {
    const want = (await model.detect(frame, { boxes: [box] }))[0].box
    let reads = 0
    const shifty = [10, 10, 40, 40]
    Object.defineProperty(shifty, 2, { enumerable: true, get: () => (reads++ === 0 ? 40 : '1e3') })
    const [face] = await model.detect(frame, { boxes: [shifty as never] })
    expect(face.box).toEqual(want)
  })

  it('a box\'s length is read once: one that says 4, then more, runs as the 4 it said', async () => {
    const want = await model.detect(frame, { boxes: [box] })
    let reads = 0
    const target = [...box, 'more']
    const lying = new Proxy(target, { get: (t, k) => (k === 'length' ? (reads++ === 0 ? 4 : 5) : Reflect.get(t, k)) })
    expect(await model.detect(frame, { boxes: [lying as never] })).toEqual(want)
  })

  it('a view whose own properties say another buffer, offset or length is read by what it is', async () => {
    const want = await model.detect(frame, { boxes: [box] })
    // A subclass saying offset 0 for a view 10 bytes in: the frame was read from 10 bytes early.
    class Offset0 extends Uint8ClampedArray { get byteOffset() { return 0 } }
    const at10 = new Offset0(frame.data.length + 10)
    at10.set(frame.data, 10)
    expect(await model.detect({ ...frame, data: at10.subarray(10) }, { boxes: [box] })).toEqual(want)
    // An own byteLength saying more than it holds: refused by what it holds, named as the caller's.
    const short = Object.defineProperty(frame.data.slice(0, 100), 'byteLength', { value: frame.data.length })
    await expect(model.detect({ ...frame, data: short }, { boxes: [box] })).rejects.toThrow(/^image\.data holds 100 bytes; a 64x48 rgb frame/)
    // A resizable buffer behind a shadowed `buffer`: copied all the same, so a resize to nothing
    // while the call runs cannot pull the memory from under it (it crashed the process).
    const rab = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer & { resize(n: number): void })(frame.data.length, { maxByteLength: frame.data.length })
    const hidden = new Uint8Array(rab)
    hidden.set(frame.data)
    Object.defineProperty(hidden, 'buffer', { value: new ArrayBuffer(8) })
    const pending = model.detect({ ...frame, data: hidden }, { boxes: [box, box] })
    rab.resize(0)
    expect((await pending)[1]).toEqual(want[0])
  })

  it('a look-alike signal whose reason getter throws: the call rejects as aborted, the process goes on', async () => {
    class Signal extends EventTarget {
      aborted = false
      get reason(): unknown { throw new Error('reason getter') }
    }
    const signal = new Signal()
    const busy = [model.detect(frame, { boxes: [box] }), model.detect(frame, { boxes: [box] })]
    const call = model.detect(frame, { boxes: [box], signal: signal as unknown as AbortSignal })
    signal.aborted = true
    signal.dispatchEvent(new Event('abort'))
    const err = await call.catch((e) => e)
    expect(err.name).toBe('AbortError')
    expect(err.cause.message).toBe('reason getter')
    expect(await Promise.all(busy)).toHaveLength(2)
  })

  it('an empty box list gives no faces for its image', async () => {
    expect(await model.detect(frame, { boxes: [] })).toEqual([])
    expect(await model.detect([])).toEqual([]) // no images: nothing per image
    expect(await model.detect([], { boxes: [] })).toEqual([])
    await expect(model.detect([], { boxes: [[box]] })).rejects.toThrow(/^options\.boxes must hold one list of \[x1, y1, x2, y2\] boxes per image \(0 images\), got 1 list$/)
    const perFrame = await model.detect([frame, frame, frame], { boxes: [[box], [], [box, box]] })
    expect(perFrame.map((f) => f.length)).toEqual([1, 0, 2])
    const alone = await model.detect(frame, { boxes: [box] })
    expect(perFrame[2][1].auValues).toEqual(alone[0].auValues)
  })

  it('a view cut tightly out of a padded frame (no padding after its last row) is whole', async () => {
    const stride = W * 3 + 5
    const padded = new Uint8Array(stride * H)
    for (let y = 0; y < H; y++) for (let x = 0; x < W * 3; x++) padded[y * stride + x] = (x * 7 + y * 13) & 255
    const full = await model.detect({ data: padded, width: W, height: H, stride }, { boxes: [[30, 20, 64, 48]] })
    const tight = padded.subarray(0, stride * (H - 1) + W * 3)
    const cut = await model.detect({ data: tight, width: W, height: H, stride }, { boxes: [[30, 20, 64, 48]] })
    expect(cut[0].mesh).toEqual(full[0].mesh)
    const short = await model.detect({ data: tight.subarray(1), width: W, height: H, stride }, { boxes: [box] }).catch((e) => e)
    expect(short).toBeInstanceOf(RangeError)
  })

  it('a frame transferred while its call waits for a batch fails that call, saying so; the others run', async () => {
    const want = (await model.detect(frame, { boxes: [box] }))[0].auValues
    // Queued behind busy slots, the two calls run as one batch after the transfer.
    const busy = Array.from({ length: 4 }, () => model.detect(frame, { boxes: [box, box] }))
    const moved = { ...frame, data: new Uint8Array(frame.data) }
    const waiting = model.detect([frame, moved], { boxes: [[box], [box]] })  // the error names which image
    const intact = model.detect(frame, { boxes: [box] })
    structuredClone(moved.data.buffer, { transfer: [moved.data.buffer] })
    await expect(waiting).rejects.toThrow(/^images\[1\]\.data changed while detect\(\) waited: it now holds 0 bytes, 9216 were checked .*keep each frame unchanged until its detect\(\) settles$/)
    expect((await intact)[0].auValues).toEqual(want)
    await Promise.all(busy)
  })

  it('a frame transferred while its call waits is found by what its view holds, not by an own byteLength given to it after the call', async () => {
    const busy = Array.from({ length: 4 }, () => model.detect(frame, { boxes: [box, box] }))
    const moved = { ...frame, data: new Uint8Array(frame.data) }
    const waiting = model.detect(moved, { boxes: [box] })
    Object.defineProperty(moved.data, 'byteLength', { value: moved.data.byteLength })
    structuredClone(moved.data.buffer, { transfer: [moved.data.buffer] })
    // Not the addon's own "faces[0].data is shorter than ...", which names no argument of the caller's.
    await expect(waiting).rejects.toThrow(/^image\.data changed while detect\(\) waited: it now holds 0 bytes, 9216 were checked/)
    await Promise.all(busy)
  })

  it('a call aborted while it waits for a batch rejects with an AbortError and never runs; the others give their faces; pending counts faces', async () => {
    const want = (await model.detect(frame, { boxes: [box] }))[0].auValues
    // Queued behind busy slots: the stale frame's faces are dropped before their batch forms.
    const busy = Array.from({ length: 4 }, () => model.detect(frame, { boxes: [box, box] }))
    const controller = new AbortController()
    const stale = model.detect(frame, { boxes: [box, box, box], signal: controller.signal })
    const fresh = model.detect(frame, { boxes: [box] })
    const { queued, running } = model.pending
    expect(queued + running).toBe(4 * 2 + 3 + 1)
    expect(queued).toBeGreaterThanOrEqual(4)  // the stale call's 3 faces and the fresh one's wait
    controller.abort('camera moved on')
    expect(model.pending.queued).toBe(queued - 3)
    await expect(stale).rejects.toMatchObject({ name: 'AbortError', message: 'detect() was aborted', cause: 'camera moved on' })
    expect((await fresh)[0].auValues).toEqual(want)
    await Promise.all(busy)
    expect(model.pending).toEqual({ queued: 0, running: 0 })
    await expect(model.detect(frame, { boxes: [box], signal: AbortSignal.abort() })).rejects.toMatchObject({ name: 'AbortError' })
  })

  it('calls are served in the order they came: a one-face call does not overtake an earlier large one whose preprocessing takes longer', async () => {
    // Both batches take a slot on an idle model and preprocess at once on libuv's pool; the small
    // one's ends first, but the thread is the earlier batch's.
    const big = { data: new Uint8Array(1280 * 720 * 3).map((_, i) => (i * 7) & 255), width: 1280, height: 720 }
    const many: Box[] = Array.from({ length: 32 }, (_, i) => [20 + (i % 8) * 100, 20 + (i % 4) * 50, 620 + (i % 8) * 80, 700])
    await withModel(file, async (m) => {
      for (let round = 0; round < 10; round++) {
        const order: string[] = []
        const a = m.detect(big, { boxes: many }).then(() => order.push('large, first'))
        const b = m.detect(big, { boxes: [[300, 200, 400, 300]] }).then(() => order.push('one face, second'))
        await Promise.all([a, b])
        expect(order, `round ${round}`).toEqual(['large, first', 'one face, second'])
      }
    }, { maxBatch: 32 })
  })

  it('with a thread idle for every earlier batch, a batch takes one as soon as it is preprocessed: a one-face call does not wait for an earlier large one\'s preprocessing (two workers)', async () => {
    // Both batches preprocess at once on an idle model with two threads; the small one's ends first
    // and takes the second thread, leaving the first for the large one: nobody is overtaken.
    const big = { data: new Uint8Array(1280 * 720 * 3).map((_, i) => (i * 7) & 255), width: 1280, height: 720 }
    // 96 faces: their preprocessing (~20 ms) outlasts the one face's by far, even on a loaded machine.
    const many: Box[] = Array.from({ length: 96 }, (_, i) => [20 + (i % 8) * 100, 20 + (i % 4) * 50, 620 + (i % 8) * 80, 700])
    const proto = Worker.prototype as unknown as { postMessage(this: Worker, msg: { type?: string; batch?: number }, transfer?: unknown): void }
    const postMessage = proto.postMessage
    const sent: number[] = []
    proto.postMessage = function (this: Worker, msg, transfer) {
      if (msg?.type === 'run') sent.push(msg.batch!)
      return postMessage.call(this, msg, transfer)
    }
    try {
      // Six rounds, at least five in that order: sent in submission order, every round would be
      // [96, 1]; one round may be reordered by the machine (a loaded machine once kept the one
      // face's pool thread off a core for as long as the 96 faces took).
      const orders: string[] = []
      await withModel(file, async (m) => {
        for (let round = 0; round < 6; round++) {
          sent.length = 0
          await Promise.all([m.detect(big, { boxes: many }), m.detect(big, { boxes: [[300, 200, 400, 300]] })])
          orders.push(sent.join(','))
        }
      }, { maxBatch: 96, workers: 2 })
      expect(orders.every((o) => o === '1,96' || o === '96,1'), orders.join(' ')).toBe(true)
      expect(orders.filter((o) => o === '1,96').length, orders.join(' ')).toBeGreaterThanOrEqual(5)
    } finally {
      proto.postMessage = postMessage
    }
  })

  /** Holds every batch sent to an inference thread until released (as a long inference holds it), or until its thread is killed. */
  function holdRuns() {
    const proto = Worker.prototype as unknown as { postMessage(this: Worker, msg: { type?: string; input?: ArrayBuffer; batch?: number }, transfer?: unknown): void }
    const postMessage = proto.postMessage
    const sent: number[][] = []  // per batch sent, each face's first chip value
    const held: { release(): void; kill(): void }[] = []
    let onSent = () => {}
    proto.postMessage = function (this: Worker, msg, transfer) {
      if (msg?.type !== 'run') return postMessage.call(this, msg, transfer)
      const chips = new Float32Array(msg.input!, 0, msg.batch! * 3 * 224 * 224)
      sent.push(Array.from({ length: msg.batch! }, (_, k) => chips[k * 3 * 224 * 224]))
      held.push({ release: () => postMessage.call(this, msg, transfer), kill: () => void this.terminate() })
      onSent()
    }
    return {
      sent,
      /** Resolves once `n` batches have been sent. */
      sentCount: (n: number) => new Promise<void>((resolve) => {
        onSent = () => { if (sent.length >= n) resolve() }
        onSent()
      }),
      release: () => held.shift()!.release(),
      kill: () => held.shift()!.kill(),
      get held() { return held.length },
      restore: () => { proto.postMessage = postMessage },
      /** `body`, after which (even when it fails) nothing more is held and what is held is sent, so the model's close() can end. */
      whileHeld: (body: (m: FaceMultitask) => Promise<void>) => async (m: FaceMultitask) => {
        try {
          await body(m)
        } finally {
          proto.postMessage = postMessage
          for (const h of held.splice(0)) h.release()
        }
      },
    }
  }

  /** A frame of one value: brighter frames give larger first chip values. */
  const fill = (v: number) => ({ ...frame, data: new Uint8Array(W * H * 3).fill(v) })

  /**
   * Two calls formed into one batch behind two others, that batch then sent to the thread and
   * held there: `late` (its signal `controller`'s, its frame `stale`) and `mate` (frame `mine`).
   */
  async function heldBatchOfTwo(m: FaceMultitask, runs: ReturnType<typeof holdRuns>) {
    const x = m.detect(fill(40), { boxes: [box] })
    await runs.sentCount(1)  // on the thread
    const y = m.detect(fill(80), { boxes: [box] })  // the second slot: preprocessed, waits for the thread
    const controller = new AbortController()
    const [stale, mine] = [fill(120), fill(160)]
    const late = m.detect(stale, { boxes: [box], signal: controller.signal })
    const mate = m.detect(mine, { boxes: [box] })
    runs.release()
    await x
    await runs.sentCount(2)  // y on the thread (it may not be yet when x's call settles)
    runs.release()
    await y
    await runs.sentCount(3)  // late and mate as one batch, on the thread and held there
    return { controller, stale, mine, late, mate }
  }

  /** What a promise has settled with within `ms`, or 'still pending'. */
  const within = <T>(p: Promise<T>, ms: number) => Promise.race([p.catch((e: unknown) => e), new Promise<string>((r) => setTimeout(() => r('still pending'), ms))])

  it('a call aborted while its batch, already preprocessed, waits for the busy inference thread is not inferred; its batch-mates are, with their own values', async () => {
    const runs = holdRuns()
    try {
      await withModel(file, runs.whileHeld(async (m) => {
        const a = m.detect(fill(40), { boxes: [box] })
        await runs.sentCount(1)  // on the thread
        const x = m.detect(fill(80), { boxes: [box] })  // the second slot: preprocessed, waits for the thread
        const controller = new AbortController()
        const stale = m.detect(fill(120), { boxes: [box], signal: controller.signal })
        const stale2 = stale.catch((e: unknown) => e)
        const fresh = m.detect(fill(160), { boxes: [box] })
        expect(m.pending.queued).toBe(2)  // both slots busy: the stale and fresh frames wait
        runs.release()
        await a
        await runs.sentCount(2)  // x on the thread; the stale and fresh frames taken as one batch, waiting for it
        await vi.waitFor(() => expect(m.pending.queued).toBe(0))
        controller.abort('next frame arrived')
        runs.release()
        await x
        await runs.sentCount(3)
        runs.release()
        expect(await stale2).toMatchObject({ name: 'AbortError', cause: 'next frame arrived' })
        const got = (await fresh)[0].auValues
        expect(runs.sent.map((b) => b.length)).toEqual([1, 1, 1])  // the stale frame's face never reached the thread
        expect(runs.sent[2][0]).toBeGreaterThan(runs.sent[1][0])  // the one sent is the fresh frame's (brighter)
        runs.restore()
        expect(got).toEqual((await m.detect(fill(160), { boxes: [box] }))[0].auValues)
        expect(m.pending).toEqual({ queued: 0, running: 0 })
      }))
    } finally {
      runs.restore()
    }
  })

  it('a call aborted while its batch infers rejects then, not once the inference ends: its frame, preprocessed, is the caller\'s again; its batch-mate gives its own values', async () => {
    const want = (await model.detect(fill(160), { boxes: [box] }))[0].auValues
    const runs = holdRuns()
    try {
      await withModel(file, runs.whileHeld(async (m) => {
        const { controller, stale, late, mate } = await heldBatchOfTwo(m, runs)
        controller.abort('deadline passed')
        expect(await within(late, 2000)).toMatchObject({ name: 'AbortError', cause: 'deadline passed' })
        expect(runs.held).toBe(1)  // its inference has not ended
        structuredClone(stale.data.buffer, { transfer: [stale.data.buffer] })  // the caller's again: let go
        runs.release()
        expect((await mate)[0].auValues).toEqual(want)
        expect(runs.sent.map((b) => b.length)).toEqual([1, 1, 2])
        expect(m.pending).toEqual({ queued: 0, running: 0 })
      }))
    } finally {
      runs.restore()
    }
  })

  it('a batch whose thread died, run again, reads only the frames of calls still waiting for it: an aborted batch-mate\'s, its caller\'s again once it rejected, is not read', async () => {
    const want = (await model.detect(fill(160), { boxes: [box] }))[0].auValues
    const runs = holdRuns()
    const native = loadNative()
    const preprocess = native.preprocess
    const read: Uint8Array[][] = []  // per preprocessing, the frames it read
    native.preprocess = (faces, ...rest) => {
      read.push(faces.map((f) => f.data))
      return preprocess.call(native, faces, ...rest)
    }
    try {
      await withModel(file, runs.whileHeld(async (m) => {
        const { controller, stale, mine, late, mate } = await heldBatchOfTwo(m, runs)
        controller.abort('deadline passed')
        expect(await within(late, 2000)).toMatchObject({ name: 'AbortError' })
        stale.data.fill(0)  // its caller's again: a ring buffer takes the camera's next frame
        runs.kill()  // the thread dies with the batch on it
        await runs.sentCount(4)  // run again on the replacement
        runs.release()
        expect((await mate)[0].auValues).toEqual(want)
        expect(runs.sent.map((b) => b.length)).toEqual([1, 1, 2, 1])
        expect(read.map((frames) => frames.length)).toEqual([1, 1, 2, 1])
        expect(read[3][0]).toBe(mine.data)  // the mate's frame alone, read again
      }), { workers: 1 })
    } finally {
      native.preprocess = preprocess
      runs.restore()
    }
  })

  it('a signal that is not an AbortSignal but behaves as one (a polyfill, another realm) aborts a call as AbortController does', async () => {
    // The shape the abort-controller polyfill has: an EventTarget with `aborted` and `reason`.
    class PolyfilledSignal extends EventTarget {
      aborted = false
      reason: unknown
      abort(reason: unknown): void {
        this.aborted = true
        this.reason = reason
        this.dispatchEvent(new Event('abort'))
      }
    }
    const signal = new PolyfilledSignal()
    expect(signal).not.toBeInstanceOf(AbortSignal)
    const busy = Array.from({ length: 4 }, () => model.detect(frame, { boxes: [box, box] }))
    const stale = model.detect(frame, { boxes: [box, box], signal: signal as unknown as AbortSignal })
    const queued = model.pending.queued
    signal.abort('stale')
    expect(model.pending.queued).toBe(queued - 2)
    await expect(stale).rejects.toMatchObject({ name: 'AbortError', message: 'detect() was aborted', cause: 'stale' })
    await Promise.all(busy)
    await expect(model.detect(frame, { boxes: [box], signal: signal as unknown as AbortSignal })).rejects.toMatchObject({ name: 'AbortError', cause: 'stale' })
  })

  it('a frame from allocFrame() cannot be detached by a transfer while its call runs', async () => {
    const f = model.allocFrame(W, H, 'rgb')
    f.data.set(frame.data)
    const want = (await model.detect(frame, { boxes: [box] }))[0].auValues
    const running = model.detect(f, { boxes: [box] })
    // Node 20 copies it; Node 21 and later refuse it (DataCloneError). Never detached.
    try {
      expect(structuredClone(f.data.buffer, { transfer: [f.data.buffer as ArrayBuffer] }).byteLength).toBe(W * H * 3)
    } catch (e) {
      expect((e as Error).name).toBe('DataCloneError')
    }
    expect(f.data.byteLength).toBe(W * H * 3)
    expect((await running)[0].auValues).toEqual(want)
  })

  it('a caller that changes or transfers its results touches no other caller\'s', async () => {
    const alone = await model.detect(frame, { boxes: [box] })
    // Queued behind a busy slot, the three requests run as one batch.
    const busy = Array.from({ length: 4 }, () => model.detect(frame, { boxes: [box, box] }))
    const [a, b, c] = await Promise.all([model.detect(frame, { boxes: [box] }), model.detect(frame, { boxes: [box] }), model.detect(frame, { boxes: [box] }), ...busy])
    a[0].mesh.fill(0)
    a[0].auValues.fill(0)
    structuredClone(b[0].mesh, { transfer: [b[0].mesh.buffer as ArrayBuffer] })
    expect(b[0].mesh.length).toBe(0)  // b's own arrays, detached
    expect(c[0].mesh).toEqual(alone[0].mesh)
    expect(c[0].auValues).toEqual(alone[0].auValues)
    expect(c[0].emotionValues).toEqual(alone[0].emotionValues)
    // A face's typed arrays share one small buffer of its own (README: under 7 KB).
    const own = c[0].auValues.buffer
    for (const v of [c[0].emotionValues, c[0].mesh, c[0].landmarks68]) expect(v.buffer).toBe(own)
    expect(own.byteLength).toBeLessThan(7 * 1024)
  })

  it("the exported label lists cannot be changed: decoding reads them, so a caller's sort() would relabel every later face", async () => {
    const before = await model.detect(frame, { boxes: [box] })
    expect(() => (EMOTION_NAMES as unknown as string[]).sort()).toThrow(TypeError)
    expect(() => (AU_NAMES as unknown as string[]).reverse()).toThrow(TypeError)
    expect(() => (BLENDSHAPE_NAMES as unknown as string[]).push('x')).toThrow(TypeError)
    expect(() => (LANDMARK68_MESH_INDEX as number[]).fill(0)).toThrow(TypeError)
    expect(await model.detect(frame, { boxes: [box] })).toEqual(before)
  })

  it('requests in flight still resolve correctly while bad ones are rejected', async () => {
    const good = await model.detect(frame, { boxes: [box] })
    const results = await Promise.allSettled([
      model.detect(frame, { boxes: [box] }),
      model.detect(frame, { boxes: [[NaN, 0, 1, 1]] }),
      model.detect([frame, frame], { boxes: [[box], [box, box]] }),
    ])
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    const first = (results[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof model.detect>>>).value
    expect(first[0].auValues).toEqual(good[0].auValues)
  })

  describe('load', () => {
    it('an abort while the CPU sessions are made rejects at once, and the sessions are closed once made', async () => {
      let made: (() => void) | undefined
      let closed = 0
      const create = OnnxRuntimeBackend.create
      const spy = vi.spyOn(OnnxRuntimeBackend, 'create').mockImplementation(async (...args) => {
        const engine = await create.apply(OnnxRuntimeBackend, args)
        await new Promise<void>((r) => { made = r })  // made only when the test says (a large model's seconds)
        const close = engine.close.bind(engine)
        engine.close = () => { closed++; return close() }
        return engine
      })
      try {
        const controller = new AbortController()
        const loading = FaceMultitask.load({ model: file, backend: 'cpu', signal: controller.signal })
        await vi.waitFor(() => expect(made).toBeDefined())
        controller.abort('gave up')
        await expect(loading).rejects.toMatchObject({ name: 'AbortError', message: 'FaceMultitask.load() was aborted', cause: 'gave up' })
        expect(closed).toBe(0)
        made!()
        await vi.waitFor(() => expect(closed).toBe(1))
      } finally {
        spy.mockRestore()
      }
    })
    it('a look-alike signal whose listener methods throw: load() still loads on the CPU (and nothing is left rejected unhandled)', async () => {
      for (const broken of ['addEventListener', 'removeEventListener']) {
        const signal = { aborted: false, addEventListener() {}, removeEventListener() {}, [broken]() { throw new Error('not today') } }
        const m = await FaceMultitask.load({ model: file, backend: 'cpu', signal: signal as never })
        expect((await m.detect(frame, { boxes: [box] })).length).toBe(1)
        await m.close()
      }
    })
    it('missing model file', async () => {
      await expect(FaceMultitask.load({ model: path.join(dir, 'nope.onnx') })).rejects.toThrow(/options\.model: cannot read ".*nope\.onnx": no such file/)
    })
    it('a file that is not ONNX', async () => {
      const f = path.join(dir, 'junk.onnx')
      writeFileSync(f, Buffer.from('this is not a model\n'.repeat(10)))
      await expect(FaceMultitask.load({ model: f })).rejects.toThrow(/options\.model: .*junk\.onnx" is not a readable ONNX model/)
    })
    it('an ONNX file cut short (a copy or download stopped) is said to be', async () => {
      const f = path.join(dir, 'cut.onnx')
      const whole = makeFixtureModel({ generation: 'v2.5' })
      writeFileSync(f, whole.subarray(0, Math.floor(whole.length / 2)))
      await expect(FaceMultitask.load({ model: f })).rejects.toThrow(/is not a readable ONNX model \(index out of range: .*; it ends before what it declares: cut off by a copy or download\?\)$/)
    })
    it('a directory', async () => {
      await expect(FaceMultitask.load({ model: dir })).rejects.toThrow(/it is a directory/)
    })
    it('an ONNX without the metadata', async () => {
      const f = variant('nometa.onnx', (m) => { m.metadataProps = [] })
      await expect(FaceMultitask.load({ model: f })).rejects.toThrow(/"face_multitask\.schema" is missing/)
    })
    it('an unknown crop value names the key', async () => {
      const f = variant('badcrop.onnx', (m) => { m.metadataProps.find((p) => p.key === 'face_multitask.crop')!.value = 'circle' })
      await expect(FaceMultitask.load({ model: f })).rejects.toThrow(/"face_multitask\.crop" has unknown value "circle"/)
    })
    it('a synthetic value other than true or false names the key (a model saying "yes" would lose its SYNTHETIC warnings)', async () => {
      const f = variant('badsynthetic.onnx', (m) => { m.metadataProps.find((p) => p.key === 'face_multitask.synthetic')!.value = 'yes' })
      await expect(FaceMultitask.load({ model: f })).rejects.toThrow(/"face_multitask\.synthetic" has unknown value "yes" \(expected one of true, false\)/)
      const real = variant('notsynthetic.onnx', (m) => { m.metadataProps.find((p) => p.key === 'face_multitask.synthetic')!.value = 'false' })
      await withModel(real, async (m) => expect(m.info().synthetic).toBe(false))
    })
    it('a bad pose convention names the key', async () => {
      const f = variant('badpose.onnx', (m) => { m.metadataProps.find((p) => p.key === 'face_multitask.pose_convention')!.value = 'pitch=p0' })
      await expect(FaceMultitask.load({ model: f })).rejects.toThrow(/"face_multitask\.pose_convention" has unknown value/)
    })
    it('a convention reading one output channel for two angles is refused', async () => {
      const f = variant('twice.onnx', (m) => { m.metadataProps.find((p) => p.key === 'face_multitask.gaze_convention')!.value = 'pitch=-g1,yaw=+g1' })
      await expect(FaceMultitask.load({ model: f })).rejects.toThrow(/"face_multitask\.gaze_convention" has unknown value "pitch=-g1,yaw=\+g1"/)
      const g = variant('twice-pose.onnx', (m) => { m.metadataProps.find((p) => p.key === 'face_multitask.pose_convention')!.value = 'pitch=+p0,roll=-p0,yaw=+p1' })
      await expect(FaceMultitask.load({ model: g })).rejects.toThrow(/"face_multitask\.pose_convention" has unknown value/)
    })
    it('an output missing from the graph', async () => {
      const f = variant('noout.onnx', (m) => { m.graph!.output = m.graph!.output.filter((o) => o.name !== 'va') })
      await expect(FaceMultitask.load({ model: f })).rejects.toThrow(/the model has no output named "va"/)
    })
    it('further outputs of other types (float16, bool) are allowed and left alone; the results are the same', async () => {
      const want = (await model.detect(frame, { boxes: [box] }))[0]
      for (const [type, name] of [[onnx.TensorProto.DataType.FLOAT16, 'f16'], [onnx.TensorProto.DataType.BOOL, 'bool']] as const) {
        const f = variant(`extra-${name}.onnx`, (m) => {
          m.graph!.node.push(onnx.NodeProto.create({ name: 'extra.Cast', opType: 'Cast', input: ['va'], output: ['extra'], attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: type }] }))
          m.graph!.output.push(onnx.ValueInfoProto.create({ name: 'extra', type: { tensorType: { elemType: type, shape: { dim: [{ dimParam: 'N' }, { dimValue: 2 }] } } } }))
        })
        await withModel(f, async (m) => {
          const got = (await m.detect(frame, { boxes: [box, box] }))
          expect(got.map((x) => [x.auValues, x.valence])).toEqual([[want.auValues, want.valence], [want.auValues, want.valence]])
        })
      }
    })
    it('an output that does not follow the batch (a batch of 1 baked in) fails the call, naming it; not zeros for the later faces', async () => {
      const f = headRewritten('batch1-au.onnx', 'p_au', { s0: [0], s1: [1], ax: [0] }, [{ name: 'sl', opType: 'Slice', input: ['p_au_raw', 's0', 's1', 'ax'], output: ['p_au'] }])
      await withModel(f, async (m) => {
        const err = await m.detect(frame, { boxes: [box, box] }).catch((e) => e)
        expect(err.message).toBe('the model\'s output "p_au" holds 20 values for a batch of 2 faces, not 40 ([2, 20]): its batch axis is not the input\'s')
      })
    })
    it('an output holding NaN fails only the call whose face gave it, naming the output; calls batched with it resolve as before', async () => {
      // emotion_logits + (r - r), r = sqrt(the crop's centre, red, normalised): NaN for a dark face, unchanged for a bright one.
      const f = headRewritten('nan-dark.onnx', 'emotion_logits', { c0: [0, 112, 112], c1: [1, 113, 113], axes: [1, 2, 3], shape: [-1, 1] }, [
        { name: 'centre', opType: 'Slice', input: ['input', 'c0', 'c1', 'axes'], output: ['centre'] },
        { name: 'flat', opType: 'Reshape', input: ['centre', 'shape'], output: ['centre_flat'] },
        { name: 'root', opType: 'Sqrt', input: ['centre_flat'], output: ['root'] },
        { name: 'none', opType: 'Sub', input: ['root', 'root'], output: ['none'] },
        { name: 'nan_or_not', opType: 'Add', input: ['emotion_logits_raw', 'none'], output: ['emotion_logits'] },
      ])
      const bright = { ...frame, data: new Uint8Array(W * H * 3).fill(250) }
      const want = (await model.detect(bright, { boxes: [box] }))[0]
      await withModel(f, async (m) => {
        // The first calls take the free slots, so the dark call shares a later batch with bright ones.
        const calls = [bright, bright, bright, frame, bright].map((image) => m.detect(image, { boxes: [box, box] }))
        const settled = await Promise.allSettled(calls)
        const dark = settled.splice(3, 1)[0]
        expect(dark.status === 'rejected' && (dark.reason as Error).message).toBe('the model gave NaN in its output "emotion_logits" for options.boxes[0] = [10, 10, 40, 40] (and 1 other face of this call), so that face\'s results would be meaningless; the call gives none')
        for (const r of settled) {
          expect(r.status === 'fulfilled' && r.value.map((x) => [x.emotion, x.emotionValues])).toEqual([[want.emotion, want.emotionValues], [want.emotion, want.emotionValues]])
        }
        // One dark face among bright ones, in a call of two images: the error names that face alone.
        const half = { ...bright, data: bright.data.map((v, k) => (Math.floor(k / 3) % W < W / 2 ? v : 90)) }
        const err = await m.detect([bright, half], { boxes: [[box], [[2, 10, 22, 30], [42, 10, 62, 30]]] }).catch((e: unknown) => e)
        expect(err).toBeInstanceOf(NonFiniteOutputError)
        expect([(err as NonFiniteOutputError).output, (err as NonFiniteOutputError).face]).toEqual(['emotion_logits', 'options.boxes[1][1] = [42, 10, 62, 30]'])
        expect((err as Error).message).toBe('the model gave NaN in its output "emotion_logits" for options.boxes[1][1] = [42, 10, 62, 30], so that face\'s results would be meaningless; the call gives none')
        expect(await m.detect(half, { boxes: [[2, 10, 22, 30]] })).toHaveLength(1)
      })
    })
    it('a model path that is not a regular file (a FIFO) is refused at once, not read for ever', async () => {
      const fifo = path.join(dir, 'fifo.onnx')
      execFileSync('mkfifo', [fifo])
      await expect(FaceMultitask.load({ model: fifo })).rejects.toThrow(`options.model: cannot read "${fifo}": not a regular file`)
    })
    it('an input of the wrong shape', async () => {
      const f = variant('badin.onnx', (m) => { m.graph!.input[0].type!.tensorType!.shape!.dim[2].dimValue = 256 })
      await expect(FaceMultitask.load({ model: f })).rejects.toThrow(/input "input" has shape \[N,3,256,224\], expected \[N,3,224,224\]/)
    })
    it('bad options', async () => {
      await expect(FaceMultitask.load({ model: file, backend: 'gpu' as never })).rejects.toThrow(/options\.backend must be one of/)
      await expect(FaceMultitask.load({ model: file, backend: null as never })).rejects.toThrow(/^options\.backend must be one of auto, .*, got null$/)
      await expect(FaceMultitask.load({ model: file, maxBatch: 0 })).rejects.toThrow(/options\.maxBatch must be an integer/)
      await expect(FaceMultitask.load({ model: file, workers: '2' as never })).rejects.toThrow(new TypeError('options.workers must be an integer from 1 to 64, got "2"'))
      await expect(FaceMultitask.load({} as never)).rejects.toThrow(/options\.model must be the path/)
      // The model's bytes instead of its path: refused at once, not as one unknown key per byte.
      await expect(FaceMultitask.load((await readFile(file)) as never)).rejects.toThrow(new TypeError("options must be an object { model, backend?, ... }, got a Buffer (options.model is the ONNX file's path)"))
      await expect(FaceMultitask.load([{ model: file }] as never)).rejects.toThrow(new TypeError('options must be an object { model, backend?, ... }, got an array'))
    })

    it('each option is read once: a getter cannot give the checks one value and the load another', async () => {
      let reads = 0
      const other = variant('other-model.onnx', () => {})
      const m = await FaceMultitask.load({ get model() { return reads++ === 0 ? file : other } })
      try {
        expect(reads).toBe(1)
        expect(m.info().model).toBe(file)
      } finally {
        await m.close()
      }
      // Options from a prototype (a defaults object) are options too, misspelt ones refused too.
      await expect(FaceMultitask.load(Object.assign(Object.create({ worker: 2 }), { model: file }))).rejects.toThrow(/^options has unknown key "worker"; the options are /)
      const inherited = await FaceMultitask.load(Object.assign(Object.create({ workers: 2, threads: 1 }), { model: file }))
      try {
        expect(inherited.info().device).toBe('cpu (2 workers x 1 thread)')
      } finally {
        await inherited.close()
      }
    })
  })

  it('a Worker thread terminated while its preprocessing runs ends alone, not the process', () => {
    // In a child process: the failure this guards against was std::terminate of the whole process.
    const r = spawnSync(process.execPath, [path.join(__dirname, 'helpers', 'terminate-worker-child.js')], { encoding: 'utf8', timeout: 120_000 })
    expect({ status: r.status, signal: r.signal, stdout: r.stdout.trim() }, r.stderr).toEqual({ status: 0, signal: null, stdout: 'survived' })
  }, 120_000)

  it.each(['load', 'run'])('process.exit() while ONNX Runtime is inside a %s exits with its code, not an abort of the process', (when) => {
    // The child exits as soon as an inference thread enters onnxruntime-node's native call (which
    // aborted the process, exit code 134): the exit waits for the call instead.
    const child = path.join(__dirname, 'helpers', 'exit-during-ort-call-child.js')
    for (let round = 0; round < 3; round++) {
      const marker = path.join(dir, `ort-${when}-mark-${round}`)
      const r = spawnSync(process.execPath, ['--require', child, child, file], {
        encoding: 'utf8', timeout: 120_000, env: { ...process.env, FM_TEST_EXIT_MARKER: marker, FM_TEST_EXIT_IN: when },
      })
      expect({ status: r.status, signal: r.signal, marked: existsSync(marker) }, r.stderr + r.stdout).toEqual({ status: 7, signal: null, marked: true })
    }
  }, 120_000)

  it('a batch whose inference thread dies under it runs again on another worker: the call resolves', async () => {
    const m = await FaceMultitask.load({ model: file, workers: 2, threads: 1 })
    // Fault injection (the workers are internal): the first batch handed to a thread ends that
    // thread instead of reaching it, as a crash with the batch on it would.
    type Thread = { postMessage(...a: unknown[]): void; terminate(): Promise<number> }
    const threads = (m as unknown as { engine: { workers: { worker: Thread }[] } }).engine.workers.map((w) => w.worker)
    try {
      const want = (await m.detect(frame, { boxes: [box] }))[0].auValues
      let crashed = 0
      for (const t of threads) {
        const post = t.postMessage.bind(t)
        t.postMessage = (...a: unknown[]) => {
          if (crashed++ === 0) void t.terminate()
          else post(...a)
        }
      }
      expect((await m.detect(frame, { boxes: [box] }))[0].auValues).toEqual(want)
      expect(crashed).toBe(2) // the batch was lost once, then ran on the other thread
    } finally {
      await m.close()
    }
  })

  it('a model whose inference threads die keeps serving: each is replaced by a new one on the same model', async () => {
    const m = await FaceMultitask.load({ model: file, workers: 2, threads: 1 })
    // Fault injection: the threads are internal; ending one is what a crash of it looks like.
    const threads = (m as unknown as { engine: { workers: { worker: { terminate(): Promise<number> } }[] } }).engine.workers.map((w) => w.worker)
    try {
      const want = (await m.detect(frame, { boxes: [box] }))[0].auValues
      await threads[1].terminate()
      const sequential = []
      for (let i = 0; i < 4; i++) sequential.push(await m.detect(frame, { boxes: [box] }))
      const concurrent = await Promise.all(Array.from({ length: 4 }, () => m.detect(frame, { boxes: [box, box] })))
      for (const faces of [...sequential, ...concurrent]) for (const f of faces) expect(f.auValues).toEqual(want)
      await threads[0].terminate()
      expect((await m.detect(frame, { boxes: [box] }))[0].auValues).toEqual(want)
    } finally {
      await m.close()
    }
  })

  it('with one worker, a batch whose thread dies under it runs again on its replacement; an idle thread that dies is replaced too', async () => {
    const m = await FaceMultitask.load({ model: file, workers: 1, threads: 1 })
    type Session = { worker: { postMessage(...a: unknown[]): void; terminate(): Promise<number> } }
    const engine = (m as unknown as { engine: { workers: Session[] } }).engine
    try {
      const want = (await m.detect(frame, { boxes: [box] }))[0].auValues
      const first = engine.workers[0]
      const post = first.worker.postMessage.bind(first.worker)
      let crashed = 0
      first.worker.postMessage = (...a: unknown[]) => {
        if (crashed++ === 0) void first.worker.terminate()
        else post(...a)
      }
      expect((await m.detect(frame, { boxes: [box] }))[0].auValues).toEqual(want)
      expect(crashed).toBe(1) // the lost batch ran on the replacement, never again on the dead thread
      expect(engine.workers[0]).not.toBe(first)
      const second = engine.workers[0]
      await second.worker.terminate()
      expect((await m.detect(frame, { boxes: [box] }))[0].auValues).toEqual(want)
      expect(engine.workers[0]).not.toBe(second)
    } finally {
      await m.close()
    }
  })

  it('a thread that dies after the model file was rewritten is not replaced by one on the new file: calls reject, saying the file changed', async () => {
    const copy = path.join(dir, 'rewritten-under.onnx')
    writeFileSync(copy, makeFixtureModel({ generation: 'v2.5' }))
    const m = await FaceMultitask.load({ model: copy, workers: 1, threads: 1 })
    const engine = (m as unknown as { engine: { workers: { worker: { terminate(): Promise<number> } }[] } }).engine
    try {
      await m.detect(frame, { boxes: [box] })
      writeFileSync(`${copy}.new`, makeFixtureModel({ generation: 'v2.5', seed: 2 }))  // another export of the same generation
      renameSync(`${copy}.new`, copy)
      await engine.workers[0].worker.terminate()
      const err = await m.detect(frame, { boxes: [box] }).catch((e) => e)
      expect(err.message).toMatch(new RegExp(`no thread can replace it: the model file "${copy.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}" changed since it was loaded \\(rewritten\\): load the model again$`))
    } finally {
      await m.close()
    }
  })

  it("a thread that dies after the model's external-data weights were rewritten (the .onnx untouched) is not replaced on them either", async () => {
    const folder = path.join(dir, 'external-weights')
    mkdirSync(folder, { recursive: true })
    const file = path.join(folder, 'm.onnx')
    const first = withExternalData(makeFixtureModel({ generation: 'v2.5' }), 'm.weights')
    writeFileSync(file, first.onnx)
    writeFileSync(path.join(folder, 'm.weights'), first.weights)
    const m = await FaceMultitask.load({ model: file, workers: 1, threads: 1 })
    const engine = (m as unknown as { engine: { workers: { worker: { terminate(): Promise<number> } }[] } }).engine
    try {
      const want = (await m.detect(frame, { boxes: [box] }))[0].auValues
      // A thread that dies with the files as they were is replaced, and gives the same results.
      await engine.workers[0].worker.terminate()
      expect((await m.detect(frame, { boxes: [box] }))[0].auValues).toEqual(want)
      // Another fixture of the generation: the same tensors and layout, other weights.
      const other = withExternalData(makeFixtureModel({ generation: 'v2.5', seed: 2 }), 'm.weights')
      expect(other.weights.length).toBe(first.weights.length)
      writeFileSync(path.join(folder, 'm.weights'), other.weights)
      await engine.workers[0].worker.terminate()
      const err = await m.detect(frame, { boxes: [box] }).catch((e) => e)
      expect(err.message).toMatch(/no thread can replace it: the model's weights file \(ONNX external data\) ".*m\.weights" changed since it was loaded \(rewritten\): load the model again$/)
    } finally {
      await m.close()
    }
  })

  /** Makes every inference thread die on a batch with a chip that starts bright (the poison frame's); counts loads and kills. */
  function poisonThreads(): { loads: number; kills: number; restore(): void } {
    const proto = Worker.prototype as unknown as { postMessage(this: Worker, msg: { type?: string; input?: ArrayBuffer; batch?: number }, transfer?: unknown): void }
    const postMessage = proto.postMessage
    const counts = { loads: 0, kills: 0, restore: () => { proto.postMessage = postMessage } }
    proto.postMessage = function (this: Worker, msg, transfer) {
      if (msg?.type === 'load') counts.loads++
      // Only the batch's own faces: a reused input buffer may hold an earlier, larger batch's after them.
      const chips = msg?.type === 'run' ? new Float32Array(msg.input!, 0, msg.batch! * 3 * 224 * 224) : undefined
      const bright = (k: number) => chips![k * 3 * 224 * 224] >= 1
      if (!chips || !Array.from({ length: chips.length / (3 * 224 * 224) }, (_, k) => k).some(bright)) return postMessage.call(this, msg, transfer)
      counts.kills++
      void this.terminate()
    }
    return counts
  }
  // The poison frame is bright: its chip's first value (normalised) is above 1, the others' below.
  const poison = { ...frame, data: new Uint8Array(W * H * 3).fill(250) }

  it('with one worker, a frame that kills every thread it meets rejects after the thread and one replacement; its slot is replaced and serves the next calls', async () => {
    const m = await FaceMultitask.load({ model: file, workers: 1, threads: 1 })
    const want = (await m.detect(frame, { boxes: [box] }))[0].auValues
    const t = poisonThreads()
    try {
      await expect(m.detect(poison, { boxes: [box] })).rejects.toThrow(/the inference worker exited/)
      expect(t.kills).toBe(2)
      expect((await m.detect(frame, { boxes: [box] }))[0].auValues).toEqual(want)
      await expect(m.detect(poison, { boxes: [box] })).rejects.toThrow(/the inference worker exited/)
      expect(t.kills).toBe(4)
      expect((await m.detect(frame, { boxes: [box] }))[0].auValues).toEqual(want)
    } finally {
      t.restore()
      await m.close()
    }
  })

  /**
   * Turns the inference threads' answers of `type` ('loaded', 'result') into what Node emits when
   * a message cannot be deserialized, `left` times: no answer of theirs can be made to fail so.
   * An answer arrives once the thread is done with it, so the thread is idle then, as here.
   */
  function unreadableAnswers(type: string): { left: number; restore(): void } {
    const proto = Worker.prototype as unknown as { emit(this: Worker, event: string | symbol, ...args: unknown[]): boolean }
    const emit = proto.emit
    const state = { left: 0, restore: () => { proto.emit = emit } }
    proto.emit = function (this: Worker, event, ...args) {
      if (event === 'message' && (args[0] as { type?: string })?.type === type && state.left-- > 0) return emit.call(this, 'messageerror', new Error('Unable to deserialize cloned data.'))
      return emit.call(this, event, ...args)
    }
    return state
  }

  it('a reply the main thread cannot read (messageerror): the thread is replaced and the batch run again; on every thread, the call rejects saying so', async () => {
    const m = await FaceMultitask.load({ model: file, workers: 1, threads: 1 })
    const want = (await m.detect(frame, { boxes: [box] }))[0].auValues
    const engine = (m as unknown as { engine: { workers: { worker: Worker }[] } }).engine
    const given = engine.workers[0].worker
    const ended = new Promise((resolve) => given.once('exit', resolve))
    const answers = unreadableAnswers('result')
    try {
      answers.left = 1
      expect((await m.detect(frame, { boxes: [box] }))[0].auValues).toEqual(want)
      await ended // the thread given up is ended, not left running beside its replacement
      expect(engine.workers[0].worker).not.toBe(given)
      answers.left = Infinity
      await expect(m.detect(frame, { boxes: [box] })).rejects.toThrow("a reply from the inference worker could not be read: Unable to deserialize cloned data.")
      answers.left = 0
      expect((await m.detect(frame, { boxes: [box] }))[0].auValues).toEqual(want)
    } finally {
      answers.restore()
      await m.close()
    }
  })

  it('a load whose answer cannot be read (messageerror) rejects, the first load or a replacement\'s: nothing waits for it for ever', async () => {
    const answers = unreadableAnswers('loaded')
    const why = `onnxruntime could not load "${file}": the thread's answer could not be read: Unable to deserialize cloned data.`
    try {
      answers.left = 1
      await expect(FaceMultitask.load({ model: file, workers: 1, threads: 1 })).rejects.toThrow(why)
      const m = await FaceMultitask.load({ model: file, workers: 1, threads: 1 })
      try {
        await m.detect(frame, { boxes: [box] })
        // Its thread dies; the replacement's load is not answered readably: calls reject, saying so.
        answers.left = Infinity
        await (m as unknown as { engine: { workers: { worker: Worker }[] } }).engine.workers[0].worker.terminate()
        await expect(m.detect(frame, { boxes: [box] })).rejects.toThrow(`the inference worker exited (code 1); no thread can replace it: ${why}`)
      } finally {
        await m.close()
      }
    } finally {
      answers.restore()
    }
  })

  it('a bad call sharing a batch with a good one: the good one resolves, the bad one rejects, and the threads it killed are replaced', async () => {
    const m = await FaceMultitask.load({ model: file, workers: 2, threads: 1, maxBatch: 4 })
    const want = (await m.detect(frame, { boxes: [box] }))[0].auValues
    const engine = (m as unknown as { engine: { workers: { failure?: Error }[]; starting: Set<unknown> } }).engine
    const t = poisonThreads()
    try {
      // Three calls take the three slots (two workers, and one batch preprocessed ahead); the
      // next two wait and go as one batch.
      const first = [0, 1, 2].map(() => m.detect(frame, { boxes: [box] }))
      const [good, bad] = await Promise.allSettled([m.detect(frame, { boxes: [box] }), m.detect(poison, { boxes: [box] })])
      for (const f of await Promise.all(first)) expect(f[0].auValues).toEqual(want)
      expect(good.status === 'fulfilled' && good.value[0].auValues).toEqual(want)
      expect(bad.status === 'rejected' && String(bad.reason)).toMatch(/the inference worker exited/)
      expect(t.kills).toBe(4) // the shared batch: both threads and a replacement; its rerun alone: one
      const later = await Promise.all([0, 1, 2, 3].map(() => m.detect(frame, { boxes: [box] })))
      for (const f of later) expect(f[0].auValues).toEqual(want)
      while (engine.starting.size > 0) await new Promise((r) => setTimeout(r, 20))
      expect(engine.workers.map((w) => w.failure)).toEqual([undefined, undefined])
    } finally {
      t.restore()
      await m.close()
    }
  })

  it('threads that die on every batch and answer none: after so many in a row the next starts after a pause, calls meanwhile reject at once saying so, and it serves again', async () => {
    const m = await FaceMultitask.load({ model: file, workers: 1, threads: 1 })
    const want = (await m.detect(frame, { boxes: [box] }))[0].auValues
    const t = poisonThreads()
    try {
      for (let i = 0; i < 3; i++) await expect(m.detect(poison, { boxes: [box] })).rejects.toThrow(/the inference worker exited/)
      // Each call killed the thread and one replacement: 5 replacements in a row answered none,
      // more than twice what a batch may kill (2 x 2 with one worker), so the next waits 1 s.
      expect({ loads: t.loads, kills: t.kills }).toEqual({ loads: 5, kills: 6 })
      await expect(m.detect(frame, { boxes: [box] })).rejects.toThrow(/5 threads in a row died before answering a batch, so the next starts in 1 s$/)
      expect(t.loads).toBe(5)
      const since = Date.now()
      while (t.loads === 5 && Date.now() - since < 10_000) await new Promise((r) => setTimeout(r, 50))
      expect(t.loads).toBe(6)
      let faces
      while (!faces && Date.now() - since < 20_000) faces = await m.detect(frame, { boxes: [box] }).catch(() => undefined)  // until the replacement has loaded
      expect(faces![0].auValues).toEqual(want)
    } finally {
      t.restore()
      await m.close()
    }
  }, 30_000)

  it('a replacement thread that dies idle before answering any batch (a crash loop of its own) is not replaced; calls then reject with why', async () => {
    const m = await FaceMultitask.load({ model: file, workers: 1, threads: 1 })
    type Session = { worker: { terminate(): Promise<number> }; failure?: Error }
    const engine = (m as unknown as { engine: { workers: Session[]; starting: Set<unknown> } }).engine
    const t = poisonThreads()
    try {
      await m.detect(frame, { boxes: [box] })
      const first = engine.workers[0]
      await first.worker.terminate()
      while (engine.workers[0] === first || engine.starting.size > 0) await new Promise((r) => setTimeout(r, 20))
      expect(t.loads).toBe(1)
      await engine.workers[0].worker.terminate()
      await new Promise((r) => setTimeout(r, 200))
      expect(engine.starting.size).toBe(0)
      expect(t.loads).toBe(1)
      await expect(m.detect(frame, { boxes: [box] })).rejects.toThrow(/the inference worker exited/)
    } finally {
      t.restore()
      await m.close()
    }
  })

  it.skipIf(process.platform === 'win32')('a batch whose thread died, preprocessed again while its replacement fails to load, rejects with why instead of waiting for ever; close() returns', async () => {
    // The replacement fails (the model file is gone) while the batch is preprocessed again, held
    // up by a busy libuv pool (fs, dns, zlib in a service): no thread will ever be free again.
    const own = path.join(dir, 'deleted.onnx')
    writeFileSync(own, makeFixtureModel({ generation: 'v2.5' }))
    const m = await FaceMultitask.load({ model: own, workers: 1, threads: 1 })
    await m.detect(frame, { boxes: [box] })
    unlinkSync(own)
    const pool = Number(process.env.UV_THREADPOOL_SIZE) || 4
    const fifos = Array.from({ length: pool }, (_, i) => path.join(dir, `pool-${i}.fifo`))
    for (const f of fifos) {
      rmSync(f, { force: true })
      execFileSync('mkfifo', [f])
    }
    type Session = { worker: { postMessage(...a: unknown[]): void; terminate(): Promise<number> }; failure?: Error }
    const engine = (m as unknown as { engine: { workers: Session[] } }).engine
    const w = engine.workers[0].worker
    const post = w.postMessage.bind(w)
    const reads: Promise<unknown>[] = []
    w.postMessage = (...a: unknown[]) => {
      if ((a[0] as { type?: string })?.type !== 'run') return post(...a)
      for (const f of fifos) reads.push(readFile(f).catch(() => {}))  // each holds a pool thread until written
      void w.terminate()
    }
    const call = m.detect(frame, { boxes: [box] }).then(() => 'resolved', (e: Error) => e.message)
    // The replacement has failed to load.
    while (!/no thread can replace it/.test(engine.workers[0].failure?.message ?? '')) await new Promise((r) => setTimeout(r, 10))
    for (const f of fifos) closeSync(openSync(f, 'w'))  // the pool is free again
    await Promise.all(reads)
    expect(await call).toMatch(/^the inference worker exited \(code \d+\); no thread can replace it: the model file ".*deleted\.onnx" changed since it was loaded \(removed\): load the model again$/)
    await m.close()
  }, 30_000)

  it('under steady traffic, a batch that kills every thread it meets rejects after killing one more than there are workers; the traffic is served', async () => {
    const m = await FaceMultitask.load({ model: file, workers: 2, threads: 1, maxBatch: 1 })
    const want = (await m.detect(frame, { boxes: [box] }))[0].auValues
    const t = poisonThreads()
    try {
      let settled = false
      const bad = m.detect(poison, { boxes: [box] }).finally(() => { settled = true })
      bad.catch(() => {})
      // Each replacement answers someone's batch before the poison reaches it, so it counts as sound.
      let served = 0
      while (!settled && served < 200) {
        const faces = await Promise.all([m.detect(frame, { boxes: [box] }), m.detect(frame, { boxes: [box] })])
        for (const [f] of faces) expect(f.auValues).toEqual(want)
        served += 2
      }
      await expect(bad).rejects.toThrow(/the inference worker exited/)
      expect(t.kills).toBe(3)
      expect((await m.detect(frame, { boxes: [box] }))[0].auValues).toEqual(want)
    } finally {
      t.restore()
      await m.close()
    }
  })

  it('a batch run again after its thread died checks its frames again: one transferred meanwhile fails the call, saying so', async () => {
    const m = await FaceMultitask.load({ model: file, workers: 1, threads: 1 })
    await m.detect(frame, { boxes: [box] })
    const mine = { ...frame, data: new Uint8Array(W * H * 3).fill(90) }
    const proto = Worker.prototype as unknown as { postMessage(this: Worker, msg: { type?: string }, transfer?: unknown): void }
    const postMessage = proto.postMessage
    proto.postMessage = function (this: Worker, msg, transfer) {
      if (msg?.type !== 'run') return postMessage.call(this, msg, transfer)
      proto.postMessage = postMessage
      structuredClone(mine.data.buffer, { transfer: [mine.data.buffer] })  // the caller lets the frame go
      void this.terminate()  // and the thread dies with the batch on it
    }
    try {
      await expect(m.detect(mine, { boxes: [box] })).rejects.toThrow(/^image\.data changed while detect\(\) waited: it now holds 0 bytes/)
      expect((await m.detect(frame, { boxes: [box] }))[0].auValues).toHaveLength(20)
    } finally {
      proto.postMessage = postMessage
      await m.close()
    }
  })

  it('model.spec cannot be changed by a caller: decoding and preprocessing read it on every call', async () => {
    expect(() => (model.spec.heads as string[]).pop()).toThrow(TypeError)
    expect(() => { (model.spec as { crop: string }).crop = 'stretch' }).toThrow(TypeError)
    expect(() => { (model.spec.pose.pitch as { sign: number }).sign = -1 }).toThrow(TypeError)
    expect((await model.detect(frame, { boxes: [box] }))[0].auValues).toHaveLength(20)
  })

  it('detect() after close() is refused, close() is idempotent', async () => {
    const m = await FaceMultitask.load({ model: file })
    const inFlight = m.detect(frame, { boxes: [box] })
    const closing = m.close()
    await expect(m.detect(frame, { boxes: [box] })).rejects.toThrow(/detect\(\) called after close\(\)/)
    expect(await inFlight).toHaveLength(1) // accepted before close(): still delivered
    await closing
    await m.close()
  })
})
