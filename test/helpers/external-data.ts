import { onnx } from 'onnx-proto'

/**
 * The model with every initializer's raw bytes moved into one file, `location`, beside it (ONNX
 * external data, one offset after another): the .onnx's bytes and that file's. Two models of the
 * same graph and tensor sizes (fixtures of one generation) get the same layout.
 */
export function withExternalData(model: Uint8Array, location: string): { onnx: Uint8Array; weights: Buffer } {
  const m = onnx.ModelProto.decode(model)
  const parts: Uint8Array[] = []
  let offset = 0
  for (const t of m.graph!.initializer) {
    const raw = t.rawData
    if (!raw || raw.length === 0) continue
    t.externalData = [
      onnx.StringStringEntryProto.create({ key: 'location', value: location }),
      onnx.StringStringEntryProto.create({ key: 'offset', value: String(offset) }),
      onnx.StringStringEntryProto.create({ key: 'length', value: String(raw.length) }),
    ]
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL
    t.rawData = new Uint8Array(0)
    parts.push(raw)
    offset += raw.length
  }
  return { onnx: onnx.ModelProto.encode(m).finish(), weights: Buffer.concat(parts) }
}
