// `face-multitask demo [--generation g] [--json] [--out-dir dir]`: the whole pipeline on a fresh
// clone with nothing downloaded — a synthetic model (scripts/make-fixture) and a drawn image.
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { makeFixtureModel } from '../../scripts/make-fixture'
import { GENERATIONS, type Generation } from '../contract'
import { notWritable } from '../describe'
import { packageRoot } from '../native'
import { boxText } from './boxes'
import { CliError, type Io, UsageError, messageOf, parseCommand } from './common'
import { DEMO_BOXES, makeDemoImage } from './demo-image'
import { detectFile } from './detect'
import { faceTable, faceToJson } from './format'
import { REAL_WEIGHTS_HINT, demoBanner } from './notices'

interface DemoArgs {
  generation: Generation
  json: boolean
  outDir?: string
}

function demoArgs(argv: string[]): DemoArgs {
  const { values, positionals } = parseCommand(argv, {
    generation: { type: 'string' },
    json: { type: 'boolean' },
    'out-dir': { type: 'string' },
  })
  if (positionals.length > 0) throw new UsageError(`demo takes no arguments, got ${positionals.map((p) => `"${p}"`).join(', ')}`)
  const generation = values.generation ?? 'v2.5'
  if (!(GENERATIONS as readonly string[]).includes(generation)) {
    throw new UsageError(`--generation: unknown generation "${generation}" (expected one of ${GENERATIONS.join(', ')})`)
  }
  if (values['out-dir'] === '') throw new UsageError('--out-dir: empty path')
  return { generation: generation as Generation, json: values.json ?? false, outDir: values['out-dir'] }
}

/** Writes via a temporary file and a rename, so a concurrent demo never reads half a file. */
async function writeAtomic(file: string, bytes: Uint8Array): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`
  try {
    await writeFile(tmp, bytes)
    await rename(tmp, file)
  } catch (e) {
    await rm(tmp, { force: true })
    throw e
  }
}

/** Writes the file unless it already holds exactly these bytes; says which. */
async function ensureFile(file: string, bytes: Uint8Array): Promise<'written' | 'up to date'> {
  const old = await readFile(file).catch(() => undefined)
  if (old && Buffer.compare(old, bytes) === 0) return 'up to date'
  await writeAtomic(file, bytes)
  return 'written'
}

/** The demo's folder: --out-dir, else engines/demo in the package, else (read-only install) a temp folder. */
async function demoDir(outDir: string | undefined): Promise<{ dir: string; note?: string }> {
  const dir = outDir !== undefined ? path.resolve(outDir) : path.join(packageRoot(), 'engines', 'demo')
  try {
    await mkdir(dir, { recursive: true })
    return { dir }
  } catch (e) {
    if (outDir !== undefined || !notWritable(e)) throw new CliError(`cannot create the demo folder "${dir}": ${messageOf(e)}`)
    const fallback = path.join(tmpdir(), 'face-multitask-demo')
    await mkdir(fallback, { recursive: true })
    return { dir: fallback, note: `${dir} is not writable; using ${fallback}` }
  }
}

/** A path as the user would type it: relative to the working folder when inside it. */
function shown(file: string): string {
  const rel = path.relative(process.cwd(), file)
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : file
}

export async function demoCommand(argv: string[], io: Io): Promise<number> {
  const args = demoArgs(argv)
  // In JSON mode stdout carries only the JSON (the notice is inside it); the banner goes to stderr.
  const banner = args.json ? io.err : io.out
  for (const line of demoBanner('below')) banner(line)
  const { dir, note } = await demoDir(args.outDir)
  const modelFile = path.join(dir, `face_multitask_${args.generation}.synthetic.onnx`)
  // Names no other file is likely to have: a file already there by that name is replaced.
  const imageFile = path.join(dir, 'face-multitask-demo.png')
  let modelState: string
  let imageState: string
  try {
    modelState = await ensureFile(modelFile, makeFixtureModel({ generation: args.generation }))
    imageState = await ensureFile(imageFile, await makeDemoImage())
  } catch (e) {
    throw new CliError(`cannot write the demo files in "${dir}": ${messageOf(e)}; choose another folder with --out-dir DIR`)
  }

  const boxes = DEMO_BOXES
  const result = await detectFile({ file: imageFile, model: modelFile, backend: 'auto', boxes })
  const { info, faces } = result

  if (args.json) {
    io.out(JSON.stringify({
      synthetic: true,
      notice: 'DEMO ON A SYNTHETIC MODEL: its weights are random, so these numbers are MEANINGLESS.',
      realWeights: REAL_WEIGHTS_HINT.map((l) => l.trim()),
      model: modelFile,
      generation: info.generation,
      image: { file: imageFile, width: result.width, height: result.height },
      boxes: boxes.map((b) => [...b]),
      backend: info.backend,
      device: info.device,
      precision: info.precision,
      loadMs: Number(result.loadMs.toFixed(1)),
      detectMs: Number(result.detectMs.toFixed(2)),
      faces: faces.map(faceToJson),
    }))
    return 0
  }

  if (note) io.out(`note: ${note}`)
  io.out(`model:   ${shown(modelFile)} (${args.generation} conventions, ${info.conventionRelease}; synthetic; ${modelState})`)
  io.out(`image:   ${shown(imageFile)} (${result.width}x${result.height}, a gradient with 3 drawn faces; ${imageState})`)
  io.out(`boxes:   ${boxes.map(boxText).join(';')}`)
  io.out(`backend: ${info.backend} on ${info.device}, ${info.precision}`)
  io.out(`time:    model load ${result.loadMs.toFixed(0)} ms, detect ${faces.length} faces ${result.detectMs.toFixed(1)} ms`)
  io.out('')
  for (const line of faceTable(faces, boxes)) io.out(line)
  io.out('')
  for (const line of demoBanner('above')) io.out(line)
  return 0
}
