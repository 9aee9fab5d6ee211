// How the CLI shows faces: a readable block per face (shared by detect and demo) and plain JSON
// (typed arrays as plain arrays, keys always in the same order).
import { AU_NAMES } from '../labels'
import type { Box, Face, ModelInfo } from '../types'
import { boxText } from './boxes'
import { shortestFloat32, shortestValues } from './float32-json'

const DEG = 180 / Math.PI

function signed(v: number, digits: number): string {
  const s = v.toFixed(digits)
  return v >= 0 && !s.startsWith('-') ? `+${s}` : s
}

/** "+12.3° (+0.2147 rad)" */
function angle(rad: number, signedValue = true): string {
  const deg = signedValue ? signed(rad * DEG, 1) : (rad * DEG).toFixed(1)
  const r = signedValue ? signed(rad, 4) : rad.toFixed(4)
  return `${deg}° (${r} rad)`
}

function pad(label: string): string {
  return `  ${label.padEnd(13)}`
}

/** The n largest entries of a record, largest first (ties keep the record's order). */
function top<K extends string>(values: Record<K, number>, names: readonly K[], n: number): [K, number][] {
  return names.map((k) => [k, values[k]] as [K, number]).sort((a, b) => b[1] - a[1]).slice(0, n)
}

/** One block of lines per face; `boxes` (the boxes given) are shown next to the reported box. */
export function faceTable(faces: readonly Face[], boxes?: readonly Box[]): string[] {
  const lines: string[] = []
  faces.forEach((f, i) => {
    if (i > 0) lines.push('')
    const b = f.box
    const given = boxes?.[i] ? `given ${boxText(boxes[i])}, ` : ''
    lines.push(`face ${i + 1} of ${faces.length}  (${given}box x=${b.x.toFixed(1)} y=${b.y.toFixed(1)} w=${b.width.toFixed(1)} h=${b.height.toFixed(1)})`)
    const emo = Object.keys(f.emotions) as (keyof Face['emotions'])[]
    const [, second, third] = top(f.emotions, emo, 3)
    lines.push(`${pad('emotion')}${f.emotion} ${f.emotions[f.emotion].toFixed(3)}   (then ${second[0]} ${second[1].toFixed(3)}, ${third[0]} ${third[1].toFixed(3)})`)
    lines.push(`${pad('valence')}${signed(f.valence, 3)}   arousal ${signed(f.arousal, 3)}`)
    lines.push(`${pad('AUs (top 5)')}${top(f.aus, AU_NAMES, 5).map(([k, v]) => `${k} ${v.toFixed(3)}`).join('  ')}`)
    lines.push(`${pad('gaze')}yaw ${angle(f.gaze.yaw)}   pitch ${angle(f.gaze.pitch)}   angle ${angle(f.gaze.angle, false)}`)
    lines.push(`${pad('head pose')}pitch ${angle(f.pose.pitch)}   roll ${angle(f.pose.roll)}   yaw ${angle(f.pose.yaw)}`)
    const extra = f.blendshapeValues ? `${f.blendshapeValues.length} blendshapes, ` : ''
    lines.push(`${pad('also')}${extra}${f.mesh.length / 3}-point mesh, ${f.landmarks68.length / 2} landmarks (all in --json)`)
  })
  return lines
}

/**
 * A face as JSON: every field of Face, typed arrays as plain arrays, in a fixed key order. Its
 * float32 values (the box too, computed in float32 as py-feat does) are given as their shortest
 * decimals (float32-json.ts).
 */
export interface JsonFace {
  box: { x: number; y: number; width: number; height: number }
  emotion: string
  emotions: Record<string, number>
  valence: number
  arousal: number
  aus: Record<string, number>
  gaze: { yaw: number; pitch: number; angle: number }
  pose: { pitch: number; roll: number; yaw: number; x: number; y: number; z: number }
  blendshapes?: Record<string, number>
  landmarks68: number[]
  mesh: number[]
  auValues: number[]
  emotionValues: number[]
  blendshapeValues?: number[]
}

export function faceToJson(f: Face): JsonFace {
  return faceToJsonWith(f, { mesh: true }) as JsonFace
}

/**
 * faceToJson(), or without the mesh (batch --no-mesh: the mesh is about three quarters of a
 * face's numbers, and converting it only to drop it took most of the time). Built in its final
 * key order, each array as a plain array of doubles, which JSON.stringify writes faster than the
 * mixed arrays Array.from(typedArray, fn) gives.
 */
export function faceToJsonWith(f: Face, { mesh }: { mesh: boolean }): JsonFace | Omit<JsonFace, 'mesh'> {
  const { box, gaze, pose } = f
  const short = shortestFloat32
  const out: Partial<JsonFace> = {
    box: shortestValues({ x: box.x, y: box.y, width: box.width, height: box.height }),
    emotion: f.emotion,
    emotions: shortestValues(f.emotions),
    valence: short(f.valence),
    arousal: short(f.arousal),
    aus: shortestValues(f.aus),
    gaze: shortestValues({ yaw: gaze.yaw, pitch: gaze.pitch, angle: gaze.angle }),
    pose: shortestValues({ pitch: pose.pitch, roll: pose.roll, yaw: pose.yaw, x: pose.x, y: pose.y, z: pose.z }),
  }
  // Placed after pose, before the arrays.
  if (f.blendshapes && f.blendshapeValues) out.blendshapes = shortestValues(f.blendshapes)
  out.landmarks68 = shortestArray(f.landmarks68)
  if (mesh) out.mesh = shortestArray(f.mesh)
  out.auValues = shortestArray(f.auValues)
  out.emotionValues = shortestArray(f.emotionValues)
  if (f.blendshapes && f.blendshapeValues) out.blendshapeValues = shortestArray(f.blendshapeValues)
  return out as JsonFace
}

/** The values as their shortest decimals, in an array of doubles. */
function shortestArray(values: ArrayLike<number>): number[] {
  const out: number[] = []
  for (let i = 0; i < values.length; i++) out.push(shortestFloat32(values[i]))
  return out
}

/** Which model, backend and device ran, and how long it took. */
export function runLine(info: ModelInfo, faces: number, loadMs: number, detectMs: number): string {
  const model = `${info.generation}${info.synthetic ? ', synthetic' : ''}`
  return `model ${info.model} (${model}); backend ${info.backend} on ${info.device}, ${info.precision}; ` +
    `load ${loadMs.toFixed(0)} ms, detect ${faces} face${faces === 1 ? '' : 's'} ${detectMs.toFixed(1)} ms`
}

/** A JSON array of faces, one face per line (valid JSON, and greppable line by line). */
export function facesJson(faces: readonly Face[]): string {
  if (faces.length === 0) return '[]'
  return `[\n${faces.map((f) => JSON.stringify(faceToJson(f))).join(',\n')}\n]`
}
