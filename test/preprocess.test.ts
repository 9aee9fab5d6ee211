// Native preprocessing against the naive double-precision reference (test/reference), on smooth
// images where float32 coordinate rounding cannot matter: max abs difference <= 1e-5 in [0,1]
// pixel units. Exact float32 agreement with torch itself is test/preprocess-torch.test.ts.
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { faceCrop } from '../lib/crop'
import { PIXEL_FORMATS } from '../lib/image-input'
import { loadNative, nativeAddonPath } from '../lib/native'
import type { PixelFormat } from '../lib/types'
import { refChip, refInput, type RefImage } from './reference/preprocess'

const STD = [0.229, 0.224, 0.225]

const OFFSETS: Record<PixelFormat, [number, number, number]> = {
  rgb: [0, 1, 2], rgba: [0, 1, 2], bgr: [2, 1, 0], bgra: [2, 1, 0], gray: [0, 0, 0],
}

/** A smooth test image, with `pad` spare bytes per row and the view starting at `offset`. */
function smoothImage(width: number, height: number, format: PixelFormat, pad = 0, offset = 0): RefImage {
  const channels = PIXEL_FORMATS[format].channels
  const stride = width * channels + pad
  const buf = new Uint8Array(offset + stride * height)
  const data = buf.subarray(offset)
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      for (let k = 0; k < channels; k++)
        data[y * stride + x * channels + k] = Math.round(127.5 + 120 * Math.sin(x * 0.031 + k * 1.3) * Math.cos(y * 0.027 - k))
  return { data, width, height, stride, offsets: OFFSETS[format], channels }
}

function runNative(im: RefImage, format: PixelFormat, window: [number, number, number, number] | null, padding: 0 | 1, resize: 0 | 1): Float32Array {
  const out = new Float32Array(3 * 224 * 224)
  loadNative().preprocessSync([{ data: im.data, width: im.width, height: im.height, stride: im.stride, format: PIXEL_FORMATS[format].code, window }], padding, resize, out)
  return out
}

function maxPixelDiff(a: Float32Array, b: Float64Array): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) * STD[Math.floor(i / 50176)])
  return m
}

const CASES: { name: string; w: number; h: number; box: [number, number, number, number] }[] = [
  { name: 'face inside a landscape frame', w: 320, h: 200, box: [100, 40, 190, 150] },
  { name: 'off the left/top edge', w: 320, h: 200, box: [-30, -20, 60, 90] },
  { name: 'off the right/bottom edge', w: 200, h: 320, box: [150, 260, 230, 340] },
  { name: 'tiny box (upsampled)', w: 64, h: 48, box: [20.5, 10.25, 24, 13] },
  { name: 'box larger than the frame', w: 90, h: 140, box: [-50, -40, 150, 200] },
]

describe('native preprocessing equals the reference formula', () => {
  for (const c of CASES) {
    for (const crop of ['square', 'stretch'] as const) {
      for (const resize of ['antialias_bilinear', 'center_crop'] as const) {
        it(`${c.name}, ${crop} crop, ${resize}`, () => {
          const im = smoothImage(c.w, c.h, 'rgb')
          const win = faceCrop(crop, c.box, c.w, c.h).window
          const got = runNative(im, 'rgb', win, crop === 'square' ? 1 : 0, resize === 'center_crop' ? 0 : 1)
          expect(maxPixelDiff(got, refInput(refChip(im, win, crop), resize))).toBeLessThanOrEqual(1e-5)
        })
      }
    }
  }

  for (const format of Object.keys(PIXEL_FORMATS) as PixelFormat[]) {
    it(`pixel format ${format}, padded stride, non-zero byteOffset`, () => {
      const im = smoothImage(150, 110, format, 7, 13)
      const win = faceCrop('square', [30, 20, 110, 100], 150, 110).window
      const got = runNative(im, format, win, 1, 1)
      expect(maxPixelDiff(got, refInput(refChip(im, win, 'square'), 'antialias_bilinear'))).toBeLessThanOrEqual(1e-5)
    })
  }

  it('a 256x256 chip given directly', () => {
    const im = smoothImage(256, 256, 'bgra')
    for (const resize of ['antialias_bilinear', 'center_crop'] as const) {
      const got = runNative(im, 'bgra', null, 1, resize === 'center_crop' ? 0 : 1)
      expect(maxPixelDiff(got, refInput(refChip(im, null, 'square'), resize))).toBeLessThanOrEqual(1e-5)
    }
  })

  it('the stretch crop pads with zeros (normalised: -mean/std) outside the frame', () => {
    const im = smoothImage(100, 100, 'rgb')
    const got = runNative(im, 'rgb', [-1000, -1000, 50, 50], 0, 0)
    expect(got[0]).toBeCloseTo(-0.485 / 0.229, 6)
    expect(got[50176 * 2 + 500]).toBeCloseTo(-0.406 / 0.225, 6)
  })

  it('the async form writes the same values as the sync form, several faces at once', async () => {
    const im = smoothImage(300, 200, 'rgb')
    const faces = [[10, 10, 100, 120], [150, 50, 280, 190]].map((b) => ({
      data: im.data, width: im.width, height: im.height, stride: im.stride, format: 0,
      window: faceCrop('square', b as [number, number, number, number], 300, 200).window,
    }))
    const a = new Float32Array(2 * 150528)
    const b = new Float32Array(2 * 150528)
    loadNative().preprocessSync(faces, 1, 1, a)
    await loadNative().preprocess(faces, 1, 1, b)
    expect(Buffer.compare(Buffer.from(a.buffer), Buffer.from(b.buffer))).toBe(0)
    expect(Buffer.compare(Buffer.from(a.buffer, 0, 150528 * 4), Buffer.from(a.buffer, 150528 * 4))).not.toBe(0)
  })

  it('rejects a call that would read out of bounds instead of crashing', () => {
    const out = new Float32Array(150528)
    const face = { data: new Uint8Array(10), width: 100, height: 100, stride: 300, format: 0, window: [0, 0, 10, 10] as [number, number, number, number] }
    expect(() => loadNative().preprocessSync([face], 1, 1, out)).toThrow(/shorter than stride \* \(height - 1\) \+ width \* channels/)
    // The last row needs its 300 pixel bytes only; one byte fewer is refused.
    const tight = { ...face, stride: 320, data: new Uint8Array(320 * 99 + 300) }
    expect(() => loadNative().preprocessSync([tight], 1, 1, out)).not.toThrow()
    expect(() => loadNative().preprocessSync([{ ...tight, data: tight.data.subarray(1) }], 1, 1, out)).toThrow(/shorter than/)
    // stride * (height - 1) = 2^45 * 2^19 = 2^64: past size_t, it must not wrap to 0.
    const wraps = { ...face, height: 2 ** 19 + 1, stride: 2 ** 45, data: new Uint8Array(300) }
    expect(() => loadNative().preprocessSync([wraps], 1, 1, out)).toThrow(/shorter than stride \* \(height - 1\) \+ width \* channels/)
    expect(() => loadNative().preprocessSync([face, face], 1, 1, out)).toThrow(/out holds/)
    // Modes are exactly 0 or 1 (not coerced), windows finite and non-empty in float32, strides exact.
    const ok = { ...face, data: new Uint8Array(300 * 100) }
    for (const [crop, resize] of [[NaN, 1], [1.5, 1], [2 ** 32 + 1, 1], [1, -0.5], [1, Infinity]]) {
      expect(() => loadNative().preprocessSync([ok], crop, resize, out)).toThrow(/must be 0 .* or 1/)
    }
    expect(() => loadNative().preprocessSync([{ ...ok, window: [0, 0, 1e39, 10] }], 1, 1, out)).toThrow(/finite in float32/)
    expect(() => loadNative().preprocessSync([{ ...ok, window: [0, 0, 1e-50, 10] }], 1, 1, out)).toThrow(/positive size in float32/)
    expect(() => loadNative().preprocessSync([{ ...ok, stride: 2 ** 64 }], 1, 1, out)).toThrow(/stride/)
    // A frame in a SharedArrayBuffer is read like any other.
    const sab = new Uint8Array(new SharedArrayBuffer(300 * 100))
    sab.set(ok.data.map((_, i) => i * 7))
    const a = new Float32Array(150528)
    loadNative().preprocessSync([{ ...ok, data: sab }], 1, 1, a)
    loadNative().preprocessSync([{ ...ok, data: Uint8Array.from(sab) }], 1, 1, out)
    expect(Buffer.compare(Buffer.from(a.buffer), Buffer.from(out.buffer))).toBe(0)
  })

  it('a DataView frame is read like a Uint8Array, over a SharedArrayBuffer too', () => {
    // The addon takes any ArrayBufferView (lib/native.ts NativeFace.data). A DataView over a
    // SharedArrayBuffer was refused with a bare 'Error: Invalid argument' (its address was taken
    // through ArrayBuffer.Data(), which does not serve shared memory), though a typed array over
    // the same memory was read.
    const face = { width: 100, height: 100, stride: 300, format: 0, window: [10, 10, 50, 50] as [number, number, number, number] }
    const bytes = new Uint8Array(300 * 100 + 5).map((_, i) => (i * 13) & 255)
    const want = new Float32Array(150528)
    loadNative().preprocessSync([{ ...face, data: bytes.subarray(5) }], 1, 1, want)
    for (const buffer of [new ArrayBuffer(bytes.length), new SharedArrayBuffer(bytes.length)]) {
      new Uint8Array(buffer).set(bytes)
      const got = new Float32Array(150528)
      loadNative().preprocessSync([{ ...face, data: new DataView(buffer, 5) }], 1, 1, got)
      expect(Buffer.compare(Buffer.from(got.buffer), Buffer.from(want.buffer))).toBe(0)
    }
    // Too short is refused like a short typed array.
    const short = new DataView(new SharedArrayBuffer(300 * 100), 1)
    expect(() => loadNative().preprocessSync([{ ...face, data: short }], 1, 1, new Float32Array(150528))).toThrow(/shorter than/)
  })

  // A malloc that fails (memory pressure) inside the addon: node-addon-api turns only Napi::Error
  // into a JS exception; a std::bad_alloc thrown into N-API ended the process (std::terminate).
  // The failure is injected by an LD_PRELOAD'ed malloc that refuses blocks of 32 KB and more while
  // FM_TEST_FAIL_BIG_MALLOC is set (process.env writes reach libc's environment).
  const cc = process.platform === 'linux' ? spawnSync('cc', ['--version'], { encoding: 'utf8' }) : undefined
  it.skipIf(!cc || cc.status !== 0)('an allocation failure inside the addon is an Error, not an abort of the process', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fm-failmalloc-'))
    try {
      fs.writeFileSync(path.join(dir, 'failmalloc.c'), `
        #define _GNU_SOURCE
        #include <dlfcn.h>
        #include <stddef.h>
        #include <stdlib.h>
        void* malloc(size_t n) {
          static void* (*real)(size_t);
          if (!real) real = (void* (*)(size_t))dlsym(RTLD_NEXT, "malloc");
          if (n >= 32768 && getenv("FM_TEST_FAIL_BIG_MALLOC")) return NULL;
          return real(n);
        }`)
      const so = path.join(dir, 'failmalloc.so')
      const built = spawnSync('cc', ['-shared', '-fPIC', '-O1', '-o', so, path.join(dir, 'failmalloc.c'), '-ldl'], { encoding: 'utf8' })
      expect(built.status, built.stderr).toBe(0)
      loadNative()  // sets nativeAddonPath()
      const script = `
        const addon = require(${JSON.stringify(nativeAddonPath())})
        const face = { data: new Uint8Array(300 * 100), width: 100, height: 100, stride: 300, format: 0, window: [0, 0, 50, 50] }
        const out = new Float32Array(150528)
        process.env.FM_TEST_FAIL_BIG_MALLOC = '1'
        let result = 'no error'
        try { addon.preprocessSync([face], 1, 1, out) } catch (e) { result = e.constructor.name + ': ' + e.message }
        delete process.env.FM_TEST_FAIL_BIG_MALLOC
        addon.preprocessSync([face], 1, 1, out)  // and the addon still works afterwards
        process.stdout.write(result)`
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, LD_PRELOAD: so } })
      expect(r.status, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/^Error: face-multitask: native preprocessing failed: .*bad_alloc/)
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it('a window that is neither [x, y, width, height] nor null is refused, not taken for a chip', () => {
    // On a 256x256 frame, a malformed window used to be ignored: the frame ran as a chip.
    const face = { data: new Uint8Array(256 * 256 * 3), width: 256, height: 256, stride: 768, format: 0 }
    const run = (window: unknown) => () => loadNative().preprocessSync([{ ...face, window } as never], 1, 1, new Float32Array(150528))
    for (const bad of [{ 0: 1, 1: 1, 2: 10, 3: 10, length: 4 }, '1,1,10,10', [1, 1, 10, 10, 5], [1, 1, 10], new Proxy([1, 1, 10, 10], {})]) {
      expect(run(bad)).toThrow(new TypeError('faces[0].window must be [x, y, width, height] or null (a 256x256 chip)'))
    }
    expect(run(null)).not.toThrow()
    expect(run(undefined)).not.toThrow()
    expect(run([1, 1, 10, 10])).not.toThrow()
  })

  it('a getter that detaches a buffer while the arguments are read is an error, not a read of freed memory', () => {
    // In a child process: before, the addon kept the address of a buffer read earlier and crashed.
    const script = `
      const addon = require(${JSON.stringify(nativeAddonPath())})
      const detach = (buf) => { structuredClone(buf, { transfer: [buf] }) }
      const results = []
      for (const victim of ['data', 'out']) {
        const data = new Uint8Array(256 * 256 * 3).fill(7)
        const out = new Float32Array(150528)
        const face = { data, width: 256, height: 256, stride: 768, format: 0, get window() { detach(victim === 'data' ? data.buffer : out.buffer); return null } }
        try {
          addon.preprocessSync([face], 1, 1, out)
          results.push(victim + ': no error')
        } catch (e) {
          results.push(victim + ': ' + e.constructor.name + ': ' + e.message)
        }
      }
      process.stdout.write(JSON.stringify(results))`
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 })
    expect(r.status, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual([
      'data: RangeError: faces[0].data is shorter than stride * (height - 1) + width * channels',
      'out: RangeError: out holds 0 floats; 1 faces need 150528',
    ])
  })
})
