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
 * The image's pixels as stored, alpha dropped, 8 bits per channel (sharp converts 16-bit, CMYK
 * and palette images to 8-bit sRGB; greyscale stays one channel and runs as 'gray').
 *
 * No .rotate(): py-feat does NOT apply the EXIF orientation tag (it reads the stored pixel grid),
 * so neither do we; boxes are in the same unrotated pixel coordinates py-feat would use.
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
    decoded = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true })
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
