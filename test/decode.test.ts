import { describe, expect, it } from 'vitest'
import { ausByName, blendshapesByName, emotionsByName, gazeAngle } from '../lib/decode'
import { AU_NAMES, BLENDSHAPE_NAMES, EMOTION_NAMES } from '../lib/labels'

describe('gaze angle', () => {
  // numpy 2.4.6 on float32 arrays, as py-feat's Detectorv2.forward (feat/detector_v2.py:439-441):
  //   yaw, pitch = np.float32(...); np.arccos(np.clip(np.cos(pitch) * np.cos(yaw), -1.0, 1.0))
  // numpy's float32 cos and arccos are within an ulp or so of correctly rounded, hence 2 steps.
  const NUMPY: [yaw: number, pitch: number, angle: number][] = [
    [2e-4, -2e-4, 0],
    [1e-3, 5e-4, 0.001091830083169043],
    [-1.7e-3, 2.3e-3, 0.0028471453115344048],
    [1e-2, -3e-2, 0.03162294626235962],
    [0.05, 0.1, 0.1117657795548439],
    [-0.3, 0.2, 0.3588724732398987],
    [0.7, -0.45, 0.8111019134521484],
    [1.2, 0.9, 1.3436017036437988],
    [-1.5, -1.4, 1.5587730407714844],
    [3.0, 0.1, 2.9684412479400635],
  ]

  it("is py-feat's float32 arccos of the cosines' product, 0 for a face looking at the camera", () => {
    for (const [yaw, pitch, want] of NUMPY) {
      const got = gazeAngle(Math.fround(pitch), Math.fround(yaw))
      const step = want === 0 ? 0 : 2 ** (Math.floor(Math.log2(want)) - 23)
      expect(Math.abs(got - want), `yaw ${yaw}, pitch ${pitch}: ${got}, numpy ${want}`).toBeLessThanOrEqual(2 * step)
      expect(got).toBe(Math.fround(got))  // a float32, as every other output: JSON prints it short
    }
  })
})

describe('label objects', () => {
  it("hold py-feat's labels in py-feat's order, each the value at its index", () => {
    for (const [names, byName] of [[AU_NAMES, ausByName], [EMOTION_NAMES, emotionsByName], [BLENDSHAPE_NAMES, blendshapesByName]] as const) {
      const values = Float32Array.from(names, (_, i) => i)
      expect(Object.entries(byName(values))).toEqual(names.map((n, i) => [n, i]))
    }
  })
})
