// Load the model (what detect, demo and batch share), run one image's faces, close the model.
import { performance } from 'node:perf_hooks'
import { HEADERS_ABSENT } from '../availability'
import { BACKENDS, FaceMultitask } from '../face-multitask'
import { facesToRun } from '../image-input'
import type { Box, Face, ImageInput, LoadOptions, ModelInfo } from '../types'
import { CliError, UsageError, messageOf } from './common'
import { type EngineOptions, flagNames } from './engine-flags'
import { BuildProgressView } from './progress'

export type CliBackend = (typeof BACKENDS)[number]

/** --backend's value (auto when absent), checked: a UsageError naming the flag. */
export function backendFlag(value = 'auto'): CliBackend {
  if (!(BACKENDS as readonly string[]).includes(value)) throw new UsageError(`--backend must be one of ${BACKENDS.join(', ')}, got "${value}"`)
  return value as CliBackend
}

export interface RunRequest {
  model: string
  backend: CliBackend
  image: ImageInput
  /** The image's file, named in errors about it. */
  file: string
  /** Omitted: the image is a 256x256 chip. */
  boxes?: readonly Box[]
  /** The engine flags given (none: the defaults). */
  engine?: EngineOptions
  /** Called once the model is loaded, before it runs (e.g. to warn that it is synthetic). */
  onLoad?: (info: ModelInfo) => void
}

export interface RunResult {
  faces: Face[]
  info: ModelInfo
  loadMs: number
  detectMs: number
}

/**
 * Why TensorRT is not available, as the command line says it: the addon's bare "headers absent at
 * build time" (doctor prints its detail beside it) said as what it means, where detect, batch and
 * build give the reason alone.
 */
export function tensorrtReason(reason: string): string {
  return reason === HEADERS_ABSENT ? "this build of the native addon has no TensorRT backend (TensorRT's headers were absent when it was compiled)" : reason
}

/** The library speaks of its options (options.model); on the command line that is --model. */
function cliMessage(e: unknown): string {
  return flagNames(messageOf(e)
    .replace(/^options\.model\b/, '--model')
    .replace(/^options\.backend: '(\w+)'/, '--backend $1')
    .replace(/^(--backend tensorrt is not available: )(.*)(; use 'auto' or 'cpu')$/, (_m, head: string, why: string, tail: string) => `${head}${tensorrtReason(why)}${tail}`)
    .replace(/; use 'auto' or 'cpu'$/, '; use --backend auto or cpu'))
}

/**
 * What the library says of a face, in the command line's terms: the flag, the box counted from 1,
 * the file. For what it finds wrong with --boxes only once the model's crop is known (a box whose
 * crop overflows float32; v2.4's stretched crop on a frame under 2x2), and the face an output of
 * the model is NaN for.
 */
function boxesMessage(e: unknown, file: string): string {
  const box = (i: string, coords: string) => `box ${Number(i) + 1} (${coords.replace(/, /g, ',')})`
  return messageOf(e)
    .replace(/^options\.boxes\[(\d+)\] = \[([^\]]*)\]/, (_m, i: string, coords: string) => `--boxes: ${box(i, coords)}`)
    .replace(/options\.boxes\[(\d+)\] = \[([^\]]*)\]/g, (_m, i: string, coords: string) => `${box(i, coords)} of --boxes`)
    .replace(/^image is (\d+x\d+):/, `${file} is $1:`)
    .replace(/\bthe chip image\b/, `the chip ${file}`)
}

/**
 * Loads a model for a command, showing a first engine build's progress; a failure is a CliError.
 * `engine`: the engine flags given (engine-flags.ts), which also find the engine `build` made;
 * for batch also its CPU sessions' --workers, --threads and --no-spin-wait.
 */
export async function loadModel(model: string, backend: CliBackend, engine: EngineOptions & Pick<LoadOptions, 'workers' | 'threads' | 'spinWait'>, signal?: AbortSignal): Promise<FaceMultitask> {
  // A first run on a GPU builds the TensorRT engine (minutes): its progress, as `build` shows it.
  const view = new BuildProgressView((t) => process.stderr.write(t), Boolean(process.stderr.isTTY))
  try {
    return await FaceMultitask.load({ ...engine, model, backend, onProgress: (e) => view.on(e), signal })
  } catch (e) {
    throw new CliError(cliMessage(e))
  } finally {
    view.clear()
  }
}

/** Any failure of load or detect becomes a CliError (exit 1) with the library's message. */
export async function runModel(req: RunRequest): Promise<RunResult> {
  const t0 = performance.now()
  const model = await loadModel(req.model, req.backend, req.engine ?? {})
  try {
    const loadMs = performance.now() - t0
    const info = model.info()
    req.onLoad?.(info)
    try {
      facesToRun(req.image, req.boxes ? { boxes: req.boxes } : undefined, model.spec.crop)  // throws what detect() would
    } catch (e) {
      if (e instanceof TypeError || e instanceof RangeError) throw new UsageError(boxesMessage(e, req.file))
      throw e
    }
    const t1 = performance.now()
    let faces: Face[]
    try {
      faces = await model.detect(req.image, req.boxes ? { boxes: req.boxes } : undefined)
    } catch (e) {
      throw new CliError(cliMessage(boxesMessage(e, req.file)))
    }
    return { faces, info, loadMs, detectMs: performance.now() - t1 }
  } finally {
    await model.close()
  }
}
