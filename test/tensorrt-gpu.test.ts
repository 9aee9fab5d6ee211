// The TensorRT backend on a real GPU against the CPU backend, for machines with an NVIDIA GPU and
// TensorRT (elsewhere every test here skips, saying why). Each generation's synthetic model is
// built as an FP32 engine (TensorRT may still use TF32 in it) and run on the same frames and
// boxes as ONNX Runtime on the CPU: every output must agree within float32-with-TF32 error.
// Covers the build and the engine cache, the pipeline with ordinary, shared and pinned frames,
// batches above maxBatch (split), and decoding.
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { available } from '../lib/availability'
import { FaceMultitask } from '../lib/face-multitask'
import type { Box, Face } from '../lib/types'
import { makeFixtureModel } from '../scripts/make-fixture'
import { tempDir } from './helpers/temp-dir'

const dir = tempDir('tensorrt-gpu')
let reason: string | undefined

beforeAll(async () => {
  const { tensorrt } = await available()
  reason = tensorrt.available ? undefined : tensorrt.reason
  if (reason !== undefined) console.log(`SKIPPED: the TensorRT GPU tests (TensorRT is not available here: ${reason})`)
}, 120_000)

function noise(width: number, height: number, channels: number, seed: number): Uint8Array {
  const data = new Uint8Array(width * height * channels)
  let s = seed
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    data[i] = (s >>> 24) & 255
  }
  return data
}

/**
 * max |a - b| / max(1, |b|) over every number of the faces, mesh x and y first taken from the face
 * box's corner in units of its side (in frame pixels, a bound relative to the coordinate would let
 * a face near x = 1280 be off by pixels).
 */
function worst(gpu: Face[], cpu: Face[]): number {
  let w = 0
  const cmp = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    expect(a.length).toBe(b.length)
    for (let i = 0; i < b.length; i++) {
      const d = Math.abs(a[i] - b[i]) / Math.max(1, Math.abs(b[i]))
      w = Number.isNaN(d) ? Infinity : Math.max(w, d)
    }
  }
  expect(gpu.length).toBe(cpu.length)
  gpu.forEach((g, k) => {
    const c = cpu[k]
    expect(g.box).toEqual(c.box) // computed on the host by the same code
    cmp(g.auValues, c.auValues)
    cmp(g.emotionValues, c.emotionValues)
    cmp([g.valence, g.arousal, g.gaze.yaw, g.gaze.pitch, g.pose.pitch, g.pose.roll, g.pose.yaw, g.pose.x, g.pose.y, g.pose.z],
      [c.valence, c.arousal, c.gaze.yaw, c.gaze.pitch, c.pose.pitch, c.pose.roll, c.pose.yaw, c.pose.x, c.pose.y, c.pose.z])
    // In units of the box's side from its corner: max(1, |b|) below is then about 1.
    const inBox = (m: Float32Array) => Array.from(m, (v, i) => (i % 3 === 2 ? v : i % 3 === 0 ? (v - c.box.x) / c.box.width : (v - c.box.y) / c.box.height))
    cmp(inBox(g.mesh), inBox(c.mesh))
    if (c.blendshapeValues) cmp(g.blendshapeValues!, c.blendshapeValues)
  })
  return w
}

describe('TensorRT against the CPU backend on this GPU', () => {
  for (const generation of ['v2.4', 'v2.5', 'v2.8'] as const) {
    it(`${generation}: ordinary, shared and pinned frames, and a request split above maxBatch`, async (ctx) => {
      if (reason !== undefined) ctx.skip(`TensorRT is not available here: ${reason}`)
      const model = path.join(dir, `${generation}.onnx`)
      writeFileSync(model, makeFixtureModel({ generation, seed: 3 }))
      const engineDir = path.join(dir, 'engines')
      const gpu = await FaceMultitask.load({ model, backend: 'tensorrt', precision: 'fp32', maxBatch: 8, engineDir, onProgress: () => {} })
      const cpu = await FaceMultitask.load({ model, backend: 'cpu' })
      try {
        expect(gpu.backend).toBe('tensorrt')
        expect(gpu.info().precision).toBe('fp32')  // the bound below would also pass an FP16 engine's errors
        const width = 1280
        const height = 720
        const frame = { data: noise(width, height, 3, 7), width, height }
        const boxes: Box[] = Array.from({ length: 19 }, (_, i) => [40 + 60 * i, 30 + 20 * (i % 7), 160 + 60 * i + 3 * i, 190 + 20 * (i % 7)])
        const want = await cpu.detect(frame, { boxes })
        expect(worst(await gpu.detect(frame, { boxes }), want)).toBeLessThan(2e-3) // 19 faces: batches of 8, 8, 3

        const pinned = gpu.allocFrame(width, height, 'rgb')
        pinned.data.set(frame.data)
        expect(worst(await gpu.detect(pinned, { boxes }), want)).toBeLessThan(2e-3)

        const bgra = { data: noise(640, 480, 4, 9), width: 640, height: 480, format: 'bgra' as const }
        const many = await Promise.all([gpu.detect(bgra, { boxes: [[10, 10, 200, 220]] }), gpu.detect(frame, { boxes: boxes.slice(0, 2) })])
        expect(worst(many[0], await cpu.detect(bgra, { boxes: [[10, 10, 200, 220]] }))).toBeLessThan(2e-3)
        expect(worst(many[1], want.slice(0, 2))).toBeLessThan(2e-3)
        expect(gpu.info().gpuStages!.faces).toBeGreaterThan(0)
      } finally {
        await gpu.close()
        await cpu.close()
      }
      // A second load reads the engine from the cache.
      const notes: string[] = []
      const again = await FaceMultitask.load({ model, backend: 'tensorrt', precision: 'fp32', maxBatch: 8, engineDir, onProgress: (e) => { if (e.type === 'message') notes.push(e.message) } })
      await again.close()
      expect(notes.some((m) => m.startsWith('building'))).toBe(false)
    }, 1_800_000)
  }
})
