// Public types of the API.
import type { AuName, BlendshapeName, EmotionName } from './labels'

export type PixelFormat = 'rgb' | 'rgba' | 'bgr' | 'bgra' | 'gray'

/** A frame (or a 256x256 chip) in memory: 8-bit pixels, rows `stride` bytes apart. No other keys. */
export interface ImageInput {
  data: Uint8Array | Uint8ClampedArray
  width: number
  height: number
  /** Default 'rgb', except where `data` holds exactly 4 bytes a pixel and no `stride` is given: there it must be given. */
  format?: PixelFormat
  /** Bytes from one row to the next; default width * channels. */
  stride?: number
}

/** A face box in frame pixels: [x1, y1, x2, y2]. */
export type Box = readonly [number, number, number, number]

/**
 * A box as detect() takes it: a Box, or any array of numbers, such as a detector's number[][]
 * rows; that it holds exactly four finite numbers is checked when detect() is called.
 */
export type BoxInput = Box | readonly number[]

/** detect()'s options; `B`: the boxes' shape, BoxInput[] for one image, BoxInput[][] for an array of images. */
export interface DetectOptions<B extends readonly BoxInput[] | readonly (readonly BoxInput[])[] = readonly BoxInput[] | readonly (readonly BoxInput[])[]> {
  /**
   * Face boxes. For one image: Box[]. For an array of images: Box[][], one list per image.
   * An empty list gives no faces for its image. Omit them when the images are already-made
   * 256x256 chips.
   */
  boxes?: B
  /**
   * Gives up on the call: its faces still waiting for a batch are dropped (a real-time rig
   * skipping a stale frame) and it rejects with an AbortError (name 'AbortError', the signal's
   * reason as `cause`) once no batch still reads its frames, so they are free then: on the CPU
   * once its batches are preprocessed, on TensorRT once they have run. It rejects so even when
   * all its faces are in running batches; a call already settled is unaffected.
   */
  signal?: AbortSignal
}

/**
 * The face's box as py-feat reports it (FaceRect), in frame pixels, float32: v2.5 and later the
 * expanded square the model saw; v2.4 its clamped box rounded to whole pixels (the model samples
 * the unrounded one); a chip run without boxes [0, 0, 256, 256]. The mesh is mapped into it.
 */
export interface FaceBox {
  x: number
  y: number
  width: number
  height: number
}

export interface Face {
  box: FaceBox
  /** Action-unit intensities in [0,1], by name, in py-feat's order. */
  aus: Record<AuName, number>
  auValues: Float32Array
  /** Emotion probabilities (softmax of the logits), by name. */
  emotions: Record<EmotionName, number>
  emotionValues: Float32Array
  /** The most probable emotion. */
  emotion: EmotionName
  valence: number
  arousal: number
  /** Radians, with the signs of the py-feat release the model's metadata names. */
  gaze: { yaw: number; pitch: number; angle: number }
  /** Angles in radians; x, y, z as the model gives them (img2pose-style, not pixels). */
  pose: { pitch: number; roll: number; yaw: number; x: number; y: number; z: number }
  /**
   * 478 x (x, y, z): x and y in frame pixels; z the model's relative depth as py-feat reports it,
   * not in pixels: chip-relative for v2.5+ (multiply by the box's side for pixels), 224-px units
   * for v2.4 (multiply by box width / 224). See docs/pyfeat-conventions.md.
   */
  mesh: Float32Array
  /** 68 x (x, y) in frame pixels, dlib order (mesh points). */
  landmarks68: Float32Array
  /** 52 ARKit blendshapes in [0,1], when the model has them. */
  blendshapes?: Record<BlendshapeName, number>
  blendshapeValues?: Float32Array
}

export type BackendName = 'onnxruntime' | 'tensorrt'

/** TensorRT engine precision. FP16 and BF16 come from the ONNX itself (a strongly typed network). */
export type Precision = 'fp16' | 'bf16' | 'fp32'

/**
 * Progress of a TensorRT engine build (its builder's phases and steps, as IProgressMonitor reports
 * them) and the engine cache's notes (build started, waiting for another process, a plan built
 * elsewhere loaded, rebuilding and why) as { type: 'message' }.
 */
export type EngineProgress =
  | { type: 'message'; message: string }
  | { type: 'phase-start'; phase: string; parent?: string; steps: number }
  | { type: 'step'; phase: string; step: number }
  | { type: 'phase-end'; phase: string }

export interface LoadOptions {
  /** Path to the model's ONNX file (made by `face-multitask export`). */
  model: string
  /** 'auto' (default) takes TensorRT when it is available, else the CPU. 'cpu' is 'onnxruntime'. */
  backend?: 'auto' | 'cpu' | BackendName
  /**
   * Faces per inference batch at most; larger requests are split. Default 8 on the CPU, 64 on
   * TensorRT, where it is also the engine profile's maximum batch.
   */
  maxBatch?: number
  /** CPU backend: inference threads, each with its own session (default 1). */
  workers?: number
  /**
   * CPU backend: intra-op threads per worker (default: usable cores / workers, the cores of the
   * CPU affinity lowered to the cgroup's CPU quota, a container's CPU limit).
   */
  threads?: number
  /**
   * CPU backend: ONNX Runtime's intra-op threads spin-wait for work (default true, ONNX Runtime's
   * own default). false lets them sleep when they run out of work, giving the cores to the event
   * loop, image decoding and other processes: more faces/s when the cores are shared (several
   * models or processes on them), about the same, at most a few percent fewer, when the cores are
   * this model's alone (README, "Benchmarks").
   */
  spinWait?: boolean
  // The TensorRT options below are checked on every machine, so mistakes show before a GPU does.
  /**
   * TensorRT: engine precision, 'fp16' (default), 'bf16' (Ampere and newer; from an ONNX that
   * declares face_multitask.precision=bf16, which `face-multitask export` does not write) or 'fp32'.
   */
  precision?: Precision
  /** TensorRT: smallest batch of the engine's profile (default 1; fewer faces run padded to it). minBatch <= optBatch <= maxBatch. */
  minBatch?: number
  /** TensorRT: the batch the kernels are tuned for (default 8, moved into [minBatch, maxBatch] when outside it). */
  optBatch?: number
  /** TensorRT: CUDA streams (execution contexts) running batches at once, 1..16 (default 2). */
  streams?: number
  /** TensorRT: folder of the engine cache (default: the package's engines/ folder). */
  engineDir?: string
  /** TensorRT: builder optimization level 0..5 (default 3): higher builds slower, may run faster. */
  builderOptimizationLevel?: number
  /** TensorRT: builder workspace limit in MiB (default: TensorRT's, the device's memory). */
  workspaceMiB?: number
  /**
   * TensorRT: replay each batch size's inference as a CUDA graph after its first run (default
   * true). A capture that fails turns graphs off for the model; a replay that fails without
   * losing the GPU turns that batch size off; either way plain enqueueV3 runs and no batch is lost.
   */
  cudaGraphs?: boolean
  /** TensorRT: progress of a first-run engine build (minutes) and the cache's notes. */
  onProgress?: (event: EngineProgress) => void
  /**
   * Cancels load(). Waiting for another process's engine build, building one, and making the CPU
   * sessions reject at once with an AbortError (what was under way is closed, or stops, once it
   * can); an engine being read from the cache is waited for, then closed.
   */
  signal?: AbortSignal
}

export interface GpuStages {
  batches: number
  faces: number
  /** Frames (only the bytes the crops read) to the GPU. */
  uploadMs: number
  /** The preprocessing kernel. */
  preprocessMs: number
  /** TensorRT's enqueueV3, or its CUDA graph. */
  inferMs: number
  /** Outputs to pinned memory. */
  downloadMs: number
  /** Staging copies (frames not from allocFrame) and CPU preprocessing on the native threads. */
  hostMs: number
  /** Each batch from its start on a native thread to its outputs in host memory. */
  wallMs: number
  /** (stream, batch size) pairs replaying a CUDA graph, and those whose capture or replay failed (a failed capture turns graphs off for the model). */
  cudaGraphs: number
  cudaGraphFallbacks: number
}

export interface ModelInfo {
  backend: BackendName
  model: string
  generation: string
  conventionRelease: string
  heads: string[]
  synthetic: boolean
  device: string
  precision: string
  maxBatch: number
  /** TensorRT: the engine (plan) file in the cache. */
  engine?: string
  /** TensorRT: what the batches so far cost, per stage (CUDA events on each stream), summed. */
  gpuStages?: GpuStages
  /** Set when backend 'auto' did not take TensorRT: why (e.g. no GPU, no TensorRT library). */
  fallbackReason?: string
  /**
   * TensorRT: set once a context-fatal CUDA error hit a batch (the CUDA error); every later
   * detect() rejects with it. The GPU context cannot be recovered in this process: restart it.
   */
  gpuLost?: string
}
