// How error messages show a value the caller passed, and why a file could not be read.

/** A value as an error message shows it: strings quoted, objects by kind. */
export function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  if (typeof value === 'function') return 'a function'
  if (typeof value === 'bigint') return `${value}n`
  if (value === null) return 'null'
  if (typeof value === 'object') return Array.isArray(value) ? 'an array' : `an object (${Object.prototype.toString.call(value).slice(8, -1)})`
  return String(value)
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

/** The message of anything thrown, for one line of output. */
export function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}
