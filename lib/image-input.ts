// Checks what detect() was given and turns it into one job per face. Every error names the
// argument and what is wrong with it; nothing reaches native code unchecked.
import { types } from 'node:util'
import { CHIP_SIZE, type CropMode } from './contract'
import { CHIP_BOX, faceCrop, type Rect } from './crop'
import { aTypeNamed, describeValue, notKeyedObject, unknownKeysMessage } from './describe'
import { isResizable, plainBytes, viewByteLength } from './plain-bytes'
import { checkSignal } from './engine-cache/abort'
import type { Box, DetectOptions, ImageInput, PixelFormat } from './types'

export const PIXEL_FORMATS: Record<PixelFormat, { code: number; channels: number }> = {
  rgb: { code: 0, channels: 3 },
  rgba: { code: 1, channels: 4 },
  bgr: { code: 2, channels: 3 },
  bgra: { code: 3, channels: 4 },
  gray: { code: 4, channels: 1 },
}

/** One face to run: the frame read in place, the window to sample (null: the frame is a chip),
 * and the box reported for the face. */
export interface FaceJob {
  /** The argument the frame came in (`image`, `images[2]`), for errors found after the checks. */
  image: string
  /** The argument the face came in, with its box (`options.boxes[1] = [10, 20, 90, 110]`; a chip: `the chip image`), for errors about its outputs. */
  face: string
  data: Uint8Array
  width: number
  height: number
  stride: number
  format: number
  window: Rect | null
  box: Rect
}

/** What a frame object may hold. */
const FRAME_KEYS = ['data', 'width', 'height', 'format', 'stride']

/** How far from the frame's origin a square crop's window may reach (2^24 px). */
const MAX_WINDOW_COORDINATE = 2 ** 24

/** The most pixels a frame may have a side. */
export const MAX_SIDE = 1 << 16

const CHANNELS_BY_CODE = Object.values(PIXEL_FORMATS).reduce<number[]>((a, f) => { a[f.code] = f.channels; return a }, [])

/** The bytes a frame must hold: the last row needs only its pixels, not the padding after them. */
function frameBytes(width: number, height: number, stride: number, channels: number): number {
  return stride * (height - 1) + width * channels
}

/**
 * Throws when a job's frame no longer holds the bytes it held when detect() checked it: its
 * buffer was detached (transferred) or shrunk (a resizable buffer, WebAssembly memory that grew)
 * while the call waited for its batch. Said in the caller's terms, not the addon's.
 */
export function checkStillWhole(jobs: readonly FaceJob[]): void {
  for (const job of jobs) {
    const needed = frameBytes(job.width, job.height, job.stride, CHANNELS_BY_CODE[job.format])
    const holds = viewByteLength(job.data)  // the caller's own view, whose properties it may still change
    if (holds < needed) {
      throw new Error(`${job.image}.data changed while detect() waited: it now holds ${holds} bytes, ${needed} were checked ` +
        '(its buffer was detached, transferred or shrunk); keep each frame unchanged until its detect() settles')
    }
  }
}

/** Whether a buffer was detached (transferred): a view of it reads as empty, which alone says nothing. */
export function isDetached(buffer: ArrayBufferLike): boolean {
  if (buffer.byteLength !== 0) return false
  try {
    new Uint8Array(buffer)  // throws on a detached buffer (Node 20 has no ArrayBuffer.prototype.detached)
    return false
  } catch {
    return true
  }
}

function checkImage(image: unknown, name: string): Omit<FaceJob, 'window' | 'box' | 'face'> {
  const got = notKeyedObject(image)
  if (got !== undefined) {
    // Raw bytes (pixels, or an image file's) are the likeliest: say how to pass each.
    const bytes = /^a (Buffer|Uint8Array|Uint8ClampedArray)$/.test(got) ? ': pixels as { data, width, height, format }; an image file\'s bytes through readImage()' : ''
    throw new TypeError(`${name} must be an object { data, width, height, format?, stride? }, got ${got}${bytes}`)
  }
  // An unknown key (a misspelt `fromat`, a decoder's `channels: 4`) would otherwise leave the
  // default rgb in force and run the wrong pixels without a word.
  const unknown = Object.keys(image as object).filter((k) => !FRAME_KEYS.includes(k))
  if (unknown.length > 0) {
    throw new TypeError(`${unknownKeysMessage(name, unknown)}; a frame is { ${FRAME_KEYS.join(', ')} } (format: ${Object.keys(PIXEL_FORMATS).join(', ')})`)
  }
  const { data, width, height, format: given, stride } = image as ImageInput
  const format = given === undefined ? 'rgb' : given
  // By the object's own kind (a Proxy of one is not one; one from another vm context is).
  if (!(types.isUint8Array(data) || types.isUint8ClampedArray(data))) {
    throw new TypeError(`${name}.data must be a Buffer, Uint8Array or Uint8ClampedArray, got ${notKeyedObject(data) ?? describeValue(data)}`)
  }
  let bytes = plainBytes(data)
  for (const [key, v] of [['width', width], ['height', height]] as const) {
    if (typeof v !== 'number') throw new TypeError(`${name}.${key} must be an integer from 1 to ${MAX_SIDE}, got ${describeValue(v)}`)
    if (!Number.isInteger(v) || v < 1 || v > MAX_SIDE) throw new RangeError(`${name}.${key} must be an integer from 1 to ${MAX_SIDE}, got ${String(v)}`)
  }
  // Checked before it is used as a key (an object without toString throws there) and shown by
  // describeValue (JSON.stringify throws on a bigint and shows a symbol as undefined).
  if (typeof format !== 'string' || !Object.hasOwn(PIXEL_FORMATS, format)) {
    throw new TypeError(`${name}.format must be one of ${Object.keys(PIXEL_FORMATS).join(', ')}, got ${describeValue(format)}`)
  }
  // Four bytes a pixel and no format said: an RGBA frame (a canvas ImageData, whose keys are
  // its prototype's) would be read as rgb, its rows sheared, without a word.
  if (given === undefined && stride === undefined && bytes.byteLength === width * height * 4) {
    throw new TypeError(`${name} has no format and holds ${bytes.byteLength} bytes, 4 per pixel of ${width}x${height}: give its format ('rgba' or 'bgra'; 'rgb' for an rgb frame in a larger buffer)`)
  }
  const fmt = PIXEL_FORMATS[format as PixelFormat]
  const rowBytes = width * fmt.channels
  const rowStride = stride === undefined ? rowBytes : stride  // null is refused below, as format's
  if (typeof rowStride !== 'number') throw new TypeError(`${name}.stride must be an integer of at least width * channels (${rowBytes}), got ${describeValue(stride)}`)
  if (!Number.isInteger(rowStride) || rowStride < rowBytes) {
    throw new RangeError(`${name}.stride must be an integer of at least width * channels (${rowBytes}), got ${String(stride)}`)
  }
  // The data's length bounds the stride only from the second row on: a one-row frame's stride past
  // 2^53 would otherwise reach the addon, which refuses it naming its own argument (faces[0].stride).
  if (rowStride > Number.MAX_SAFE_INTEGER) {
    throw new RangeError(`${name}.stride must be at most 2^53 - 1 (Number.MAX_SAFE_INTEGER), got ${String(stride)}`)
  }
  // A view cut tightly out of a padded frame is whole.
  const needed = frameBytes(width, height, rowStride, fmt.channels)
  if (bytes.byteLength < needed) {
    const detached = isDetached(bytes.buffer) ? ' (its buffer was detached: transferred elsewhere?)' : ''
    throw new RangeError(`${name}.data holds ${bytes.byteLength} bytes${detached}; a ${width}x${height} ${format} frame with stride ${rowStride} needs ${needed} (stride * (height - 1) + width * channels)`)
  }
  // Frames are read in place while the call runs; memory that can shrink under it (a resizable
  // ArrayBuffer) is copied once instead, so a resize cannot pull it from under the reader.
  const buffer = bytes.buffer
  if (isResizable && !types.isSharedArrayBuffer(buffer) && isResizable.call(buffer as ArrayBuffer)) bytes = new Uint8Array(bytes.subarray(0, needed))  // a copy (a Buffer's slice() is a view)
  return { image: name, data: bytes, width, height, stride: rowStride, format: fmt.code }
}

// How a box error shows what it was given. JSON.stringify alone throws on a bigint or a cycle,
// which replaced the message naming the box with its own.
// Bounded: a frame's pixels passed as boxes by mistake made a 75-million-character message (and
// 400 MB of them a RangeError naming nothing), seconds of the event loop either way.
function showValue(value: unknown, depth = 0): string {
  if (typeof value === 'bigint' || typeof value === 'symbol') return describeValue(value)
  if (typeof value === 'number') return String(value)  // NaN and Infinity, which JSON shows as null
  // A typed array (a detector's Float32Array box) would show as {"0":1,"1":2,...}.
  if (ArrayBuffer.isView(value)) {
    const tag = Object.prototype.toString.call(value).slice(8, -1)
    if (types.isDataView(value)) return aTypeNamed(tag)
    const items = value as unknown as ArrayLike<number>
    const shown = Array.from({ length: Math.min(items.length, SHOWN_ITEMS) }, (_, i) => String(items[i]))
    return `${aTypeNamed(tag)}${items.length > 4 ? ` of ${items.length}` : ''} [${shown.join(', ')}${items.length > SHOWN_ITEMS ? ', ...' : ''}]`
  }
  if (Array.isArray(value)) {
    if (depth >= 2) return value.length === 0 ? '[]' : '[...]'
    const shown = Array.from({ length: Math.min(value.length, SHOWN_ITEMS) }, (_, i) => showValue(value[i], depth + 1))
    return `[${shown.join(', ')}${value.length > SHOWN_ITEMS ? `, ... (${value.length} items)` : ''}]`
  }
  if (typeof value === 'object' && value !== null) {
    // A plain object (a detector's { x, y, width, height }) by its keys and values; others by kind.
    const proto = Object.getPrototypeOf(value) as unknown
    if (depth >= 2 || (proto !== Object.prototype && proto !== null)) return describeValue(value)
    const keys = Object.keys(value)
    const shown = keys.slice(0, SHOWN_ITEMS).map((k) => `${JSON.stringify(k)}: ${showValue((value as Record<string, unknown>)[k], depth + 1)}`)
    return `{${shown.join(', ')}${keys.length > SHOWN_ITEMS ? `, ... (${keys.length} keys)` : ''}}`
  }
  try {
    return JSON.stringify(value) ?? describeValue(value)
  } catch {
    return describeValue(value)
  }
}

/** How many items of an array an error message shows. */
const SHOWN_ITEMS = 8

// A box's coordinates one by one: NaN and Infinity as numbers, a string quoted, a hole as undefined.
function showCoordinates(box: unknown[]): string {
  return `[${Array.from(box, (v) => (typeof v === 'number' ? String(v) : showValue(v))).join(', ')}]`
}

function checkBox(box: unknown, name: string, width: number, height: number): Box {
  if (!Array.isArray(box) || box.length !== 4) {
    const plain = ArrayBuffer.isView(box) ? ' (a plain array: Array.from(box))' : ''
    throw new TypeError(`${name} must be [x1, y1, x2, y2]${plain}, got ${showValue(box)}`)
  }
  // Each read once (a getter gives the check and the crop the same values; a length read again
  // could say 2^32 - 1), a hole as undefined, which every() would skip and so pass.
  const v: unknown[] = [box[0], box[1], box[2], box[3]]
  if (!v.every((c) => typeof c === 'number' && Number.isFinite(c))) {
    throw new RangeError(`${name} must hold 4 finite numbers, got ${showCoordinates(v)}`)
  }
  const [x1, y1, x2, y2] = v as number[]
  if (!(x2 > x1 && y2 > y1)) {
    throw new RangeError(`${name} = [${v.join(', ')}] has zero or negative size: x2 must exceed x1 and y2 exceed y1`)
  }
  if (x2 <= 0 || y2 <= 0 || x1 >= width || y1 >= height) {
    throw new RangeError(`${name} = [${v.join(', ')}] lies entirely outside the ${width}x${height} frame`)
  }
  return [x1, y1, x2, y2]
}

// The crop is computed in float32, as py-feat's torch code does: a box that is finite and
// non-empty in float64 can still overflow (1e39) or collapse (x2 - x1 below float32's resolution
// at x1) there. Refused here, naming the box, rather than failing in native code with the batch
// it was sent with.
function checkCrop(box: Box, name: string, crop: CropMode, width: number, height: number): ReturnType<typeof faceCrop> {
  const c = faceCrop(crop, box, width, height)
  const [, , w, h] = c.window
  if (!(c.window.every(Number.isFinite) && c.box.every(Number.isFinite) && w > 0 && h > 0)) {
    throw new RangeError(`${name} = [${box.join(', ')}] has no usable crop in float32 (py-feat's precision): its coordinates are too large or its size too small`)
  }
  // Past 2^24 px float32 no longer resolves whole pixels, and torch folds such coordinates back
  // into the frame differently on the CPU (a truncating product) and on CUDA (fmod): py-feat has
  // no one answer there to match. Only the square crop reflects; v2.4's is clamped to the frame.
  const [x, y] = c.window
  if (crop === 'square' && Math.max(Math.abs(x), Math.abs(y), Math.abs(x + w), Math.abs(y + h)) > MAX_WINDOW_COORDINATE) {
    throw new RangeError(`${name} = [${box.join(', ')}] gives a crop window [${c.window.join(', ')}] reaching past ±2^24 px, where float32 (py-feat's precision) no longer resolves pixels`)
  }
  return c
}

function checkBoxList(list: unknown, name: string, image: Omit<FaceJob, 'window' | 'box' | 'face'>, crop: CropMode, imageName: string): FaceJob[] {
  if (!Array.isArray(list)) throw new TypeError(`${name} must be an array of [x1, y1, x2, y2] boxes, got ${showValue(list)}`)
  // The stretched crop's sampling grid spans (size - 1) pixels: a frame 1 pixel wide or high has none.
  if (crop === 'stretch' && list.length > 0 && (image.width < 2 || image.height < 2)) {
    throw new RangeError(`${imageName} is ${image.width}x${image.height}: this model's stretched crop (py-feat v2.4) needs a frame of at least 2x2 pixels`)
  }
  // Array.from visits holes (as undefined), which map() would skip and so drop a face.
  return Array.from(list, (b: unknown, i) => {
    const where = `${name}[${i}]`
    const given = checkBox(b, where, image.width, image.height)
    const { window, box } = checkCrop(given, where, crop, image.width, image.height)
    return faceJob(image, `${where} = [${given.join(', ')}]`, window, box)
  })
}

function chipJob(image: Omit<FaceJob, 'window' | 'box' | 'face'>, name: string): FaceJob {
  if (image.width !== CHIP_SIZE || image.height !== CHIP_SIZE) {
    throw new RangeError(`options.boxes is required: ${name} is ${image.width}x${image.height}, and only 256x256 chips can run without boxes`)
  }
  return faceJob(image, `the chip ${name}`, null, CHIP_BOX)
}

/**
 * A face's job on its image's frame. Field by field: spreading the frame's object ({ ...image })
 * cost more than every check of the face together.
 */
function faceJob(image: Omit<FaceJob, 'window' | 'box' | 'face'>, face: string, window: Rect | null, box: Rect): FaceJob {
  return { image: image.image, data: image.data, width: image.width, height: image.height, stride: image.stride, format: image.format, face, window, box }
}

/** What detect() may be given in its options. */
const DETECT_OPTIONS = ['boxes', 'signal']

/**
 * Face jobs for detect(image | images, options), grouped per image. `single` says whether
 * the caller passed one image (and so expects Face[] back rather than Face[][]).
 */
export function facesToRun(input: unknown, options: DetectOptions | undefined, crop: CropMode): { single: boolean; perImage: FaceJob[][]; signal?: AbortSignal } {
  const got = options === undefined ? undefined : notKeyedObject(options)
  if (got !== undefined) {
    throw new TypeError(`options must be an object { boxes?, signal? }, got ${got === 'an array' ? 'an array (pass the boxes as { boxes: [...] })' : got}`)
  }
  // An unknown key (a typo such as `box`) would otherwise be ignored and a 256x256 frame run as a chip;
  // inherited keys too (a defaults object as prototype), as inherited options are read (as load() does).
  const keys: string[] = []
  for (const k in options) keys.push(k)
  const unknown = keys.filter((k) => !DETECT_OPTIONS.includes(k))
  if (unknown.length > 0) {
    throw new TypeError(`${unknownKeysMessage('options', unknown)}; the options are ${DETECT_OPTIONS.join(' and ')}`)
  }
  const signal = checkSignal(options?.signal, 'options.signal')
  const { single, perImage } = jobsFor(input, options?.boxes, crop)
  return { single, perImage, signal }
}

/** For an array of images: one list of boxes per image; each mistake said as what was given. */
function checkBoxLists(boxes: unknown, images: number): void {
  const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`
  const want = `options.boxes must hold one list of [x1, y1, x2, y2] boxes per image (${plural(images, 'image')})`
  if (!Array.isArray(boxes)) throw new TypeError(`${want}, got ${showValue(boxes)}`)
  // Only the lists the images need are looked at (a sparse array of 2^32 - 1 would take seconds);
  // a typed-array box goes on to checkBox, which says how to pass it.
  const bad = Array.from(boxes.slice(0, images) as unknown[]).findIndex((b) => !(Array.isArray(b) && (b.length === 0 || Array.isArray(b[0]) || ArrayBuffer.isView(b[0]))))
  if (bad >= 0) {
    const b: unknown = boxes[bad]
    const aBox = Array.isArray(b) && b.length === 4 && b.every((v) => typeof v === 'number')
    throw new TypeError(`${want}: options.boxes[${bad}] is ${showValue(b)}${aBox ? ', a box: put each image\'s boxes in a list, [[x1, y1, x2, y2]]' : ', not a list of boxes'}`)
  }
  if (boxes.length !== images) throw new TypeError(`${want}, got ${plural(boxes.length, 'list')}`)
}

function jobsFor(input: unknown, boxes: DetectOptions['boxes'], crop: CropMode): { single: boolean; perImage: FaceJob[][] } {
  if (Array.isArray(input)) {
    // No images, no faces (a batch job's last, empty chunk): [] like an image with no boxes.
    const images = Array.from(input, (im: unknown, i) => checkImage(im, `images[${i}]`))
    if (boxes === undefined) return { single: false, perImage: images.map((im, i) => [chipJob(im, `images[${i}]`)]) }
    checkBoxLists(boxes, images.length)
    return { single: false, perImage: images.map((im, i) => checkBoxList(boxes[i], `options.boxes[${i}]`, im, crop, `images[${i}]`)) }
  }
  const image = checkImage(input, 'image')
  if (boxes === undefined) return { single: true, perImage: [[chipJob(image, 'image')]] }
  return { single: true, perImage: [checkBoxList(boxes, 'options.boxes', image, crop, 'image')] }
}
