// The pixel buffers a batch thread keeps for later images: at most a few, the largest dropped
// first, and a buffer used only for an image that fills at least half of it, so that a burst of
// large images does not keep its buffers in use, and held, for the rest of a run.
import { describe, expect, it } from 'vitest'
import { SpareBuffers } from '../lib/cli/spare-buffers'

const buffers = (...sizes: number[]): ArrayBuffer[] => sizes.map((n) => new ArrayBuffer(n))

describe('SpareBuffers', () => {
  it('gives the smallest buffer that holds the image and is at most twice its size, once', () => {
    const spares = new SpareBuffers()
    const [b300, b400, b1000] = buffers(300, 400, 1000)
    for (const b of [b1000, b400, b300]) spares.keep(b)
    expect(spares.take(250)).toBe(b300)
    expect(spares.take(250)).toBe(b400)
    expect(spares.take(250)).toBeUndefined()  // 1000 is more than twice 250
    expect(spares.take(499)).toBeUndefined()  // nor 499's
    expect(spares.take(500)).toBe(b1000)      // exactly twice
    expect(spares.take(1)).toBeUndefined()
  })

  it('never gives a buffer smaller than the image', () => {
    const spares = new SpareBuffers()
    const [b100] = buffers(100)
    spares.keep(b100)
    expect(spares.take(101)).toBeUndefined()
    expect(spares.take(100)).toBe(b100)
  })

  it('keeps at most its limit, dropping the largest, wherever it came in the order', () => {
    const spares = new SpareBuffers(8)
    const kept = buffers(900, 100, 200, 300, 400, 500, 600, 700, 800)  // nine; 900 first
    for (const b of kept) spares.keep(b)
    expect(spares.take(900)).toBeUndefined()   // the largest went
    expect(spares.take(800)).toBe(kept[8])
    spares.keep(kept[0])                       // eight again: nothing dropped
    expect(spares.take(900)).toBe(kept[0])
    const small = buffers(10, 10, 10)
    for (const b of small) spares.keep(b)      // past eight twice: the largest left goes, 700 then 600
    expect(spares.take(700)).toBeUndefined()
    expect(spares.take(600)).toBeUndefined()
    expect(spares.take(500)).toBe(kept[5])
    for (const b of small) expect(spares.take(10)).toBe(b)
  })
})
