// The shortest decimal that reads back as the same float32. The model's outputs are float32;
// JSON.stringify prints them as float64 (0.12459361553192139 for 0.124593616), which nearly
// doubles a record with the mesh (about 32 KB per face) and adds digits the model never had.
// Math.fround(JSON.parse(text)) gives back exactly the value the model gave.

const POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i) // exact in float64 up to 1e22

/** `x` rounded to `digits` significant digits by toPrecision (exact, slower). */
function byPrecision(x: number, digits: number): number {
  return Number(x.toPrecision(digits))
}

/** `x` rounded to `digits` significant digits by scaling (a float64 that prints with at most that many). */
function byScaling(x: number, digits: number, exponent: number): number | undefined {
  const s = digits - 1 - exponent
  if (s >= 0 && s <= 22) return Math.round(x * POW10[s]) / POW10[s]
  if (s < 0 && s >= -22) return Math.round(x / POW10[-s]) * POW10[-s]
  return undefined
}

/**
 * The number with the fewest significant digits that Math.fround maps to `x`, when `x` is a
 * float32; any other number (a float64 computed from float32 values) is returned as it is.
 */
export function shortestFloat32(x: number): number {
  if (x === 0 || !Number.isFinite(x) || Math.fround(x) !== x) return x
  // Scaling is about 5x cheaper than toPrecision; its product can round the wrong way in rare
  // ties, which the round-trip check catches, and toPrecision settles those.
  const exponent = Math.floor(Math.log10(Math.abs(x)))
  for (let digits = 6; digits <= 9; digits++) {
    const y = byScaling(x, digits, exponent)
    if (y === undefined) break
    if (Math.fround(y) === x) return y
  }
  for (let digits = 1; digits <= 9; digits++) {
    const y = byPrecision(x, digits)
    if (Math.fround(y) === x) return y
  }
  return x // not reached: 9 significant digits always identify a float32
}

/** The values of a float32 record, each as its shortest decimal. */
export function shortestValues<K extends string>(record: Readonly<Record<K, number>>): Record<K, number> {
  const out = {} as Record<K, number>
  for (const k of Object.keys(record) as K[]) out[k] = shortestFloat32(record[k])
  return out
}
