// The TensorRT backend's load options, checked on every machine (CPU-only ones included) so a
// mistake shows at once, not the day the code first meets a GPU.
import { describeValue } from './describe'
import { checkSignal } from './engine-cache/abort'
import type { EngineProgress, LoadOptions, Precision } from './types'

export const PRECISIONS: readonly Precision[] = ['fp16', 'bf16', 'fp32']
/** maxBatch's default on TensorRT (also the engine profile's kMAX). */
export const TENSORRT_MAX_BATCH = 64
/**
 * maxBatch's default on the CPU. A larger batch is not faster per face there (README's benchmark,
 * bare session.run: 13.6 faces/s at batch 1, 13.3 at 8, 12.7 at 32 on 2 cores) and ONNX Runtime keeps memory for
 * the largest it ran (peak RSS 626 MiB at batch 1, 1318 MiB at 16): 8 bounds both memory and a
 * request's wait behind a batch, and leaves machines with many cores some batching.
 */
export const CPU_MAX_BATCH = 8
/** The most CPU inference threads (workers), and intra-op threads per worker. */
export const MAX_WORKERS = 64
export const MAX_THREADS = 256
/** The most faces in one batch on any backend. */
export const MAX_BATCH_LIMIT = 4096

export interface GpuOptions {
  precision: Precision
  minBatch: number
  optBatch: number
  /** The profile's kMAX: options.maxBatch, else TENSORRT_MAX_BATCH. */
  maxBatch: number
  streams: number
  engineDir?: string
  builderOptimizationLevel: number
  /** undefined: TensorRT's default. */
  workspaceMiB?: number
  cudaGraphs: boolean
  onProgress?: (event: EngineProgress) => void
  signal?: AbortSignal
}

/** An integer option in [min, max]: TypeError when not a number, RangeError when out of range or fractional. */
export function intOption(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number') throw new TypeError(`options.${name} must be an integer from ${min} to ${max}, got ${describeValue(value)}`)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`options.${name} must be an integer from ${min} to ${max}, got ${describeValue(value)}`)
  }
  return value
}

/**
 * Checks options.precision, minBatch, optBatch, maxBatch (against the batch limits), streams,
 * engineDir, builderOptimizationLevel, workspaceMiB, cudaGraphs, onProgress and signal, and fills
 * defaults.
 * Each wrong value is a TypeError (wrong type) or RangeError (out of range) naming options.<name>.
 */
export function gpuOptions(options: LoadOptions): GpuOptions {
  const o = options as unknown as Record<string, unknown>
  const precision = o.precision === undefined ? 'fp16' : o.precision  // null is a mistake, as for the other options
  if (!PRECISIONS.includes(precision as Precision)) {
    throw new TypeError(`options.precision must be one of ${PRECISIONS.join(', ')}, got ${describeValue(o.precision)}`)
  }
  const maxBatch = intOption(o.maxBatch, 'maxBatch', TENSORRT_MAX_BATCH, 1, MAX_BATCH_LIMIT)
  const minBatch = intOption(o.minBatch, 'minBatch', 1, 1, MAX_BATCH_LIMIT)
  const maxNote = o.maxBatch === undefined ? ', the TensorRT default' : ''
  if (minBatch > maxBatch) {
    throw new RangeError(`options.minBatch (${minBatch}) must not exceed options.maxBatch (${maxBatch}${maxNote}): minBatch <= optBatch <= maxBatch`)
  }
  // optBatch's default (8) moves into [minBatch, maxBatch]: maxBatch: 4 or minBatch: 16 alone stay valid.
  const optBatch = intOption(o.optBatch, 'optBatch', Math.min(Math.max(8, minBatch), maxBatch), 1, MAX_BATCH_LIMIT)
  if (minBatch > optBatch) {
    throw new RangeError(`options.minBatch (${minBatch}) must not exceed options.optBatch (${optBatch}): minBatch <= optBatch <= maxBatch`)
  }
  if (optBatch > maxBatch) {
    throw new RangeError(`options.optBatch (${optBatch}) must not exceed options.maxBatch (${maxBatch}${maxNote}): minBatch <= optBatch <= maxBatch`)
  }
  const streams = intOption(o.streams, 'streams', 2, 1, 16)
  if (o.engineDir !== undefined && (typeof o.engineDir !== 'string' || o.engineDir === '')) {
    throw new TypeError(`options.engineDir must be the path of a folder (a non-empty string), got ${describeValue(o.engineDir)}`)
  }
  const builderOptimizationLevel = intOption(o.builderOptimizationLevel, 'builderOptimizationLevel', 3, 0, 5)
  const workspaceMiB = o.workspaceMiB === undefined ? undefined : intOption(o.workspaceMiB, 'workspaceMiB', 0, 1, 1 << 22)
  if (o.cudaGraphs !== undefined && typeof o.cudaGraphs !== 'boolean') {
    throw new TypeError(`options.cudaGraphs must be true or false, got ${describeValue(o.cudaGraphs)}`)
  }
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') {
    throw new TypeError(`options.onProgress must be a function (event) => void, got ${describeValue(o.onProgress)}`)
  }
  const signal = checkSignal(o.signal, 'options.signal')
  return {
    precision: precision as Precision,
    minBatch,
    optBatch,
    maxBatch,
    streams,
    engineDir: o.engineDir as string | undefined,
    builderOptimizationLevel,
    workspaceMiB,
    cudaGraphs: (o.cudaGraphs as boolean | undefined) ?? true,
    onProgress: o.onProgress as GpuOptions['onProgress'],
    signal,
  }
}
