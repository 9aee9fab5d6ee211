// readImage(): encoded images to detect()'s frames, decoded as py-feat decodes them (torchvision's
// read_image: the stored pixels, no EXIF rotation, no colour-profile conversion, alpha dropped,
// grey expanded to RGB), and files py-feat misreads converted to 8-bit RGB instead. The reference
// is the pixels each test file was losslessly encoded from.
import { execFileSync, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import sharp from 'sharp'
import { describe, expect, it } from 'vitest'
import { readImage } from '../lib/index'
import { greyIccProfile } from './helpers/icc'
import { emptyPng, rgb16Png, withIccChunk } from './helpers/png'
import { tempDir } from './helpers/temp-dir'

const dir = tempDir('read-image')

const W = 7
const H = 5
/** Distinct values everywhere, so a transposed, flipped or converted frame shows. */
function pixels(channels: number): Buffer {
  return Buffer.from(Array.from({ length: W * H * channels }, (_, i) => (i * 37 + 11) % 256))
}
const raw = (channels: 1 | 3 | 4) => ({ raw: { width: W, height: H, channels } })

/**
 * An uncompressed 8-bit CIELab TIFF (PhotometricInterpretation 8) of `lab` (L, a, b a pixel: L 0-255
 * for 0-100, a and b signed), one strip; BitsPerSample given once when `oneBitsPerSample`, else per sample.
 */
function labTiff(width: number, height: number, lab: number[], oneBitsPerSample: boolean): Buffer {
  const tags: [number, number, number, number][] = [  // tag, type (3 SHORT, 4 LONG), count, value
    [256, 3, 1, width], [257, 3, 1, height], [258, 3, oneBitsPerSample ? 1 : 3, 0], [259, 3, 1, 1], [262, 3, 1, 8],
    [273, 4, 1, 0], [277, 3, 1, 3], [278, 3, 1, height], [279, 4, 1, lab.length],
  ]
  const ifdAt = 8
  const extraAt = ifdAt + 2 + tags.length * 12 + 4  // BitsPerSample's three values, when given per sample
  const stripAt = extraAt + 6
  const b = Buffer.alloc(stripAt + lab.length)
  b.write('II', 0, 'latin1')
  b.writeUInt16LE(42, 2)
  b.writeUInt32LE(ifdAt, 4)
  b.writeUInt16LE(tags.length, ifdAt)
  tags.forEach(([tag, type, count, value], i) => {
    const at = ifdAt + 2 + i * 12
    b.writeUInt16LE(tag, at)
    b.writeUInt16LE(type, at + 2)
    b.writeUInt32LE(count, at + 4)
    if (tag === 258 && count === 3) b.writeUInt32LE(extraAt, at + 8)
    else if (tag === 258) b.writeUInt16LE(8, at + 8)
    else if (tag === 273) b.writeUInt32LE(stripAt, at + 8)
    else if (type === 3) b.writeUInt16LE(value, at + 8)
    else b.writeUInt32LE(value, at + 8)
  })
  for (let k = 0; k < 3; k++) b.writeUInt16LE(8, extraAt + 2 * k)
  Buffer.from(lab.map((v) => v & 255)).copy(b, stripAt)
  return b
}

describe('readImage', () => {
  it('a PNG, by path and as bytes: exactly its pixels, as an rgb frame', async () => {
    const file = path.join(dir, 'rgb.png')
    await sharp(pixels(3), raw(3)).png().toFile(file)
    for (const source of [file, readFileSync(file), new Uint8Array(readFileSync(file))]) {
      const image = await readImage(source)
      expect({ width: image.width, height: image.height, format: image.format }).toEqual({ width: W, height: H, format: 'rgb' })
      expect(image.data.equals(pixels(3))).toBe(true)
    }
  })

  it("libvips's own format (.v), which sharp loads from a path only: read by its path, exactly its pixels", async () => {
    const file = path.join(dir, 'rgb.v')
    await sharp(pixels(3), raw(3)).toFile(file)
    const image = await readImage(file)
    expect({ width: image.width, height: image.height, format: image.format }).toEqual({ width: W, height: H, format: 'rgb' })
    expect(image.data.equals(pixels(3))).toBe(true)
  })

  it('alpha is dropped and grey is expanded to three equal channels', async () => {
    const rgba = await readImage(await sharp(pixels(4), raw(4)).png().toBuffer())
    const want = Buffer.from(pixels(4).filter((_, i) => i % 4 !== 3))
    expect(rgba.data.equals(want)).toBe(true)
    const grey = await readImage(await sharp(pixels(1), raw(1)).png().toBuffer())
    expect(grey.format).toBe('rgb')
    expect(grey.data.equals(Buffer.from([...pixels(1)].flatMap((v) => [v, v, v])))).toBe(true)
  })

  it('an embedded colour profile is not applied: the stored values, where sharp by default would convert them', async () => {
    const plain = await sharp(pixels(3), raw(3)).png().toBuffer()
    const { icc } = await sharp(await sharp(pixels(3), raw(3)).withIccProfile('p3').png().toBuffer()).metadata()
    const tagged = withIccChunk(plain, icc!)
    expect((await sharp(tagged).raw().toBuffer()).equals(pixels(3))).toBe(false)
    expect((await readImage(tagged)).data.equals(pixels(3))).toBe(true)
  })

  it('a grey PNG, with or without alpha, embedding a grey profile: its stored grey values as RGB, where sharp by default would convert them', async () => {
    for (const channels of [1, 2]) {
      const plain = await sharp(pixels(channels), { raw: { width: W, height: H, channels } }).toColourspace('b-w').png().toBuffer()
      const tagged = withIccChunk(plain, greyIccProfile(), 'Gray gamma 2.2')
      const meta = await sharp(tagged).metadata()
      expect([meta.channels, meta.icc?.subarray(12, 20).toString('latin1')]).toEqual([channels, 'mntrGRAY'])
      const grey = [...pixels(channels)].filter((_, i) => i % channels === 0)
      const converted = await sharp(tagged).removeAlpha().raw().toBuffer()
      expect(converted.length).toBe(W * H * 3)
      expect(converted.equals(Buffer.from(grey.flatMap((v) => [v, v, v]))), `${channels} channels`).toBe(false)
      expect((await readImage(tagged)).data.equals(Buffer.from(grey.flatMap((v) => [v, v, v]))), `${channels} channels`).toBe(true)
    }
  })

  it('a CIELab TIFF decodes to sRGB (black, white, grey, a red and a blue), BitsPerSample given once or per sample: it once hung libvips for good', async () => {
    // L*, a*, b*: black, white, L* 50 grey (sRGB 119), a red (a* +60) and a blue (b* -60).
    const lab = [0, 0, 0, 255, 0, 0, 128, 0, 0, 128, 60, 0, 128, 0, -60]
    for (const once of [true, false]) {
      const image = await readImage(labTiff(5, 1, lab, once))
      expect([image.width, image.height, image.format]).toEqual([5, 1, 'rgb'])
      const px = [...image.data]
      const at = (k: number) => px.slice(k * 3, k * 3 + 3)
      expect(at(0), `once ${once}`).toEqual([0, 0, 0])
      for (const v of at(1)) expect(v, `white: ${at(1)}`).toBeGreaterThanOrEqual(253)
      for (const v of at(2)) expect(Math.abs(v - 119), `grey: ${at(2)}`).toBeLessThanOrEqual(2)
      expect(at(3)[0] - at(3)[1], `red: ${at(3)}`).toBeGreaterThan(60)
      expect(at(4)[2] - at(4)[0], `blue: ${at(4)}`).toBeGreaterThan(60)
    }
  }, 15_000)

  it('the EXIF orientation is not applied: the stored pixel grid', async () => {
    const jpeg = await sharp(pixels(3), raw(3)).jpeg().withMetadata({ orientation: 6 }).toBuffer()
    expect((await sharp(jpeg).metadata()).orientation).toBe(6) // a viewer shows it rotated, H x W
    const image = await readImage(jpeg)
    expect([image.width, image.height]).toEqual([W, H])
  })

  it("a TIFF with an Orientation tag and a GIF with transparent pixels: as py-feat's own decode gives them (Pillow turns the TIFF, torchvision paints the GIF's background colour)", async (ctx) => {
    const python = path.join(process.env.FACE_MULTITASK_VENV || path.join(__dirname, '..', '.venv'), 'bin', 'python')
    if (!existsSync(python)) ctx.skip("no .venv (npm run setup:python): py-feat's decode, in Python, is the reference")
    // Pillow writes the files; ImageDataset.__getitem__'s decode (py-feat 2.1.5: torchvision's
    // read_image, else Pillow's PILToTensor; alpha dropped, grey x3) writes what py-feat reads.
    const code = `
import sys, numpy as np, torch
from PIL import Image
from torchvision import transforms
from torchvision.io import read_image
d = sys.argv[1]
px = ((np.arange(5 * 7 * 3) * 37 + 11) % 256).astype(np.uint8).reshape(5, 7, 3)
Image.fromarray(px).save(f"{d}/o6.tif", tiffinfo={274: 6})
idx = (np.arange(5 * 7) % 4).astype(np.uint8).reshape(5, 7)
gif = Image.fromarray(idx, mode="P")
gif.putpalette([250, 10, 10, 10, 250, 10, 10, 10, 250, 200, 150, 100] + [0] * 756)
gif.save(f"{d}/t.gif", transparency=1, background=3, optimize=False)
for f in ("o6.tif", "t.gif"):
    try:
        img = read_image(f"{d}/{f}")
    except Exception:
        img = transforms.PILToTensor()(Image.open(f"{d}/{f}"))
    if img.shape[0] == 4:
        img = img[:3]
    if img.shape[0] == 1:
        img = torch.cat([img, img, img])
    open(f"{d}/{f}.pyfeat", "wb").write(bytes([img.shape[1], img.shape[2]]) + img.permute(1, 2, 0).contiguous().numpy().tobytes())
# Uncompressed grey with Orientation 6: Pillow 13 gives the turned pixels in the unturned shape
# (scrambled rows); the reference is the grid turned a quarter clockwise, as every other TIFF is.
g = px[:, :, 0].copy()
Image.fromarray(g).save(f"{d}/g6.tif", tiffinfo={274: 6}, compression="raw")
t = np.repeat(np.rot90(g, -1)[:, :, None], 3, axis=2)
open(f"{d}/g6.tif.turned", "wb").write(bytes(t.shape[:2]) + np.ascontiguousarray(t).tobytes())
`
    const r = spawnSync(python, ['-c', code, dir], { encoding: 'utf8', timeout: 120_000 })
    expect(r.status, r.stderr).toBe(0)
    for (const f of ['o6.tif', 't.gif']) {
      const want = readFileSync(path.join(dir, `${f}.pyfeat`))
      const image = await readImage(path.join(dir, f))
      expect([f, image.height, image.width], f).toEqual([f, want[0], want[1]])
      expect(image.data.equals(want.subarray(2)), f).toBe(true)
    }
    expect(readFileSync(path.join(dir, 'o6.tif.pyfeat'))[0]).toBe(W)  // turned: 7 rows of 5
    const turned = readFileSync(path.join(dir, 'g6.tif.turned'))
    const grey = await readImage(path.join(dir, 'g6.tif'))
    expect([grey.height, grey.width]).toEqual([turned[0], turned[1]])
    expect(grey.data.equals(turned.subarray(2))).toBe(true)
  }, 120_000)

  it('files py-feat misreads become 8-bit RGB: palette colours, not indices; 16-bit samples by their high byte; grey with alpha as grey', async () => {
    const palette = await sharp(pixels(3), raw(3)).png({ palette: true, colours: 256, dither: 0 }).toBuffer()
    expect((await sharp(palette).metadata()).isPalette).toBe(true) // 35 colours: the palette holds them exactly
    const fromPalette = await readImage(palette)
    expect(fromPalette.format).toBe('rgb')
    expect(fromPalette.data.equals(pixels(3))).toBe(true)

    const samples = Array.from({ length: W * H * 3 }, (_, i) => (i * 7919 + 123) % 65536)
    const deep = await readImage(rgb16Png(W, H, samples))
    expect(deep.format).toBe('rgb')
    expect(deep.data.equals(Buffer.from(samples.map((v) => v >> 8)))).toBe(true)

    const greyAlpha = await sharp(pixels(2), { raw: { width: W, height: H, channels: 2 } }).toColourspace('b-w').png().toBuffer()
    expect((await sharp(greyAlpha).metadata()).channels).toBe(2)
    const grey = await readImage(greyAlpha)
    expect(grey.data.equals(Buffer.from([...pixels(2)].filter((_, i) => i % 2 === 0).flatMap((v) => [v, v, v])))).toBe(true)
  })

  it('a file it may not read is said to be, not called an unsupported format', async (ctx) => {
    if (process.platform === 'win32') ctx.skip('file permission bits: not on Windows')
    const open = mkdtempSync(path.join(tmpdir(), 'fm-locked-'))  // every user may enter it
    try {
      chmodSync(open, 0o755)
      const locked = path.join(open, 'locked.png')
      writeFileSync(locked, await sharp(pixels(3), raw(3)).png().toBuffer())
      chmodSync(locked, 0o000)
      if (process.getuid?.() !== 0) {
        await expect(readImage(locked)).rejects.toThrow(/locked\.png" is not a readable image: permission denied$/)
        return
      }
      // Root reads every file: the read runs in a child process as user nobody.
      const script = `require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'lib', 'read-image.js'))}).readImage(process.argv[1])` +
        '.then(() => console.log("read"), (e) => console.log(e.message))'
      const r = spawnSync(process.execPath, ['-e', script, locked], { encoding: 'utf8', uid: 65534, gid: 65534, cwd: open })
      if (r.error) ctx.skip(`cannot run a process as user nobody (uid 65534) here: ${r.error.message}`)
      if (/EACCES|permission denied, open .*\.js/.test(r.stderr)) ctx.skip(`user nobody cannot read this checkout's modules: ${r.stderr.split('\n')[0]}`)
      expect(r.stderr).toBe('')
      expect(r.stdout.trim()).toBe(`"${locked}" is not a readable image: permission denied`)
    } finally {
      rmSync(open, { recursive: true, force: true })
    }
  })

  it('bytes are read by what they are, whatever their own properties say', async () => {
    const png = await sharp(pixels(3), raw(3)).png().toBuffer()
    const want = await readImage(png)
    // A subclass saying offset 0 for a view 7 bytes in.
    class Offset0 extends Uint8Array { get byteOffset() { return 0 } }
    const at7 = new Offset0(png.length + 7)
    at7.set(png, 7)
    expect(await readImage(at7.subarray(7))).toEqual(want)
  })

  it('bad sources are refused with what was wrong', async () => {
    await expect(readImage(42 as never)).rejects.toThrow(new TypeError("source must be an image file's path (a non-empty string) or its encoded bytes (a Buffer or Uint8Array), got 42"))
    await expect(readImage('')).rejects.toThrow(TypeError)
    // A Proxy of bytes is not bytes (it reached sharp, which failed in V8's words).
    await expect(readImage(new Proxy(Buffer.from('not an image'), {}))).rejects.toThrow(/^source must be an image file's path .*, got an object \(Object\)$/)
    await expect(readImage(Buffer.from('not an image'))).rejects.toThrow(/^the 12-byte source is not a readable image: /)
    await expect(readImage(path.join(dir, 'nope.png'))).rejects.toThrow(/nope\.png" is not a readable image: no such file$/)
    await expect(readImage(dir)).rejects.toThrow(/is not a readable image: it is a directory$/)
    // Over sharp's pixel limit (kept: a decompression bomb's guard): its size, the limit and what to do.
    await expect(readImage(emptyPng(17000, 17000))).rejects.toThrow(
      'the 65-byte source is 17000x17000 (289000000 pixels), more than readImage() decodes (268402689, 16383x16383: a guard against decompression bombs); ' +
        'scale it down first, or decode it yourself (sharp with limitInputPixels) and pass its pixels to detect()',
    )
    // Within the pixel limit but wider than a frame may be: said before decoding, not as detect()'s image.width.
    await expect(readImage(emptyPng(70000, 4))).rejects.toThrow(new RangeError('the 65-byte source is 70000x4: detect() takes at most 65536 pixels a side; scale it down first'))
    await expect(readImage(Buffer.alloc(0))).rejects.toThrow(/^the 0-byte source is not a readable image: it is empty$/)
    const empty = path.join(dir, 'empty.png')
    writeFileSync(empty, '')
    await expect(readImage(empty)).rejects.toThrow(/empty\.png" is not a readable image: the file is empty \(0 bytes\)$/)
    // A FIFO with no writer: opening it would wait for ever (a batch list naming one hung).
    if (process.platform !== 'win32') {
      const fifo = path.join(dir, 'fifo.png')
      execFileSync('mkfifo', [fifo])
      await expect(readImage(fifo)).rejects.toThrow(/fifo\.png" is not a readable image: not a regular file \(pass its bytes instead\)$/)
    }
    const cut = path.join(dir, 'cut.png')
    writeFileSync(cut, (await sharp(pixels(3), raw(3)).png().toBuffer()).subarray(0, 40))
    await expect(readImage(cut)).rejects.toThrow(/cut\.png" is not a readable image: /)
  })
})
