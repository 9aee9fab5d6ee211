// TensorRT-backend benchmark (`npm run bench -- --backend tensorrt --model <onnx>`), for machines
// with an NVIDIA GPU and TensorRT: batch-1 latency (p50/p99) from a pinned 1920x1080 frame to a
// resolved promise, throughput at batch 1, 8, 32, 64 and 128 with the pipeline kept full, and the
// same ONNX file (the one the engine is built from) through onnxruntime-node's TensorRT and CUDA
// execution providers when they are installed (inputs preprocessed by this package on the CPU,
// outside the timing), as ratios.
import { performance } from 'node:perf_hooks'
import * as ort from 'onnxruntime-node'
import { tensorrtAvailability } from '../lib/availability'
import { engineOnnx } from '../lib/backends/engine-onnx'
import { disableOnnxRuntimeTelemetry } from '../lib/backends/onnxruntime-telemetry'
import { FaceMultitask } from '../lib/face-multitask'
import { facesToRun } from '../lib/image-input'
import { loadNative, nativeModes } from '../lib/native'
import type { Box, GpuStages } from '../lib/types'
import { makeBoxes, makeFrame } from './bench'

const BATCHES = [1, 8, 32, 64, 128]
const GOALS = { latencyMs: 1.5, facesPerSecond128: 8000, vsOrtTensorrt: 1.5 }

export const TENSORRT_USAGE = `usage: npm run bench -- --backend tensorrt --model <onnx> [--seconds N] [--streams N] [--json]

Batch-1 latency p50/p99 (pinned 1920x1080 frame -> resolved promise), faces/s at batch
${BATCHES.join(', ')}, and onnxruntime-node's TensorRT / CUDA execution providers on the ONNX file the
engine is built from (the .fp16.onnx beside an FP32 model) when installed. Goals on an H100-class GPU: <= ${GOALS.latencyMs} ms batch-1 end to end, >= ${GOALS.facesPerSecond128} faces/s at
batch 128, >= ${GOALS.vsOrtTensorrt}x onnxruntime-node's TensorRT provider.`

interface Row {
  batch: number
  facesPerSecond: number
  ortTensorrt?: number
  ortCuda?: number
}

/** Per-face GPU stage times over every batch run (CUDA events on each stream). */
function stageLine(s: GpuStages | undefined): string {
  if (!s || s.faces === 0) return 'per-stage times: none recorded'
  const per = (ms: number) => `${((ms * 1000) / s.faces).toFixed(1)} us`
  return `per face over ${s.batches} batches: upload ${per(s.uploadMs)}, preprocess ${per(s.preprocessMs)}, infer ${per(s.inferMs)}, ` +
    `download ${per(s.downloadMs)}, host staging ${per(s.hostMs)}; CUDA graphs replaying: ${s.cudaGraphs}, fallbacks: ${s.cudaGraphFallbacks}`
}

/** The nearest-rank percentile of ascending values: of 200, p50 is the 100th and p99 the 198th. */
export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]
}

/** Faces/s with `inflight` calls of `batch` faces always outstanding, for `seconds`. */
async function throughput(call: () => Promise<unknown>, batch: number, inflight: number, seconds: number): Promise<number> {
  for (let i = 0; i < 3; i++) await call()
  let faces = 0
  const end = performance.now() + seconds * 1000
  const start = performance.now()
  await Promise.all(Array.from({ length: inflight }, async () => {
    while (performance.now() < end) {
      await call()
      faces += batch
    }
  }))
  return faces / ((performance.now() - start) / 1000)
}

async function ortProvider(model: string, provider: 'tensorrt' | 'cuda'): Promise<ort.InferenceSession | string> {
  try {
    disableOnnxRuntimeTelemetry()
    return await ort.InferenceSession.create(model, { executionProviders: [provider] })
  } catch (e) {
    return `not available (${(e as Error).message.split('\n')[0]})`
  }
}

export async function benchTensorrt(opts: { model: string; seconds: number; streams: number; json: boolean }): Promise<number> {
  const trt = await tensorrtAvailability()
  if (!trt.available) {
    process.stderr.write(`bench: TensorRT is not available here: ${trt.reason}\n`)
    return 1
  }
  const log = (m: string) => process.stderr.write(`[bench] ${m}\n`)
  const model = await FaceMultitask.load({ model: opts.model, backend: 'tensorrt', maxBatch: Math.max(...BATCHES), streams: opts.streams, onProgress: (e) => { if (e.type === 'message') log(e.message) } })
  try {
    const src = makeFrame()
    const frame = model.allocFrame(src.width, src.height, 'rgb')
    frame.data.set(src.data)
    const boxes = makeBoxes(Math.max(...BATCHES))

    log('batch-1 latency')
    const one: Box[] = [boxes[0]]
    for (let i = 0; i < 50; i++) await model.detect(frame, { boxes: one })
    const times: number[] = []
    const end = performance.now() + opts.seconds * 1000
    while (performance.now() < end || times.length < 200) {
      const t = performance.now()
      await model.detect(frame, { boxes: one })
      times.push(performance.now() - t)
    }
    times.sort((a, b) => a - b)
    const p50 = percentile(times, 50)
    const p99 = percentile(times, 99)

    // The providers run the ONNX file the engine was built from (the .fp16.onnx beside an FP32
    // model, by default), so that both sides compute in the same precision.
    const built = await engineOnnx(opts.model, 'fp16', false, () => {})
    const sessions = { tensorrt: await ortProvider(built.path, 'tensorrt'), cuda: await ortProvider(built.path, 'cuda') }
    const spec = model.spec
    const rows: Row[] = []
    for (const batch of BATCHES) {
      log(`throughput at batch ${batch}`)
      const bx = boxes.slice(0, batch)
      const row: Row = { batch, facesPerSecond: await throughput(() => model.detect(frame, { boxes: bx }), batch, opts.streams + 1, opts.seconds) }
      const input = new Float32Array(batch * 3 * 224 * 224)
      const jobs = facesToRun(frame, { boxes: bx }, spec.crop).perImage.flat()
      const { crop, resize } = nativeModes(spec)
      loadNative().preprocessSync(jobs, crop, resize, input)
      const feeds = { input: new ort.Tensor('float32', input, [batch, 3, 224, 224]) }
      for (const name of ['tensorrt', 'cuda'] as const) {
        const s = sessions[name]
        if (typeof s === 'string') continue
        const rate = await throughput(() => s.run(feeds), batch, 1, opts.seconds)
        if (name === 'tensorrt') row.ortTensorrt = rate
        else row.ortCuda = rate
      }
      rows.push(row)
    }

    const info = model.info()
    const r128 = rows.find((r) => r.batch === 128)!
    const lines = [
      `face-multitask TensorRT benchmark: ${info.device}, ${info.precision}, model ${opts.model}`,
      `batch-1 latency, pinned 1920x1080 frame -> resolved promise: p50 ${p50.toFixed(3)} ms, p99 ${p99.toFixed(3)} ms (${times.length} calls)`,
      '',
      '| batch | faces/s | ORT TensorRT EP faces/s | ratio | ORT CUDA EP faces/s | ratio |',
      '|---|---|---|---|---|---|',
      ...rows.map((r) => `| ${r.batch} | ${r.facesPerSecond.toFixed(0)} | ${r.ortTensorrt?.toFixed(0) ?? '-'} | ${r.ortTensorrt ? (r.facesPerSecond / r.ortTensorrt).toFixed(2) + 'x' : '-'} | ${r.ortCuda?.toFixed(0) ?? '-'} | ${r.ortCuda ? (r.facesPerSecond / r.ortCuda).toFixed(2) + 'x' : '-'} |`),
      '',
      `ORT execution providers' model: ${built.path} (${built.precision}, the ONNX the engine was built from)`,
      `ORT TensorRT EP: ${typeof sessions.tensorrt === 'string' ? sessions.tensorrt : 'measured (its inputs preprocessed outside the timing)'}`,
      `ORT CUDA EP: ${typeof sessions.cuda === 'string' ? sessions.cuda : 'measured (its inputs preprocessed outside the timing)'}`,
      `goals (H100-class GPU): batch-1 <= ${GOALS.latencyMs} ms: ${p50 <= GOALS.latencyMs ? 'met' : 'NOT met'}; >= ${GOALS.facesPerSecond128} faces/s at 128: ${r128.facesPerSecond >= GOALS.facesPerSecond128 ? 'met' : 'NOT met'}; ` +
        `>= ${GOALS.vsOrtTensorrt}x ORT TensorRT EP at 128: ${r128.ortTensorrt ? (r128.facesPerSecond / r128.ortTensorrt >= GOALS.vsOrtTensorrt ? 'met' : 'NOT met') : 'not measured'}`,
      stageLine(info.gpuStages),
    ]
    process.stdout.write(`${lines.join('\n')}\n`)
    if (opts.json) process.stdout.write(`${JSON.stringify({ device: info.device, precision: info.precision, latency: { p50, p99, calls: times.length }, rows, stages: info.gpuStages }, null, 2)}\n`)
    return 0
  } finally {
    await model.close()
  }
}
