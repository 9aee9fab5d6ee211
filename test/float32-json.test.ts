import { describe, expect, it } from 'vitest'
import { shortestFloat32, shortestValues } from '../lib/cli/float32-json'

/** Significant digits of a number as JSON prints it. */
function significantDigits(text: string): number {
  const mantissa = text.replace(/^-/, '').replace(/e.*$/, '').replace('.', '')
  return mantissa.replace(/^0+/, '').replace(/0+$/, '').length
}

/** Float32 values spread over every exponent, subnormals included, from random bit patterns. */
function randomFloat32s(n: number): Float32Array {
  const bits = new Uint32Array(n)
  let seed = 12345
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
    bits[i] = seed
  }
  return new Float32Array(bits.buffer).filter(Number.isFinite)
}

describe('shortestFloat32', () => {
  it("prints what numpy's float32 repr prints", () => {
    // repr(np.float32(v)) for each v (numpy 2.x, Dragon4 shortest).
    const numpy: [number, string][] = [
      [0.12459361553192139, '0.124593616'],
      [0.1, '0.1'],
      [16777216, '16777216'],
      [3.4028234663852886e38, '3.4028235e+38'],
      [1.401298464324817e-45, '1e-45'],
      [-2.5e-8, '-2.5e-8'],
      [0.3, '0.3'],
      [1 / 3, '0.33333334'],
      [100, '100'],
      [123456.789, '123456.79'],
    ]
    for (const [v, want] of numpy) expect(JSON.stringify(shortestFloat32(Math.fround(v)))).toBe(want)
  })

  it('reads back as the same float32, with no fewer digits possible, over every exponent', () => {
    const values = randomFloat32s(100_000)
    expect(values.length).toBeGreaterThan(95_000)
    const wrong: string[] = []
    for (const x of values) {
      const text = JSON.stringify(shortestFloat32(x))
      if (Math.fround(JSON.parse(text)) !== x) wrong.push(`${x} printed ${text}, which reads back differently`)
      const n = significantDigits(text)
      // toPrecision is the exact conversion: had n - 1 digits sufficed, it would find them.
      if (n > 1 && Math.fround(Number(x.toPrecision(n - 1))) === x) wrong.push(`${x} printed ${text}, ${x.toPrecision(n - 1)} is shorter`)
    }
    expect(wrong.slice(0, 5)).toEqual([])
  })

  it('leaves numbers that are not float32 as they are (a float64 computed from float32 values)', () => {
    for (const x of [1 / 3, Math.PI, 0.1, NaN, Infinity, -0, 0]) expect(Object.is(shortestFloat32(x), x)).toBe(true)
  })

  it('shortens every value of a record and keeps its keys in order', () => {
    const r = shortestValues({ b: Math.fround(0.3), a: Math.fround(1 / 3) })
    expect(Object.keys(r)).toEqual(['b', 'a'])
    expect(JSON.stringify(r)).toBe('{"b":0.3,"a":0.33333334}')
  })
})
