// FaceMultitask.load spied on, still loading for real: what the CLI asked for, and what it got.
import { vi } from 'vitest'
import { FaceMultitask } from '../../lib/face-multitask'
import type { ModelInfo } from '../../lib/types'

/** The spy (restore it with mockRestore) and the info() of each model it loaded. */
export function spyOnLoad() {
  const load = FaceMultitask.load
  const infos: ModelInfo[] = []
  const spy = vi.spyOn(FaceMultitask, 'load').mockImplementation(async (options) => {
    const m = await load.call(FaceMultitask, options)
    infos.push(m.info())
    return m
  })
  return { spy, infos }
}
