// readImage() against py-feat 2.1.5's own decode: feat.data.ImageDataset.__getitem__ (torchvision's
// read_image; alpha dropped, grey repeated to three channels), run from the installed wheel's file by
// scripts/decode_reference.py, on py-feat's own test photographs (feat/tests/data/*.jpg|png, the
// parity suite's photos) and on files written here in the layouts cameras, phones and tools produce.
//
// The parity suite's model checks run Node on py-feat's decoded bytes (JPEG decoders may differ by
// +-1), so they cannot see a decoder difference; this holds readImage to byte equality with what
// py-feat's model sees, for 8-bit JPEG (baseline and progressive; 4:2:0, 4:2:2 and 4:4:4 chroma,
// partial MCUs at odd sizes, grey, an EXIF orientation and an embedded colour profile, neither of
// which py-feat applies), PNG (RGB, interlaced, RGBA, grey), grey JPEG and PNG with an embedded grey
// profile (not applied either: sharp would turn their values to sRGB through it) and WebP (lossy, lossy with alpha,
// lossless). Both sides decode JPEG with libjpeg-turbo's code (sharp's libvips with mozjpeg, a fork
// of it; torchvision with libjpeg-turbo), with the same IDCT and fancy upsampling, and WebP with
// libwebp, so equality is expected, not luck.
//
// Not byte-identical by design (lib/read-image.ts): a 16-bit PNG, which py-feat reads as uint16 and
// feeds the model at up to 257x the range; readImage gives its high byte, and that relation is what
// is held here. Palette, CMYK and grey-with-alpha files, which py-feat misreads, are converted by
// readImage and tested in test/read-image.test.ts; AVIF goes through Pillow in py-feat and differs.
import { execFile, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import sharp from 'sharp'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readImage } from '../../lib/read-image'
import { greyIccProfile } from '../helpers/icc'
import { rgb16Png } from '../helpers/png'

const ROOT = path.resolve(__dirname, '..', '..')
const VENV = process.env.FACE_MULTITASK_VENV || path.join(ROOT, '.venv')
const PYTHON = path.join(VENV, 'bin', 'python')

interface RefImage {
  file: string
  read_image: { channels: number; dtype: string } | { error: string }
  width: number
  height: number
  dtype: 'uint8' | 'uint16'
  pixels: string
}

// A synthetic 333x251 picture (odd sizes: partial 16x16 MCUs and chroma pairs at the right and
// bottom edges): smooth colour ramps, hard-edged blocks, and a band of noise.
const W = 333
const H = 251
function picture(channels: 3 | 4): Buffer {
  const px = Buffer.alloc(W * H * channels)
  let s = 2024
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0
      const noise = y > 170 && y < 215 ? (s >>> 24) - 128 : 0
      const block = ((x >> 5) + (y >> 5)) % 3 === 0 ? 90 : 0
      const v = [(x * 255) / W + block, (y * 255) / H, 128 + 100 * Math.sin((x + y) / 17) - block]
      for (let c = 0; c < 3; c++) px[(y * W + x) * channels + c] = Math.max(0, Math.min(255, Math.round(v[c] + noise)))
      if (channels === 4) px[(y * W + x) * 4 + 3] = (x * 7 + y * 3) & 255
    }
  }
  return px
}
const rgb = () => sharp(picture(3), { raw: { width: W, height: H, channels: 3 } })
const rgba = () => sharp(picture(4), { raw: { width: W, height: H, channels: 4 } })

// A grey display profile (gamma 2.2), written in the files' folder for sharp's withIccProfile.
const GREY_PROFILE = 'gray-gamma-2.2.icc'
// The grey files that embed it (sharp writes their values through it from the picture's sRGB grey).
const GREY_WITH_PROFILE = ['jpeg-grey-icc.jpg', 'png-grey-icc.png']

// The files, by name, made in the folder dir; each is held byte for byte.
const VARIANTS: Record<string, (dir: string) => Promise<Buffer>> = {
  'jpeg-420.jpg': () => rgb().jpeg({ quality: 90 }).toBuffer(),
  'jpeg-444.jpg': () => rgb().jpeg({ quality: 90, chromaSubsampling: '4:4:4' }).toBuffer(),
  'jpeg-progressive-420.jpg': () => rgb().jpeg({ quality: 90, progressive: true }).toBuffer(),
  'jpeg-progressive-444.jpg': () => rgb().jpeg({ quality: 95, progressive: true, chromaSubsampling: '4:4:4' }).toBuffer(),
  // mozjpeg's defaults: trellis quantisation, progressive with optimised scans
  'jpeg-mozjpeg.jpg': () => rgb().jpeg({ quality: 75, mozjpeg: true }).toBuffer(),
  'jpeg-q100.jpg': () => rgb().jpeg({ quality: 100 }).toBuffer(),
  'jpeg-grey.jpg': () => rgb().toColourspace('b-w').jpeg({ quality: 90 }).toBuffer(),
  'jpeg-exif-orientation-6.jpg': () => rgb().jpeg({ quality: 90 }).withMetadata({ orientation: 6 }).toBuffer(),
  'jpeg-display-p3.jpg': () => rgb().withIccProfile('p3').jpeg({ quality: 90 }).toBuffer(),
  'png-rgb.png': () => rgb().png().toBuffer(),
  'png-interlaced.png': () => rgb().png({ progressive: true }).toBuffer(),
  'png-rgba.png': () => rgba().png().toBuffer(),
  'png-grey.png': () => rgb().toColourspace('b-w').png().toBuffer(),
  'jpeg-grey-icc.jpg': (dir) => rgb().toColourspace('b-w').withIccProfile(path.join(dir, GREY_PROFILE)).jpeg({ quality: 90 }).toBuffer(),
  'png-grey-icc.png': (dir) => rgb().toColourspace('b-w').withIccProfile(path.join(dir, GREY_PROFILE)).png().toBuffer(),
  'webp-lossy.webp': () => rgb().webp({ quality: 80 }).toBuffer(),
  'webp-lossy-alpha.webp': () => rgba().webp({ quality: 80 }).toBuffer(),
  'webp-lossless.webp': () => rgb().webp({ lossless: true }).toBuffer(),
}
// sharp (libvips) writes 4:2:0 or 4:4:4 only; Pillow writes the 4:2:2 of many cameras (subsampling=1).
const PIL_422 = 'jpeg-422.jpg'
const BYTE_FOR_BYTE = [...Object.keys(VARIANTS), PIL_422]
// Not byte for byte (see the top of the file): py-feat's uint16 samples, readImage's high bytes.
const SIXTEEN_BIT = 'png-16bit.png'

/** Where two decodes of one size first differ, how many bytes differ, and by how much at most. */
function difference(got: Buffer, want: Buffer): string {
  let n = 0
  let max = 0
  let first = -1
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i])
    if (d) {
      n++
      max = Math.max(max, d)
      if (first < 0) first = i
    }
  }
  return `${n} of ${want.length} bytes differ (by up to ${max}; the first at byte ${first}: ours ${got[first]}, py-feat ${want[first]})`
}

const enabled = process.env.FACE_MULTITASK_PARITY === '1'

describe.skipIf(!enabled)("readImage() against py-feat 2.1.5's decode (ImageDataset: torchvision read_image)", () => {
  let dir: string
  let refDir: string
  let ref: { release: string; dataset: string; images: RefImage[] }
  const byName = new Map<string, RefImage>()

  beforeAll(async () => {
    if (!fs.existsSync(PYTHON)) {
      throw new Error(`readImage parity: ${PYTHON} not found; it runs py-feat's own code: run \`npm run setup:python\`, then \`npm run test:parity\``)
    }
    const t0 = Date.now()
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fm-decode-files-'))
    refDir = fs.mkdtempSync(path.join(os.tmpdir(), 'fm-decode-ref-'))
    fs.writeFileSync(path.join(dir, GREY_PROFILE), greyIccProfile())
    for (const [name, make] of Object.entries(VARIANTS)) fs.writeFileSync(path.join(dir, name), await make(dir))
    // 16-bit samples whose low bytes are not their high bytes (as an 8-bit picture scaled by 257 would be)
    fs.writeFileSync(path.join(dir, SIXTEEN_BIT), rgb16Png(W, H, Array.from({ length: W * H * 3 }, (_, i) => (i * 7919 + 123) % 65536)))
    execFileSync(PYTHON, ['-c', 'import sys; from PIL import Image; Image.open(sys.argv[1]).save(sys.argv[2], quality=90, subsampling=1)',
      path.join(dir, 'png-rgb.png'), path.join(dir, PIL_422)])
    const files = [...BYTE_FOR_BYTE, SIXTEEN_BIT].map((f) => path.join(dir, f))
    await new Promise<void>((resolve, reject) => {
      execFile(PYTHON, ['scripts/decode_reference.py', '--out', refDir, '--photos', ...files], { cwd: ROOT, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`scripts/decode_reference.py failed:\n${`${stdout}${stderr}`.split('\n').slice(-30).join('\n')}`))
        else resolve()
      })
    })
    ref = JSON.parse(fs.readFileSync(path.join(refDir, 'manifest.json'), 'utf8'))
    for (const im of ref.images) byName.set(path.dirname(im.file) === dir ? path.basename(im.file) : `photo ${path.basename(im.file)}`, im)
    console.log(`[readImage parity] files and py-feat's decode ${((Date.now() - t0) / 1000).toFixed(1)} s; ${ref.images.length} images`)
  })

  afterAll(() => {
    for (const d of [dir, refDir]) if (d) fs.rmSync(d, { recursive: true, force: true })
  })

  async function check(name: string): Promise<void> {
    const im = byName.get(name)
    expect(im, `${name}: missing from py-feat's decode`).toBeDefined()
    expect('error' in im!.read_image, `${name}: torchvision's read_image failed (py-feat fell back to Pillow): ${JSON.stringify(im!.read_image)}`).toBe(false)
    const want = fs.readFileSync(path.join(refDir, im!.pixels))
    for (const source of [im!.file, fs.readFileSync(im!.file)]) {
      const image = await readImage(source)
      expect([image.width, image.height], name).toEqual([im!.width, im!.height])
      expect(image.format, name).toBe('rgb') // grey files too: three channels, as py-feat repeats grey
      const got = image.data
      if (im!.dtype === 'uint16') {
        // py-feat: the 16-bit samples; readImage: each one's high byte
        const high = Buffer.alloc(want.length / 2)
        for (let k = 0; k < high.length; k++) high[k] = want.readUInt16LE(2 * k) >> 8
        expect(got.equals(high), `${name}: ${difference(got, high)}`).toBe(true)
      } else {
        expect(got.equals(want), `${name} (${typeof source === 'string' ? 'path' : 'bytes'}): ${difference(got, want)}`).toBe(true)
      }
    }
  }

  it("runs py-feat 2.1.5's ImageDataset on its photographs and on every layout", () => {
    expect(ref.release).toBe('py-feat 2.1.5')
    expect(ref.dataset).toMatch(/site-packages[\\/]feat[\\/]data\.py$/)
    const photos = [...byName.keys()].filter((n) => n.startsWith('photo '))
    expect(photos.length).toBeGreaterThanOrEqual(8)
    // read_image's own channels: what py-feat's alpha drop and grey repetition act on
    const read = (n: string) => byName.get(n)!.read_image
    expect(read('jpeg-grey.jpg')).toEqual({ channels: 1, dtype: 'uint8' })
    expect(read('png-grey.png')).toEqual({ channels: 1, dtype: 'uint8' })
    for (const name of GREY_WITH_PROFILE) expect(read(name), name).toEqual({ channels: 1, dtype: 'uint8' })
    expect(read('photo BWPictureHuman.jpg')).toEqual({ channels: 1, dtype: 'uint8' })
    expect(read('png-rgba.png')).toEqual({ channels: 4, dtype: 'uint8' })
    expect(read('webp-lossy-alpha.webp')).toEqual({ channels: 4, dtype: 'uint8' })
    expect(read('photo Image_with_alpha.png')).toEqual({ channels: 4, dtype: 'uint8' })
    expect(read(SIXTEEN_BIT)).toEqual({ channels: 3, dtype: 'uint16' })
  })

  it("py-feat's own photographs: byte for byte", async () => {
    for (const name of [...byName.keys()].filter((n) => n.startsWith('photo '))) await check(name)
  })

  it.each(GREY_WITH_PROFILE)('%s: one grey channel with a grey profile, which sharp by default applies (other values than py-feat reads)', async (name) => {
    const file = path.join(dir, name)
    const meta = await sharp(file).metadata()
    expect([meta.channels, meta.space, meta.icc?.subarray(12, 20).toString('latin1')]).toEqual([1, 'b-w', 'mntrGRAY'])
    const converted = await sharp(file).raw().toBuffer()
    const want = fs.readFileSync(path.join(refDir, byName.get(name)!.pixels))
    expect(converted.length).toBe(want.length)
    expect(converted.equals(want)).toBe(false)
  })

  it.each(BYTE_FOR_BYTE)('%s: byte for byte', async (name) => {
    await check(name)
  })

  it(`${SIXTEEN_BIT}: py-feat's 16-bit samples (uint16), readImage's their high bytes`, async () => {
    expect(byName.get(SIXTEEN_BIT)?.dtype).toBe('uint16')
    await check(SIXTEEN_BIT)
  })
})
