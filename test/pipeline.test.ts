// End to end on the CPU backend: detect() against an independent path — the reference
// preprocessing (test/reference) fed to a bare onnxruntime session, decoded here from the
// formulas of model-facts.md — for each generation's conventions.
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import * as ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { faceCrop } from '../lib/crop'
import { FaceMultitask } from '../lib/face-multitask'
import { AU_NAMES, EMOTION_NAMES, LANDMARK68_MESH_INDEX } from '../lib/labels'
import { makeFixtureModel } from '../scripts/make-fixture'
import { refChip, refInput } from './reference/preprocess'
import type { Box } from '../lib/types'
import { tempDir } from './helpers/temp-dir'

const dir = tempDir('pipeline')

function noiseFrame(width: number, height: number, seed: number): Uint8Array {
  const data = new Uint8Array(width * height * 3)
  let s = seed
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    data[i] = (s >>> 24) & 255
  }
  return data
}

async function reference(modelFile: string, frame: Uint8Array, width: number, height: number, boxes: Box[], crop: 'square' | 'stretch', resize: 'center_crop' | 'antialias_bilinear') {
  const input = new Float32Array(boxes.length * 150528)
  boxes.forEach((b, i) => {
    const chip = refChip({ data: frame, width, height, stride: width * 3, offsets: [0, 1, 2], channels: 3 }, faceCrop(crop, b, width, height).window, crop)
    input.set(refInput(chip, resize), i * 150528)
  })
  const session = await ort.InferenceSession.create(modelFile)
  const out = await session.run({ input: new ort.Tensor('float32', input, [boxes.length, 3, 224, 224]) })
  await session.release()
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]))
}

const GENERATIONS = [
  { generation: 'v2.4', crop: 'stretch', resize: 'center_crop', pitch: -1, gazePitch: 1 },
  { generation: 'v2.5', crop: 'square', resize: 'antialias_bilinear', pitch: 1, gazePitch: 1 },
  { generation: 'v2.8', crop: 'square', resize: 'antialias_bilinear', pitch: -1, gazePitch: -1 },
] as const

describe.each(GENERATIONS)('CPU pipeline, $generation conventions', (g) => {
  const file = path.join(dir, `${g.generation}.onnx`)
  let model: FaceMultitask
  const width = 640
  const height = 360
  const frame = noiseFrame(width, height, 7)
  const boxes: Box[] = [[100, 50, 260, 250], [-40, 200, 90, 380], [600, 10, 660, 60]]

  beforeAll(async () => {
    writeFileSync(file, makeFixtureModel({ generation: g.generation }))
    model = await FaceMultitask.load({ model: file, backend: 'cpu' })
  })
  afterAll(() => model?.close())

  it('matches the reference path face by face', async () => {
    const faces = await model.detect({ data: frame, width, height, format: 'rgb' }, { boxes })
    const ref = await reference(file, frame, width, height, boxes, g.crop, g.resize)
    expect(faces).toHaveLength(boxes.length)
    faces.forEach((f, i) => {
      const [x, y, w, h] = faceCrop(g.crop, boxes[i], width, height).box
      expect([f.box.x, f.box.y, f.box.width, f.box.height]).toEqual([x, y, w, h])
      AU_NAMES.forEach((n, k) => expect(f.aus[n]).toBeCloseTo(ref.p_au[i * 20 + k], 4))
      const logits = Array.from(ref.emotion_logits.subarray(i * 7, i * 7 + 7))
      const z = logits.map(Math.exp).reduce((a, b) => a + b, 0)
      EMOTION_NAMES.forEach((n, k) => expect(f.emotions[n]).toBeCloseTo(Math.exp(logits[k]) / z, 4))
      expect(f.emotion).toBe(EMOTION_NAMES[logits.indexOf(Math.max(...logits))])
      expect(f.valence).toBeCloseTo(ref.va[i * 2], 4)
      expect(f.arousal).toBeCloseTo(ref.va[i * 2 + 1], 4)
      const p = ref.pose.subarray(i * 6, i * 6 + 6)
      expect(f.pose.pitch).toBeCloseTo(g.pitch * p[0], 4)
      expect(f.pose.roll).toBeCloseTo(-p[2], 4)
      expect(f.pose.yaw).toBeCloseTo(p[1], 4)
      expect([f.pose.x, f.pose.y, f.pose.z].map((v) => Number(v.toFixed(4)))).toEqual(Array.from(p.subarray(3)).map((v) => Number(v.toFixed(4))))
      const gz = ref.gaze.subarray(i * 2, i * 2 + 2)
      expect(f.gaze.pitch).toBeCloseTo(g.gazePitch * gz[1], 4)
      expect(f.gaze.yaw).toBeCloseTo(gz[0], 4)
      expect(f.gaze.angle).toBeCloseTo(Math.acos(Math.cos(gz[0]) * Math.cos(gz[1])), 4)
      for (const m of [0, 1, 152, 477]) {
        const [mx, my, mz] = ref.mesh.subarray(i * 1434 + m * 3, i * 1434 + m * 3 + 3)
        // v2.4: (m/224 + 16/256) * box_wh + box_left_top; v2.5+: u * side + origin.
        const ex = g.generation === 'v2.4' ? (mx / 224 + 16 / 256) * w + x : mx * w + x
        const ey = g.generation === 'v2.4' ? (my / 224 + 16 / 256) * h + y : my * h + y
        expect(Math.abs(f.mesh[m * 3] - ex)).toBeLessThan(0.01)
        expect(Math.abs(f.mesh[m * 3 + 1] - ey)).toBeLessThan(0.01)
        expect(Math.abs(f.mesh[m * 3 + 2] - mz)).toBeLessThan(1e-3) // z passes through (v2.4: 224-pixel units)
      }
      const k = 30
      expect(f.landmarks68[2 * k]).toBe(f.mesh[3 * LANDMARK68_MESH_INDEX[k]])
      expect(f.landmarks68[2 * k + 1]).toBe(f.mesh[3 * LANDMARK68_MESH_INDEX[k] + 1])
      if (g.generation === 'v2.4') expect(f.blendshapes).toBeUndefined()
      else expect(f.blendshapeValues![5]).toBeCloseTo(ref.blendshapes[i * 52 + 5], 4)
    })
  })

  it('gives the same faces whether frames come one per call, many per call, or concurrently', async () => {
    const image = { data: frame, width, height }
    const one = await model.detect(image, { boxes })
    const many = await model.detect([image, image], { boxes: [boxes.slice(0, 1), boxes] })
    const concurrent = await Promise.all(boxes.map((b) => model.detect(image, { boxes: [b] })))
    expect(many[0][0].auValues).toEqual(one[0].auValues)
    expect(many[1][2].mesh).toEqual(one[2].mesh)
    concurrent.forEach((faces, i) => expect(faces[0].emotionValues).toEqual(one[i].emotionValues))
  })

  it('faces of different frames in one batch (one call, or concurrent calls) each come from their own frame', async () => {
    // Three frames that differ in size, content and pixel format: a face preprocessed from another
    // face's frame (its data, size, stride or format) would change its results.
    const a = { data: frame, width, height }
    const b = { data: noiseFrame(300, 500, 11), width: 300, height: 500 }
    const rgba = noiseFrame(200, 200, 13)  // 120000 bytes: 150x200 RGBA
    const c = { data: rgba, width: 150, height: 200, format: 'rgba' as const, stride: 150 * 4 }
    const frames = [a, b, c]
    const own: Box[] = [[100, 50, 260, 250], [20, 300, 180, 480], [10, 20, 120, 170]]
    const single = []
    for (const [i, f] of frames.entries()) single.push((await model.detect(f, { boxes: [own[i]] }))[0])
    expect(single[0].auValues).not.toEqual(single[1].auValues)
    expect(single[1].auValues).not.toEqual(single[2].auValues)
    const together = await model.detect(frames, { boxes: own.map((box) => [box]) })
    const concurrent = await Promise.all(frames.map((f, i) => model.detect(f, { boxes: [own[i]] })))
    frames.forEach((_, i) => {
      for (const faces of [together[i], concurrent[i]]) {
        expect(faces).toHaveLength(1)
        expect(faces[0].auValues).toEqual(single[i].auValues)
        expect(faces[0].emotionValues).toEqual(single[i].emotionValues)
        expect(faces[0].mesh).toEqual(single[i].mesh)
        expect(faces[0].box).toEqual(single[i].box)
      }
    })
  })

  it("takes a Uint8ClampedArray as a Uint8Array, and backend 'onnxruntime' as 'cpu'", async () => {
    const clamped = new Uint8ClampedArray(frame.buffer, frame.byteOffset, frame.byteLength)
    const alias = await FaceMultitask.load({ model: file, backend: 'onnxruntime', threads: 1 })
    try {
      expect(alias.backend).toBe('onnxruntime')
      const [a] = await alias.detect({ data: clamped, width, height }, { boxes: [boxes[0]] })
      const [b] = await model.detect({ data: frame, width, height }, { boxes: [boxes[0]] })
      expect(a.auValues).toEqual(b.auValues)
      expect(a.mesh).toEqual(b.mesh)
    } finally {
      await alias.close()
    }
  })

  it('a batch in a reused input buffer reads only its own faces: a small batch after a full one, then a full one again', async () => {
    // Input buffers come back from the worker thread with its outputs and serve later batches (no
    // allocation and page faults per batch): a batch of 2 then runs in an 8-face buffer that
    // still holds the last batch's faces.
    const other = noiseFrame(width, height, 99)
    const eight: Box[] = Array.from({ length: 8 }, (_, i) => [10 + 70 * i, 20 + 5 * i, 110 + 70 * i, 140 + 5 * i])
    const two: Box[] = [[300, 100, 420, 240], [30, 40, 150, 170]]
    for (const [data, bs] of [[frame, eight], [other, two], [other, eight]] as const) {
      const faces = await model.detect({ data, width, height }, { boxes: [...bs] })
      const ref = await reference(file, data, width, height, [...bs], g.crop, g.resize)
      expect(faces).toHaveLength(bs.length)
      faces.forEach((f, i) => AU_NAMES.forEach((n, k) => expect(f.aus[n]).toBeCloseTo(ref.p_au[i * 20 + k], 4)))
    }
    expect((model as unknown as { engine: { spare: ArrayBuffer[] } }).engine.spare.length).toBeGreaterThan(0)
  })

  it('splits a request above maxBatch over two workers and gives the faces of the whole, in order', async () => {
    const small = await FaceMultitask.load({ model: file, backend: 'cpu', maxBatch: 2, workers: 2, threads: 1 })
    try {
      const image = { data: frame, width, height }
      const seven: Box[] = Array.from({ length: 7 }, (_, i) => [20 + 70 * i, 30 + 10 * i, 120 + 70 * i, 150 + 10 * i])
      const [split, whole] = await Promise.all([small.detect(image, { boxes: seven }), model.detect(image, { boxes: seven })])
      expect(split).toHaveLength(7)
      split.forEach((f, i) => {
        expect(f.box).toEqual(whole[i].box)
        expect(f.auValues).toEqual(whole[i].auValues)
        expect(f.mesh).toEqual(whole[i].mesh)
      })
    } finally {
      await small.close()
    }
  })
})
