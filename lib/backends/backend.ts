// What the model needs from a backend: run a batch of face jobs (preprocessing included, so a GPU
// backend can preprocess on the device) and return the raw outputs, batch-major.
import type { BatchOutputs } from '../decode'
import type { FaceJob } from '../image-input'
import type { BatchRequests } from '../scheduler'
import type { BackendName, GpuStages } from '../types'

export interface Backend {
  readonly name: BackendName
  /** Batches that can run at once. */
  readonly slots: number
  readonly device: string
  readonly precision: string
  /** TensorRT: the engine file in the cache. */
  readonly enginePath?: string
  /** TensorRT: the batches' cost per stage so far. */
  stages?(): GpuStages
  /** TensorRT: why the GPU is lost (a context-fatal CUDA error), or '' while it is not. */
  lost?(): string
  /**
   * `requests.wanted()`, asked just before inference, says which faces are still wanted: the
   * others (a call aborted while the batch waited for the engine) may be left out, their rows of
   * the outputs then holding anything, and a batch with none wanted may reject instead of
   * running. `requests.framesRead()` once the frames are preprocessed lets an aborted call
   * reject before the inference ends; a backend that does not call it holds them to the end.
   */
  run(faces: FaceJob[], requests?: BatchRequests): Promise<BatchOutputs>
  /** Frees everything; called once no batch is running. */
  close(): Promise<void>
}
