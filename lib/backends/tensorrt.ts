// TensorRT backend: the engine comes from the cache (engine-cache/) or is built from the ONNX
// on a native thread with progress and cancellation; batches run in the addon's pipeline
// (native/tensorrt/pipeline.h): frames uploaded from pinned memory, one CUDA kernel launch
// preprocesses every face, enqueueV3, outputs back through a thread-safe function. Everything
// around it — scheduling, batch splitting, decoding — is shared with the CPU backend.
// NOT YET RUN ON A GPU: the JS side is tested on the CPU up to the addon's calls.
import path from 'node:path'
import type { TensorRtStatus } from '../availability'
import type { ModelSpec } from '../contract'
import type { BatchOutputs } from '../decode'
import { AbortError, changedSince, EngineCache, type EngineKeyParts, engineKeyParts } from '../engine-cache'
import { reasonOf } from '../engine-cache/abort'
import type { GpuOptions } from '../gpu-options'
import type { FaceJob } from '../image-input'
import { type OnnxModelInfo, readOnnxModel } from '../onnx-model'
import { hasTensorRtBackend, loadNative, nativeModes } from '../native'
import type { EngineProgress, GpuStages, Precision } from '../types'
import type { Backend } from './backend'
import { closeAtExit } from './close-at-exit'
import { checkEngineOutputs, checkSameModel, engineOnnx } from './engine-onnx'

/** The addon's TensorRT exports (native/tensorrt_binding.cc), present in builds with TensorRT headers. */
export interface NativeTensorRt {
  tensorrtBuild(
    options: { onnx: string; minBatch: number; optBatch: number; maxBatch: number; optimizationLevel: number; workspaceBytes: number; timingCache: string },
    onProgress: (event: EngineProgress) => void,
  ): { promise: Promise<{ plan: Uint8Array; messages: string[]; tensorrtVersion: string; timingCacheSaved: boolean }>; cancel(): void }
  tensorrtLoad(plan: Uint8Array, options: { streams: number; maxBatch: number; crop: 0 | 1; resize: 0 | 1; cudaGraphs: boolean }): Promise<NativeEngine>
  /** Closes every engine in place (the process's 'exit' event: close-at-exit.ts). */
  tensorrtCloseAll?(): void
}

interface NativeFrame {
  data: Uint8Array
  width: number
  height: number
  stride: number
  format: number
}

export interface NativeEngine {
  run(frames: NativeFrame[], faces: { frame: number; window: [number, number, number, number] | null }[]): Promise<BatchOutputs>
  allocFrame(bytes: number): Uint8Array
  close(): Promise<void>
  info(): { preprocessing: 'cuda' | 'cpu'; preprocessingNote: string; maxBatch: number; lost: string; tensors: { name: string; input: boolean; dtype: string; shape: number[] }[]; stages: GpuStages }
}

/** The addon's TensorRT functions, or an Error saying why there are none. */
export function nativeTensorRt(): NativeTensorRt {
  const addon = loadNative()
  if (!hasTensorRtBackend(addon)) {
    throw new Error('this build of the addon has no TensorRT backend (TensorRT headers absent at build time)')
  }
  return addon as unknown as NativeTensorRt
}

/**
 * Groups a batch's faces by frame (same bytes, same geometry) so a frame shared by several
 * faces is uploaded once.
 */
export function framesOf(faces: readonly FaceJob[]): { frames: NativeFrame[]; refs: { frame: number; window: [number, number, number, number] | null }[] } {
  const frames: NativeFrame[] = []
  const index = new Map<Uint8Array, number[]>()
  const refs = faces.map((f) => {
    const same = index.get(f.data) ?? []
    let k = same.find((i) => frames[i].width === f.width && frames[i].height === f.height && frames[i].stride === f.stride && frames[i].format === f.format)
    if (k === undefined) {
      k = frames.push({ data: f.data, width: f.width, height: f.height, stride: f.stride, format: f.format }) - 1
      same.push(k)
      index.set(f.data, same)
    }
    return { frame: k, window: f.window }
  })
  return { frames, refs }
}

export interface TensorRtLoad {
  model: string
  spec: ModelSpec
  /** The model's graph and metadata, as load() read them (not read again). */
  modelInfo?: OnnxModelInfo
  gpu: GpuOptions
  /** From the availability probe: versions and the GPU, for the engine's cache key. */
  status: TensorRtStatus & { builtFor?: string; parserVersion?: string; smCount?: number; cudaDriverVersion?: string }
  /** Whether options.precision was given (else the model's own precision is accepted). */
  precisionGiven: boolean
}

/** The engine's cache key parts for this ONNX (`info`: its parsed graph, else it is read), TensorRT, GPU and options. */
export async function keyParts(onnx: string, precision: Precision, load: TensorRtLoad, info?: OnnxModelInfo): Promise<EngineKeyParts> {
  const s = load.status
  const g = load.gpu
  return engineKeyParts({
    onnx,
    externalData: (info ?? (await readOnnxModel(onnx))).externalData,
    signal: g.signal,
    // The library's own version and build: the headers the addon was compiled against do not
    // change the plan (the addon's schema version covers the addon).
    tensorrt: { version: s.tensorrtVersion ?? 'unknown', build: `${s.tensorrtVersion ?? '?'} build ${s.tensorrtBuild || '?'}` },
    parserVersion: s.parserVersion || 'unknown',
    precision,
    profile: { minBatch: g.minBatch, optBatch: g.optBatch, maxBatch: g.maxBatch },
    builder: { optimizationLevel: g.builderOptimizationLevel, workspaceMiB: g.workspaceMiB ?? 0 },
    gpu: { name: s.gpuName ?? 'unknown GPU', computeCapability: s.computeCapability ?? '0.0', smCount: s.smCount && s.smCount > 0 ? s.smCount : 1 },
    cudaMajor: Number.parseInt(s.cudaDriverVersion ?? '0', 10) || 0,
  })
}

export class TensorRtBackend implements Backend {
  readonly name = 'tensorrt' as const

  private constructor(
    private readonly engine: NativeEngine,
    readonly device: string,
    readonly precision: string,
    readonly slots: number,
    readonly enginePath: string | undefined,  // undefined: built, but not stored (see the cache's message)
  ) {}

  static async create(load: TensorRtLoad): Promise<TensorRtBackend> {
    const trt = nativeTensorRt()
    closeAtExit(() => trt.tensorrtCloseAll?.())
    const { gpu, spec } = load
    // With onProgress, notes go there only (the CLI and bench print them); else to stderr.
    const note = gpu.onProgress && ((message: string) => gpu.onProgress?.({ type: 'message', message }))
    const onnx = await engineOnnx(load.model, gpu.precision, load.precisionGiven, note, load.modelInfo)
    await checkSameModel(load.model, spec, onnx.path, onnx.info)
    checkEngineOutputs(onnx.path, onnx.info)
    const cache = new EngineCache({ engineDir: gpu.engineDir, log: gpu.onProgress ? () => {} : undefined })
    const parts = await keyParts(onnx.path, onnx.precision, load, onnx.info)
    const build = (onProgress: (e: EngineProgress) => void, signal?: AbortSignal) => buildPlan(trt, onnx.path, parts, cache, gpu, onProgress, signal)
    const options = {
      streams: gpu.streams,
      maxBatch: gpu.maxBatch,
      ...nativeModes(spec),
      cudaGraphs: gpu.cudaGraphs,
    } as const
    let engine: NativeEngine
    for (let attempt = 0; ; attempt++) {
      const plan = await cache.getOrBuild(parts, build, { signal: gpu.signal, onProgress: gpu.onProgress })
      try {
        engine = await trt.tensorrtLoad(plan, options)
        break
      } catch (e) {
        // A plan TensorRT refuses (another build of the library, a damaged file) is rebuilt once.
        if ((e as { code?: string }).code !== 'FM_PLAN_REFUSED' || attempt > 0) throw new Error(`TensorRT could not load the engine for ${path.basename(onnx.path)}: ${(e as Error).message}`, { cause: e })
        await cache.invalidate(parts, (e as Error).message, { onProgress: gpu.onProgress, refused: plan, signal: gpu.signal })
      }
    }
    const enginePath = await cache.planFile(parts)
    // Cancelled while the plan was being loaded (seconds): the caller gets no model.
    if (gpu.signal?.aborted) {
      await engine.close()
      throw new AbortError(`loading the TensorRT engine for ${path.basename(onnx.path)} was cancelled`, { cause: reasonOf(gpu.signal) })
    }
    const info = engine.info()
    const gpuName = load.status.gpuName ?? 'GPU'
    const preprocessing = info.preprocessing === 'cuda' ? 'CUDA preprocessing' : `CPU preprocessing${info.preprocessingNote ? `: ${info.preprocessingNote}` : ''}`
    const device = `${gpuName} (TensorRT ${load.status.tensorrtVersion ?? '?'}, ${gpu.streams} stream${gpu.streams > 1 ? 's' : ''}, ${preprocessing})`
    // One batch more than there are streams: the next is queued in the addon while the GPU works.
    return new TensorRtBackend(engine, device, onnx.precision, gpu.streams + 1, enginePath)
  }

  run(faces: FaceJob[]): Promise<BatchOutputs> {
    const { frames, refs } = framesOf(faces)
    return this.engine.run(frames, refs)
  }

  stages(): GpuStages {
    return this.engine.info().stages
  }

  lost(): string {
    return this.engine.info().lost ?? ''
  }

  /** Pinned host memory the GPU copies from directly (zero-copy frames). */
  allocFrame(bytes: number): Uint8Array {
    return this.engine.allocFrame(bytes)
  }

  close(): Promise<void> {
    return this.engine.close()
  }
}

async function buildPlan(
  trt: NativeTensorRt,
  onnx: string,
  parts: EngineKeyParts,
  cache: EngineCache,
  gpu: GpuOptions,
  onProgress: (e: EngineProgress) => void,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  // A signal that fired before this point gets no 'abort' event: no build is started for it.
  if (signal?.aborted) throw new AbortError(`the engine build for ${path.basename(onnx)} was cancelled before it started`, { cause: reasonOf(signal) })
  const handle = trt.tensorrtBuild(
    {
      onnx,
      minBatch: gpu.minBatch,
      optBatch: gpu.optBatch,
      maxBatch: gpu.maxBatch,
      optimizationLevel: gpu.builderOptimizationLevel,
      workspaceBytes: (gpu.workspaceMiB ?? 0) * 1024 * 1024,
      timingCache: cache.timingCachePath(parts),
    },
    onProgress,
  )
  const cancel = () => handle.cancel()
  signal?.addEventListener('abort', cancel, { once: true })
  let plan: Uint8Array
  try {
    const result = await handle.promise
    for (const m of result.messages) onProgress({ type: 'message', message: `TensorRT: ${m}` })
    plan = result.plan
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw new AbortError(`the engine build for ${path.basename(onnx)} was cancelled`, { cause: e })
    throw new Error(`the TensorRT engine build for ${path.basename(onnx)} failed: ${(e as Error).message}`, { cause: e })
  } finally {
    signal?.removeEventListener('abort', cancel)
  }
  // TensorRT read the model again, maybe after a wait for the lock: a file rewritten since the
  // key was made (a new export to the same path) must not be stored under the old bytes' key.
  // Not under the signal: a plan finished after it fired is still kept (cache.finishAbandoned).
  const changed = await changedSince(onnx, parts)
  if (changed !== undefined) {
    throw new Error(`${changed} changed while the engine was built from ${path.basename(onnx)} (rewritten meanwhile?): the engine is not kept; load the model again`)
  }
  return plan
}
