// Writes a small synthetic ONNX model that honours the contract of lib/contract.ts for one
// generation, so tests and demos can run the whole pipeline without the real (large, licensed)
// weights. It is built here with onnx-proto rather than in Python so `npm test` needs no Python.
//
// Graph: input [N,3,224,224] -> AveragePool(32, stride 32) -> [N,3,7,7] -> Flatten -> [N,147]
//        -> one Gemm per head (seeded weights) -> the head's activation (-> Reshape for mesh).
// The outputs depend on the input but mean nothing: metadata says face_multitask.synthetic=true.
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { onnx } from 'onnx-proto'
import { GENERATIONS, HEAD_OUTPUTS, INPUT_NAME, INPUT_SIZE, type Generation, type Head } from '../lib/contract'
import { contractMetadata } from '../lib/contract-metadata'
import type { Io } from '../lib/cli/common'
import { GENERATION_CONVENTIONS } from '../lib/generations'

const POOL = 32
const POOLED = INPUT_SIZE / POOL // 7
const FEATURES = 3 * POOLED * POOLED // 147
const FLOAT = onnx.TensorProto.DataType.FLOAT
const INT64 = onnx.TensorProto.DataType.INT64
const ATTR = onnx.AttributeProto.AttributeType

/** The activation after each head's Gemm; emotion stays raw because the contract calls it logits. */
const ACTIVATION: Record<Head, 'Sigmoid' | 'Tanh' | null> = {
  au: 'Sigmoid', emotion: null, va: 'Tanh', gaze: 'Tanh', pose: 'Tanh', mesh: 'Sigmoid', blendshapes: 'Sigmoid',
}

/** mulberry32: tiny, seedable and the same on every platform (Math.random is neither). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// Tensors go in raw_data, little-endian as ONNX requires, written through a DataView so the bytes
// do not depend on the host's endianness.
function floatTensor(name: string, dims: number[], values: ArrayLike<number>): onnx.ITensorProto {
  const raw = new Uint8Array(values.length * 4)
  const view = new DataView(raw.buffer)
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i], true)
  return { name, dims, dataType: FLOAT, rawData: raw }
}

function valueInfo(name: string, dims: number[]): onnx.IValueInfoProto {
  const dim = [{ dimParam: 'N' }, ...dims.map((d) => ({ dimValue: d }))]
  return { name, type: { tensorType: { elemType: FLOAT, shape: { dim } } } }
}

function node(opType: string, input: string[], output: string[], attribute: onnx.IAttributeProto[] = []): onnx.INodeProto {
  return { name: `${output[0]}.${opType}`, opType, input, output, attribute }
}

export interface FixtureOptions {
  generation: Generation
  /** PRNG seed, an integer in [0, 2^32); default 1. */
  seed?: number
}

/** Builds the fixture model; the same options always give the same bytes. */
export function makeFixtureModel(opts: FixtureOptions): Uint8Array {
  const { generation, seed = 1 } = opts
  const conv = GENERATION_CONVENTIONS[generation]
  if (!conv) throw new Error(`makeFixtureModel: unknown generation "${generation}" (expected one of ${GENERATIONS.join(', ')})`)
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new Error(`makeFixtureModel: seed must be an integer in [0, 4294967295], got ${seed}`)
  }
  const rand = mulberry32(seed)
  // Scale 2/sqrt(fan_in): with inputs of unit-ish spread the pre-activations spread over about
  // ±1..2, so the outputs visibly move with the input instead of saturating or sitting still.
  const wScale = 2 / Math.sqrt(FEATURES)

  const nodes: onnx.INodeProto[] = [
    node('AveragePool', [INPUT_NAME], ['pooled'], [
      { name: 'kernel_shape', type: ATTR.INTS, ints: [POOL, POOL] },
      { name: 'strides', type: ATTR.INTS, ints: [POOL, POOL] },
    ]),
    node('Flatten', ['pooled'], ['features'], [{ name: 'axis', type: ATTR.INT, i: 1 }]),
  ]
  const initializers: onnx.ITensorProto[] = []
  const outputs: onnx.IValueInfoProto[] = []

  for (const head of conv.heads) {
    const { name, dims } = HEAD_OUTPUTS[head]
    const width = dims.reduce((a, b) => a * b, 1)
    // Weights are drawn row-major [147, width] (Gemm with transB=0), then the biases.
    const w = Array.from({ length: FEATURES * width }, () => (rand() * 2 - 1) * wScale)
    const b = Array.from({ length: width }, () => (rand() * 2 - 1) * 0.5)
    initializers.push(floatTensor(`${head}.weight`, [FEATURES, width], w), floatTensor(`${head}.bias`, [width], b))

    const act = ACTIVATION[head]
    const reshape = dims.length > 1
    let cur = !act && !reshape ? name : `${head}.gemm`
    nodes.push(node('Gemm', ['features', `${head}.weight`, `${head}.bias`], [cur]))
    if (act) {
      const next = reshape ? `${head}.${act.toLowerCase()}` : name
      nodes.push(node(act, [cur], [next]))
      cur = next
    }
    // A crop224_px mesh is the unit-square mesh in pixels of the 224 crop.
    if (head === 'mesh' && conv.meshSpace === 'crop224_px') {
      initializers.push(floatTensor('mesh.scale', [], [INPUT_SIZE]))
      nodes.push(node('Mul', [cur, 'mesh.scale'], ['mesh.px']))
      cur = 'mesh.px'
    }
    if (reshape) {
      // 0 copies the batch size from the input, which also works for an empty batch (-1 would not).
      initializers.push({ name: `${head}.shape`, dims: [dims.length + 1], dataType: INT64, int64Data: [0, ...dims] })
      nodes.push(node('Reshape', [cur, `${head}.shape`], [name]))
    }
    outputs.push(valueInfo(name, dims))
  }

  const metadata = contractMetadata(generation, { synthetic: 'true' })
  const model: onnx.IModelProto = {
    irVersion: 8,
    producerName: 'face-multitask make-fixture',
    docString: `Synthetic ${generation} test model (seed ${seed}): its outputs mean nothing.`,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'face_multitask_fixture',
      node: nodes,
      initializer: initializers,
      input: [valueInfo(INPUT_NAME, [3, INPUT_SIZE, INPUT_SIZE])],
      output: outputs,
    },
    metadataProps: Object.entries(metadata).map(([key, value]) => ({ key, value })),
  }
  return onnx.ModelProto.encode(model).finish()
}

const USAGE = `usage: make-fixture <out.onnx> [--generation ${GENERATIONS.join('|')}] [--seed N]

Writes a small synthetic ONNX model with face-multitask's ONNX contract for tests.
Its outputs depend on the input but mean nothing.

  --generation G   the generation whose metadata and heads to write (default v2.5)
  --variant G      same as --generation
  --seed N         integer seed of the weights, 0..4294967295 (default 1)
  --help           print this help`

class UsageError extends Error {}

function parseArgs(argv: string[]): { help: true } | { help: false; out: string; generation: Generation; seed: number } {
  let out: string | undefined
  let generation: Generation | undefined
  let genFlag = ''
  let seed = 1
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--help' || arg === '-h') return { help: true }
    if (!arg.startsWith('-') || arg === '-') {
      if (out !== undefined) throw new UsageError(`<out.onnx>: only one output path is accepted, got "${out}" and "${arg}"`)
      out = arg
      continue
    }
    const eq = arg.indexOf('=')
    const flag = eq >= 0 ? arg.slice(0, eq) : arg
    if (flag !== '--generation' && flag !== '--variant' && flag !== '--seed') {
      throw new UsageError(`unknown option "${flag}"`)
    }
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i]
    if (value === undefined) throw new UsageError(`${flag}: missing value`)
    if (flag === '--seed') {
      seed = /^\d+$/.test(value) ? Number(value) : NaN
      if (!(seed <= 0xffffffff)) throw new UsageError(`--seed: "${value}" is not an integer in 0..4294967295`)
    } else {
      // Both spellings name --generation in errors, since that is the documented option.
      const what = flag === '--variant' ? '--variant (alias of --generation)' : '--generation'
      if (!(GENERATIONS as readonly string[]).includes(value)) {
        throw new UsageError(`${what}: unknown generation "${value}" (expected one of ${GENERATIONS.join(', ')})`)
      }
      if (generation !== undefined && generation !== value) {
        throw new UsageError(`${what}: "${value}" conflicts with ${genFlag} "${generation}"`)
      }
      generation = value as Generation
      genFlag = flag
    }
  }
  if (out === undefined) throw new UsageError('<out.onnx>: missing output path')
  return { help: false, out, generation: generation ?? 'v2.5', seed }
}

/** The CLI; returns the exit code (0 ok, 1 write failed, 2 bad arguments). */
export async function main(argv: string[], io: Io = { out: console.log, err: console.error }): Promise<number> {
  let args: ReturnType<typeof parseArgs>
  try {
    args = parseArgs(argv)
  } catch (e) {
    if (!(e instanceof UsageError)) throw e
    io.err(`make-fixture: ${e.message}\n(run with --help for usage)`)
    return 2
  }
  if (args.help) {
    io.out(USAGE)
    return 0
  }
  const bytes = makeFixtureModel({ generation: args.generation, seed: args.seed })
  const path = resolve(args.out)
  try {
    await mkdir(dirname(path), { recursive: true })
    await writeFile(path, bytes)
  } catch (e) {
    io.err(`make-fixture: cannot write "${path}": ${(e as Error).message}`)
    return 1
  }
  const kib = (bytes.length / 1024).toFixed(1)
  io.out(`wrote ${path} (generation ${args.generation}, seed ${args.seed}, ${kib} KiB): a synthetic test model, its outputs mean nothing`)
  return 0
}

// Vitest imports this file as a module; only a direct `node dist/scripts/make-fixture.js` runs main.
if (typeof require !== 'undefined' && typeof module !== 'undefined' && require.main === module) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (e) => {
    console.error(e)
    process.exitCode = 1
  })
}
