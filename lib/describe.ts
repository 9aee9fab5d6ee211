// How error messages show a value the caller passed, and why a file could not be read or written.
import { access, constants, stat } from 'node:fs/promises'

/** "a Float32Array", "an Int8Array": a type's name with its article. */
export function aTypeNamed(name: string): string {
  return `${/^[AEIO]/.test(name) ? 'an' : 'a'} ${name}`  // not U: a Uint8Array
}

/** A value as an error message shows it: strings quoted, objects by kind. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'bigint') return `${value}n`
  if (value === null) return 'null'
  if (typeof value === 'object') return Array.isArray(value) ? 'an array' : `an object (${Object.prototype.toString.call(value).slice(8, -1)})`
  return String(value)
}

/**
 * What `value` is, in words for "got ...", where it cannot be an object of named keys (options, a
 * frame); undefined where it can. Checked before its keys are listed: a Buffer has one key per
 * byte (a 20 MB one took 28 s and a 229 MB message to list), and a Map or a Promise has none of
 * its own, so would pass as an empty object.
 */
export function notKeyedObject(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return describeValue(value)
  if (Array.isArray(value)) return 'an array'
  if (Buffer.isBuffer(value)) return 'a Buffer'
  const tag = Object.prototype.toString.call(value).slice(8, -1)
  if (ArrayBuffer.isView(value) || ['ArrayBuffer', 'SharedArrayBuffer', 'Map', 'Set', 'WeakMap', 'WeakSet'].includes(tag)) return aTypeNamed(tag)
  if (typeof (value as { then?: unknown }).then === 'function') return 'a Promise (await it first)'
  return undefined
}

/** "has unknown key(s) ...": at most 8 named, the count of the rest after them. */
export function unknownKeysMessage(name: string, unknown: string[]): string {
  const shown = unknown.slice(0, 8).map((k) => JSON.stringify(k)).join(', ')
  const more = unknown.length > 8 ? ` and ${unknown.length - 8} more` : ''
  return `${name} has unknown key${unknown.length > 1 ? 's' : ''} ${shown}${more}`
}

/** Why a file could not be read, in a few words (ENOENT: 'no such file'), else the error's message. */
export function fileErrorReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code
  if (code === 'ENOENT') return 'no such file'
  if (code === 'ENOTDIR') return 'no such file (a folder on its path is a file)'
  if (code === 'EISDIR') return 'it is a directory'
  if (code === 'EACCES') return 'permission denied'
  return messageOf(e)
}

/**
 * Errors of the system rather than of the file (out of file handles or memory, an I/O error, a
 * network file system that did not answer): the same read may succeed later, so a batch stops
 * and its rerun reads the file again, instead of recording the file as unreadable for good.
 */
const PASSING = new Set(['EMFILE', 'ENFILE', 'ENOMEM', 'EIO', 'EAGAIN', 'EBUSY', 'ESTALE', 'ETIMEDOUT', 'ENOTCONN', 'EINTR'])

export function isPassingFileError(e: unknown): boolean {
  return PASSING.has((e as NodeJS.ErrnoException)?.code ?? '')
}

/** Whether an error says this process may not write there (permissions, a read-only file system). */
export function notWritable(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code
  return code === 'EACCES' || code === 'EPERM' || code === 'EROFS'
}

/** The message of anything thrown, for one line of output. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

/** What readableFile() says of a FIFO, a socket or a device. */
export const NOT_REGULAR = 'not a regular file'

/**
 * Whether `file` is a regular file this process may read: its size, or why not in a few words
 * ('no such file', 'it is a directory', NOT_REGULAR, 'permission denied'). Only regular files:
 * opening a FIFO waits for a writer, for ever where there is none. An error of the system, not of
 * the file (isPassingFileError), is thrown.
 */
export async function readableFile(file: string): Promise<{ size: number } | { problem: string }> {
  let stats
  try {
    stats = await stat(file)
  } catch (e) {
    if (isPassingFileError(e)) throw e  // not a problem of the file's
    return { problem: fileErrorReason(e) }
  }
  if (stats.isDirectory()) return { problem: 'it is a directory' }
  if (!stats.isFile()) return { problem: NOT_REGULAR }
  try {
    await access(file, constants.R_OK)
  } catch (e) {
    if (isPassingFileError(e)) throw e
    return { problem: fileErrorReason(e) }
  }
  return { size: stats.size }
}
