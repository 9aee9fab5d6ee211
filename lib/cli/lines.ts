// The lines of a text file as its bytes say: split on \n alone (a \r before it dropped), a UTF-8
// byte-order mark dropped from the first line. (readline also splits on a lone \r, which JSON
// allows as whitespace inside a line, and keeps the mark.) The file is read as a stream, so a
// list or results file of any size takes little memory; stopping early closes it.
import fs from 'node:fs'

export async function* readLines(file: string, end?: number): AsyncGenerator<string> {
  if (end === 0) return
  const input = fs.createReadStream(file, { encoding: 'utf8', ...(end !== undefined ? { end: end - 1 } : {}) })
  let rest = ''
  let first = true
  const clean = (line: string): string => {
    if (first) {
      first = false
      if (line.startsWith('\uFEFF')) line = line.slice(1)
    }
    return line.endsWith('\r') ? line.slice(0, -1) : line
  }
  try {
    for await (const chunk of input) {
      const parts = (rest + (chunk as string)).split('\n')
      rest = parts.pop()!
      for (const part of parts) yield clean(part)
    }
    if (rest !== '') yield clean(rest)
  } finally {
    input.destroy()
  }
}
