// `face-multitask build <onnx> [options]`: builds (or finds in the cache) the TensorRT engine for a
// model ahead of time, with a progress bar, so that the first FaceMultitask.load() on this GPU
// does not take minutes. Ctrl-C cancels the build.
import { tensorrtAvailability } from '../availability'
import { FaceMultitask } from '../face-multitask'
import { gpuOptions, MAX_BATCH_LIMIT, PRECISIONS, TENSORRT_MAX_BATCH } from '../gpu-options'
import type { LoadOptions, Precision } from '../types'
import { checkReadableFile, CliError, type Io, messageOf, parseCommand, UsageError } from './common'
import { BuildProgressView } from './progress'

function intArg(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number, got "${value}"`)
  return Number(value)
}

export function buildOptions(argv: string[]): LoadOptions & { json: boolean } {
  const { values, positionals } = parseCommand(argv, {
    precision: { type: 'string' },
    'min-batch': { type: 'string' },
    'opt-batch': { type: 'string' },
    'max-batch': { type: 'string' },
    'opt-level': { type: 'string' },
    'workspace-mib': { type: 'string' },
    'engine-dir': { type: 'string' },
    json: { type: 'boolean' },
  })
  if (positionals.length !== 1) throw new UsageError(`<onnx>: give one model file, got ${positionals.length}`)
  if (values.precision !== undefined && !(PRECISIONS as readonly string[]).includes(values.precision)) {
    throw new UsageError(`--precision must be one of ${PRECISIONS.join(', ')}, got "${values.precision}"`)
  }
  return {
    model: positionals[0],
    backend: 'tensorrt',
    precision: values.precision as Precision | undefined,
    minBatch: intArg(values['min-batch'], 'min-batch'),
    optBatch: intArg(values['opt-batch'], 'opt-batch'),
    maxBatch: intArg(values['max-batch'], 'max-batch'),
    builderOptimizationLevel: intArg(values['opt-level'], 'opt-level'),
    workspaceMiB: intArg(values['workspace-mib'], 'workspace-mib'),
    engineDir: values['engine-dir'],
    json: values.json ?? false,
  }
}

/** The library names its options (options.minBatch); on the command line they are flags (--min-batch). */
const FLAGS: Record<string, string> = { model: '<onnx>', builderOptimizationLevel: '--opt-level', workspaceMiB: '--workspace-mib' }

function cliMessage(e: unknown): string {
  return messageOf(e).replace(/options\.(\w+)/g, (_, name: string) => FLAGS[name] ?? `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`)
}

/**
 * --min-batch <= --opt-batch <= --max-batch, said with the flags' names (the library's own check
 * speaks of options.minBatch). Values out of range are left to gpuOptions, which names the flag.
 * The defaults are the library's: --max-batch 64, --min-batch 1, --opt-batch 8 moved into range.
 */
function checkBatchOrder(o: LoadOptions): void {
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

export async function buildCommand(argv: string[], io: Io): Promise<number> {
  const { json, ...options } = buildOptions(argv)
  checkBatchOrder(options)
  try {
    gpuOptions(options) // the flags' ranges, checked before anything else
  } catch (e) {
    throw new UsageError(cliMessage(e))
  }
  // The model file before TensorRT: a typo in the path is the likelier mistake, and it is the
  // same message on a machine with a GPU and without one.
  await checkReadableFile(options.model, '<onnx>')
  const trt = await tensorrtAvailability()
  if (!trt.available) throw new CliError(`cannot build a TensorRT engine here: ${trt.reason} (\`face-multitask doctor\` says more)`)
  // Options left undefined keep their defaults (gpuOptions treats a present undefined as absent).
  const view = new BuildProgressView((t) => process.stderr.write(t), Boolean(process.stderr.isTTY) && !json)
  const abort = new AbortController()
  const onSigint = () => abort.abort(new Error('interrupted (Ctrl-C)'))
  process.once('SIGINT', onSigint)
  let model: FaceMultitask
  try {
    model = await FaceMultitask.load({ ...options, onProgress: (e) => view.on(e), signal: abort.signal })
  } catch (e) {
    view.clear()
    if ((e as Error).name === 'AbortError') throw new CliError('the engine build was cancelled')
    // The flags were checked above: whatever fails now (the model, TensorRT, the cache) is exit 1.
    throw new CliError(cliMessage(e))
  } finally {
    process.off('SIGINT', onSigint)
  }
  view.clear()
  const info = model.info()
  await model.close()
  if (json) io.out(JSON.stringify(info, null, 2))
  // Built but not stored (a full disk, a blocked path: the cache said why): filling the cache is
  // this command's one job, so a CI or image step must not pass.
  if (info.engine === undefined) throw new CliError('the engine was built but could not be stored in the engine cache (see above): the next load builds it again')
  if (!json) io.out(`engine ready: ${info.engine}\n  ${info.device}, ${info.precision}, batches up to ${info.maxBatch}`)
  return 0
}
