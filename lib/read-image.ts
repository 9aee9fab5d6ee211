// Encoded images (JPEG, PNG, WebP, TIFF, GIF, AVIF, ... as a file or bytes) to the 8-bit frame
// detect() takes, decoded as py-feat decodes them (8-bit RGB, grey and RGBA files byte for byte),
// so that results match py-feat's.
import fsp from 'node:fs/promises'
import { types } from 'node:util'
import { describeValue, fileErrorReason, isPassingFileError, messageOf, NOT_REGULAR, readableFile } from './describe'
import { MAX_SIDE } from './image-input'
import { plainBytes } from './plain-bytes'
import type { ImageInput } from './types'

export interface DecodedImage extends ImageInput {
  data: Buffer
  width: number
  height: number
  /** Always 3 channels: grey images are repeated to RGB (sharp's raw output is sRGB), as py-feat repeats them. */
  format: 'rgb'
}

/**
 * An image file (a path) or encoded image bytes, decoded to what detect() takes: the pixels as
 * stored, alpha dropped, 8 bits per channel, 3 channels. For 8-bit RGB, grey and RGBA files that
 * is exactly what py-feat's torchvision read_image gives. Files py-feat reads wrongly or not at
 * all are converted instead (sharp): 16-bit images to 8 bits by their high byte (py-feat's /255
 * leaves values up to 257), palette images expanded to RGB (py-feat takes the palette indices as
 * grey), CMYK converted to sRGB (py-feat takes C, M, Y as R, G, B), grey with alpha expanded to
 * RGB (py-feat fails), CIELab TIFFs converted to sRGB (py-feat takes L, a, b as R, G, B). Of an
 * animated or multi-page image (GIF, WebP, TIFF), the first frame.
 *
 * The EXIF orientation is not applied: torchvision's read_image reads the stored pixel grid, and
 * boxes are in those unrotated coordinates. Except in a TIFF: torchvision cannot read one, and
 * py-feat's fallback, Pillow, turns it by its Orientation tag (TiffImagePlugin's load_end), so
 * this does too (of an uncompressed 8-bit grey TIFF turned by Orientation 5-8, Pillow 13 returns
 * the turned pixels in the unturned shape, its rows scrambled: here it is turned as the rest).
 * .keepIccProfile(): nor does py-feat apply an embedded colour profile (Display P3 from phones, Adobe RGB from cameras); sharp by default converts such pixels to sRGB, and
 * the model would see other values than py-feat's. A GIF's transparent pixels are the file's
 * background colour, as torchvision's GIF decoder paints them (sharp's are black once alpha goes).
 * AVIF is not byte for byte: py-feat reads it with Pillow, which leaves the file's rotation and
 * mirroring to the viewer and converts YUV to RGB slightly otherwise; libheif (sharp) applies both.
 */
export async function readImage(source: string | Uint8Array): Promise<DecodedImage> {
  const isPath = typeof source === 'string'
  // By the object's own kind: a Proxy of bytes reached sharp, which failed in V8's words.
  if (!(isPath && source !== '') && !types.isUint8Array(source)) {
    throw new TypeError(`source must be an image file's path (a non-empty string) or its encoded bytes (a Buffer or Uint8Array), got ${describeValue(source)}`)
  }
  const what = isPath ? `"${source}"` : `the ${source.length}-byte source`
  if (!isPath && source.length === 0) throw new Error(`${what} is not a readable image: it is empty`)
  const sharp = await loadSharp()
  let bytes: Uint8Array
  if (isPath) {
    // Checked here: sharp would call an unreadable or empty file "unsupported image format", and
    // a FIFO (a batch list may name one) would hang it. A FIFO's bytes can be passed as a Buffer.
    const f = await readableFile(source)
    if ('problem' in f) throw new Error(`${what} is not a readable image: ${f.problem}${f.problem === NOT_REGULAR ? ' (pass its bytes instead)' : ''}`)
    if (f.size === 0) throw new Error(`${what} is not a readable image: the file is empty (0 bytes)`)
    // Read here, not by sharp: an error of the system (out of file handles, EIO) keeps its code
    // (isPassingFileError), where sharp's message would make it look like a bad file.
    try {
      bytes = await fsp.readFile(source)
    } catch (e) {
      if (isPassingFileError(e)) throw Object.assign(new Error(`${what} could not be read: ${messageOf(e)}`, { cause: e }), { code: (e as NodeJS.ErrnoException).code })
      throw new Error(`${what} is not a readable image: ${fileErrorReason(e)}`)
    }
  } else {
    bytes = plainBytes(source)
  }
  const decode = async (input: string | Uint8Array) => {
    const image = sharp(input)
    const meta = await image.metadata()  // the header only
    if ((meta.width ?? 0) > MAX_SIDE || (meta.height ?? 0) > MAX_SIDE) {
      throw new RangeError(`${what} is ${meta.width}x${meta.height}: detect() takes at most ${MAX_SIDE} pixels a side; scale it down first`)
    }
    if (meta.format === 'tiff' && (meta.orientation ?? 1) > 1) image.rotate()
    const background = meta.background
    if (meta.format === 'gif' && meta.hasAlpha && background && 'r' in background) image.flatten({ background })
    // A CIELab TIFF goes to sRGB by libvips' own conversion (py-feat takes L, a, b as R, G, B):
    // sharp says it has alpha whether or not it has, and removeAlpha() after keepIccProfile(), or
    // on one whose BitsPerSample is given once, hangs libvips 8.17 for good, holding a pool
    // thread. A real alpha is left to the channel check below.
    if (meta.space === 'lab') return image.raw().toBuffer({ resolveWithObject: true })
    return image.keepIccProfile().removeAlpha().raw().toBuffer({ resolveWithObject: true })
  }
  let decoded: { data: Buffer; info: { width: number; height: number; channels: number } }
  try {
    try {
      decoded = await decode(bytes)
    } catch (e) {
      // libvips's own format (.v) loads from a file only: read again by its path.
      if (!isPath || !/unsupported image format/i.test(messageOf(e))) throw e
      decoded = await decode(source)
    }
  } catch (e) {
    if (e instanceof RangeError) throw e  // ours, above
    if (/exceeds pixel limit/i.test(messageOf(e))) throw new Error(await tooLarge(sharp, bytes, what), { cause: e })
    throw new Error(`${what} is not a readable image: ${messageOf(e)}`)
  }
  const { data, info } = decoded
  if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
    throw new Error(`${what} is not a readable image: decoded to ${info.channels} channels, ${data.length} bytes for ${info.width}x${info.height} pixels`)
  }
  return { data, width: info.width, height: info.height, format: 'rgb' }
}

/** sharp, loaded on first use rather than at the top, so the CLI's `--help` works even where
 * sharp's binary does not; then kept (an import() per image cost about 10 us of the caller's thread). */
let sharpModule: typeof import('sharp') | undefined
async function loadSharp(): Promise<typeof import('sharp')> {
  return (sharpModule ??= (await import('sharp')).default)
}

/** sharp's default limit on decoded pixels, kept: it guards a service against decompression bombs. */
const PIXEL_LIMIT = 0x3fff * 0x3fff

/** Why an image over sharp's pixel limit is refused, with its size and what to do instead. */
async function tooLarge(sharp: typeof import('sharp'), source: Uint8Array, what: string): Promise<string> {
  let head = `${what} has more pixels than`
  try {
    const { width, height } = await sharp(source, { limitInputPixels: false }).metadata()  // the header only
    if (width && height) head = `${what} is ${width}x${height} (${width * height} pixels), more than`
  } catch {
    // the size stays unsaid
  }
  return `${head} readImage() decodes (${PIXEL_LIMIT}, 16383x16383: a guard against decompression bombs); ` +
    'scale it down first, or decode it yourself (sharp with limitInputPixels) and pass its pixels to detect()'
}
