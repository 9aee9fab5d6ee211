// What the CLI says about synthetic models: they run the whole pipeline, but their numbers are
// random-weight noise, so every output that comes from one says so and says how to get real ones.

export const REAL_WEIGHTS_HINT = [
  'To run real weights, export py-feat\'s checkpoint to ONNX and pass it with --model:',
  '  face-multitask export <face_multitask_v2*.safetensors>',
  '  face-multitask detect <image> --model <out.onnx> --boxes "x1,y1,x2,y2"',
]

/** The stderr warning of `detect` when the model's metadata says synthetic=true. */
export function syntheticWarning(model: string): string {
  return `warning: ${model} is a SYNTHETIC test model (random weights): its numbers mean nothing. ` +
    'For real results run `face-multitask export <face_multitask_v2*.safetensors>` and pass the .onnx it writes with --model.'
}

/** The demo's banner, printed at the top and bottom of its output. */
export function demoBanner(where: 'below' | 'above'): string[] {
  const rule = '='.repeat(94)
  return [
    rule,
    `DEMO ON A SYNTHETIC MODEL: its weights are random, so the numbers ${where} are MEANINGLESS.`,
    'The demo only shows that the pipeline runs end to end (decode, crop, resize, inference, decoding).',
    ...REAL_WEIGHTS_HINT,
    rule,
  ]
}
