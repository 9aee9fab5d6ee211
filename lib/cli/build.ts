// `face-multitask build <onnx> [options]`: builds (or finds in the cache) the TensorRT engine for a
// model ahead of time, with a progress bar, so that the first FaceMultitask.load() on this GPU
// does not take minutes. Ctrl-C cancels the build.
import { tensorrtAvailability } from '../availability'
import { FaceMultitask } from '../face-multitask'
import type { LoadOptions } from '../types'
import { checkReadableFile, CliError, type Io, parseCommand, UsageError } from './common'
import { ENGINE_FLAGS, engineOptions, flagMessage } from './engine-flags'
import { BuildProgressView } from './progress'
import { tensorrtReason } from './run-model'

/** The command line as load options (the flags checked: a UsageError naming the flag). */
export function buildOptions(argv: string[]): LoadOptions & { json: boolean } {
  const { values, positionals } = parseCommand(argv, { ...ENGINE_FLAGS, json: { type: 'boolean' } })
  if (positionals.length !== 1) throw new UsageError(`<onnx>: give one model file, got ${positionals.length}`)
  return { model: positionals[0], backend: 'tensorrt', ...engineOptions(values), json: values.json ?? false }
}

export async function buildCommand(argv: string[], io: Io): Promise<number> {
  const { json, ...options } = buildOptions(argv)
  // The model file before TensorRT: a typo in the path is the likelier mistake, and it is the
  // same message on a machine with a GPU and without one.
  await checkReadableFile(options.model, '<onnx>')
  const trt = await tensorrtAvailability()
  if (!trt.available) throw new CliError(`cannot build a TensorRT engine here: ${tensorrtReason(trt.reason ?? '')} (\`face-multitask doctor\` says more)`)
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
    throw new CliError(flagMessage(e))
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
