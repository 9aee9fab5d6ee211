// The TensorRT engine's flags, shared by build, detect and batch: a plan is keyed by them, so the
// same flags find the engine `build` made (other flags build another). Their mistakes are said in
// the flags' names, before anything loads.
import { gpuOptions, MAX_BATCH_LIMIT, PRECISIONS, TENSORRT_MAX_BATCH } from '../gpu-options'
import type { LoadOptions, Precision } from '../types'
import { messageOf, type ParsedCommand, UsageError } from './common'

export const ENGINE_FLAGS = {
  precision: { type: 'string' },
  'min-batch': { type: 'string' },
  'opt-batch': { type: 'string' },
  'max-batch': { type: 'string' },
  'opt-level': { type: 'string' },
  'workspace-mib': { type: 'string' },
  'engine-dir': { type: 'string' },
} as const

export type EngineOptions = Pick<LoadOptions, 'precision' | 'minBatch' | 'optBatch' | 'maxBatch' | 'builderOptimizationLevel' | 'workspaceMiB' | 'engineDir'>

/** A whole-number flag; with `max`, from 1 to max (else the library checks its range, naming the flag). */
export function intFlag(value: string | undefined, name: string, max?: number): number | undefined {
  if (value === undefined) return undefined
  if (max !== undefined) {
    if (!/^\d+$/.test(value) || Number(value) < 1 || Number(value) > max) throw new UsageError(`--${name} must be an integer from 1 to ${max}, got "${value}"`)
  } else if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number, got "${value}"`)
  // Past 2^53 the number is no longer the one typed (and the library's range check would echo 1e+23).
  else if (!Number.isSafeInteger(Number(value))) throw new UsageError(`--${name} must be a whole number up to ${Number.MAX_SAFE_INTEGER}, got "${value}"`)
  return Number(value)
}

/** The library names its options (options.minBatch); on the command line they are flags (--min-batch). */
const FLAGS: Record<string, string> = { model: '<onnx>', builderOptimizationLevel: '--opt-level', workspaceMiB: '--workspace-mib' }

/** A library message about options, in the flags' names. */
export function flagMessage(e: unknown): string {
  return flagNames(messageOf(e))
}

export function flagNames(text: string): string {
  return text.replace(/options\.(\w+)/g, (_, name: string) => FLAGS[name] ?? `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`)
}

/**
 * --min-batch <= --opt-batch <= --max-batch, said with the flags' names (the library's own check
 * speaks of options.minBatch). Values out of range are left to gpuOptions, which names the flag.
 * The defaults are the library's: --max-batch 64, --min-batch 1, --opt-batch 8 moved into range.
 */
function checkBatchOrder(o: EngineOptions): void {
  const given = [o.minBatch, o.optBatch, o.maxBatch].filter((v) => v !== undefined)
  if (given.some((v) => v < 1 || v > MAX_BATCH_LIMIT)) return
  const maxBatch = o.maxBatch ?? TENSORRT_MAX_BATCH
  const minBatch = o.minBatch ?? 1
  const maxNote = o.maxBatch === undefined ? ', the TensorRT default' : ''
  const order = 'the batches must be --min-batch <= --opt-batch <= --max-batch'
  if (minBatch > maxBatch) throw new UsageError(`--min-batch (${minBatch}) must not exceed --max-batch (${maxBatch}${maxNote}): ${order}`)
  if (o.optBatch === undefined) return // its default moves into [--min-batch, --max-batch]
  if (minBatch > o.optBatch) throw new UsageError(`--min-batch (${minBatch}${o.minBatch === undefined ? ', the default' : ''}) must not exceed --opt-batch (${o.optBatch}): ${order}`)
  if (o.optBatch > maxBatch) throw new UsageError(`--opt-batch (${o.optBatch}) must not exceed --max-batch (${maxBatch}${maxNote}): ${order}`)
}

/** The engine flags as load options, checked (a UsageError naming the flag). Absent flags are left out. */
export function engineOptions(values: ParsedCommand<typeof ENGINE_FLAGS>['values']): EngineOptions {
  if (values.precision !== undefined && !(PRECISIONS as readonly string[]).includes(values.precision)) {
    throw new UsageError(`--precision must be one of ${PRECISIONS.join(', ')}, got "${values.precision}"`)
  }
  const given: EngineOptions = {
    precision: values.precision as Precision | undefined,
    minBatch: intFlag(values['min-batch'], 'min-batch'),
    optBatch: intFlag(values['opt-batch'], 'opt-batch'),
    maxBatch: intFlag(values['max-batch'], 'max-batch'),
    builderOptimizationLevel: intFlag(values['opt-level'], 'opt-level'),
    workspaceMiB: intFlag(values['workspace-mib'], 'workspace-mib'),
    engineDir: values['engine-dir'],
  }
  const options = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) as EngineOptions  // absent: the default
  checkBatchOrder(options)
  try {
    gpuOptions(options as LoadOptions) // the flags' ranges, checked before anything loads
  } catch (e) {
    throw new UsageError(flagMessage(e))
  }
  return options
}
