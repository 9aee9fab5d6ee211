// Finds and loads the C++ addon (native/addon.cc) through node-gyp-build: a local build in
// build/Release (a clone after `npm run compile`) wins, else the prebuild for this platform in
// prebuilds/<platform>-<arch>/ (a published package, made by `npm run prebuild`). Loading is lazy,
// so importing the package never fails; the first use throws one Error that says how to fix it.
import fs from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import type { ModelSpec } from './contract'

const PACKAGE_NAME = 'face-multitask'
/** The N-API version the addon is built against (NAPI_VERSION in CMakeLists.txt). */
export const NAPI_VERSION = 9

/** One face for the addon: an 8-bit frame read in place and the window to cut (null: a 256x256 chip). */
export interface NativeFace {
  data: ArrayBufferView
  width: number
  height: number
  /** Bytes from one row to the next. */
  stride: number
  /** 0 rgb, 1 rgba, 2 bgr, 3 bgra, 4 gray. */
  format: number
  /** [x, y, width, height] in frame pixels, or null when the frame is already a chip. */
  window: [number, number, number, number] | null
}

export interface NativeAddon {
  /**
   * Crops, resizes and normalises `faces` into `out` (faces.length * inputFloats floats, NCHW) on
   * libuv's pool. crop: 0 stretch (v2.4), 1 square (py-feat 2.x). resize: 0 center crop, 1 antialiased bilinear.
   */
  preprocess(faces: readonly NativeFace[], crop: 0 | 1, resize: 0 | 1, out: Float32Array): Promise<void>
  /** The same, on the calling thread. */
  preprocessSync(faces: readonly NativeFace[], crop: 0 | 1, resize: 0 | 1, out: Float32Array): void
  /** Floats per face in the model input: 3 * 224 * 224. */
  readonly inputFloats: number
}

/** The addon's crop and resize codes for a model (see NativeAddon.preprocess). */
export function nativeModes(spec: ModelSpec): { crop: 0 | 1; resize: 0 | 1 } {
  return { crop: spec.crop === 'square' ? 1 : 0, resize: spec.resize === 'antialias_bilinear' ? 1 : 0 }
}

interface NodeGypBuild {
  (dir: string): unknown
  resolve(dir: string): string
}

let root: string | undefined
let addon: NativeAddon | undefined
let addonPath: string | undefined

function readName(file: string): string | undefined {
  try {
    const name: unknown = JSON.parse(fs.readFileSync(file, 'utf8')).name
    return typeof name === 'string' ? name : undefined
  } catch {
    return undefined
  }
}

/**
 * The package's root folder (the one holding its package.json): found by walking up from this
 * file, so it is right from dist/lib (compiled, installed) and from lib/ (run from source).
 */
export function packageRoot(): string {
  if (root !== undefined) return root
  let first: string | undefined
  for (let dir = __dirname; ; ) {
    const file = path.join(dir, 'package.json')
    if (fs.existsSync(file)) {
      if (readName(file) === PACKAGE_NAME) return (root = dir)
      first ??= dir
    }
    const up = path.dirname(dir)
    if (up === dir) break
    dir = up
  }
  return (root = first ?? path.resolve(__dirname, '..', '..'))
}

export function loadError(dir: string, file: string | undefined, cause: unknown): Error {
  const reason = cause instanceof Error ? cause.message.trim() : String(cause)
  const platform = `${process.platform}-${process.arch}`
  const napi = Number(process.versions.napi ?? 0)
  // No "face-multitask:" before it: the CLI puts one before every error.
  const lines = [
    `could not load face-multitask's native addon for ${platform}, Node.js ${process.version} (N-API ${napi || 'unknown'}).`,
    file ? `  Found ${file}, but it failed to load: ${reason}` : `  ${reason.split('\n').join('\n  ')}`,
    `  Looked in ${path.join(dir, 'build', 'Release')} and ${path.join(dir, 'prebuilds', platform)}.`,
    'Possible fixes:',
  ]
  if (napi && napi < NAPI_VERSION) {
    lines.push(`  - Use Node.js >= 20.9.0: the addon needs N-API ${NAPI_VERSION}, this Node.js has N-API ${napi}.`)
  }
  // An installed package has no dev dependencies (prebuildify, for `npm run prebuild`): only what
  // works there is offered.
  if (dir.split(path.sep).includes('node_modules')) {
    lines.push(
      '  - Build it from source: `FACE_MULTITASK_BUILD_FROM_SOURCE=1 npm rebuild face-multitask` in your project.',
      '    npm 12 and later skip a dependency\'s install script (which builds it) unless your package.json allows it:',
      '    `npm approve-scripts face-multitask` first.',
    )
  } else {
    lines.push(
      '  - In a clone of the repository: `npm run compile` (cmake-js compiles build/Release/face_multitask.node),',
      `    or \`npm run prebuild\` (writes prebuilds/${platform}/, which a package packed from the clone ships).`,
    )
  }
  lines.push(
    '    This needs a compiler toolchain: CMake >= 3.18 and a C++17 compiler (GCC >= 8, Clang >= 7, MSVC 2019 or newer),',
    '    plus cmake-js and node-addon-api from npm.',
  )
  if (file) {
    lines.push(
      '  - The file exists but does not load: it may be for another platform, architecture or C library (glibc/musl),',
      '    or stale; delete it and rebuild with one of the steps above.',
    )
  }
  return new Error(lines.join('\n'), { cause })
}

function checkShape(value: unknown): NativeAddon {
  const a = value as Partial<NativeAddon> | null
  if (!a || typeof a.preprocess !== 'function' || typeof a.preprocessSync !== 'function' || typeof a.inputFloats !== 'number') {
    throw new Error('the file loaded but does not export preprocess, preprocessSync and inputFloats (a stale or foreign build?)')
  }
  return a as NativeAddon
}

/** Whether `addon` was built with TensorRT's headers: it then has tensorrtBuild and tensorrtLoad. */
export function hasTensorRtBackend(addon: object): boolean {
  const a = addon as { tensorrtBuild?: unknown; tensorrtLoad?: unknown }
  return typeof a.tensorrtBuild === 'function' && typeof a.tensorrtLoad === 'function'
}

/** Loads the addon on first call (later calls return the same object); throws one Error listing fixes. */
export function loadNative(): NativeAddon {
  if (addon) return addon
  const dir = packageRoot()
  let file: string | undefined
  try {
    const req = createRequire(path.join(dir, 'package.json'))
    const gypBuild = req('node-gyp-build') as NodeGypBuild
    file = gypBuild.resolve(dir)
    const loaded = checkShape(req(file))
    addonPath = file
    return (addon = loaded)
  } catch (e) {
    throw loadError(dir, file, e)
  }
}

/** The .node file loadNative() loaded, or undefined before the first successful load. */
export function nativeAddonPath(): string | undefined {
  return addonPath
}
