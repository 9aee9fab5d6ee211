// Reads an image file into 8-bit pixels with sharp (JPEG, PNG, WebP, TIFF, GIF, AVIF, ...).
import { stat } from 'node:fs/promises'
import type { ImageInput } from '../types'
import { fileErrorReason } from '../describe'
import { CliError, messageOf } from './common'

export interface DecodedImage extends ImageInput {
  data: Buffer
  width: number
  height: number
  format: 'rgb' | 'gray'
}

/**
 * The image's pixels as stored, alpha dropped, 8 bits per channel, as 3 channels (sharp scales
 * 16-bit images to 8 bits, expands palette and greyscale images to RGB and converts CMYK to
 * sRGB). Of an animated or multi-page image (GIF, WebP, TIFF), the first frame.
 *
 * No .rotate(): py-feat does NOT apply the EXIF orientation tag (it reads the stored pixel grid),
 * so neither do we; boxes are in the same unrotated pixel coordinates py-feat would use.
 * .keepIccProfile(): nor does py-feat (torchvision's read_image) apply an embedded colour profile
 * (Display P3 from phones, Adobe RGB from cameras); without it sharp would convert such pixels to
 * sRGB, and the model would see other values than py-feat's.
 */
export async function readImage(file: string): Promise<DecodedImage> {
  // Loaded here rather than at the top so `--help` works even where sharp's binary does not.
  const { default: sharp } = await import('sharp')
  let stats
  try {
    stats = await stat(file)
  } catch (e) {
    throw new CliError(`"${file}" is not a readable image: ${fileErrorReason(e)}`)
  }
  if (stats.isDirectory()) throw new CliError(`"${file}" is not a readable image: it is a directory`)
  let decoded: { data: Buffer; info: { width: number; height: number; channels: number } }
  try {
    decoded = await sharp(file).keepIccProfile().removeAlpha().raw().toBuffer({ resolveWithObject: true })
  } catch (e) {
    throw new CliError(`"${file}" is not a readable image: ${messageOf(e)}`)
  }
  const { data, info } = decoded
  const format = info.channels === 3 ? 'rgb' : info.channels === 1 ? 'gray' : undefined
  if (!format || data.length !== info.width * info.height * info.channels) {
    throw new CliError(`"${file}" is not a readable image: decoded to ${info.channels} channels, ${data.length} bytes for ${info.width}x${info.height} pixels`)
  }
  return { data, width: info.width, height: info.height, format }
}
