// Label lists in the order of the model's output channels (py-feat's order). Frozen: decoding
// and the model checks read these same arrays, so a caller's sort() or fill() would otherwise
// relabel every later result of a model already loaded.

export const AU_NAMES = Object.freeze([
  'AU01', 'AU02', 'AU04', 'AU05', 'AU06', 'AU07', 'AU09', 'AU10', 'AU11', 'AU12',
  'AU14', 'AU15', 'AU17', 'AU20', 'AU23', 'AU24', 'AU25', 'AU26', 'AU28', 'AU43',
] as const)

export const EMOTION_NAMES = Object.freeze(['Neutral', 'Happy', 'Sad', 'Surprise', 'Fear', 'Disgust', 'Anger'] as const)

export const BLENDSHAPE_NAMES = Object.freeze([
  '_neutral', 'browDownLeft', 'browDownRight', 'browInnerUp', 'browOuterUpLeft', 'browOuterUpRight',
  'cheekPuff', 'cheekSquintLeft', 'cheekSquintRight', 'eyeBlinkLeft', 'eyeBlinkRight',
  'eyeLookDownLeft', 'eyeLookDownRight', 'eyeLookInLeft', 'eyeLookInRight', 'eyeLookOutLeft',
  'eyeLookOutRight', 'eyeLookUpLeft', 'eyeLookUpRight', 'eyeSquintLeft', 'eyeSquintRight',
  'eyeWideLeft', 'eyeWideRight', 'jawForward', 'jawLeft', 'jawOpen', 'jawRight', 'mouthClose',
  'mouthDimpleLeft', 'mouthDimpleRight', 'mouthFrownLeft', 'mouthFrownRight', 'mouthFunnel',
  'mouthLeft', 'mouthLowerDownLeft', 'mouthLowerDownRight', 'mouthPressLeft', 'mouthPressRight',
  'mouthPucker', 'mouthRight', 'mouthRollLower', 'mouthRollUpper', 'mouthShrugLower',
  'mouthShrugUpper', 'mouthSmileLeft', 'mouthSmileRight', 'mouthStretchLeft', 'mouthStretchRight',
  'mouthUpperUpLeft', 'mouthUpperUpRight', 'noseSneerLeft', 'noseSneerRight',
] as const)

/** Mesh (MediaPipe 478) indices of the 68 dlib-order landmarks py-feat reports as x_0..x_67. */
export const LANDMARK68_MESH_INDEX: readonly number[] = Object.freeze([
  127, 234, 93, 132, 58, 172, 136, 150, 176, 148, 152, 377, 400, 379, 365, 397, 356,
  70, 63, 105, 66, 107,
  336, 296, 334, 293, 300,
  168, 6, 195, 4,
  240, 75, 1, 305, 460,
  33, 160, 158, 133, 153, 144,
  362, 385, 387, 263, 373, 380,
  61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
  78, 82, 13, 312, 308, 317, 14, 87,
])

export const MESH_POINTS = 478

export type AuName = (typeof AU_NAMES)[number]
export type EmotionName = (typeof EMOTION_NAMES)[number]
export type BlendshapeName = (typeof BLENDSHAPE_NAMES)[number]
