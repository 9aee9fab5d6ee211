// The ONNX contract between the export (scripts/export_onnx.py, scripts/make-fixture) and the
// runtime: tensor names and shapes, and the metadata keys that tell preprocessing and decoding
// what the model file needs. docs/onnx-contract.md is the prose version of this file.
import { AU_NAMES, BLENDSHAPE_NAMES, EMOTION_NAMES, MESH_POINTS } from './labels'
import { PRECISIONS } from './gpu-options'
import type { OnnxModelInfo, OnnxValueInfo } from './onnx-model'
import type { Precision } from './types'

export const SCHEMA_VERSION = '1'
export const META_PREFIX = 'face_multitask.'
export const INPUT_NAME = 'input'
export const INPUT_SIZE = 224
export const CHIP_SIZE = 256

export const GENERATIONS = ['v2.4', 'v2.5', 'v2.7', 'v2.8'] as const
export type Generation = (typeof GENERATIONS)[number]
export const CROP_MODES = ['stretch', 'square'] as const
export type CropMode = (typeof CROP_MODES)[number]
export const RESIZE_MODES = ['center_crop', 'antialias_bilinear'] as const
export type ResizeMode = (typeof RESIZE_MODES)[number]
export const MESH_SPACES = ['crop224_px', 'unit_square'] as const
export type MeshSpace = (typeof MESH_SPACES)[number]
export const HEADS = ['au', 'emotion', 'va', 'gaze', 'mesh', 'pose', 'blendshapes'] as const
export type Head = (typeof HEADS)[number]

/** Output tensor of each head and its shape after the batch axis. */
export const HEAD_OUTPUTS: Record<Head, { name: string; dims: number[] }> = {
  au: { name: 'p_au', dims: [AU_NAMES.length] },
  emotion: { name: 'emotion_logits', dims: [EMOTION_NAMES.length] },
  va: { name: 'va', dims: [2] },
  gaze: { name: 'gaze', dims: [2] },
  mesh: { name: 'mesh', dims: [MESH_POINTS, 3] },
  pose: { name: 'pose', dims: [6] },
  blendshapes: { name: 'blendshapes', dims: [BLENDSHAPE_NAMES.length] },
}
const REQUIRED_HEADS: Head[] = ['au', 'emotion', 'va', 'gaze', 'mesh', 'pose']

/** One decoded angle: the raw output channel it comes from and the sign py-feat applies. */
export interface SignedChannel {
  index: number
  sign: 1 | -1
}

/** What a model file declares (frozen: read by decoding and preprocessing on every call). */
export interface ModelSpec {
  readonly generation: Generation
  readonly crop: CropMode
  readonly resize: ResizeMode
  readonly meshSpace: MeshSpace
  readonly pose: Readonly<{ pitch: Readonly<SignedChannel>; roll: Readonly<SignedChannel>; yaw: Readonly<SignedChannel> }>
  readonly gaze: Readonly<{ pitch: Readonly<SignedChannel>; yaw: Readonly<SignedChannel> }>
  /** The py-feat release whose crop, signs and units the metadata follows. */
  readonly conventionRelease: string
  readonly heads: readonly Head[]
  /** The file's own compute types (face_multitask.precision; FP32 where absent). */
  readonly precision: Precision
  /** A model the project generated for tests: its outputs mean nothing. */
  readonly synthetic: boolean
  /** Every metadata entry, prefixed or not, as the file holds it. */
  readonly metadata: Readonly<Record<string, string>>
}

export class ContractError extends Error {
  constructor(file: string, message: string) {
    super(`${file}: ${message} (see docs/onnx-contract.md)`)
    this.name = 'ContractError'
  }
}

function oneOf<T extends string>(file: string, meta: Record<string, string>, key: string, allowed: readonly T[]): T {
  const full = META_PREFIX + key
  const value = meta[full]
  if (value === undefined) throw new ContractError(file, `metadata key "${full}" is missing`)
  if (!(allowed as readonly string[]).includes(value)) {
    throw new ContractError(file, `metadata key "${full}" has unknown value "${value}" (expected one of ${allowed.join(', ')})`)
  }
  return value as T
}

/** The precision an ONNX file declares (face_multitask.precision); files without the key are FP32. */
export function declaredPrecision(file: string, meta: Record<string, string>): Precision {
  return meta[META_PREFIX + 'precision'] === undefined ? 'fp32' : oneOf(file, meta, 'precision', PRECISIONS)
}

/**
 * Parses "pitch=-p0,roll=-p2,yaw=+p1" into named channels; every name in `names` must appear
 * once, and no channel twice (two angles read from one output would decode without complaint).
 */
export function parseSignedChannels<K extends string>(
  file: string, key: string, value: string | undefined, letter: string, names: readonly K[], channels: number,
): Record<K, SignedChannel> {
  const full = META_PREFIX + key
  if (value === undefined) throw new ContractError(file, `metadata key "${full}" is missing`)
  const out: Partial<Record<K, SignedChannel>> = {}
  const bad = () => new ContractError(file, `metadata key "${full}" has unknown value "${value}" (expected e.g. "${names.map((n, i) => `${n}=+${letter}${i}`).join(',')}")`)
  for (const part of value.split(',')) {
    const m = new RegExp(`^(\\w+)=([+-])${letter}(\\d+)$`).exec(part.trim())
    if (!m || !(names as readonly string[]).includes(m[1]) || out[m[1] as K]) throw bad()
    const index = Number(m[3])
    if (index >= channels || Object.values<SignedChannel | undefined>(out).some((c) => c?.index === index)) throw bad()
    out[m[1] as K] = { index, sign: m[2] === '-' ? -1 : 1 }
  }
  if (names.some((n) => !out[n])) throw bad()
  return out as Record<K, SignedChannel>
}

function checkLabels(file: string, meta: Record<string, string>, key: string, expected: readonly string[]): void {
  const full = META_PREFIX + key
  const value = meta[full]
  if (value === undefined) throw new ContractError(file, `metadata key "${full}" is missing`)
  if (value !== expected.join(',')) {
    throw new ContractError(file, `metadata key "${full}" does not list py-feat's labels in py-feat's order`)
  }
}

function checkTensor(file: string, what: string, info: OnnxValueInfo | undefined, name: string, dims: number[]): void {
  if (!info) throw new ContractError(file, `the model has no ${what} named "${name}"`)
  if (info.elemType !== 'float32') {
    throw new ContractError(file, `${what} "${name}" is ${info.elemType}, expected float32`)
  }
  const shape = info.shape
  const ok = shape.length === dims.length + 1 && typeof shape[0] !== 'number' &&
    dims.every((d, i) => shape[i + 1] === d)
  if (!ok) {
    const fmt = (s: (number | string)[]) => `[${s.join(',')}]`
    throw new ContractError(file, `${what} "${name}" has shape ${fmt(shape)}, expected ${fmt(['N', ...dims])} with a dynamic batch axis`)
  }
}

/** Checks a parsed ONNX model against the contract and returns what the runtime needs from it. */
export function readModelSpec(file: string, model: OnnxModelInfo): ModelSpec {
  const meta = model.metadata
  const schema = meta[META_PREFIX + 'schema']
  if (schema === undefined) {
    throw new ContractError(file, `metadata key "${META_PREFIX}schema" is missing: this ONNX was not written by face-multitask's export (run "face-multitask export <checkpoint>")`)
  }
  if (schema !== SCHEMA_VERSION) {
    throw new ContractError(file, `metadata key "${META_PREFIX}schema" has unknown value "${schema}" (this version reads schema ${SCHEMA_VERSION})`)
  }
  const generation = oneOf(file, meta, 'generation', GENERATIONS)
  const crop = oneOf(file, meta, 'crop', CROP_MODES)
  const resize = oneOf(file, meta, 'resize', RESIZE_MODES)
  const meshSpace = oneOf(file, meta, 'mesh_space', MESH_SPACES)
  const pose = parseSignedChannels(file, 'pose_convention', meta[META_PREFIX + 'pose_convention'], 'p', ['pitch', 'roll', 'yaw'] as const, 3)
  const gaze = parseSignedChannels(file, 'gaze_convention', meta[META_PREFIX + 'gaze_convention'], 'g', ['pitch', 'yaw'] as const, 2)
  const conventionRelease = meta[META_PREFIX + 'convention_release']
  if (!conventionRelease) throw new ContractError(file, `metadata key "${META_PREFIX}convention_release" is missing`)

  const headsValue = meta[META_PREFIX + 'heads']
  if (headsValue === undefined) throw new ContractError(file, `metadata key "${META_PREFIX}heads" is missing`)
  const heads = headsValue.split(',').map((h) => h.trim()) as Head[]
  for (const h of heads) {
    if (!(HEADS as readonly string[]).includes(h)) {
      throw new ContractError(file, `metadata key "${META_PREFIX}heads" names unknown head "${h}" (known: ${HEADS.join(', ')})`)
    }
  }
  for (const h of REQUIRED_HEADS) {
    if (!heads.includes(h)) throw new ContractError(file, `metadata key "${META_PREFIX}heads" lacks the required head "${h}"`)
  }
  checkLabels(file, meta, 'au_names', AU_NAMES)
  checkLabels(file, meta, 'emotion_names', EMOTION_NAMES)
  if (heads.includes('blendshapes')) checkLabels(file, meta, 'blendshape_names', BLENDSHAPE_NAMES)

  const inputs = new Map(model.inputs.map((v) => [v.name, v]))
  checkTensor(file, 'input', inputs.get(INPUT_NAME), INPUT_NAME, [3, INPUT_SIZE, INPUT_SIZE])
  if (model.inputs.length !== 1) {
    throw new ContractError(file, `the model has ${model.inputs.length} inputs (${model.inputs.map((v) => v.name).join(', ')}); expected only "${INPUT_NAME}"`)
  }
  const outputs = new Map(model.outputs.map((v) => [v.name, v]))
  for (const h of heads) checkTensor(file, 'output', outputs.get(HEAD_OUTPUTS[h].name), HEAD_OUTPUTS[h].name, HEAD_OUTPUTS[h].dims)

  // Frozen: model.spec is public, and decoding and preprocessing read it on every call (a head
  // popped or a crop changed by a caller would desynchronise them from the loaded engine).
  return deepFreeze({
    generation, crop, resize, meshSpace, pose, gaze, conventionRelease, heads,
    precision: declaredPrecision(file, meta),
    // A value other than true/false is refused: a model saying "yes" would otherwise lose the SYNTHETIC warnings.
    synthetic: meta[META_PREFIX + 'synthetic'] !== undefined && oneOf(file, meta, 'synthetic', ['true', 'false'] as const) === 'true',
    metadata: { ...meta },  // a copy: the model file's parsed metadata is the caller's
  })
}

function deepFreeze<T extends object>(o: T): T {
  for (const v of Object.values(o)) if (typeof v === 'object' && v !== null) deepFreeze(v)
  return Object.freeze(o)
}
