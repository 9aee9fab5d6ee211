// The public model object: load once, detect() many times from anywhere, close() at the end.
import { type Availability, available, tensorrtAvailability } from './availability'
import { type ModelSpec, readModelSpec } from './contract'
import type { Backend } from './backends/backend'
import { OnnxRuntimeBackend } from './backends/onnxruntime'
import { decodeFace } from './decode'
import { AbortError } from './engine-cache'
import { CPU_MAX_BATCH, gpuOptions } from './gpu-options'
import { type FaceJob, facesToRun } from './image-input'
import { readOnnxModel } from './onnx-model'
import { Scheduler } from './scheduler'
import type { DetectOptions, Face, ImageInput, LoadOptions, ModelInfo } from './types'

const BACKENDS = ['auto', 'cpu', 'onnxruntime', 'tensorrt'] as const

function positiveInt(value: unknown, name: string, fallback: number, max = 4096): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || (value as number) < 1 || (value as number) > max) {
    throw new RangeError(`${name} must be an integer from 1 to ${max}, got ${String(value)}`)
  }
  return value as number
}

export class FaceMultitask {
  private readonly scheduler: Scheduler<FaceJob, Face>
  private closed = false
  private closing: Promise<void> | undefined

  private constructor(
    private readonly modelPath: string,
    /** What the model file says about itself (generation, conventions, heads). */
    readonly spec: ModelSpec,
    private readonly engine: Backend,
    private readonly maxBatch: number,
    /** Why backend 'auto' did not take TensorRT. */
    private readonly fallbackReason?: string,
  ) {
    this.scheduler = new Scheduler((jobs) => this.runBatch(jobs), engine.slots, maxBatch)
  }

  /** Which backends can run on this machine, and for each that cannot, exactly why. */
  static available(): Promise<Availability> {
    return available()
  }

  static async load(options: LoadOptions): Promise<FaceMultitask> {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object { model, backend?, ... }')
    if (typeof options.model !== 'string' || options.model === '') throw new TypeError('options.model must be the path of an ONNX file')
    const backend = options.backend ?? 'auto'
    if (!(BACKENDS as readonly string[]).includes(backend)) {
      throw new TypeError(`options.backend must be one of ${BACKENDS.join(', ')}, got ${JSON.stringify(backend)}`)
    }
    const maxBatch = positiveInt(options.maxBatch, 'options.maxBatch', CPU_MAX_BATCH)
    const workers = positiveInt(options.workers, 'options.workers', 1, 64)
    const threads = options.threads === undefined ? undefined : positiveInt(options.threads, 'options.threads', 1, 256)
    // Checked on every machine, so mistakes show before the code meets a GPU.
    const gpu = gpuOptions(options)
    if (gpu.signal?.aborted) throw new AbortError('FaceMultitask.load() was aborted', { cause: gpu.signal.reason })
    let fallbackReason: string | undefined
    if (backend === 'tensorrt' || backend === 'auto') {
      const trt = tensorrtAvailability()
      // The TensorRT backend's TypeScript side is not in this release: where the addon has
      // TensorRT, it is reported (available()) but not yet run. Wire it here, with gpu's settings.
      const found = [trt.version && `TensorRT ${trt.version}`, trt.gpu && `on ${trt.gpu}`].filter(Boolean).join(' ')
      const reason = trt.available ? `${found || 'TensorRT'} is present, but this release cannot run it yet (no TensorRT backend in the JavaScript layer)` : trt.reason!
      if (backend === 'tensorrt') throw new Error(`options.backend: 'tensorrt' is not available: ${reason}; use 'auto' or 'cpu'`)
      fallbackReason = `TensorRT is not available: ${reason}`
    }
    const spec = readModelSpec(options.model, await readOnnxModel(options.model))
    const engine = await OnnxRuntimeBackend.create(options.model, spec, { workers, threads })
    return new FaceMultitask(options.model, spec, engine, maxBatch, fallbackReason)
  }

  get backend(): Backend['name'] {
    return this.engine.name
  }

  info(): ModelInfo {
    return {
      backend: this.engine.name,
      model: this.modelPath,
      generation: this.spec.generation,
      conventionRelease: this.spec.conventionRelease,
      heads: [...this.spec.heads],
      synthetic: this.spec.synthetic,
      device: this.engine.device,
      precision: this.engine.precision,
      maxBatch: this.maxBatch,
      ...(this.fallbackReason !== undefined ? { fallbackReason: this.fallbackReason } : {}),
    }
  }

  /**
   * Runs the model on the faces of one image (boxes in options.boxes, or the image is a 256x256
   * chip) or of many images (one box list per image). Faces come back in box order.
   */
  detect(image: ImageInput, options?: DetectOptions): Promise<Face[]>
  detect(images: ImageInput[], options?: DetectOptions): Promise<Face[][]>
  async detect(input: ImageInput | ImageInput[], options?: DetectOptions): Promise<Face[] | Face[][]> {
    if (this.closed) throw new Error('detect() called after close(): the model is closed')
    const { single, perImage } = facesToRun(input, options, this.spec.crop)
    const faces = await this.scheduler.submit(perImage.flat())
    if (single) return faces
    const out: Face[][] = []
    let k = 0
    for (const jobs of perImage) {
      out.push(faces.slice(k, k + jobs.length))
      k += jobs.length
    }
    return out
  }

  /** Waits for every accepted request to finish, then frees the backend. */
  close(): Promise<void> {
    this.closed = true
    this.closing ??= this.scheduler.idle().then(() => this.engine.close())
    return this.closing
  }

  private async runBatch(jobs: FaceJob[]): Promise<Face[]> {
    const outputs = await this.engine.run(jobs)
    return jobs.map((job, i) => decodeFace(this.spec, outputs, i, job.box))
  }
}
