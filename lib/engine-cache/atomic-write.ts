// Atomic file writes: readers see the old file or the whole new one, never a part.
import { randomBytes } from 'node:crypto'
import fs from 'node:fs/promises'
import path from 'node:path'

async function fsyncDir(dir: string): Promise<void> {
  // Makes the rename durable on POSIX; Windows cannot open a folder this way (and needs nothing).
  let fh: fs.FileHandle | undefined
  try {
    fh = await fs.open(dir, 'r')
    await fh.sync()
  } catch {
    // EISDIR / EPERM / EINVAL on platforms and filesystems that do not support it.
  } finally {
    await fh?.close().catch(() => {})
  }
}

/**
 * rename(), retried on Windows while another process holds the target open without sharing
 * delete access, or a virus scanner has just opened the new file (EPERM / EACCES / EBUSY, which
 * clear within moments): about 2 s in all, as graceful-fs and write-file-atomic do. Elsewhere
 * rename over a file in use always succeeds, so an error there is real and not retried.
 */
export async function renameReplacing(from: string, to: string, platform: NodeJS.Platform = process.platform): Promise<void> {
  for (let attempt = 0, delay = 10; ; attempt++, delay = Math.min(delay * 2, 500)) {
    try {
      await fs.rename(from, to)
      return
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (platform !== 'win32' || !(code === 'EPERM' || code === 'EACCES' || code === 'EBUSY') || attempt >= 8) throw e
      await new Promise((resolve) => setTimeout(resolve, delay))
    }
  }
}

export function tempPrefix(file: string): string {
  return `.${path.basename(file)}.tmp-`
}

/** A temp file's path for `file`, in its folder: this process's and unique (removeDebris knows the name). */
export function tempPath(file: string): string {
  return path.join(path.dirname(file), `${tempPrefix(file)}${process.pid}-${randomBytes(4).toString('hex')}`)
}

/**
 * Writes `file` so that readers see either the old file or the whole new one, never a part: the
 * data goes to a temp file in the same folder, is fsynced, then renamed over `file` (and the folder
 * fsynced). On any failure, the data source's included, the temp file is removed and `file` is
 * untouched. `data` may be an (async) iterable of chunks, for data made on the fly.
 */
export async function writeFileAtomic(file: string, data: Uint8Array | string | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<void> {
  const dir = path.dirname(file)
  const tmp = tempPath(file)
  let fh: fs.FileHandle | undefined = await fs.open(tmp, 'wx', 0o644)
  try {
    if (typeof data === 'string' || data instanceof Uint8Array) {
      await fh.writeFile(data)
    } else {
      for await (const chunk of data) await fh.writeFile(chunk)
    }
    await fh.sync()
    await fh.close()
    fh = undefined
    await renameReplacing(tmp, file)
  } catch (e) {
    await fh?.close().catch(() => {})
    await fs.rm(tmp, { force: true }).catch(() => {})
    throw e
  }
  await fsyncDir(dir)
}
