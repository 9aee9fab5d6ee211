// The thread counts chosen by default follow the usable cores (lib/cores.ts, a container's CPU
// quota counted), not os.availableParallelism(): here a machine of 64 cores whose cgroup allows 3.
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import { batchThreads } from '../lib/cli/batch-threads'
import { FaceMultitask } from '../lib/face-multitask'
import { makeFixtureModel } from '../scripts/make-fixture'
import { tempDir } from './helpers/temp-dir'

vi.mock('node:os', async (original) => ({ ...(await original<typeof import('node:os')>()), availableParallelism: () => 64 }))
vi.mock('../lib/cores', () => ({ usableCores: () => 3 }))

const dir = tempDir('default-threads')
const file = path.join(dir, 'fixture.onnx')
beforeAll(() => writeFileSync(file, makeFixtureModel({ generation: 'v2.5' })))

describe('default thread counts', () => {
  it('the CPU backend: the usable cores over the workers', async () => {
    for (const [workers, device] of [[1, 'cpu (1 worker x 3 threads)'], [2, 'cpu (2 workers x 1 thread)']] as const) {
      const model = await FaceMultitask.load({ model: file, backend: 'cpu', workers })
      try {
        expect(model.info().device).toBe(device)
      } finally {
        await model.close()
      }
    }
  })

  it("batch's own threads: one per 4 usable cores", () => {
    expect(batchThreads()).toBe(1)
  })
})
