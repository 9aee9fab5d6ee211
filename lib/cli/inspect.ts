// `face-multitask inspect`: what a checkpoint (safetensors) or an exported ONNX holds —
// generation, config, heads, conventions — read in Node, without Python.
import fs from 'node:fs/promises'
import path from 'node:path'
import { ContractError, META_PREFIX, readModelSpec } from '../contract'
import { GENERATION_CONVENTIONS } from '../generations'
import { readOnnxModel } from '../onnx-model'
import { CliError, type Io, UsageError } from './common'

interface SafetensorsHeader {
  metadata: Record<string, string>
  tensors: Record<string, { dtype: string; shape: number[] }>
}

/** The JSON header of a safetensors file: 8-byte little-endian length, then the JSON. */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  const fh = await fs.open(file, 'r')
  try {
    const len = Buffer.alloc(8)
    await fh.read(len, 0, 8, 0)
    const n = Number(len.readBigUInt64LE())
    const { size } = await fh.stat()
    if (n < 2 || n > 100 * 2 ** 20 || n + 8 > size) throw new Error('no safetensors header')
    const json = Buffer.alloc(n)
    await fh.read(json, 0, n, 8)
    const parsed = JSON.parse(json.toString('utf8')) as Record<string, unknown>
    const { __metadata__: metadata = {}, ...tensors } = parsed
    return { metadata: metadata as Record<string, string>, tensors: tensors as SafetensorsHeader['tensors'] }
  } finally {
    await fh.close()
  }
}

/** The generation a checkpoint's file name and tensors point to (scripts/export_onnx.py decides for real). */
export function checkpointGeneration(file: string, h: SafetensorsHeader): string {
  const base = path.basename(file)
  if (/face_multitask_v28/.test(base)) return 'v2.8'
  if (/face_multitask_v27/.test(base)) return 'v2.7'
  const names = Object.keys(h.tensors)
  if (names.some((n) => n.startsWith('gaze_eye_enc.'))) return 'v2.7 or v2.8 (same structure: the file name or --generation decides)'
  if (names.some((n) => n.startsWith('blendshape.'))) return 'v2.5'
  return 'unknown (no blendshape head: v2.4 ships as a .pt file)'
}

async function inspectSafetensors(file: string, io: Io): Promise<void> {
  const h = await readSafetensorsHeader(file)
  const tensors = Object.entries(h.tensors)
  const params = tensors.reduce((sum, [, t]) => sum + t.shape.reduce((a, b) => a * b, 1), 0)
  const gen = checkpointGeneration(file, h)
  const shape = (name: string) => h.tensors[name]?.shape
  io.out(`${file}: safetensors checkpoint`)
  io.out(`  generation     ${gen}`)
  io.out(`  tensors        ${tensors.length}, ${params.toLocaleString('en-US')} values`)
  const heads = ['au', 'emotion', 'va', 'gaze', 'mesh', 'pose']
  if (tensors.some(([n]) => n.startsWith('blendshape.'))) heads.push('blendshapes')
  io.out(`  heads          ${heads.join(', ')}`)
  const gazeLeft = shape('gaze.left.weight')
  if (gazeLeft) io.out(`  gaze head      eye-window RoIAlign head, ${gazeLeft[0] / 2} bins per angle`)
  const emo = shape('emotion.cls_head.weight')
  if (emo) io.out(`  emotion input  ${emo[1]} features (${emo[1] % 1024 === 20 ? 'reads the AU probabilities' : 'no AU input'})`)
  const conv = GENERATION_CONVENTIONS[gen as keyof typeof GENERATION_CONVENTIONS]
  if (conv) io.out(`  conventions    ${conv.conventionRelease}: crop ${conv.crop}, resize ${conv.resize}, pose ${conv.poseConvention}, gaze ${conv.gazeConvention}`)
  const config = h.metadata.config
  io.out(`  config         ${config ?? '(none in the metadata)'}`)
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
  try {
    const spec = readModelSpec(file, model)
    io.out(`  contract             ok: the runtime loads it${spec.synthetic ? ' (synthetic: its numbers mean nothing)' : ''}`)
  } catch (e) {
    if (!(e instanceof ContractError)) throw e
    io.out(`  contract             REFUSED: ${e.message}`)
    throw new CliError(`${file} does not follow the ONNX contract`)
  }
}

export async function inspectCommand(argv: string[], io: Io): Promise<number> {
  if (argv.length !== 1) throw new UsageError('give exactly one file: a .safetensors checkpoint or an .onnx model')
  const file = argv[0]
  const head = Buffer.alloc(2)
  try {
    const fh = await fs.open(file, 'r')
    await fh.read(head, 0, 2, 0).finally(() => fh.close())
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    throw new CliError(`cannot read ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`)
  }
  if (file.endsWith('.safetensors')) await inspectSafetensors(file, io)
  else if (file.endsWith('.pt') || (head[0] === 0x50 && head[1] === 0x4b)) {
    throw new CliError(`${file} is a torch pickle (the v2.4 checkpoint): Node cannot read it; export it and inspect the .onnx`)
  } else await inspectOnnx(file, io)
  return 0
}
