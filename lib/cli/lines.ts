// The lines of a text file as its bytes say: split on \n alone (a \r before it dropped), a UTF-8
// byte-order mark dropped from the first line. (readline also splits on a lone \r, which JSON
// allows as whitespace inside a line, and keeps the mark.) The file is read as a stream, so a
// list or results file of any size takes little memory; stopping early closes it.
import fs from 'node:fs'

/** Which file a path named: a file replaced at its path (written anew and renamed over it) differs. */
export interface FileId {
  dev: number
  ino: number
}

/**
 * Opens `file` for reading; with `same`, only if it is still that file, else throws (a reader
 * would read another file's bytes under the first one's name and hash).
 */
function openSame(file: string, same?: FileId): number {
  const fd = fs.openSync(file, 'r')
  if (same) {
    const st = fs.fstatSync(fd)
    if (st.dev !== same.dev || st.ino !== same.ino) {
      fs.closeSync(fd)
      throw new Error(`${file} was replaced while this run read it (another file is at its path now): run the command again`)
    }
  }
  return fd
}

/** The bytes of a file's first `size` up to and including its last newline (a line without one
 * may still be being written, or was cut off mid-write). Read from the end, a chunk at a time. */
export function completeBytes(file: string, size: number): number {
  const fd = fs.openSync(file, 'r')
  try {
    return completeBytesIn(fd, size)
  } finally {
    fs.closeSync(fd)
  }
}

/** completeBytes() of a file open as `fd`. */
export function completeBytesIn(fd: number, size: number): number {
  const chunk = Buffer.alloc(64 * 1024)
  for (let end = size; end > 0;) {
    const start = Math.max(0, end - chunk.length)
    const n = fs.readSync(fd, chunk, 0, end - start, start)
    const i = chunk.subarray(0, n).lastIndexOf(0x0a)
    if (i >= 0) return start + i + 1
    end = start
  }
  return 0
}

/** A read stream of `file`'s bytes before `end`, of the file `same` names when given (see openSame). */
export function readStream(file: string, options: { encoding?: BufferEncoding; end?: number; highWaterMark?: number; same?: FileId }): fs.ReadStream {
  const { end, same, ...rest } = options
  // The stream owns the descriptor and closes it.
  return fs.createReadStream(file, { ...rest, fd: openSame(file, same), start: 0, ...(end !== undefined ? { end: end - 1 } : {}) })
}

export async function* readLines(file: string, end?: number, same?: FileId): AsyncGenerator<string> {
  if (end === 0) return
  const input = readStream(file, { encoding: 'utf8', end, same })
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

/**
 * The first `max` bytes of each line of `file` before `end` (a shorter line whole, without its
 * \n), as bytes: what a rerun needs of each record (its line number) is at its start, and a
 * results file of a long run with meshes can hold hundreds of GB, which readLines would decode
 * as text, several times slower.
 */
export async function* lineHeads(file: string, end: number, max: number): AsyncGenerator<Buffer> {
  if (end === 0) return
  const input = readStream(file, { end, highWaterMark: 4 << 20 })
  let head = Buffer.alloc(0)
  try {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      for (let start = 0; ;) {
        const newline = chunk.indexOf(0x0a, start)
        const stop = newline < 0 ? chunk.length : newline
        if (head.length < max && stop > start) head = Buffer.concat([head, chunk.subarray(start, Math.min(stop, start + max - head.length))])
        if (newline < 0) break
        yield head
        head = Buffer.alloc(0)
        start = newline + 1
      }
    }
    if (head.length > 0) yield head
  } finally {
    input.destroy()
  }
}
