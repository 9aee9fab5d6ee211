// The --boxes option: "x1,y1,x2,y2;x1,y1,x2,y2;...". Every mistake is a UsageError (exit 2)
// naming --boxes, the box (counted from 1) and what is wrong with it.
import type { Box } from '../types'
import { UsageError } from './common'

const NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/

/** Parses the text of --boxes; spaces are allowed around numbers, a trailing ';' is ignored. */
export function parseBoxes(text: string): Box[] {
  const parts = text.split(';').map((p) => p.trim())
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop()
  if (parts.length === 1 && parts[0] === '') {
    throw new UsageError('--boxes is empty: give at least one box as "x1,y1,x2,y2" (boxes separated by ";")')
  }
  return parts.map((part, i) => {
    const where = `--boxes: box ${i + 1} of ${parts.length} ("${part}")`
    if (part === '') throw new UsageError(`${where} is empty: boxes are separated by a single ";"`)
    const fields = part.split(',').map((f) => f.trim())
    if (fields.includes('')) throw new UsageError(`${where} has an empty number (a comma too many, or at an end); a box is 4 numbers x1,y1,x2,y2`)
    if (fields.length !== 4) {
      throw new UsageError(`${where} has ${fields.length} number${fields.length === 1 ? '' : 's'}; a box is 4 numbers x1,y1,x2,y2 (boxes separated by ";")`)
    }
    const values = fields.map((f) => {
      if (!NUMBER.test(f)) throw new UsageError(`${where}: "${f}" is not a number`)
      return Number(f)
    })
    const [x1, y1, x2, y2] = values
    if (!values.every(Number.isFinite)) throw new UsageError(`${where}: the numbers must be finite`)
    if (!(x2 > x1 && y2 > y1)) {
      throw new UsageError(`${where} has zero or negative size: the order is x1,y1,x2,y2, and x2 must exceed x1 and y2 exceed y1`)
    }
    return [x1, y1, x2, y2] as const
  })
}

/** Boxes that miss the image entirely are refused before the model runs. */
export function checkBoxesInImage(boxes: readonly Box[], width: number, height: number, file: string): void {
  boxes.forEach(([x1, y1, x2, y2], i) => {
    if (x2 <= 0 || y2 <= 0 || x1 >= width || y1 >= height) {
      throw new UsageError(`--boxes: box ${i + 1} (${x1},${y1},${x2},${y2}) lies entirely outside ${file}, which is ${width}x${height}`)
    }
  })
}

export function boxText(box: Box): string {
  return box.join(',')
}
