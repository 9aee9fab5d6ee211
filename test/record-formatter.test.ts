// batch's face records written on worker threads: each record's line must be the one the main
// thread would write, whichever thread wrote it and in whatever order they come back.
import { readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import { faceToJsonWith } from '../lib/cli/format'
import type { FacesRecord } from '../lib/cli/record-format-worker'
import { formatThreads, RecordFormatter } from '../lib/cli/record-formatter'
import { FaceMultitask } from '../lib/face-multitask'
import type { Box, Face } from '../lib/types'
import { makeFixtureModel } from '../scripts/make-fixture'
import { tempDir } from './helpers/temp-dir'

// Threads that cannot start (a thread limit, out of memory): the constructor of the Worker that
// starts threads refuses once `refuseAfter` of them have started.
const starting = vi.hoisted(() => ({ refuseAfter: Infinity, started: 0 }))
vi.mock('node:worker_threads', async (original) => {
  const real = await original<typeof import('node:worker_threads')>()
  class Worker extends real.Worker {
    constructor(...args: ConstructorParameters<typeof real.Worker>) {
      if (starting.started >= starting.refuseAfter) throw new Error('ERR_WORKER_INIT_FAILED: pthread_create: Resource temporarily unavailable')
      super(...args)
      starting.started++
    }
  }
  return { ...real, Worker }
})

const dir = tempDir('record-formatter')
const threads = () => readdirSync('/proc/self/task').length

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

describe('RecordFormatter', () => {
  for (const mesh of [true, false]) {
    it(`gives each record its own line, as the main thread wrote it (${mesh ? 'with' : 'without'} the mesh), over three threads at once`, async () => {
      const formatter = new RecordFormatter(3, mesh)
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

  it('a thread that fails rejects the records waiting and every one after, with why; close() still ends the threads', async () => {
    const base = threads()
    const failing = path.join(dir, 'failing-worker.js')
    writeFileSync(failing, "require('node:worker_threads').parentPort.on('message', () => { throw new Error('out of luck') })")
    const formatter = new RecordFormatter(2, true, failing)
    expect(threads()).toBeGreaterThanOrEqual(base + 2)
    const record = (line: number): FacesRecord => ({ line, image: 'a.jpg', faces: [structuredClone(faces[0])] })
    const waiting = await Promise.allSettled([formatter.format(record(1)), formatter.format(record(2))])
    expect(waiting.map((r) => r.status === 'rejected' && (r.reason as Error).message)).toEqual(Array(2).fill("the thread writing the results' JSON failed: out of luck"))
    await expect(formatter.format(record(3))).rejects.toThrow("the thread writing the results' JSON failed: out of luck")
    await formatter.close()
    for (let k = 0; k < 50 && threads() > base; k++) await new Promise((r) => setTimeout(r, 20))
    expect(threads()).toBe(base)
  })

  it('a thread that cannot start refuses the writer, and the threads started before it end', async () => {
    const base = threads()
    starting.started = 0
    starting.refuseAfter = 2
    try {
      expect(() => new RecordFormatter(3, true)).toThrow('ERR_WORKER_INIT_FAILED: pthread_create: Resource temporarily unavailable')
    } finally {
      starting.refuseAfter = Infinity
    }
    expect(starting.started).toBe(2)
    for (let k = 0; k < 100 && threads() > base; k++) await new Promise((r) => setTimeout(r, 20))
    expect(threads()).toBe(base)
  })

  it('close() rejects a record still being written and ends the threads', async () => {
    const base = threads()
    const formatter = new RecordFormatter(1, true)
    const pending = expect(formatter.format({ line: 1, image: 'a.jpg', faces: faces.slice(0, 8).map((f) => structuredClone(f)) })).rejects.toThrow('the results writer is closed')
    await formatter.close()
    await pending
    for (let k = 0; k < 50 && threads() > base; k++) await new Promise((r) => setTimeout(r, 20))
    expect(threads()).toBe(base)
  })
})

it('one formatting thread per 4 cores, at least 1 and at most 4', () => {
  expect([1, 2, 4, 7, 8, 16, 64].map(formatThreads)).toEqual([1, 1, 1, 1, 2, 4, 4])
})

