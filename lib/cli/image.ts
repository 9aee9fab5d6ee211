// An image file for the CLI: the library's readImage (decoded as py-feat decodes), its errors as
// the CLI's (exit code 1, message as it is).
import fs from 'node:fs'
import { type DecodedImage, readImage as decode } from '../read-image'
import { isPassingFileError } from '../describe'
import { CliError, messageOf } from './common'

/**
 * `pipe`: a FIFO (`/dev/stdin` with the image piped in, a named pipe) is read to its end and
 * decoded from its bytes (detect's one image). Without it (batch), a FIFO is refused as the
 * library refuses one: a list naming a pipe nobody writes to would hang the run.
 */
export async function readImage(file: string, { pipe = false } = {}): Promise<DecodedImage> {
  try {
    const stdin = pipe && STDIN.includes(file)
    if (stdin || (pipe && fs.statSync(file, { throwIfNoEntry: false })?.isFIFO())) {
      const bytes = stdin ? await readStdin(file) : await fs.promises.readFile(file)
      try {
        return await decode(bytes)
      } catch (e) {
        // The library names bytes "the N-byte source ..."; here they have a name.
        const said = cliWords(messageOf(e))
        const rest = said.replace(/^the \d+-byte source /, ' ')
        const name = file === '-' ? imageName(file) : `"${file}"`
        throw new CliError(`${name} (a pipe, ${bytes.length} bytes read)${rest === said ? `: ${said}` : rest}`)
      }
    }
    return await decode(file)
  } catch (e) {
    if (isPassingFileError(e) || e instanceof CliError) throw e  // the system's, not the file's: batch stops, and its rerun reads the file again
    throw new CliError(cliWords(messageOf(e)))
  }
}

/** The library's advice to pass a pipe's bytes, or to decode the image itself, is for its callers: the CLI has no such way. */
function cliWords(message: string): string {
  return message.replace(/ \(pass its bytes instead\)$/, '').replace(/, or decode it yourself \(sharp with limitInputPixels\) and pass its pixels to detect\(\)$/, '')
}

/** Names of this process's standard input. Read through the stream, not by opening the path: a
 * parent process's pipe may be a socket (Node's own child processes), which Linux will not open. */
const STDIN = ['-', '/dev/stdin']

/** How messages name an image file: `-` is standard input. */
export function imageName(file: string): string {
  return file === '-' ? 'standard input' : file
}

async function readStdin(file: string): Promise<Buffer> {
  if (process.stdin.isTTY) throw new CliError(`"${file}": standard input is a terminal; pipe an image in (face-multitask detect - ... < photo.jpg)`)
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}
