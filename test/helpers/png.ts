// PNG surgery for the decoding tests.
import { crc32, deflateSync } from 'node:zlib'

/** The same PNG with an iCCP chunk (an embedded ICC colour profile) right after its IHDR. */
export function withIccChunk(file: Buffer, profile: Buffer): Buffer {
  const type = Buffer.from('iCCP', 'latin1')
  const body = Buffer.concat([Buffer.from('Display P3\0\0', 'latin1'), deflateSync(profile)]) // name, NUL, method 0
  const len = Buffer.alloc(4)
  len.writeUInt32BE(body.length)
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(Buffer.concat([type, body])))
  const afterIhdr = 8 + 4 + 4 + 13 + 4 // signature, then IHDR's length, type, data and CRC
  return Buffer.concat([file.subarray(0, afterIhdr), len, type, body, crc, file.subarray(afterIhdr)])
}
