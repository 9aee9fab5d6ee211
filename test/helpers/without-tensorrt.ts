// Tests of what a machine without TensorRT does (the reason given, the CPU fallback) skip, saying
// why, where TensorRT is available; there test/tensorrt-gpu.test.ts runs the GPU path instead.
import { available } from '../../lib/availability'

/** Skips the calling test where TensorRT is available; else returns the reason it is not. */
export async function withoutTensorrt(ctx: { skip: (note?: string) => never }): Promise<string> {
  const { tensorrt } = await available()
  if (tensorrt.available) ctx.skip('TensorRT is available here: this test is about a machine without it')
  return tensorrt.reason ?? ''
}
