// The public model object: load once, detect() many times from anywhere, close() at the end.
import path from 'node:path'
import { markAsUntransferable } from 'node:worker_threads'
import { type Availability, available, tensorrtProbe } from './availability'
import { type ModelSpec, readModelSpec } from './contract'
import type { Backend } from './backends/backend'
import { OnnxRuntimeBackend } from './backends/onnxruntime'
import { TensorRtBackend } from './backends/tensorrt'
import { checkBatchOutputs, checkFiniteOutputs, decodeFace } from './decode'
import { AbortError, abortable, reasonOf } from './engine-cache/abort'
import { describeValue, notKeyedObject, unknownKeysMessage } from './describe'
import { CPU_MAX_BATCH, gpuOptions, intOption, MAX_BATCH_LIMIT, MAX_THREADS, MAX_WORKERS } from './gpu-options'
import { checkStillWhole, type FaceJob, facesToRun, MAX_SIDE, PIXEL_FORMATS } from './image-input'
import { readOnnxModel } from './onnx-model'
import { type BatchRequests, Scheduler } from './scheduler'
import type { BoxInput, DetectOptions, Face, ImageInput, LoadOptions, ModelInfo, PixelFormat } from './types'

export const BACKENDS = ['auto', 'cpu', 'onnxruntime', 'tensorrt'] as const  // onnxruntime: cpu's other name
/** What load() may be given: LoadOptions' keys, every one (the type makes this list complete). */
const LOAD_OPTIONS = Object.keys({
  model: 1, backend: 1, maxBatch: 1, workers: 1, threads: 1, spinWait: 1, precision: 1, minBatch: 1, optBatch: 1, streams: 1, engineDir: 1,
  builderOptimizationLevel: 1, workspaceMiB: 1, cudaGraphs: 1, onProgress: 1, signal: 1,
} satisfies Record<keyof LoadOptions, 1>)

// A model dropped without close() would keep its CPU threads and their sessions (hundreds of MB
// for the real model) for the life of the process, and a service that loads a new model on each
// config change and forgets the old one would run out of memory: its backend is closed once it is
// collected (no call can be pending then: a running batch holds it). TensorRT engines close
// themselves when collected (the addon's finalizer, which process.exit() waits for).
const dropped = new FinalizationRegistry<Backend>((engine) => {
  engine.close().catch(() => {})
})

export class FaceMultitask {
  private readonly scheduler: Scheduler<FaceJob, Face>
  /** What a NaN output's error suggests trying, for this backend and precision. */
  private readonly nonFiniteHint: string
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
    this.scheduler = new Scheduler((jobs, requests) => this.runBatch(jobs, requests), engine.slots, maxBatch)
    if (engine.name === 'onnxruntime') dropped.register(this, engine, this)
    this.nonFiniteHint = engine.precision !== 'fp16' ? ''
      : `; FP16 can overflow where FP32 does not: compare with ${engine.name === 'tensorrt' ? "precision 'fp32' (options.precision)" : 'the FP32 export of the model'}`
  }

  /** Which backends can run on this machine, and for each that cannot, exactly why. */
  static available(): Promise<Availability> {
    return available()
  }

  static async load(options: LoadOptions): Promise<FaceMultitask> {
    const got = notKeyedObject(options)
    if (got !== undefined) throw new TypeError(`options must be an object { model, backend?, ... }, got ${got}${got === 'a Buffer' ? ' (options.model is the ONNX file\'s path)' : ''}`)
    // A misspelt option (maxbatch, worker) would otherwise be dropped and its default run; one
    // inherited (a defaults object as prototype) too, as inherited options are read.
    const keys: string[] = []
    for (const k in options) keys.push(k)
    const unknown = keys.filter((k) => !LOAD_OPTIONS.includes(k))
    if (unknown.length > 0) {
      throw new TypeError(`${unknownKeysMessage('options', unknown)}; the options are ${LOAD_OPTIONS.join(', ')}`)
    }
    // Each option read once (inherited ones too): a getter cannot give a check one value and the load another.
    const given = options as unknown as Record<string, unknown>
    options = Object.fromEntries(LOAD_OPTIONS.filter((k) => k in given).map((k) => [k, given[k]])) as unknown as LoadOptions
    if (typeof options.model !== 'string' || options.model === '') throw new TypeError('options.model must be the path of an ONNX file')
    const backend = options.backend === undefined ? 'auto' : options.backend  // null is a mistake, not the default
    if (!(BACKENDS as readonly string[]).includes(backend)) {
      throw new TypeError(`options.backend must be one of ${BACKENDS.join(', ')}, got ${describeValue(backend)}`)
    }
    const workers = intOption(options.workers, 'workers', 1, 1, MAX_WORKERS)
    const threads = options.threads === undefined ? undefined : intOption(options.threads, 'threads', 1, 1, MAX_THREADS)
    if (options.spinWait !== undefined && typeof options.spinWait !== 'boolean') {
      throw new TypeError(`options.spinWait must be true or false, got ${describeValue(options.spinWait)}`)
    }
    // Checked on every machine, so mistakes show before the code meets a GPU.
    const gpu = gpuOptions(options)
    if (gpu.signal?.aborted) throw new AbortError('FaceMultitask.load() was aborted', { cause: reasonOf(gpu.signal) })
    let fallbackReason: string | undefined
    let useTensorRt = false
    const probe = backend === 'tensorrt' || backend === 'auto' ? await tensorrtProbe(true) : undefined
    if (probe) {
      const trt = probe.availability
      if (trt.available) useTensorRt = true
      else if (backend === 'tensorrt') throw new Error(`options.backend: 'tensorrt' is not available: ${trt.reason}; use 'auto' or 'cpu'`)
      else fallbackReason = `TensorRT is not available: ${trt.reason}`
    }
    const onnx = await readOnnxModel(options.model)
    const spec = readModelSpec(options.model, onnx)
    if (useTensorRt) {
      try {
        const engine = await TensorRtBackend.create({ model: options.model, spec, modelInfo: onnx, gpu, status: probe!.status!, precisionGiven: options.precision !== undefined })
        return new FaceMultitask(options.model, spec, engine, gpu.maxBatch)
      } catch (e) {
        // 'auto' still serves on the CPU when the engine cannot be built or loaded; info() says why.
        if (backend === 'tensorrt' || (e as Error)?.name === 'AbortError') throw e
        fallbackReason = `TensorRT could not be used: ${(e as Error).message}`
        process.stderr.write(`face-multitask: ${fallbackReason}; running on the CPU\n`)
      }
    }
    const maxBatch = intOption(options.maxBatch, 'maxBatch', CPU_MAX_BATCH, 1, MAX_BATCH_LIMIT)
    if (gpu.signal?.aborted) throw new AbortError('FaceMultitask.load() was aborted', { cause: reasonOf(gpu.signal) })
    // The path resolved now: a thread replaced later must load this file, whatever the working folder then.
    const creating = OnnxRuntimeBackend.create(path.resolve(options.model), spec, { workers, threads, spinWait: options.spinWait ?? true, precision: spec.precision, externalData: onnx.externalData })
    try {
      // An abort rejects at once (a large model's sessions take seconds): the caller, who gave
      // up, gets no model to close, and the sessions are closed once made.
      const engine = await abortable(creating, gpu.signal, 'FaceMultitask.load()')
      return new FaceMultitask(options.model, spec, engine, maxBatch, fallbackReason)
    } catch (e) {
      creating.then((engine) => engine.close()).catch(() => {})  // made after all: nobody will close it
      if (!gpu.signal?.aborted) throw e
      throw new AbortError('FaceMultitask.load() was aborted', { cause: reasonOf(gpu.signal) })
    }
  }

  /**
   * A frame buffer to fill and pass to detect(). On TensorRT its `data` is pinned (page-locked)
   * memory the GPU copies from directly, with no staging copy: decode camera frames straight into
   * it and reuse it (allocation is slow; the memory is freed when the frame is garbage-collected).
   * On the CPU backend it is ordinary memory, so code written for either runs on both. Either
   * way a transfer (postMessage, structuredClone) never detaches it: Node 20 copies it, later
   * releases refuse it (DataCloneError). A web stream's BYOB read does detach it (Node ignores
   * the mark there): do not read into `data` with a BYOB reader.
   */
  allocFrame(width: number, height: number, format: PixelFormat = 'rgb'): ImageInput & { format: PixelFormat; stride: number } {
    if (this.closed) throw new Error('allocFrame() called after close(): the model is closed')
    for (const [name, v] of [['width', width], ['height', height]] as const) {
      if (typeof v !== 'number') throw new TypeError(`${name} must be an integer from 1 to ${MAX_SIDE}, got ${describeValue(v)}`)
      if (!Number.isInteger(v) || v < 1 || v > MAX_SIDE) throw new RangeError(`${name} must be an integer from 1 to ${MAX_SIDE}, got ${String(v)}`)
    }
    if (typeof format !== 'string' || !Object.hasOwn(PIXEL_FORMATS, format)) {
      throw new TypeError(`format must be one of ${Object.keys(PIXEL_FORMATS).join(', ')}, got ${describeValue(format)}`)
    }
    const stride = width * PIXEL_FORMATS[format].channels
    const bytes = stride * height
    let data: Uint8Array
    try {
      if (this.engine instanceof TensorRtBackend) {
        data = this.engine.allocFrame(bytes)  // external memory, which Node never detaches
      } else {
        data = new Uint8Array(bytes)
        // As pinned frames are: a transfer copies it (Node 20) or is refused (Node 21+) instead of
        // detaching it, so it cannot be freed under a batch that reads it (a BYOB stream read
        // still can: Node detaches there without looking at the mark).
        markAsUntransferable(data.buffer)
      }
    } catch (e) {
      throw new RangeError(`allocFrame(${width}, ${height}, '${format}'): cannot allocate ${bytes} bytes (${(e as Error).message})`, { cause: e })
    }
    return { data, width, height, format, stride }
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
      ...(this.engine.enginePath !== undefined ? { engine: this.engine.enginePath } : {}),
      ...(this.engine.stages ? { gpuStages: this.engine.stages() } : {}),
      ...(this.fallbackReason !== undefined ? { fallbackReason: this.fallbackReason } : {}),
      ...(this.engine.lost?.() ? { gpuLost: this.engine.lost() } : {}),
    }
  }

  /**
   * Runs the model on the faces of one image (boxes in options.boxes, or the image is a 256x256
   * chip) or of many images (one box list per image). Faces come back in box order. The frames'
   * memory is read while the call runs: keep it unchanged until the promise settles (which, even
   * on failure, happens only once no batch still reads them; a call aborted on the CPU may reject
   * while its batch's inference still runs, its frames already preprocessed).
   */
  detect(image: ImageInput, options?: DetectOptions<readonly BoxInput[]>): Promise<Face[]>
  detect(images: readonly ImageInput[], options?: DetectOptions<readonly (readonly BoxInput[])[]>): Promise<Face[][]>
  async detect(input: ImageInput | readonly ImageInput[], options?: DetectOptions): Promise<Face[] | Face[][]> {
    if (this.closed) throw new Error('detect() called after close(): the model is closed')
    const { single, perImage, signal } = facesToRun(input, options, this.spec.crop)
    const faces = await this.scheduler.submit(perImage.flat(), signal)
    if (single) return faces
    const out: Face[][] = []
    let k = 0
    for (const jobs of perImage) {
      out.push(faces.slice(k, k + jobs.length))
      k += jobs.length
    }
    return out
  }

  /**
   * Faces waiting for a batch (`queued`) and in batches running (`running`), over every call:
   * a real-time rig that finds the queue deeper than it can afford drops (or aborts) frames.
   */
  get pending(): { queued: number; running: number } {
    return this.scheduler.pending
  }

  /** Waits for every accepted request to finish, then frees the backend. */
  close(): Promise<void> {
    this.closed = true
    dropped.unregister(this)
    this.closing ??= this.scheduler.idle().then(() => this.engine.close())
    return this.closing
  }

  private async runBatch(jobs: FaceJob[], requests: BatchRequests): Promise<Face[]> {
    checkStillWhole(jobs)
    const outputs = await this.engine.run(jobs, requests)
    checkBatchOutputs(this.spec, outputs, jobs.length)
    checkFiniteOutputs(this.spec, outputs, jobs.map((j) => j.face), this.nonFiniteHint)
    return jobs.map((job, i) => decodeFace(this.spec, outputs, i, job.box))
  }
}
