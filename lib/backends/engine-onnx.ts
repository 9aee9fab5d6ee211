// Which ONNX a TensorRT engine is built from. TensorRT 10 and 11 take the precision from the
// network itself (a strongly typed build), so options.precision chooses a file: the model when
// its face_multitask.precision says so, else the sibling `face-multitask export` writes beside it
// (<stem>.fp16.onnx next to <stem>.fp32.onnx).
import fs from 'node:fs/promises'
import path from 'node:path'
import { declaredPrecision, META_PREFIX, type ModelSpec, readModelSpec } from '../contract'
import { type OnnxModelInfo, readOnnxModel } from '../onnx-model'
import type { Precision } from '../types'

/** The SHA-256 of the checkpoint an ONNX was exported from (face-multitask export writes it). */
const CHECKPOINT_KEY = `${META_PREFIX}checkpoint_sha256`

/** `<stem>.<precision>.onnx` beside `model` (its .fp32/.fp16/.bf16 suffix replaced, or added). */
export function siblingFor(model: string, precision: Precision): string {
  const base = path.basename(model)
  const stem = base.replace(/(\.(fp32|fp16|bf16))?\.onnx$/i, '')
  return path.join(path.dirname(model), `${stem}.${precision}.onnx`)
}

export interface EngineOnnx {
  path: string
  precision: Precision
  /** The file's graph and metadata, read once here for the callers that need them. */
  info: OnnxModelInfo
}

/**
 * The file to build for `wanted`. When the model is not in that precision and no sibling is: an
 * Error if the caller asked for the precision (`explicit`), else the model as it is, said on
 * stderr (the default fp16 with an FP32-only export).
 */
export async function engineOnnx(
  model: string,
  wanted: Precision,
  explicit: boolean,
  log: (m: string) => void = (m) => { process.stderr.write(`face-multitask: ${m}\n`) },
  modelInfo?: OnnxModelInfo,
): Promise<EngineOnnx> {
  const info = modelInfo ?? (await readOnnxModel(model))
  const own = declaredPrecision(model, info.metadata)
  if (own === wanted) return { path: model, precision: own, info }
  const sibling = siblingFor(model, wanted)
  const exists = await fs.stat(sibling).then((s) => s.isFile(), () => false)
  if (exists) {
    const siblingInfo = await readOnnxModel(sibling)
    const theirs = declaredPrecision(sibling, siblingInfo.metadata)
    // An earlier export's file left beside a newer one (`export --no-fp16` into the same folder)
    // holds other weights: an engine built from it would give another model's results.
    const ours = info.metadata[CHECKPOINT_KEY]
    const its = siblingInfo.metadata[CHECKPOINT_KEY]
    if (ours !== undefined && its !== undefined && ours !== its) {
      const stale = `${sibling} was exported from another checkpoint than ${path.basename(model)} (sha256 ${its.slice(0, 12)}..., not ${ours.slice(0, 12)}...)`
      if (explicit) throw new Error(`options.precision is '${wanted}', but ${stale}: export the checkpoint again without --no-fp16`)
      log(`${stale}: the TensorRT engine is built from the ${own} model itself; export again without --no-fp16 for a ${wanted} engine`)
      return { path: model, precision: own, info }
    }
    if (theirs === wanted) return { path: sibling, precision: wanted, info: siblingInfo }
    if (explicit) throw new Error(`options.precision is '${wanted}': ${sibling} is beside the model but declares ${theirs}`)
    log(`${sibling} is beside ${path.basename(model)} but declares ${theirs}, not ${wanted}: the TensorRT engine is built from the ${own} model itself`)
    return { path: model, precision: own, info }
  }
  const why = `${model} is a ${own} export and there is no ${wanted} export beside it (${path.basename(sibling)})`
  if (explicit) {
    const make = wanted === 'bf16'
      ? '`face-multitask export` writes FP32 and FP16 files only: convert one to BF16 yourself, declaring face_multitask.precision=bf16'
      : 'run `face-multitask export` (it writes the .fp16.onnx)'
    throw new Error(`options.precision is '${wanted}', but ${why}: ${make}, or pass precision: '${own}'`)
  }
  log(`${why}: the TensorRT engine is built in ${own}; \`face-multitask export\` writes the .fp16.onnx`)
  return { path: model, precision: own, info }
}

/**
 * Checks that the file an engine is built from (a precision sibling) is the same model as the one
 * loaded: its contract holds and every field that decides decoding matches, so the engine's
 * outputs are decoded as the loaded model's.
 */
export async function checkSameModel(model: string, spec: ModelSpec, other: string, otherInfo?: OnnxModelInfo): Promise<void> {
  if (other === model) return
  const theirs = readModelSpec(other, otherInfo ?? (await readOnnxModel(other)))
  const fields: (keyof ModelSpec)[] = ['generation', 'crop', 'resize', 'meshSpace', 'pose', 'gaze', 'conventionRelease', 'heads']
  const differ = fields.filter((k) => JSON.stringify(theirs[k]) !== JSON.stringify(spec[k]))
  if (differ.length > 0) {
    throw new Error(`${other} (the engine's source beside ${path.basename(model)}) is not the same model: its ${differ.join(', ')} differ`)
  }
}

/** The output types the TensorRT pipeline copies back (native/tensorrt/pipeline.cc refuses others). */
const ENGINE_OUTPUT_TYPES = ['float32', 'float16', 'bfloat16']

/**
 * Checks, before a build of minutes, what the engine's loader would refuse after it: every output,
 * the contract's heads and any extra one alike, must be a float tensor with a dynamic batch axis
 * first (the CPU backend ignores extra outputs; an engine computes and copies them all).
 */
export function checkEngineOutputs(file: string, info: OnnxModelInfo): void {
  for (const o of info.outputs) {
    const why = !ENGINE_OUTPUT_TYPES.includes(o.elemType)
      ? `is ${o.elemType}, not float32, float16 or bfloat16`
      : o.shape.length === 0 ? 'is a scalar, not one value per face'
      : typeof o.shape[0] === 'number' ? `has a fixed first axis of ${o.shape[0]}, not the batch`
      : undefined
    if (why) throw new Error(`${file}: output "${o.name}" ${why}: a TensorRT engine cannot return it; remove it from the graph (the CPU backend ignores outputs it does not use)`)
  }
}
