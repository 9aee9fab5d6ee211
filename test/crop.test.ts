// The crop window and reported box, by hand from py-feat's formulas (model-facts.md and
// py-feat's extract_face_square_pad_torch / the v2.4 extract_face_from_bbox_torch).
import { describe, expect, it } from 'vitest'
import { faceCrop } from '../lib/crop'

describe('faceCrop', () => {
  it('square: side = max(w,h) * 1.2 around the centre, not clamped', () => {
    // w 160, h 200 -> side 240 around (180, 150)
    const c = faceCrop('square', [100, 50, 260, 250], 640, 360)
    expect(c.window.map((v) => Number(v.toFixed(3)))).toEqual([60, 30, 240, 240])
    expect(c.box.map((v) => Number(v.toFixed(3)))).toEqual([60, 30, 240, 240])
    const off = faceCrop('square', [-40, 200, 90, 380], 640, 360) // w 130, h 180 -> side 216 around (25, 290): off the left and bottom
    expect(off.window.map((v) => Number(v.toFixed(3)))).toEqual([-83, 182, 216, 216])
  })
  it('square: at least 1 pixel', () => {
    expect(faceCrop('square', [10, 10, 10.1, 10.2], 64, 64).window[2]).toBe(1)
  })
  it('stretch (v2.4): w and h each * 1.2, clamped to the frame; the reported box is rounded', () => {
    // w 30 -> 36 around 25 => [7, 43]; h 50 -> 60 around 35 => [5, 65] clamped to 48
    const c = faceCrop('stretch', [10, 10, 40, 60], 64, 48)
    expect(c.window.map((v) => Number(v.toFixed(4)))).toEqual([7, 5, 36, 43])
    expect(c.box).toEqual([7, 5, 36, 43])
    const r = faceCrop('stretch', [10.3, 0, 20.1, 10], 64, 48) // x: 9.32 .. 21.08 -> 9 .. 21
    expect(r.box).toEqual([9, 0, 12, 11])
    expect(r.window[0]).toBeCloseTo(9.32, 4)
  })
})
