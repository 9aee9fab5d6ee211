// The lines of a text file as its bytes say: split on \n alone (a \r before it dropped), a UTF-8
// byte-order mark dropped from the first line. (readline also splits on a lone \r, which JSON
// allows as whitespace inside a line, and keeps the mark.) The file is read as a stream, so a
// list or results file of any size takes little memory; stopping early closes it.
import fs from 'node:fs'

export async function* readLines(file: string, end?: number): AsyncGenerator<string> {
  if (end === 0) return
  const input = fs.createReadStream(file, { encoding: 'utf8', ...(end !== undefined ? { end: end - 1 } : {}) })
  let first = true
  const clean = (line: string): string => {
    if (first) {
      first = false
      if (line.startsWith('\uFEFF')) line = line.slice(1)
    }
    return line.endsWith('\r') ? line.slice(0, -1) : line
  }
  // A long line (a record of thousands of faces) is gathered in pieces: joining and splitting it
  // again for every chunk would take time growing with the square of its length.
  let pieces: string[] = []
  try {
    for await (const chunk of input as AsyncIterable<string>) {
      let start = 0
      for (let end = chunk.indexOf('\n'); end >= 0; end = chunk.indexOf('\n', start)) {
        pieces.push(chunk.slice(start, end))
        yield clean(pieces.join(''))
        pieces = []
        start = end + 1
      }
      if (start < chunk.length) pieces.push(chunk.slice(start))
    }
    const last = pieces.join('')
    if (last !== '') yield clean(last)
  } finally {
    input.destroy()
  }
}
