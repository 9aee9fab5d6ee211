// Cancellation for load(), detect(), the engine cache and the TensorRT backend: the check of a
// signal option, an AbortError like Node's own, and helpers that give up on a promise or a wait
// when an AbortSignal fires.
import { describeValue } from '../describe'

/**
 * `value` as a signal option: an AbortSignal, or any object that behaves as one (an `aborted`
 * boolean, addEventListener / removeEventListener), as Node's own APIs accept: a signal of another
 * realm (a vm context) or a polyfill's. Anything else is a TypeError naming `name`.
 */
export function checkSignal(value: unknown, name: string): AbortSignal | undefined {
  if (value === undefined || value instanceof AbortSignal) return value
  const s = value as Partial<AbortSignal> | null
  if (typeof s === 'object' && s !== null && typeof s.aborted === 'boolean' && typeof s.addEventListener === 'function' && typeof s.removeEventListener === 'function') {
    return value as AbortSignal
  }
  throw new TypeError(`${name} must be an AbortSignal (from an AbortController), got ${describeValue(value)}`)
}

/**
 * Why `signal` fired: its reason, or what its reason getter throws (a look-alike's), which in an
 * abort listener would be an uncaught exception ending the process.
 */
export function reasonOf(signal: AbortSignal): unknown {
  try {
    return signal.reason
  } catch (e) {
    return e
  }
}

/** Rejection of a call whose AbortSignal fired (name 'AbortError', code 'ABORT_ERR', like Node's own). */
export class AbortError extends Error {
  readonly code = 'ABORT_ERR'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'AbortError'
  }
}

export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new AbortError(`aborted ${what}`, { cause: reasonOf(signal) })
}

/**
 * Settles like `promise`, or rejects with an AbortError as soon as `signal` fires. A look-alike
 * signal whose listener methods throw (checkSignal accepts one) is not listened to, rather than
 * rejecting or leaving a rejection unhandled.
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (!signal) return promise
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new AbortError(`aborted ${what}`, { cause: reasonOf(signal) }))
    const stopListening = () => {
      try {
        signal.removeEventListener('abort', onAbort)
      } catch {
        // a look-alike's: nothing more to do
      }
    }
    if (signal.aborted) onAbort()
    else {
      try {
        signal.addEventListener('abort', onAbort, { once: true })
      } catch {
        // not listened to: the promise still settles it
      }
    }
    promise.then((v) => { stopListening(); resolve(v) }, (e: unknown) => { stopListening(); reject(e) })
  })
}

/** Waits `ms`; an abort rejects at once and clears the timer (which would hold the process up to `ms`). */
export function sleep(ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  return abortable(new Promise<void>((resolve) => { timer = setTimeout(resolve, ms) }), signal, what).finally(() => clearTimeout(timer))
}
