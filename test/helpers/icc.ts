// ICC profiles written here, for the decoding tests.

/** s15Fixed16Number, big-endian. */
function s15(v: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeInt32BE(Math.round(v * 65536))
  return b
}

/**
 * A grey display profile (ICC v2, class 'mntr', colour space 'GRAY'): a gamma 2.2 kTRC, a D50
 * white point and a description. A colour manager applying it changes a grey file's values
 * (converted to sRGB: 1 -> 0, 50 -> 46, 200 -> 201), so a decoder that does shows.
 */
export function greyIccProfile(): Buffer {
  const text = 'Gray gamma 2.2'
  const count = Buffer.alloc(4)
  count.writeUInt32BE(text.length + 1)
  const tags: [string, Buffer][] = [
    // textDescriptionType: ASCII count and text, then empty Unicode and ScriptCode parts
    ['desc', Buffer.concat([Buffer.from('desc\0\0\0\0', 'latin1'), count, Buffer.from(`${text}\0`, 'latin1'), Buffer.alloc(4 + 4 + 2 + 1 + 67)])],
    ['wtpt', Buffer.concat([Buffer.from('XYZ \0\0\0\0', 'latin1'), s15(0.9642), s15(1), s15(0.8249)])],
    ['kTRC', Buffer.from([...Buffer.from('curv\0\0\0\0', 'latin1'), 0, 0, 0, 1, 2, 0x33])], // one entry: gamma 2.2 (u8Fixed8)
    ['cprt', Buffer.from('text\0\0\0\0No copyright\0', 'latin1')],
  ]
  const table = Buffer.alloc(4 + 12 * tags.length)
  table.writeUInt32BE(tags.length)
  const bodies: Buffer[] = []
  let offset = 128 + table.length
  tags.forEach(([sig, body], i) => {
    table.write(sig, 4 + 12 * i, 'latin1')
    table.writeUInt32BE(offset, 8 + 12 * i)
    table.writeUInt32BE(body.length, 12 + 12 * i)
    const padded = Buffer.concat([body, Buffer.alloc(-body.length & 3)]) // tags start on 4-byte boundaries
    bodies.push(padded)
    offset += padded.length
  })
  const header = Buffer.alloc(128)
  header.writeUInt32BE(offset, 0) // profile size
  header.writeUInt32BE(0x02100000, 8) // version 2.1
  header.write('mntrGRAYXYZ ', 12, 'latin1') // class, colour space, PCS
  header.write('acsp', 36, 'latin1')
  Buffer.concat([s15(0.9642), s15(1), s15(0.8249)]).copy(header, 68) // the PCS illuminant, D50
  return Buffer.concat([header, table, ...bodies])
}
