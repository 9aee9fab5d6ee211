// `face-multitask detect <image> --model <onnx> [--boxes ...]... [--json] [--backend auto|cpu|tensorrt]`
import { CHIP_SIZE } from '../contract'
import type { Box, ModelInfo } from '../types'
import { checkBoxesInImage, parseBoxes } from './boxes'
import { type Io, UsageError, parseCommand } from './common'
import { ENGINE_FLAGS, type EngineOptions, engineOptions } from './engine-flags'
import { faceTable, facesJson, runLine } from './format'
import { imageName, readImage } from './image'
import { syntheticWarning } from './notices'
import { backendFlag, type CliBackend, type RunResult, runModel } from './run-model'

export const NO_BOXES_MESSAGE = '--boxes is required: face detection is not built in yet (give boxes, or a 256x256 chip)'

interface DetectArgs {
  image: string
  model: string
  boxes?: Box[]
  json: boolean
  backend: CliBackend
  engine: EngineOptions
}

/**
 * --boxes given more than once: all the boxes, in order, as one list (so an error counts the
 * boxes across all of them). Each --boxes must hold at least one box.
 */
function joinBoxes(texts: string[]): string {
  if (texts.length === 1) return texts[0]
  for (const t of texts) if (/^\s*;?\s*$/.test(t)) parseBoxes('') // throws "--boxes is empty"
  // parseBoxes allows one trailing ';': drop it before joining, so it does not make an empty box.
  return texts.map((t, i) => (i < texts.length - 1 ? t.trim().replace(/;$/, '') : t)).join(';')
}

function detectArgs(argv: string[]): DetectArgs {
  const { values, positionals } = parseCommand(argv, {
    model: { type: 'string' },
    boxes: { type: 'string', multiple: true },
    json: { type: 'boolean' },
    backend: { type: 'string' },
    ...ENGINE_FLAGS,
  })
  if (positionals.length === 0) throw new UsageError('<image>: missing image path')
  if (positionals.length > 1) throw new UsageError(`<image>: one image at a time, got ${positionals.length} (${positionals.join(', ')})`)
  if (positionals[0] === '') throw new UsageError('<image>: empty path: give an image file, or - to read one piped in')
  if (values.model === undefined || values.model === '') {
    throw new UsageError('--model is required: the ONNX file to run (made by `face-multitask export`; `face-multitask demo` runs a synthetic one)')
  }
  const backend = backendFlag(values.backend)
  return {
    image: positionals[0],
    model: values.model,
    boxes: values.boxes === undefined ? undefined : parseBoxes(joinBoxes(values.boxes)),
    json: values.json ?? false,
    backend,
    engine: engineOptions(values),
  }
}

export interface DetectFileRequest {
  file: string
  model: string
  backend: CliBackend
  /** Omitted: the image must be a 256x256 chip. */
  boxes?: readonly Box[]
  /** The engine flags given (none: the defaults). */
  engine?: EngineOptions
  /** Called once the model is loaded (detect warns here when the model is synthetic). */
  onLoad?: (info: ModelInfo) => void
}

export interface DetectFileResult extends RunResult {
  width: number
  height: number
}

/** Decodes an image file and runs the model on its faces (shared by detect and demo). */
export async function detectFile(req: DetectFileRequest): Promise<DetectFileResult> {
  const image = await readImage(req.file, { pipe: true })
  const name = imageName(req.file)
  if (req.boxes) checkBoxesInImage(req.boxes, image.width, image.height, name)
  else if (image.width !== CHIP_SIZE || image.height !== CHIP_SIZE) {
    throw new UsageError(`${NO_BOXES_MESSAGE}; ${name} is ${image.width}x${image.height}`)
  }
  const result = await runModel({ model: req.model, backend: req.backend, image, file: name, boxes: req.boxes, engine: req.engine, onLoad: req.onLoad })
  return { ...result, width: image.width, height: image.height }
}

/** The text report of one image: what ran, then a block per face. */
export function detectReport(file: string, r: DetectFileResult, boxes: readonly Box[] | undefined): string[] {
  const n = r.faces.length
  const what = boxes ? `${n} face${n === 1 ? '' : 's'}` : 'a 256x256 chip'
  return [
    `${file} (${r.width}x${r.height}): ${what}`,
    runLine(r.info, n, r.loadMs, r.detectMs),
    '',
    ...faceTable(r.faces, boxes),
  ]
}

export async function detectCommand(argv: string[], io: Io): Promise<number> {
  const args = detectArgs(argv)
  const result = await detectFile({
    file: args.image,
    model: args.model,
    backend: args.backend,
    boxes: args.boxes,
    engine: args.engine,
    onLoad: (info) => { if (info.synthetic) io.err(syntheticWarning(args.model)) },
  })
  if (args.json) io.out(facesJson(result.faces))
  else for (const line of detectReport(imageName(args.image), result, args.boxes)) io.out(line)
  return 0
}
