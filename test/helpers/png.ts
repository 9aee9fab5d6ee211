// PNG surgery for the decoding tests.
import { crc32, deflateSync } from 'node:zlib'

const SIGNATURE = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10])

/** One PNG chunk: length, type, body, CRC. */
function chunk(type: string, body: Buffer): Buffer {
  const name = Buffer.from(type, 'latin1')
  const len = Buffer.alloc(4)
  len.writeUInt32BE(body.length)
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(Buffer.concat([name, body])))
  return Buffer.concat([len, name, body, crc])
}

/** The same PNG with an iCCP chunk (an embedded ICC colour profile) right after its IHDR. */
export function withIccChunk(file: Buffer, profile: Buffer, name = 'Display P3'): Buffer {
  const body = Buffer.concat([Buffer.from(`${name}\0\0`, 'latin1'), deflateSync(profile)]) // name, NUL, method 0
  const afterIhdr = 8 + 4 + 4 + 13 + 4 // signature, then IHDR's length, type, data and CRC
  return Buffer.concat([file.subarray(0, afterIhdr), chunk('iCCP', body), file.subarray(afterIhdr)])
}

/** A 16-bit RGB PNG of these samples (row-major, 3 per pixel), written here so its values are known exactly. */
export function rgb16Png(width: number, height: number, samples: readonly number[]): Buffer {
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 16 // bit depth
  ihdr[9] = 2 // colour type: RGB
  const rows: Buffer[] = []
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + width * 6) // filter byte 0 (none), then big-endian samples
    for (let i = 0; i < width * 3; i++) row.writeUInt16BE(samples[y * width * 3 + i], 1 + 2 * i)
    rows.push(row)
  }
  return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.concat(rows))), chunk('IEND', Buffer.alloc(0))])
}

/** A PNG that declares width x height 8-bit RGB pixels but holds none: enough for a decoder's header checks. */
export function emptyPng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr[8] = 8
  ihdr[9] = 2
  return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc(0))), chunk('IEND', Buffer.alloc(0))])
}
