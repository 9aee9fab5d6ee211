// batch's threads: each image they read must be what the CLI's readImage gives on the main thread
// (pixels, or the same error of the same kind), and each record's line the one the main thread
// would write, whichever thread did it and in whatever order they come back.
import { createHash } from 'node:crypto'
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import fsp from 'node:fs/promises'
import path from 'node:path'
import sharp from 'sharp'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import type { FacesRecord } from '../lib/cli/batch-worker'
import { batchThreads, BatchThreads, ON_THREADS_UP_TO } from '../lib/cli/batch-threads'
import { CliError } from '../lib/cli/common'
import { faceToJsonWith } from '../lib/cli/format'
import { readImage } from '../lib/cli/image'
import { isPassingFileError } from '../lib/describe'
import type { DecodedImage } from '../lib/read-image'
import { FaceMultitask } from '../lib/face-multitask'
import type { Box, Face } from '../lib/types'
import { makeFixtureModel } from '../scripts/make-fixture'
import { tempDir } from './helpers/temp-dir'

// Threads that cannot start (a thread limit, out of memory): the constructor of the Worker that
// starts threads refuses once `refuseAfter` of them have started. `preload`: a file each thread
// loads first (--require), to fail the system's calls there.
const starting = vi.hoisted(() => ({ refuseAfter: Infinity, started: 0, preload: undefined as string | undefined, last: undefined as unknown }))
vi.mock('node:worker_threads', async (original) => {
  const real = await original<typeof import('node:worker_threads')>()
  class Worker extends real.Worker {
    constructor(file: ConstructorParameters<typeof real.Worker>[0], options: ConstructorParameters<typeof real.Worker>[1] = {}) {
      if (starting.started >= starting.refuseAfter) throw new Error('ERR_WORKER_INIT_FAILED: pthread_create: Resource temporarily unavailable')
      super(file, starting.preload ? { ...options, execArgv: ['--require', starting.preload] } : options)
      starting.started++
      starting.last = this
    }
  }
  return { ...real, Worker }
})

const dir = tempDir('batch-threads')

/** `count` threads that each load `preload` first. */
function threadsLoading(preload: string, count: number): BatchThreads {
  starting.preload = preload
  try {
    return new BatchThreads(count, true)
  } finally {
    starting.preload = undefined
  }
}
const threads = () => readdirSync('/proc/self/task').length
/**
 * The process's thread count once it holds still for 100 ms: earlier tests' threads (and V8's own)
 * may still be ending, and one ending after the count was taken made it look as if the threads
 * under test had ended twice over. At the end a test asks for at most this many.
 */
async function settledThreads(): Promise<number> {
  let last = threads()
  for (let k = 0; k < 50; k++) {
    await new Promise((r) => setTimeout(r, 100))
    const now = threads()
    if (now === last) return now
    last = now
  }
  return last
}

/** Faces of a synthetic model of `generation` (v2.8 has blendshapes), `count` boxes over one random frame. */
async function facesOf(generation: 'v2.5' | 'v2.8', count: number): Promise<Face[]> {
  const model = path.join(dir, `${generation}.onnx`)
  writeFileSync(model, makeFixtureModel({ generation }))
  const m = await FaceMultitask.load({ model, backend: 'cpu' })
  try {
    const data = new Uint8Array(320 * 240 * 3).map((_, i) => (i * 2654435761) >>> 24)
    const boxes: Box[] = Array.from({ length: count }, (_, i) => [i % 200, (i * 7) % 120, 100 + (i % 200), 100 + ((i * 7) % 120)])
    return await m.detect({ data, width: 320, height: 240 }, { boxes })
  } finally {
    await m.close()
  }
}

/** The line the main thread wrote before records went to threads. */
function mainThreadLine(record: FacesRecord, mesh: boolean): string {
  return `${JSON.stringify({ ...record, faces: record.faces.map((f) => faceToJsonWith(f, { mesh })) })}\n`
}

let faces: Face[]
beforeAll(async () => {
  faces = [...(await facesOf('v2.5', 24)), ...(await facesOf('v2.8', 24))]
}, 60_000)

/** An image with its pixels by their hash: toEqual compares buffers element by element, for seconds. */
const digest = ({ data, ...rest }: DecodedImage) => ({ ...rest, buffer: Buffer.isBuffer(data), bytes: data.length, sha256: createHash('sha256').update(data).digest('hex') })

describe('BatchThreads: images', () => {
  const images = path.join(dir, 'images')
  const noise = (w: number, h: number, c: number) => Buffer.alloc(w * h * c).map((_, i) => (i * 2654435761) >>> 24)
  beforeAll(async () => {
    mkdirSync(images, { recursive: true })
    const raw = (w: number, h: number, c: 1 | 3 | 4) => sharp(noise(w, h, c), { raw: { width: w, height: h, channels: c } })
    await raw(320, 240, 3).jpeg().toFile(path.join(images, 'rgb.jpg'))
    await raw(256, 200, 3).png().toFile(path.join(images, 'mid.png'))
    await raw(64, 48, 1).png().toFile(path.join(images, 'grey.png'))
    await raw(50, 40, 4).png().toFile(path.join(images, 'rgba.png'))
    await raw(33, 17, 3).toColourspace('rgb16').png().toFile(path.join(images, '16-bit.png'))
    await raw(40, 30, 3).png({ palette: true }).toFile(path.join(images, 'palette.png'))
    await raw(40, 30, 3).gif().toFile(path.join(images, 'frame.gif'))
    await raw(30, 20, 3).webp({ lossless: true }).toFile(path.join(images, 'lossless.webp'))
    writeFileSync(path.join(images, 'text.jpg'), 'not an image\n')
    writeFileSync(path.join(images, 'empty.png'), '')
    mkdirSync(path.join(images, 'folder.png'), { recursive: true })
  })

  it('reads each image as the CLI\'s readImage does on this thread, pixels and all, over three threads at once', async () => {
    const names = ['rgb.jpg', 'grey.png', 'rgba.png', '16-bit.png', 'palette.png', 'frame.gif', 'lossless.webp']
    const files = Array.from({ length: 42 }, (_, i) => path.join(images, names[i % names.length]))
    const want = await Promise.all(files.map((f) => readImage(f)))
    const threads = new BatchThreads(3, true)
    try {
      const got = await Promise.all(files.map((f) => threads.readImage(f)))
      expect(got.map(digest)).toEqual(want.map(digest))
      expect(want.every((w) => Buffer.isBuffer(w.data))).toBe(true)
    } finally {
      await threads.close()
    }
  })

  it('recycle(): an image\'s buffer handed back is reused by a thread for a later image it fits, up to twice that image\'s size, whose pixels are still the main thread\'s', async () => {
    const names = ['rgb.jpg', 'mid.png', 'grey.png', 'rgba.png', '16-bit.png', 'palette.png', 'frame.gif', 'lossless.webp']
    const want = new Map(await Promise.all(names.map(async (n) => [n, digest(await readImage(path.join(images, n)))] as const)))
    const read = async (threads: BatchThreads, n: string) => {
      const image = await threads.readImage(path.join(images, n))
      expect([n, digest(image)]).toEqual([n, want.get(n)])
      return image
    }
    const threads = new BatchThreads(1, true)
    try {
      // The 320x240 JPEG's buffer (230,400 bytes) back: the 256x200 PNG (153,600) is copied into it.
      const big = await read(threads, 'rgb.jpg')
      const buffer = big.data.buffer
      threads.recycle(big)
      const mid = await read(threads, 'mid.png')
      expect([mid.data.buffer.byteLength, mid.data.length, buffer.byteLength]).toEqual([230_400, 153_600, 0]) // moved to the thread
      // Not the 64x48 grey PNG (9,216 bytes as RGB): a buffer 25 times its size is left alone.
      threads.recycle(mid)
      expect((await read(threads, 'grey.png')).data.buffer.byteLength).toBe(9_216)
      // Every kind, each read after the one before was handed back.
      for (const n of [...names, ...names]) threads.recycle(await read(threads, n))
    } finally {
      await threads.close()
    }
    // A buffer too small for the next image is not used for it: it stays with the thread and
    // takes the one after, which it fits.
    const fresh = new BatchThreads(1, true)
    try {
      fresh.recycle(await read(fresh, 'palette.png'))
      const a = await read(fresh, 'rgb.jpg')
      const b = await read(fresh, 'lossless.webp')
      expect([a.data.buffer.byteLength, b.data.buffer.byteLength, b.data.length]).toEqual([230_400, 40 * 30 * 3, 30 * 20 * 3])
    } finally {
      await fresh.close()
    }
  })

  it('recycle() keeps a buffer over 4 MiB (a large flat image from a small file) out of reuse: the main thread keeps it', async () => {
    const flat = path.join(images, 'flat.png')
    await sharp({ create: { width: 1300, height: 1100, channels: 3, background: { r: 9, g: 99, b: 199 } } }).png().toFile(flat)
    expect(statSync(flat).size).toBeLessThan(ON_THREADS_UP_TO)
    const threads = new BatchThreads(1, true)
    try {
      const large = await threads.readImage(flat)
      threads.recycle(large)
      await threads.readImage(path.join(images, 'palette.png'))
      expect(large.data.buffer.byteLength).toBe(1300 * 1100 * 3) // not sent back to the thread
    } finally {
      await threads.close()
    }
  })

  it('recycle() keeps an image read on this thread (over onThreadsUpTo) as it is: its buffer is not the threads\' to reuse', async () => {
    const threads = new BatchThreads(1, true, { onThreadsUpTo: 10_000 })
    try {
      const here = await threads.readImage(path.join(images, 'rgb.jpg'))
      const before = digest(here)
      threads.recycle(here)
      const next = await threads.readImage(path.join(images, 'palette.png'))
      expect([digest(here), here.data.length]).toEqual([before, 230_400])
      expect(next.data.buffer.byteLength).toBe(40 * 30 * 3)
    } finally {
      await threads.close()
    }
  })

  it('an image that cannot be read is refused with the words and the kind (the line\'s error) the main thread gives', async () => {
    const files = ['missing.jpg', 'text.jpg', 'empty.png', 'folder.png'].map((f) => path.join(images, f))
    const want = await Promise.all(files.map((f) => readImage(f).then(() => 'read', (e: unknown) => e)))
    expect(want.every((e) => e instanceof CliError)).toBe(true)
    const threads = new BatchThreads(2, true)
    try {
      const got = await Promise.all(files.map((f) => threads.readImage(f).then(() => 'read', (e: unknown) => e)))
      expect(got.map((e) => [e instanceof CliError, (e as Error).message])).toEqual(want.map((e) => [true, (e as Error).message]))
    } finally {
      await threads.close()
    }
  })

  it('a file over onThreadsUpTo bytes is read on this thread, a smaller one on the threads', async () => {
    const large = path.join(images, 'rgb.jpg')
    const small = path.join(images, 'palette.png')
    expect([statSync(large).size > 10_000, statSync(small).size <= 10_000]).toEqual([true, true])
    const threads = new BatchThreads(1, true, { onThreadsUpTo: 10_000 })
    // Reading fails on this thread only: which file meets the failure says where it was read.
    const spy = vi.spyOn(fsp, 'readFile').mockImplementation(() => Promise.reject(Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' })))
    try {
      const [got, gotSmall] = await Promise.all([threads.readImage(large).catch((e: unknown) => e), threads.readImage(small)])
      expect((got as NodeJS.ErrnoException).code).toBe('EIO')
      expect([gotSmall.width, gotSmall.height]).toEqual([40, 30])
    } finally {
      spy.mockRestore()
      await threads.close()
    }
  })

  it('a sharp that cannot load fails the threads at once, with its words: no image is refused as unreadable for it', async () => {
    const threads = threadsLoading(path.join(__dirname, 'helpers', 'sharp-missing.js'), 2)
    try {
      const got = await threads.readImage(path.join(images, 'rgb.jpg')).catch((e: unknown) => e)
      expect([got instanceof CliError, (got as Error).message]).toEqual([false, 'batch\'s thread reading images and writing results failed: Could not load the "sharp" module using the linux-x64 runtime'])
    } finally {
      await threads.close()
    }
  })

  it.each(['EMFILE', 'EIO'])('an error of the system reading an image (%s) keeps its code, so batch stops rather than record it', async (code) => {
    // The same failure on this thread (a spy) and in the threads (a file they load first).
    const failing = (file: unknown) => Object.assign(new Error(`${code}: the system failed, open '${String(file)}'`), { code })
    const spy = vi.spyOn(fsp, 'readFile').mockImplementation((file) => Promise.reject(failing(file)))
    const file = path.join(images, 'rgb.jpg')
    let want: unknown
    try {
      want = await readImage(file).catch((e: unknown) => e)
    } finally {
      spy.mockRestore()
    }
    expect(isPassingFileError(want)).toBe(true)
    const preload = path.join(dir, `fail-${code}.cjs`)
    writeFileSync(preload, `const fsp = require('node:fs/promises')
fsp.readFile = (file) => Promise.reject(Object.assign(new Error(\`${code}: the system failed, open '\${file}'\`), { code: '${code}' }))
`)
    const threads = threadsLoading(preload, 1)
    try {
      const got = await threads.readImage(file).catch((e: unknown) => e)
      expect([got instanceof CliError, (got as Error).message, (got as NodeJS.ErrnoException).code]).toEqual([false, (want as Error).message, code])
      expect(isPassingFileError(got)).toBe(true)
    } finally {
      await threads.close()
    }
  })
})

describe('BatchThreads: records', () => {
  for (const mesh of [true, false]) {
    it(`gives each record its own line, as the main thread wrote it (${mesh ? 'with' : 'without'} the mesh), over three threads at once`, async () => {
      const formatter = new BatchThreads(3, mesh)
      try {
        // 60 records of 0 to 4 faces each, ids of both kinds, sent before any comes back.
        const records: FacesRecord[] = Array.from({ length: 60 }, (_, i) => ({
          line: i + 1,
          ...(i % 3 === 0 ? { id: `id-${i}` } : i % 3 === 1 ? { id: i * 10 } : {}),
          image: `img/${i}.jpg`,
          faces: Array.from({ length: i % 5 }, (_, k) => structuredClone(faces[(i * 5 + k) % faces.length])),
        }))
        const want = records.map((r) => mainThreadLine(r, mesh))
        const got = await Promise.all(records.map((r) => formatter.format(r)))
        expect(got.map((b) => Buffer.from(b).toString('utf8'))).toEqual(want)
        // Sent, not copied: the faces' buffers went with them.
        expect(records[1].faces[0].mesh.length).toBe(0)
      } finally {
        await formatter.close()
      }
    })
  }

  it('a record whose arrays were already sent elsewhere is refused, not left waiting (Node drops such a message silently); the threads go on', async () => {
    const formatter = new BatchThreads(1, true)
    try {
      const face = structuredClone(faces[0])
      const first = await formatter.format({ line: 1, image: 'a.jpg', faces: [face] })
      expect(Buffer.from(first).toString('utf8')).toBe(mainThreadLine({ line: 1, image: 'a.jpg', faces: [structuredClone(faces[0])] }, true))
      await expect(formatter.format({ line: 2, image: 'a.jpg', faces: [face] })).rejects.toThrow("request 1 to batch's threads: a buffer to transfer is detached (already sent elsewhere)")
      const third = await formatter.format({ line: 3, image: 'a.jpg', faces: [structuredClone(faces[0])] })
      expect(Buffer.from(third).toString('utf8')).toBe(mainThreadLine({ line: 3, image: 'a.jpg', faces: [structuredClone(faces[0])] }, true))
    } finally {
      await formatter.close()
    }
  })

  it('a thread that fails rejects the requests waiting and every one after, with why; close() still ends the threads', async () => {
    const base = await settledThreads()
    const failing = path.join(dir, 'failing-worker.js')
    writeFileSync(failing, "require('node:worker_threads').parentPort.on('message', () => { throw new Error('out of luck') })")
    const formatter = new BatchThreads(2, true, { file: failing })
    expect(threads()).toBeGreaterThanOrEqual(base + 2)
    const record = (line: number): FacesRecord => ({ line, image: 'a.jpg', faces: [structuredClone(faces[0])] })
    const waiting = await Promise.allSettled([formatter.format(record(1)), formatter.format(record(2))])
    expect(waiting.map((r) => r.status === 'rejected' && (r.reason as Error).message)).toEqual(Array(2).fill("batch's thread reading images and writing results failed: out of luck"))
    await expect(formatter.format(record(3))).rejects.toThrow("batch's thread reading images and writing results failed: out of luck")
    await expect(formatter.readImage(path.join(dir, 'a.jpg'))).rejects.toThrow("batch's thread reading images and writing results failed: out of luck")
    await formatter.close()
    for (let k = 0; k < 50 && threads() > base; k++) await new Promise((r) => setTimeout(r, 20))
    expect(threads()).toBeLessThanOrEqual(base)
  })

  it('a reply that cannot be read (messageerror) rejects the requests waiting and every one after', async () => {
    const silent = path.join(dir, 'silent-worker.js')
    writeFileSync(silent, "require('node:worker_threads').parentPort.on('message', () => {})")
    const formatter = new BatchThreads(1, true, { file: silent })
    const waiting = formatter.format({ line: 1, image: 'a.jpg', faces: [structuredClone(faces[0])] })
    // Node emits it where deserializing failed; no message of batch's can be made to fail so.
    ;(starting.last as import('node:worker_threads').Worker).emit('messageerror', new Error('Unable to deserialize cloned data.'))
    const why = "a reply from batch's thread could not be read: Unable to deserialize cloned data."
    await expect(waiting).rejects.toThrow(why)
    await expect(formatter.readImage(path.join(dir, 'a.jpg'))).rejects.toThrow(why)
    await formatter.close()
  })

  it('a thread that cannot start refuses them all, and the threads started before it end', async () => {
    const base = await settledThreads()
    starting.started = 0
    starting.refuseAfter = 2
    try {
      expect(() => new BatchThreads(3, true)).toThrow('ERR_WORKER_INIT_FAILED: pthread_create: Resource temporarily unavailable')
    } finally {
      starting.refuseAfter = Infinity
    }
    expect(starting.started).toBe(2)
    for (let k = 0; k < 100 && threads() > base; k++) await new Promise((r) => setTimeout(r, 20))
    expect(threads()).toBeLessThanOrEqual(base)
  })

  it('close() rejects a record still being written and ends the threads', async () => {
    const base = await settledThreads()
    const formatter = new BatchThreads(1, true)
    const pending = expect(formatter.format({ line: 1, image: 'a.jpg', faces: faces.slice(0, 8).map((f) => structuredClone(f)) })).rejects.toThrow("batch's threads are closed")
    await formatter.close()
    await pending
    for (let k = 0; k < 50 && threads() > base; k++) await new Promise((r) => setTimeout(r, 20))
    expect(threads()).toBeLessThanOrEqual(base)
  })
})

it('one thread per 4 cores, at least 1 and at most 4', () => {
  expect([1, 2, 4, 7, 8, 16, 64].map((cores) => batchThreads(cores))).toEqual([1, 1, 1, 1, 2, 4, 4])
})

