import { describe, expect, it } from 'vitest'
import { LineSet } from '../lib/cli/line-set'

describe('LineSet (the lines a results file holds)', () => {
  it('answers as a Set does, lines added in any order, repeats included', () => {
    let seed = 7
    const random = (n: number) => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
      return 1 + (seed % n)
    }
    for (const span of [10, 100, 5000]) {
      const lines = new LineSet()
      const want = new Set<number>()
      for (let i = 0; i < 3000; i++) {
        const n = random(span)
        lines.add(n)
        want.add(n)
        expect(lines.size).toBe(want.size)
      }
      for (let n = 0; n <= span + 1; n++) expect(lines.has(n)).toBe(want.has(n))
    }
  })

  it('joins the ranges a line fills the gap between', () => {
    const lines = new LineSet().add(1).add(2).add(4).add(5).add(3)
    expect([lines.size, [0, 1, 2, 3, 4, 5, 6].map((n) => lines.has(n))]).toEqual([5, [false, true, true, true, true, true, false]])
  })

  it('holds more lines than a Set can (2^24), in order as a results file gives them', () => {
    const n = 2 ** 24 + 1000
    const lines = new LineSet()
    for (let i = 1; i <= n; i++) if (i % 1_000_000 !== 0) lines.add(i)  // a few blank list lines
    expect(lines.size).toBe(n - 16)
    expect([lines.has(1), lines.has(999_999), lines.has(1_000_000), lines.has(n), lines.has(n + 1)]).toEqual([true, true, false, true, false])
  })
})
