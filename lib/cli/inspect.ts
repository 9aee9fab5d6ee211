// `face-multitask inspect`: what a checkpoint (safetensors) or an exported ONNX holds —
// generation, config, heads, conventions — read in Node, without Python.
import { existsSync } from 'node:fs'
import fs from 'node:fs/promises'
import path from 'node:path'
import { ContractError, type Generation, HEADS, type Head, META_PREFIX, readModelSpec } from '../contract'
import { GENERATION_CONVENTIONS } from '../generations'
import { readOnnxModel } from '../onnx-model'
import { CliError, checkReadableFile, type Io, parseCommand, UsageError } from './common'

interface SafetensorsHeader {
  metadata: Record<string, string>
  tensors: Record<string, { dtype: string; shape: number[] }>
}

/** A safetensors file that cannot be read as one: exit 1, one line naming the file. */
function notSafetensors(file: string, why: string): CliError {
  return new CliError(`"${file}" is not a readable safetensors checkpoint: ${why}`)
}

const MAX_HEADER = 100 * 2 ** 20

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function jsonKind(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`
}

/**
 * The JSON header of a safetensors file: 8-byte little-endian length, then the JSON: an object
 * of tensor name -> { dtype, shape, data_offsets } and an optional "__metadata__" of strings.
 * Anything else is a CliError `"<file>" is not a readable safetensors checkpoint: <why>`.
 */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  const fh = await fs.open(file, 'r')
  let json: Buffer
  let dataBytes = 0  // the bytes after the header, where the tensors' data_offsets point
  let dataEnd = 0
  try {
    const { size } = await fh.stat()
    if (size < 8) throw notSafetensors(file, `it is ${size} bytes long, too short for the 8-byte header length`)
    const len = Buffer.alloc(8)
    await fh.read(len, 0, 8, 0)
    const n = len.readBigUInt64LE()
    if (n < 2n || n > BigInt(MAX_HEADER) || n + 8n > BigInt(size)) {
      throw notSafetensors(file, `its header length (${n} bytes) ${n > BigInt(MAX_HEADER) || n + 8n > BigInt(size) ? `does not fit the file (${size} bytes)` : 'is too small'}`)
    }
    json = Buffer.alloc(Number(n))
    await fh.read(json, 0, json.length, 8)
    dataBytes = size - 8 - Number(n)
  } finally {
    await fh.close()
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(json.toString('utf8'))
  } catch (e) {
    throw notSafetensors(file, `the header is not JSON (${(e as Error).message})`)
  }
  if (!isPlainObject(parsed)) throw notSafetensors(file, `the header is ${jsonKind(parsed)}, not a JSON object`)
  const { __metadata__: metadata = {}, ...entries } = parsed
  if (!isPlainObject(metadata) || !Object.values(metadata).every((v) => typeof v === 'string')) {
    throw notSafetensors(file, '"__metadata__" is not an object of strings')
  }
  const tensors: SafetensorsHeader['tensors'] = {}
  for (const [name, t] of Object.entries(entries)) {
    if (!isPlainObject(t)) throw notSafetensors(file, `tensor "${name}" is ${jsonKind(t)}, not an object with a dtype and a shape`)
    if (typeof t.dtype !== 'string') throw notSafetensors(file, `tensor "${name}" has no dtype string`)
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw notSafetensors(file, `tensor "${name}" has no shape array of sizes (got ${JSON.stringify(t.shape) ?? 'none'})`)
    }
    tensors[name] = { dtype: t.dtype, shape: t.shape as number[] }
    const offsets = t.data_offsets
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[1] < offsets[0]) {
      throw notSafetensors(file, `tensor "${name}" has no data_offsets [begin, end] (got ${JSON.stringify(t.data_offsets) ?? 'none'})`)
    }
    dataEnd = Math.max(dataEnd, offsets[1] as number)
  }
  // A download or copy cut short keeps its header: the tensors then reach past the file's end.
  if (dataEnd > dataBytes) {
    throw notSafetensors(file, `it is cut off: its tensors need ${dataEnd} bytes of data after the header, the file holds ${dataBytes} (an interrupted download or copy?)`)
  }
  return { metadata: metadata as Record<string, string>, tensors }
}

/** The tensor-name prefix of each head in py-feat's MEGraphAUv2 (feat/multitask/model_v2.py). */
const HEAD_PREFIXES: Record<Head, string> = {
  au: 'sc.', // SCHead: p_au = self.sc(h)
  emotion: 'emotion.cls_head.',
  va: 'emotion.va_head.',
  gaze: 'gaze.',
  mesh: 'lmk.', // LandmarkHead: mesh = self.lmk(X)
  pose: 'pose.',
  blendshapes: 'blendshape.',
}

/** The heads whose tensors the checkpoint holds, in the contract's order. */
export function checkpointHeads(names: readonly string[]): Head[] {
  return HEADS.filter((h) => names.some((n) => n.startsWith(HEAD_PREFIXES[h])))
}

/** py-feat's file name for each generation's checkpoint (scripts/export_onnx.py GENERATIONS). */
const FILE_NAME_GENERATION: Record<string, Generation> = {
  'face_multitask_v2.pt': 'v2.4',
  'face_multitask_v2.safetensors': 'v2.5',
  'face_multitask_v27.safetensors': 'v2.7',
  'face_multitask_v28.safetensors': 'v2.8',
}

export interface CheckpointGeneration {
  /** The one generation it is, when that can be told (as the export would tell it). */
  generation?: Generation
  /** What to print: the generation and where it comes from, or why it cannot be told. */
  text: string
  /** Set when the export would refuse the file (or need --generation): a warning to print. */
  warning?: string
}

/**
 * The v2.6 gaze features the tensors show, as scripts/export_onnx.py's v26_gaze_inputs: each is a
 * config switch of py-feat 2.1.x only (2.0.3's config has no gaze_* field), so any means v2.7+.
 */
function v26GazeInputs(h: SafetensorsHeader): string[] {
  const t = h.tensors
  const found: string[] = []
  if (t['gaze_eye_enc.enc.0.weight']) found.push('eye windows')
  if (t['gaze.left.weight'] || t['gaze.left.0.weight']) found.push('per-eye layers')
  const [fc, bb, lmk] = [t['gaze.left_yaw.weight'], t['unified.norm_bb.weight'], t['unified.norm_lmk.weight']]
  if (found.length === 0 && fc && bb && lmk && fc.shape[1] !== bb.shape[0] + lmk.shape[0]) found.push('extra inputs')
  return found
}

/**
 * The generation as scripts/export_onnx.py tells it (structural_candidates, then the file name
 * and the config; tell_generation without --generation), in Node: the tensors decide the
 * architecture; v2.7 and v2.8 share one, so there the exact file name or the config decides.
 */
export function checkpointGeneration(file: string, h: SafetensorsHeader): CheckpointGeneration {
  const names = new Set(Object.keys(h.tensors))
  const hasBs = [...names].some((n) => n.startsWith('blendshape.'))
  const legacyGaze = names.has('gaze.left_yaw.weight')
  const v26 = v26GazeInputs(h)
  const emo = h.tensors['emotion.cls_head.weight']
  let cands: Generation[] = []
  if ([...names].some((n) => n.startsWith('backbone.')) && emo) {
    if (legacyGaze && v26.length === 0) cands = [hasBs ? 'v2.5' : 'v2.4']
    else if (hasBs && v26.length > 0) cands = ['v2.7', 'v2.8']
  }
  if (cands.length === 0) {
    const gaze = v26.length > 0 ? `v2.6+ (${v26.join(', ')})` : legacyGaze ? 'four scalar FCs (v2.3-v2.5)' : 'unknown'
    const evidence = `backbone: ${[...names].some((n) => n.startsWith('backbone.')) ? 'yes' : 'no'}; blendshape head: ${hasBs ? 'yes' : 'no'}; ` +
      `gaze head: ${gaze}; emotion input width: ${emo?.shape[1] ?? 'none'}`
    return {
      text: `unknown: the tensors fit no known generation (${evidence})`,
      warning: `the tensors of "${file}" fit no known face_multitask_v2 generation: \`face-multitask export\` would refuse it`,
    }
  }
  const byName = FILE_NAME_GENERATION[path.basename(file)]
  const byConfig = configGeneration(h.metadata.config)
  const fits = cands.join(' and ')
  for (const [what, g] of [['file name', byName], ['config', byConfig]] as const) {
    if (g && !cands.includes(g)) {
      return {
        text: `${cands.join(' or ')} by the tensors, but the ${what} says ${g}`,
        warning: `the ${what} of "${file}" says ${g}, but its tensors are a ${cands.join('/')} architecture: \`face-multitask export\` needs --generation`,
      }
    }
  }
  if (byName && byConfig && byName !== byConfig) {
    return {
      text: `${cands.join(' or ')} (the file name says ${byName}, the config ${byConfig})`,
      warning: `the file name of "${file}" says ${byName} but its config says ${byConfig}: \`face-multitask export\` needs --generation`,
    }
  }
  if (cands.length === 1) return { generation: cands[0], text: `${cands[0]} (from the tensors)` }
  const decided = byName ?? byConfig
  if (decided) return { generation: decided, text: `${decided} (from the ${byName ? 'file name' : 'config'}: the tensors fit ${fits}, the same architecture)` }
  return {
    text: `${cands.join(' or ')} (the same architecture: neither the file name nor the config tells them apart)`,
    warning: `"${file}" may be ${cands.join(' or ')}: \`face-multitask export\` needs --generation ${cands.join('|')}`,
  }
}

/** A generation the config names ("generation", "model_version" or "version"), as export_onnx.py reads it. */
function configGeneration(config: string | undefined): Generation | undefined {
  if (config === undefined) return undefined
  let parsed: unknown
  try {
    parsed = JSON.parse(config)
  } catch {
    return undefined
  }
  if (!isPlainObject(parsed)) return undefined
  for (const key of ['generation', 'model_version', 'version']) {
    const v = parsed[key]
    if (typeof v !== 'string') continue
    const m = /^v?(2\.[4578])[a-z]?$/.exec(v.trim())
    if (m) return `v${m[1]}` as Generation
  }
  return undefined
}

/** The v2.6+ gaze head's layout from its per-eye layers (heads_v26.GazeHeadV26: a Linear, or an MLP
 * with gaze_hidden > 0, giving 2 x gaze_bins logits, a head-frame 3-vector, or yaw and pitch). */
function gazeHeadLine(shape: (name: string) => number[] | undefined): string | undefined {
  const last = shape('gaze.left.2.weight') ?? shape('gaze.left.weight')
  if (!last || last.length < 1) return undefined
  const out = last[0]
  const kind = out === 3 ? 'a direction in the head frame (gaze_head_frame), turned by the head pose into yaw and pitch'
    : out === 2 ? 'yaw and pitch' : `${out / 2} bins per angle`
  const hidden = shape('gaze.left.0.weight')?.[0]
  // Without the eye-window encoder (gaze_eye_roi off), the per-eye layers read the unified features.
  const input = shape('gaze_eye_enc.enc.0.weight') ? 'eye-window RoIAlign head' : 'per-eye layers on the unified features (no eye windows)'
  return `  gaze head      ${input}, ${kind}${hidden ? `; an MLP per eye (${hidden} hidden)` : ''}`
}

/** Why `face-multitask export` would refuse the file's config (py-feat's loader reads it from the metadata), if it would. */
function configProblem(config: string | undefined): string | undefined {
  if (config === undefined) return "its metadata has no 'config' (py-feat's files keep the model config there as JSON): `face-multitask export` refuses it"
  let v: unknown
  try {
    v = JSON.parse(config)
  } catch {
    return "its metadata 'config' is not JSON: `face-multitask export` refuses it"
  }
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? undefined : "its metadata 'config' is not a JSON object: `face-multitask export` refuses it"
}

async function inspectSafetensors(file: string, io: Io): Promise<void> {
  const h = await readSafetensorsHeader(file)
  const tensors = Object.entries(h.tensors)
  const params = tensors.reduce((sum, [, t]) => sum + t.shape.reduce((a, b) => a * b, 1), 0)
  const gen = checkpointGeneration(file, h)
  const shape = (name: string) => h.tensors[name]?.shape
  io.out(`${file}: safetensors checkpoint`)
  io.out(`  generation     ${gen.text}`)
  io.out(`  tensors        ${tensors.length}, ${params.toLocaleString('en-US')} values`)
  const heads = checkpointHeads(Object.keys(h.tensors))
  const missing = (gen.generation ? GENERATION_CONVENTIONS[gen.generation].heads : HEADS.filter((x) => x !== 'blendshapes')).filter((x) => !heads.includes(x))
  io.out(`  heads          ${heads.length ? heads.join(', ') : '(none)'}${missing.length ? ` (no tensors for: ${missing.join(', ')})` : ''}`)
  const gaze = gazeHeadLine(shape)
  if (gaze) io.out(gaze)
  const emo = shape('emotion.cls_head.weight')
  if (emo && emo.length >= 2) io.out(`  emotion input  ${emo[1]} features (${emo[1] % 1024 === 20 ? 'reads the AU probabilities' : 'no AU input'})`)
  if (gen.generation) {
    const conv = GENERATION_CONVENTIONS[gen.generation]
    io.out(`  conventions    ${conv.conventionRelease}: crop ${conv.crop}, resize ${conv.resize}, pose ${conv.poseConvention}, gaze ${conv.gazeConvention}`)
  }
  const config = h.metadata.config
  io.out(`  config         ${config ?? '(none in the metadata)'}`)
  if (gen.warning) io.err(`face-multitask: warning: ${gen.warning}`)
  const problem = configProblem(config)
  if (problem) io.err(`face-multitask: warning: ${problem}`)
}

async function inspectOnnx(file: string, io: Io): Promise<void> {
  const model = await readOnnxModel(file).catch((e: Error) => { throw new CliError(e.message.replace(/^options\.model: /, '')) })
  io.out(`${file}: ONNX, opset ${model.opset}`)
  for (const [k, v] of Object.entries(model.metadata)) {
    if (k.startsWith(META_PREFIX) && !k.endsWith('_names')) io.out(`  ${k.slice(META_PREFIX.length).padEnd(20)} ${v}`)
  }
  const fmt = (vs: typeof model.inputs) => vs.map((v) => `${v.name} ${v.elemType}[${v.shape.join(',')}]`).join(', ')
  io.out(`  inputs               ${fmt(model.inputs)}`)
  io.out(`  outputs              ${fmt(model.outputs)}`)
  // Weights stored beside the model (ONNX external data): the runtime reads them from its folder.
  const missing = model.externalData.filter((f) => !existsSync(path.resolve(path.dirname(file), f)))
  if (model.externalData.length > 0) {
    io.out(`  external data        ${model.externalData.map((f) => (missing.includes(f) ? `${f} (MISSING)` : f)).join(', ')}`)
  }
  let spec
  try {
    spec = readModelSpec(file, model)
  } catch (e) {
    if (!(e instanceof ContractError)) throw e
    io.out(`  contract             REFUSED: ${e.message}`)
    throw new CliError(`${file} does not follow the ONNX contract`)
  }
  if (missing.length > 0) {
    io.out('  contract             ok, but the runtime cannot load it: its external data is missing')
    throw new CliError(`${file}: the file${missing.length > 1 ? 's' : ''} holding its weights ${missing.map((f) => `"${f}"`).join(', ')} ${missing.length > 1 ? 'are' : 'is'} not beside it (copy ${missing.length > 1 ? 'them' : 'it'} with the model)`)
  }
  io.out(`  contract             ok: the runtime loads it${spec.synthetic ? ' (synthetic: its numbers mean nothing)' : ''}`)
  // The runtime follows the file; a value other than its generation's (a hand-edited file) is said.
  const conv = GENERATION_CONVENTIONS[spec.generation]
  const expected: [string, string][] = [['crop', conv.crop], ['resize', conv.resize], ['mesh_space', conv.meshSpace],
    ['pose_convention', conv.poseConvention], ['gaze_convention', conv.gazeConvention]]
  for (const [key, want] of expected) {
    const got = model.metadata[META_PREFIX + key]
    if (got !== want) io.err(`face-multitask: warning: ${key} is "${got}", not ${spec.generation}'s "${want}" (${conv.conventionRelease}): the runtime follows the file`)
  }
}

export async function inspectCommand(argv: string[], io: Io): Promise<number> {
  const { positionals } = parseCommand(argv, {})
  if (positionals.length !== 1) {
    throw new UsageError(`give exactly one file: a .safetensors checkpoint or an .onnx model${positionals.length ? `, got ${positionals.length}` : ''}`)
  }
  const file = positionals[0]
  await checkReadableFile(file)
  const head = Buffer.alloc(9)
  const fh = await fs.open(file, 'r')
  const { bytesRead } = await fh.read(head, 0, 9, 0).finally(() => fh.close())
  if (bytesRead === 0) throw new CliError(`${file} is empty (0 bytes)`)
  // By content first, as export reads files (a renamed checkpoint is still one), then by name.
  const zip = head[0] === 0x50 && head[1] === 0x4b
  const pickle = head[0] === 0x80 && head[1] >= 2 && head[1] <= 5
  const safetensors = head[8] === 0x7b && head.readBigUInt64LE(0) >= 2n  // header length, then '{'
  if (safetensors || file.endsWith('.safetensors')) await inspectSafetensors(file, io)
  else if (zip || pickle) {
    throw new CliError(`${file} is a torch pickle (as py-feat's v2.4 checkpoint is): Node cannot read it; export it and inspect the .onnx`)
  } else if (/\.(pt|pth)$/.test(file)) {
    const hex = head.subarray(0, bytesRead).toString('hex').replace(/(..)(?!$)/g, '$1 ')
    throw new CliError(`${file} is named as a torch checkpoint but is not one: it begins with bytes ${hex}, neither a zip nor a pickle ` +
      '(a cut-off download, or another file renamed?)')
  } else await inspectOnnx(file, io)
  return 0
}
