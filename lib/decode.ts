// Raw model outputs of a batch -> Face results, shared by every backend. A batch mixes faces of
// several detect() calls, so each face's arrays are copied out into one small buffer of its own
// (under 7 KB): a caller that changes or transfers its results touches no other caller's.
import { CHIP_SIZE, type ModelSpec, HEAD_OUTPUTS, INPUT_SIZE } from './contract'
import type { Rect } from './crop'
import { type AuName, type BlendshapeName, EMOTION_NAMES, type EmotionName, LANDMARK68_MESH_INDEX, MESH_POINTS } from './labels'
import type { Face } from './types'

export type BatchOutputs = Record<string, Float32Array>

const CROP_OFFSET = (CHIP_SIZE - INPUT_SIZE) / 2 / CHIP_SIZE // 16/256: the centre crop's offset in chip units

// Each label object as one literal: built key by key from the label lists (79 keys added through
// one store site), they took a third of decodeFace. Their keys are those lists, in the same order
// (test/decode.test.ts).
export const ausByName = (v: Float32Array): Record<AuName, number> => ({
  AU01: v[0], AU02: v[1], AU04: v[2], AU05: v[3], AU06: v[4], AU07: v[5], AU09: v[6], AU10: v[7],
  AU11: v[8], AU12: v[9], AU14: v[10], AU15: v[11], AU17: v[12], AU20: v[13], AU23: v[14],
  AU24: v[15], AU25: v[16], AU26: v[17], AU28: v[18], AU43: v[19],
})
export const emotionsByName = (v: Float32Array): Record<EmotionName, number> => ({
  Neutral: v[0], Happy: v[1], Sad: v[2], Surprise: v[3], Fear: v[4], Disgust: v[5], Anger: v[6],
})
export const blendshapesByName = (v: Float32Array): Record<BlendshapeName, number> => ({
  _neutral: v[0], browDownLeft: v[1], browDownRight: v[2], browInnerUp: v[3],
  browOuterUpLeft: v[4], browOuterUpRight: v[5], cheekPuff: v[6], cheekSquintLeft: v[7],
  cheekSquintRight: v[8], eyeBlinkLeft: v[9], eyeBlinkRight: v[10], eyeLookDownLeft: v[11],
  eyeLookDownRight: v[12], eyeLookInLeft: v[13], eyeLookInRight: v[14], eyeLookOutLeft: v[15],
  eyeLookOutRight: v[16], eyeLookUpLeft: v[17], eyeLookUpRight: v[18], eyeSquintLeft: v[19],
  eyeSquintRight: v[20], eyeWideLeft: v[21], eyeWideRight: v[22], jawForward: v[23],
  jawLeft: v[24], jawOpen: v[25], jawRight: v[26], mouthClose: v[27], mouthDimpleLeft: v[28],
  mouthDimpleRight: v[29], mouthFrownLeft: v[30], mouthFrownRight: v[31], mouthFunnel: v[32],
  mouthLeft: v[33], mouthLowerDownLeft: v[34], mouthLowerDownRight: v[35], mouthPressLeft: v[36],
  mouthPressRight: v[37], mouthPucker: v[38], mouthRight: v[39], mouthRollLower: v[40],
  mouthRollUpper: v[41], mouthShrugLower: v[42], mouthShrugUpper: v[43], mouthSmileLeft: v[44],
  mouthSmileRight: v[45], mouthStretchLeft: v[46], mouthStretchRight: v[47],
  mouthUpperUpLeft: v[48], mouthUpperUpRight: v[49], noseSneerLeft: v[50], noseSneerRight: v[51],
})

function softmaxInPlace(v: Float32Array): void {
  let max = -Infinity
  for (const x of v) max = Math.max(max, x)
  let sum = 0
  for (let i = 0; i < v.length; i++) {
    v[i] = Math.exp(v[i] - max)
    sum += v[i]
  }
  for (let i = 0; i < v.length; i++) v[i] /= sum
}

/** A face's mesh (`from` at `offset`) from the model's space to frame pixels of the reported box, into `mesh` (z passes through). */
function meshToFrame(spec: ModelSpec, mesh: Float32Array, box: Rect, from: Float32Array, offset: number): void {
  const [x0, y0, w, h] = box
  if (spec.meshSpace === 'unit_square') {
    for (let p = 0; p < MESH_POINTS; p++) {
      mesh[3 * p] = from[offset + 3 * p] * w + x0
      mesh[3 * p + 1] = from[offset + 3 * p + 1] * h + y0
      mesh[3 * p + 2] = from[offset + 3 * p + 2]
    }
  } else {
    // crop224_px: pixels of the 224 centre crop of the chip, mapped as the v2.4 code does.
    for (let p = 0; p < MESH_POINTS; p++) {
      mesh[3 * p] = (from[offset + 3 * p] / INPUT_SIZE + CROP_OFFSET) * w + x0
      mesh[3 * p + 1] = (from[offset + 3 * p + 1] / INPUT_SIZE + CROP_OFFSET) * h + y0
      mesh[3 * p + 2] = from[offset + 3 * p + 2]
    }
  }
}

/**
 * Throws unless every head's output holds one row per face: a model whose output ignores the
 * batch axis (a batch of 1 baked in) would give the faces after the first zeros or undefined.
 */
export function checkBatchOutputs(spec: ModelSpec, outputs: BatchOutputs, faces: number): void {
  for (const h of spec.heads) {
    const { name, dims } = HEAD_OUTPUTS[h]
    const want = faces * dims.reduce((a, b) => a * b, 1)
    const got = outputs[name]
    if (!(got instanceof Float32Array)) throw new Error(`the model gave no float32 output "${name}" for a batch of ${faces}`)
    if (got.length !== want) throw new Error(`the model's output "${name}" holds ${got.length} values for a batch of ${faces} faces, not ${want} ([${faces}, ${dims.join(', ')}]): its batch axis is not the input's`)
  }
}

/**
 * What detect() rejects with when the model gave NaN or an infinity for a face of the call (an
 * FP16 overflow, a broken export): the face's numbers would mean nothing, and its emotion label
 * would be picked from NaN. It belongs to the call's images, not to the model, which stays usable.
 */
export class NonFiniteOutputError extends Error {
  /** `face`: the argument the face came in, with its box (`options.boxes[1] = [10, 20, 90, 110]`); `others`: how many more faces of the call gave one. */
  constructor(readonly output: string, value: number, hint: string, readonly face: string, others = 0) {
    const more = others > 0 ? ` (and ${others} other face${others > 1 ? 's' : ''} of this call)` : ''
    super(`the model gave ${String(value)} in its output "${output}" for ${face}${more}, so that face's results would be meaningless; the call gives none${hint}`)
    this.name = 'NonFiniteOutputError'
  }
}

/**
 * Throws NonFiniteOutputError, naming the first face, when a head's output holds NaN or an
 * infinity. A batch shared by several calls is rerun call by call on a throw, so the error
 * reaches the call(s) whose faces gave it. `faces`: each row's FaceJob.face. `hint` ends the
 * message (what the backend suggests trying).
 */
export function checkFiniteOutputs(spec: ModelSpec, outputs: BatchOutputs, faces: readonly string[], hint = ''): void {
  let first: { row: number; output: string; value: number } | undefined
  const rows = new Set<number>()
  for (const h of spec.heads) {
    const { name } = HEAD_OUTPUTS[h]
    const values = outputs[name]
    const size = values.length / faces.length
    for (let k = 0; k < values.length; k++) {
      if (Number.isFinite(values[k])) continue
      const row = Math.floor(k / size)
      rows.add(row)
      if (first === undefined || row < first.row) first = { row, output: name, value: values[k] }
    }
  }
  if (first !== undefined) throw new NonFiniteOutputError(first.output, first.value, hint, faces[first.row], rows.size - 1)
}

/**
 * The angle between the gaze and the camera axis, as py-feat's Detectorv2.forward computes it:
 * arccos(clip(cos(pitch) * cos(yaw), -1, 1)) in numpy on the model's float32 gaze, so in float32.
 * In float64 a face looking at the camera (|yaw|, |pitch| < 2.4e-4, where the float32 product of
 * the cosines is 1 exactly) would get up to 3.4e-4 rad where py-feat gives 0.
 */
export function gazeAngle(pitch: number, yaw: number): number {
  const f = Math.fround
  return f(Math.acos(Math.min(1, Math.max(-1, f(f(Math.cos(pitch)) * f(Math.cos(yaw)))))))
}

/** Values per face of each head's output. */
const ROW = Object.fromEntries(Object.entries(HEAD_OUTPUTS).map(([h, { dims }]) => [h, dims.reduce((a, b) => a * b, 1)])) as Record<keyof typeof HEAD_OUTPUTS, number>
const LANDMARKS = 2 * LANDMARK68_MESH_INDEX.length
/** A face's own buffer, in floats, without blendshapes. */
const OWN = ROW.au + ROW.emotion + ROW.mesh + LANDMARKS

/** Face i's row of a head's output copied into `to` (which holds one row). */
function copyRow(to: Float32Array, from: Float32Array, i: number): Float32Array {
  const n = to.length
  const at = i * n
  for (let k = 0; k < n; k++) to[k] = from[at + k]
  return to
}

export function decodeFace(spec: ModelSpec, outputs: BatchOutputs, i: number, box: Rect): Face {
  const blendshapes = spec.heads.includes('blendshapes')
  const own = new Float32Array(OWN + (blendshapes ? ROW.blendshapes : 0))
  // Views of `own` one after the other: au, emotion, mesh, landmarks68, blendshapes.
  let at = 0
  const view = (n: number) => own.subarray(at, (at += n))
  const auValues = copyRow(view(ROW.au), outputs[HEAD_OUTPUTS.au.name], i)
  const emotionValues = copyRow(view(ROW.emotion), outputs[HEAD_OUTPUTS.emotion.name], i)
  softmaxInPlace(emotionValues)
  let top = 0
  for (let k = 1; k < emotionValues.length; k++) if (emotionValues[k] > emotionValues[top]) top = k
  const va = outputs[HEAD_OUTPUTS.va.name]
  const va0 = i * ROW.va
  const g = outputs[HEAD_OUTPUTS.gaze.name]
  const g0 = i * ROW.gaze
  const gazePitch = spec.gaze.pitch.sign * g[g0 + spec.gaze.pitch.index]
  const gazeYaw = spec.gaze.yaw.sign * g[g0 + spec.gaze.yaw.index]
  const p = outputs[HEAD_OUTPUTS.pose.name]
  const p0 = i * ROW.pose
  const mesh = view(ROW.mesh)
  meshToFrame(spec, mesh, box, outputs[HEAD_OUTPUTS.mesh.name], i * ROW.mesh)
  const landmarks68 = view(LANDMARKS)
  for (let k = 0; k < LANDMARK68_MESH_INDEX.length; k++) {
    const m = LANDMARK68_MESH_INDEX[k]
    landmarks68[2 * k] = mesh[3 * m]
    landmarks68[2 * k + 1] = mesh[3 * m + 1]
  }
  const face: Face = {
    box: { x: box[0], y: box[1], width: box[2], height: box[3] },
    aus: ausByName(auValues),
    auValues,
    emotions: emotionsByName(emotionValues),
    emotionValues,
    emotion: EMOTION_NAMES[top],
    valence: va[va0],
    arousal: va[va0 + 1],
    gaze: {
      yaw: gazeYaw,
      pitch: gazePitch,
      angle: gazeAngle(gazePitch, gazeYaw),
    },
    pose: {
      pitch: spec.pose.pitch.sign * p[p0 + spec.pose.pitch.index],
      roll: spec.pose.roll.sign * p[p0 + spec.pose.roll.index],
      yaw: spec.pose.yaw.sign * p[p0 + spec.pose.yaw.index],
      x: p[p0 + 3],
      y: p[p0 + 4],
      z: p[p0 + 5],
    },
    mesh,
    landmarks68,
  }
  if (blendshapes) {
    const values = copyRow(view(ROW.blendshapes), outputs[HEAD_OUTPUTS.blendshapes.name], i)
    face.blendshapes = blendshapesByName(values)
    face.blendshapeValues = values
  }
  return face
}
