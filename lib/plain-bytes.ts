// The bytes a caller's Uint8Array views, found through the built-in getters: a subclass or an own
// property that says another offset or length (or a shadowed `buffer` hiding a resizable one)
// would point the reader at other bytes, or past the memory's end.
const typedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype) as object
const builtIn = (key: string) => Object.getOwnPropertyDescriptor(typedArrayPrototype, key)!.get!
const bufferOf = builtIn('buffer') as (this: Uint8Array) => ArrayBufferLike
const byteOffsetOf = builtIn('byteOffset') as (this: Uint8Array) => number
const byteLengthOf = builtIn('byteLength') as (this: Uint8Array) => number
/**
 * How many bytes a view holds now, by the built-in getter: an own `byteLength` given to a frame's
 * data after detect() checked it must not hide that its buffer was detached meanwhile.
 */
export const viewByteLength = (view: Uint8Array): number => byteLengthOf.call(view)
export const isResizable = Object.getOwnPropertyDescriptor(ArrayBuffer.prototype, 'resizable')?.get as ((this: ArrayBuffer) => boolean) | undefined

/** A plain Uint8Array over the bytes `data` views (itself, where it is one with nothing of its own over the getters). */
export function plainBytes(data: Uint8Array | Uint8ClampedArray): Uint8Array {
  const proto = Object.getPrototypeOf(data) as unknown
  const own = ['buffer', 'byteOffset', 'byteLength', 'length'].some((k) => Object.hasOwn(data, k))
  if ((proto === Uint8Array.prototype || proto === Buffer.prototype) && !own) return data as Uint8Array
  const view = data as Uint8Array
  return new Uint8Array(bufferOf.call(view), byteOffsetOf.call(view), byteLengthOf.call(view))
}
