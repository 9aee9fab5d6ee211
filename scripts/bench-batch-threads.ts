// What batch's main thread spends on a list line's two costliest parts, each done there against
// handed to batch's threads (lib/cli/batch-threads.ts): reading and decoding its image (JPEGs of
// 320x240 and 640x480, as the CLI's readImage reads them) and writing a face's record (faceToJsonWith +
// JSON.stringify + UTF-8; faces of the synthetic v2.8 model, mesh and blendshapes: the largest
// records). Main-thread time is its CPU time (Linux's /proc/thread-self/schedstat), per image or
// face; elsewhere the event loop's active time, which also counts waiting for a busy CPU.
//
//   npm run bench:batch-threads [-- --faces N] [-- --images N]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { batchThreads, BatchThreads } from '../lib/cli/batch-threads'
import { usableCores } from '../lib/cores'
import { faceToJsonWith } from '../lib/cli/format'
import { readImage } from '../lib/cli/image'
import { jsonLine } from '../lib/cli/result-log'
import { FaceMultitask } from '../lib/face-multitask'
import type { Box, Face } from '../lib/types'
import { makeFixtureModel } from './make-fixture'

/** Lines in flight at once, as batch's default --concurrency. */
const IN_FLIGHT = 32

async function syntheticFaces(dir: string, count: number): Promise<Face[]> {
  const model = path.join(dir, 'v2.8.onnx')
  writeFileSync(model, makeFixtureModel({ generation: 'v2.8' }))
  const m = await FaceMultitask.load({ model, backend: 'cpu' })
  try {
    const data = new Uint8Array(640 * 480 * 3).map((_, i) => (i * 2654435761) >>> 24)
    const faces: Face[] = []
    while (faces.length < count) {
      const k = faces.length
      const boxes: Box[] = Array.from({ length: 64 }, (_, i) => [(k + i) % 300, (i * 7) % 200, 150 + ((k + i) % 300), 160 + ((i * 7) % 200)])
      faces.push(...(await m.detect({ data, width: 640, height: 480 }, { boxes })))
    }
    return faces.slice(0, count)
  } finally {
    await m.close()
  }
}

/** The JPEGs read: patterned pixels that compress about as a photo does. */
const SIZES = [[320, 240], [640, 480]] as const

async function jpegFile(dir: string, width: number, height: number): Promise<string> {
  const sharp = (await import('sharp')).default
  const file = path.join(dir, `${width}x${height}.jpg`)
  const data = Buffer.alloc(width * height * 3).map((_, i) => (i * 31 + (i >> 9)) % 251)
  await sharp(data, { raw: { width, height, channels: 3 } }).jpeg().toFile(file)
  return file
}

interface Row { how: string; mainUs: number; perS: number }

/** The main thread's CPU time so far in ms, where Linux tells it; undefined elsewhere. */
function mainThreadCpuMs(): number | undefined {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6
  } catch {
    return undefined
  }
}

/** `count` calls of `task`, IN_FLIGHT at once: the main thread's active time per call and the calls a second. */
async function measure(how: string, count: number, task: (i: number) => unknown): Promise<Row> {
  const elu = performance.eventLoopUtilization()
  const cpu0 = mainThreadCpuMs()
  const t0 = performance.now()
  let next = 0
  const lane = async () => {
    while (next < count) await task(next++)
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane))
  const ms = performance.now() - t0
  const cpu1 = mainThreadCpuMs()
  const mainMs = cpu0 !== undefined && cpu1 !== undefined ? cpu1 - cpu0 : performance.eventLoopUtilization(elu).active
  return { how, mainUs: (1000 * mainMs) / count, perS: (1000 * count) / ms }
}

const named = (threads: number) => `${threads} thread${threads > 1 ? 's' : ''}`

async function imageRows(file: string, count: number, threadCounts: number[]): Promise<Row[]> {
  await measure('warm-up', 100, () => readImage(file))
  const rows = [await measure('main thread', count, () => readImage(file))]
  for (const t of threadCounts) {
    const threads = new BatchThreads(t, true)
    try {
      await measure('warm-up', 100, () => threads.readImage(file))
      rows.push(await measure(`${named(t)}, new buffers`, count, () => threads.readImage(file)))
      // As batch does: each image's buffer handed back once read, for the threads to reuse.
      rows.push(await measure(`${named(t)}, reused`, count, async () => threads.recycle(await threads.readImage(file))))
    } finally {
      await threads.close()
    }
  }
  return rows
}

async function recordRows(faces: Face[], mesh: boolean, threadCounts: number[]): Promise<Row[]> {
  // Each run takes copies: the threads take the faces' buffers.
  const copies = () => faces.map((f) => structuredClone(f))
  const here = copies()
  const rows = [await measure('main thread', here.length, (i) => jsonLine({ line: i + 1, image: 'a.jpg', faces: [faceToJsonWith(here[i], { mesh })] }))]
  for (const t of threadCounts) {
    const threads = new BatchThreads(t, mesh)
    try {
      await threads.format({ line: 0, image: 'warm-up', faces: [] })
      const sent = copies()
      rows.push(await measure(named(t), sent.length, (i) => threads.format({ line: i + 1, image: 'a.jpg', faces: [sent[i]] })))
    } finally {
      await threads.close()
    }
  }
  return rows
}

const USAGE = `usage: npm run bench:batch-threads [-- --faces N] [-- --images N]

What batch's main thread spends reading a list line's image and writing a face's record: done
there, against handed to batch's threads (1, and as many as batch runs on this machine).
--images: how many reads of each JPEG, 320x240 and 640x480 (default 3000), --faces: how many records of one face
(default 3000); each at least 100. Prints a table.`

function countFlag(args: string[], name: string): number {
  const i = args.indexOf(name)
  if (i < 0) return 3000
  const text = args[i + 1] ?? ''
  if (!/^\d+$/.test(text) || Number(text) < 100) throw new Error(`${name}: an integer of at least 100, got "${text}"`)
  return Number(text)
}

async function main(): Promise<void> {
  const args = process.argv.slice(2)
  if (args.includes('--help') || args.includes('-h')) {
    console.log(USAGE)
    return
  }
  const flags = args.filter((_, i) => i % 2 === 0)
  if (args.length % 2 !== 0 || flags.some((f) => f !== '--faces' && f !== '--images') || new Set(flags).size !== flags.length) {
    throw new Error(`unknown arguments: ${args.join(' ')}\n${USAGE}`)
  }
  const faceCount = countFlag(args, '--faces')
  const imageCount = countFlag(args, '--images')
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fm-bench-threads-'))
  try {
    process.stderr.write(`bench-batch-threads: making ${faceCount} faces with the synthetic v2.8 model\n`)
    const faces = await syntheticFaces(dir, faceCount)
    const threadCounts = [...new Set([1, batchThreads()])]
    const clock = mainThreadCpuMs() !== undefined ? 'its CPU time' : "the event loop's active time"
    console.log(`${os.cpus()[0]?.model ?? 'cpu'}, ${usableCores()} usable cores; ${imageCount} reads of each JPEG, ${faceCount} records of one face each; main thread: ${clock}`)
    console.log('| work | done on | main thread us each | vs main thread | each/s |')
    console.log('|---|---|---|---|---|')
    const print = (work: string, rows: Row[]) => {
      for (const r of rows) console.log(`| ${work} | ${r.how} | ${r.mainUs.toFixed(0)} | ${(r.mainUs / rows[0].mainUs).toFixed(2)}x | ${r.perS.toFixed(0)} |`)
    }
    for (const [w, h] of SIZES) print(`${w}x${h} JPEG read`, await imageRows(await jpegFile(dir, w, h), imageCount, threadCounts))
    for (const mesh of [true, false]) print(`record, ${mesh ? 'mesh' : 'no mesh'}`, await recordRows(faces, mesh, threadCounts))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench-batch-threads: ${e instanceof Error ? e.message : String(e)}\n`)
  process.exitCode = 1
})
