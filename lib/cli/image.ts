// An image file for the CLI: the library's readImage (decoded as py-feat decodes), its errors as
// the CLI's (exit code 1, message as it is).
import { type DecodedImage, readImage as decode } from '../read-image'
import { isPassingFileError } from '../describe'
import { CliError, messageOf } from './common'

export type { DecodedImage }

export async function readImage(file: string): Promise<DecodedImage> {
  try {
    return await decode(file)
  } catch (e) {
    if (isPassingFileError(e)) throw e  // the system's, not the file's: batch stops, and its rerun reads the file again
    throw new CliError(messageOf(e))
  }
}
