// The lines of a text file as its bytes say: split on \n alone (a \r before it dropped), a UTF-8
// byte-order mark dropped from the first line. (readline also splits on a lone \r, which JSON
// allows as whitespace inside a line, and keeps the mark.) The file is read as a stream, so a
// list or results file of any size takes little memory; stopping early closes it.
import fs from 'node:fs'

/** The bytes of a file's first `size` up to and including its last newline (a line without one
 * may still be being written, or was cut off mid-write). Read from the end, a chunk at a time. */
export function completeBytes(file: string, size: number): number {
  const fd = fs.openSync(file, 'r')
  try {
    const chunk = Buffer.alloc(64 * 1024)
    for (let end = size; end > 0;) {
      const start = Math.max(0, end - chunk.length)
      const n = fs.readSync(fd, chunk, 0, end - start, start)
      const i = chunk.subarray(0, n).lastIndexOf(0x0a)
      if (i >= 0) return start + i + 1
      end = start
    }
    return 0
  } finally {
    fs.closeSync(fd)
  }
}

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
