// Reads what the runtime needs from an ONNX file — metadata, graph inputs and outputs — without
// decoding the weights: the ModelProto and GraphProto are walked field by field and only the
// small messages are decoded (onnx-proto's generated classes).
import { readFile } from 'node:fs/promises'
import { onnx } from 'onnx-proto'
import { Reader } from 'protobufjs/minimal'
import { fileErrorReason, readableFile } from './describe'

export interface OnnxValueInfo {
  name: string
  elemType: string
  /** A number per fixed axis, the symbolic name (or '?') per dynamic one. */
  shape: (number | string)[]
}

export interface OnnxModelInfo {
  metadata: Record<string, string>
  inputs: OnnxValueInfo[]
  outputs: OnnxValueInfo[]
  opset: number
  /**
   * The files, relative to the model's folder, that hold tensors stored outside it (ONNX external
   * data): initializers, Constant nodes' values and those of subgraphs (If, Loop, Scan) alike.
   */
  externalData: string[]
}

const ELEM_TYPES: Record<number, string> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 5: 'int16', 6: 'int32', 7: 'int64', 9: 'bool', 10: 'float16', 11: 'float64', 16: 'bfloat16',
}

// Field numbers from onnx.proto.
const MODEL_GRAPH = 7
const MODEL_OPSET_IMPORT = 8
const MODEL_METADATA_PROPS = 14
const GRAPH_NODE = 1
const GRAPH_INPUT = 11
const GRAPH_OUTPUT = 12
const GRAPH_INITIALIZER = 5
const GRAPH_SPARSE_INITIALIZER = 15
const NODE_ATTRIBUTE = 5
const ATTRIBUTE_TENSOR = 5
const ATTRIBUTE_GRAPH = 6
const ATTRIBUTE_TENSORS = 10
const ATTRIBUTE_GRAPHS = 11
const ATTRIBUTE_SPARSE_TENSOR = 22
const ATTRIBUTE_SPARSE_TENSORS = 23
const SPARSE_VALUES = 1
const SPARSE_INDICES = 2

function valueInfo(bytes: Uint8Array): OnnxValueInfo {
  const v = onnx.ValueInfoProto.decode(bytes)
  const t = v.type?.tensorType
  const dims = t?.shape?.dim ?? []
  return {
    name: v.name,
    elemType: ELEM_TYPES[t?.elemType ?? 0] ?? `type ${t?.elemType}`,
    shape: dims.map((d) => (d.dimParam ? d.dimParam : (d as onnx.TensorShapeProto.Dimension).value === 'dimValue' ? Number(d.dimValue) : '?')),
  }
}

/** Calls `each` for every length-delimited field of a message, with its field number and bytes. */
function fields(bytes: Uint8Array, each: (field: number, value: Uint8Array) => void): void {
  const r = Reader.create(bytes)
  while (r.pos < r.len) {
    const tag = r.uint32()
    if ((tag & 7) === 2) each(tag >>> 3, r.bytes())
    else r.skipType(tag & 7)
  }
}

/** A TensorProto's external-data file, if it is stored outside the model, into `into`; its name. */
function tensorLocation(bytes: Uint8Array, into: string[]): string {
  const t = onnx.TensorProto.decode(bytes)
  const location = t.externalData.find((e) => e.key === 'location')?.value
  if (location && !into.includes(location)) into.push(location)
  return t.name
}

function sparseLocations(bytes: Uint8Array, into: string[]): void {
  fields(bytes, (f, v) => { if (f === SPARSE_VALUES || f === SPARSE_INDICES) tensorLocation(v, into) })
}

/** The external-data files of a graph's nodes' attributes: Constant values, and subgraphs all through. */
function nodeLocations(node: Uint8Array, into: string[], depth: number): void {
  fields(node, (f, attribute) => {
    if (f !== NODE_ATTRIBUTE) return
    fields(attribute, (a, v) => {
      if (a === ATTRIBUTE_TENSOR || a === ATTRIBUTE_TENSORS) tensorLocation(v, into)
      else if (a === ATTRIBUTE_SPARSE_TENSOR || a === ATTRIBUTE_SPARSE_TENSORS) sparseLocations(v, into)
      else if (a === ATTRIBUTE_GRAPH || a === ATTRIBUTE_GRAPHS) graphLocations(v, into, depth + 1)
    })
  })
}

/** The external-data files of a graph, its subgraphs' included; `initializer` hears each initializer's name. */
function graphLocations(graph: Uint8Array, into: string[], depth: number, initializer?: (name: string) => void): void {
  if (depth > 64) throw new Error('subgraphs nested more than 64 deep')
  fields(graph, (f, v) => {
    if (f === GRAPH_INITIALIZER) {
      const name = tensorLocation(v, into)  // not inside ?.(): a subgraph's call has no listener
      initializer?.(name)
    }
    else if (f === GRAPH_SPARSE_INITIALIZER) sparseLocations(v, into)
    else if (f === GRAPH_NODE) nodeLocations(v, into, depth)
  })
}

export function parseOnnxModel(buf: Uint8Array): OnnxModelInfo {
  const info: OnnxModelInfo = { metadata: {}, inputs: [], outputs: [], opset: 0, externalData: [] }
  const initializers = new Set<string>()
  const graphInputs: OnnxValueInfo[] = []
  let sawGraph = false
  const top = Reader.create(buf)
  while (top.pos < top.len) {
    const tag = top.uint32()
    const field = tag >>> 3
    if (field === MODEL_METADATA_PROPS && (tag & 7) === 2) {
      const e = onnx.StringStringEntryProto.decode(top.bytes())
      info.metadata[e.key] = e.value
    } else if (field === MODEL_OPSET_IMPORT && (tag & 7) === 2) {
      const o = onnx.OperatorSetIdProto.decode(top.bytes())
      if (!o.domain || o.domain === 'ai.onnx') info.opset = Number(o.version)
    } else if (field === MODEL_GRAPH && (tag & 7) === 2) {
      sawGraph = true
      const graphBytes = top.bytes()
      fields(graphBytes, (f, v) => {
        if (f === GRAPH_INPUT) graphInputs.push(valueInfo(v))
        else if (f === GRAPH_OUTPUT) info.outputs.push(valueInfo(v))
      })
      // Older exporters list initializers as graph inputs too: their names take them out below.
      graphLocations(graphBytes, info.externalData, 0, (name) => initializers.add(name))
    } else top.skipType(tag & 7)
  }
  if (!sawGraph) throw new Error('no graph in the file')
  info.inputs = graphInputs.filter((v) => !initializers.has(v.name))
  return info
}

/** Reads and parses an ONNX file; errors say which file and why. */
export async function readOnnxModel(file: string): Promise<OnnxModelInfo> {
  // Not read before it is known to be a file: reading a FIFO would wait for a writer for ever.
  const readable = await readableFile(file)
  if ('problem' in readable) throw new Error(`options.model: cannot read "${file}": ${readable.problem}`)
  let buf: Buffer
  try {
    buf = await readFile(file)
  } catch (e) {
    throw new Error(`options.model: cannot read "${file}": ${fileErrorReason(e)}`)
  }
  try {
    return parseOnnxModel(buf)
  } catch (e) {
    const why = (e as Error).message
    // protobuf's words for a length that runs past the end of the bytes: most often a file cut short.
    const cut = /index out of range/.test(why) ? '; it ends before what it declares: cut off by a copy or download?' : ''
    throw new Error(`options.model: "${file}" is not a readable ONNX model (${why}${cut})`)
  }
}
