// LoadOptions.spinWait: ONNX Runtime's intra-op threads spin-wait for work, or sleep.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import * as ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { sessionOptions } from '../lib/backends/onnxruntime-session-options'
import { FaceMultitask } from '../lib/face-multitask'
import { makeFixtureModel } from '../scripts/make-fixture'
import { tempDir } from './helpers/temp-dir'

const dir = tempDir('spin-wait')
const file = path.join(dir, 'fixture.onnx')

beforeAll(() => writeFileSync(file, makeFixtureModel({ generation: 'v2.5' })))

describe('spinWait', () => {
  it("is ONNX Runtime's session.intra_op.allow_spinning, set where the session's config reads it", async () => {
    const options = sessionOptions({ threads: 2, spinWait: false })
    expect(options.extra).toEqual({ session: { intra_op: { allow_spinning: '0' } } })
    expect(sessionOptions({ threads: 2, spinWait: true }).extra).toEqual({ session: { intra_op: { allow_spinning: '1' } } })
    // ONNX Runtime does not check this key's value (anything but "1" turns spinning off), so what
    // is checked is the key: its name is one the runtime's own library holds, and nested keys
    // under "session" reach the session's config (a bad thread affinity there is refused).
    const lib = path.dirname(require.resolve('onnxruntime-node/package.json'))
    const binaries = readdirSync(path.join(lib, 'bin'), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.includes(path.join(process.platform, process.arch)) && /onnxruntime[^/\\]*\.(so|dylib|dll)/.test(f))
    expect(binaries.some((f) => readFileSync(path.join(lib, 'bin', f)).includes('session.intra_op.allow_spinning'))).toBe(true)
    await expect(ort.InferenceSession.create(file, { ...options, extra: { session: { intra_op_thread_affinities: 'x;;' } } })).rejects.toThrow(/ThreadAffinity/)
    const session = await ort.InferenceSession.create(file, options)
    await session.release()
  })

  describe('false', () => {
    let spinning: FaceMultitask
    let sleeping: FaceMultitask
    beforeAll(async () => {
      spinning = await FaceMultitask.load({ model: file, backend: 'cpu', threads: 2 })
      sleeping = await FaceMultitask.load({ model: file, backend: 'cpu', threads: 2, spinWait: false })
    })
    afterAll(async () => {
      await spinning?.close()
      await sleeping?.close()
    })

    it('gives the same faces as the default, and info() says so', async () => {
      const frame = { data: new Uint8Array(320 * 240 * 3).map((_, i) => (i * 37) & 255), width: 320, height: 240, format: 'rgb' as const }
      const boxes: [number, number, number, number][] = [[20, 30, 150, 170], [160, 40, 300, 230]]
      const [a, b] = [await spinning.detect(frame, { boxes }), await sleeping.detect(frame, { boxes })]
      expect(b.map((f) => [...f.auValues, ...f.emotionValues, f.valence, f.arousal])).toEqual(a.map((f) => [...f.auValues, ...f.emotionValues, f.valence, f.arousal]))
      expect(spinning.info().device).toBe('cpu (1 worker x 2 threads)')
      expect(sleeping.info().device).toBe('cpu (1 worker x 2 threads, no spin-wait)')
    })
  })

  it('must be a boolean', async () => {
    for (const bad of [1, 'false', null]) {
      await expect(FaceMultitask.load({ model: file, backend: 'cpu', spinWait: bad as never })).rejects.toThrow(
        new TypeError(`options.spinWait must be true or false, got ${bad === null ? 'null' : typeof bad === 'string' ? `"${bad}"` : bad}`),
      )
    }
  })
})
