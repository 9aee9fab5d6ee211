// How much of batch's main thread writing its face records costs: each record written there
// (faceToJsonWith + JSON.stringify + UTF-8, as batch did before) against records handed to the
// formatter's threads (lib/cli/record-formatter.ts). One face per record, faces of the synthetic
// v2.8 model (mesh and blendshapes: the largest records). Main-thread time is the event loop's
// active time (performance.eventLoopUtilization) over the run, per face.
//
//   npm run bench:records [-- --faces N]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { faceToJsonWith } from '../lib/cli/format'
import { formatThreads, RecordFormatter } from '../lib/cli/record-formatter'
import { jsonLine } from '../lib/cli/result-log'
import { FaceMultitask } from '../lib/face-multitask'
import type { Box, Face } from '../lib/types'
import { makeFixtureModel } from './make-fixture'

/** Records in flight at once, as batch's default --concurrency. */
const IN_FLIGHT = 32

async function syntheticFaces(count: number): Promise<Face[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'fm-bench-records-'))
  try {
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
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

interface Row { how: string; mainUs: number; facesPerS: number }

function onMainThread(faces: Face[], mesh: boolean): Row {
  const elu = performance.eventLoopUtilization()
  const t0 = performance.now()
  let bytes = 0
  faces.forEach((f, i) => { bytes += jsonLine({ line: i + 1, image: 'a.jpg', faces: [faceToJsonWith(f, { mesh })] }).length })
  const ms = performance.now() - t0
  const active = performance.eventLoopUtilization(elu).active
  if (bytes === 0) throw new Error('nothing written')
  return { how: 'main thread', mainUs: (1000 * Math.max(active, ms)) / faces.length, facesPerS: (1000 * faces.length) / ms }
}

async function onThreads(faces: Face[], mesh: boolean, threads: number): Promise<Row> {
  const formatter = new RecordFormatter(threads, mesh)
  try {
    await formatter.format({ line: 0, image: 'warm-up', faces: [] })
    const elu = performance.eventLoopUtilization()
    const t0 = performance.now()
    let next = 0
    const lane = async () => {
      while (next < faces.length) {
        const i = next++
        await formatter.format({ line: i + 1, image: 'a.jpg', faces: [faces[i]] })
      }
    }
    await Promise.all(Array.from({ length: IN_FLIGHT }, lane))
    const ms = performance.now() - t0
    const active = performance.eventLoopUtilization(elu).active
    return { how: `${threads} thread${threads > 1 ? 's' : ''}`, mainUs: (1000 * active) / faces.length, facesPerS: (1000 * faces.length) / ms }
  } finally {
    await formatter.close()
  }
}

const USAGE = `usage: npm run bench:records [-- --faces N]

What batch's main thread spends writing a face's record: written there, against handed to the
formatting threads (1, and as many as batch runs on this machine). --faces: how many records of
one face (default 3000, at least 100). Prints a table.`

async function main(): Promise<void> {
  const args = process.argv.slice(2)
  if (args.includes('--help') || args.includes('-h')) {
    console.log(USAGE)
    return
  }
  const known = args.length === 0 || (args.length === 2 && args[0] === '--faces')
  if (!known) throw new Error(`unknown arguments: ${args.join(' ')}\n${USAGE}`)
  const count = args.length === 2 ? Number(args[1]) : 3000
  if (!/^\d+$/.test(args[1] ?? '3000') || count < 100) throw new Error(`--faces: an integer of at least 100, got "${args[1]}"`)
  process.stderr.write(`bench-records: making ${count} faces with the synthetic v2.8 model\n`)
  const faces = await syntheticFaces(count)
  const threadCounts = [...new Set([1, formatThreads()])]
  console.log(`${os.cpus()[0]?.model ?? 'cpu'}, ${os.availableParallelism()} cores; ${count} records of one face each`)
  console.log('| mesh | written on | main thread us/face | vs main thread | faces/s |')
  console.log('|---|---|---|---|---|')
  for (const mesh of [true, false]) {
    // Each run takes copies: the formatter's threads take the faces' buffers.
    const base = onMainThread(faces.map((f) => structuredClone(f)), mesh)
    const rows = [base]
    for (const t of threadCounts) rows.push(await onThreads(faces.map((f) => structuredClone(f)), mesh, t))
    for (const r of rows) {
      console.log(`| ${mesh ? 'yes' : 'no'} | ${r.how} | ${r.mainUs.toFixed(0)} | ${(r.mainUs / base.mainUs).toFixed(2)}x | ${r.facesPerS.toFixed(0)} |`)
    }
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench-records: ${e instanceof Error ? e.message : String(e)}\n`)
  process.exitCode = 1
})
