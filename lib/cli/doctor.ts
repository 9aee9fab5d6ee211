// `face-multitask doctor [--json] [--engine-dir DIR]`: what can run here and, for what cannot,
// exactly why — the backends, the native addon, Node and N-API, onnxruntime-node, the engine cache.
import fs from 'node:fs/promises'
import path from 'node:path'
import { type Availability, available, onnxruntimeVersion } from '../availability'
import { NAPI_VERSION, nativeAddonPath, packageRoot } from '../native'
import { type Io, packageVersion, UsageError, parseCommand } from './common'

export interface DoctorReport {
  package: { name: string; version: string; root: string }
  node: { version: string; napi: number | undefined; napiNeeded: number; platform: string }
  addon: { path?: string; loaded: boolean }
  onnxruntimeNode: string | undefined
  backends: Availability
  /** problem: why the folder cannot be used at all (a file in the way), when that is so. */
  engineCache: { dir: string; exists: boolean; writable: boolean; plans: number; problem?: string }
}

/** The nearest folder on dir's path that exists (or the file that stops the path), with its stats. */
async function nearestExisting(dir: string): Promise<{ at: string; isDir: boolean }> {
  for (let at = path.dirname(dir); ; at = path.dirname(at)) {
    const st = await fs.stat(at).catch(() => undefined)
    if (st) return { at, isDir: st.isDirectory() }
    if (path.dirname(at) === at) return { at, isDir: false }
  }
}

const canWrite = (p: string) => fs.access(p, fs.constants.W_OK | fs.constants.X_OK).then(() => true, () => false)

/** Plans the cache can load: plan files with their sidecar (a plan without one is rebuilt). */
async function countPlans(dir: string, names: string[]): Promise<number> {
  const present = new Set(names)
  let n = 0
  for (const name of names) {
    if (!name.endsWith('.plan') || !present.has(`${name.slice(0, -'.plan'.length)}.json`)) continue
    if (await fs.stat(path.join(dir, name)).then((st) => st.isFile(), () => false)) n++
  }
  return n
}

/**
 * The engine cache folder as the cache (lib/engine-cache/) will use it: an existing folder is
 * writable or not; a missing one is created with its missing parents (mkdir recursive) on first
 * use, so it is writable when its nearest existing ancestor is a writable folder; a file on the
 * path makes it unusable.
 */
async function engineCacheState(dir: string): Promise<DoctorReport['engineCache']> {
  const st = await fs.stat(dir).catch((e: NodeJS.ErrnoException) => e)
  if (!(st instanceof Error)) {
    if (!st.isDirectory()) return { dir, exists: false, writable: false, plans: 0, problem: 'it is a file, not a folder' }
    const names = await fs.readdir(dir).catch(() => undefined)
    if (!names) return { dir, exists: true, writable: false, plans: 0, problem: 'the folder cannot be read' }
    return { dir, exists: true, writable: await canWrite(dir), plans: await countPlans(dir, names) }
  }
  if (st.code !== 'ENOENT' && st.code !== 'ENOTDIR') {
    return { dir, exists: false, writable: false, plans: 0, problem: st.message }
  }
  const { at, isDir } = await nearestExisting(dir)
  if (!isDir) return { dir, exists: false, writable: false, plans: 0, problem: `${at} is a file, not a folder` }
  return { dir, exists: false, writable: await canWrite(at), plans: 0 }
}

/** Everything the doctor checks, as data (the --json output). */
export async function doctorReport(engineDir?: string): Promise<DoctorReport> {
  const root = packageRoot()
  const backends = await available()
  const napi = process.versions.napi ? Number(process.versions.napi) : undefined
  return {
    package: { name: 'face-multitask', version: packageVersion(), root },
    node: { version: process.version, napi, napiNeeded: NAPI_VERSION, platform: `${process.platform}-${process.arch}` },
    addon: { path: nativeAddonPath(), loaded: nativeAddonPath() !== undefined },
    // Whether it is installed, apart from whether the CPU backend runs (a missing addon stops that too).
    onnxruntimeNode: onnxruntimeVersion(),
    backends,
    engineCache: await engineCacheState(path.resolve(engineDir ?? path.join(root, 'engines'))),
  }
}

const OTHER_FOLDER = 'choose another folder: --engine-dir DIR on the command line (build, detect, batch, doctor), engineDir in FaceMultitask.load'

function engineCacheText(cache: DoctorReport['engineCache']): string {
  if (cache.problem) return `NOT usable: ${cache.problem}; ${OTHER_FOLDER}`
  const what = cache.exists ? `${cache.plans} plan${cache.plans === 1 ? '' : 's'}` : 'not created yet'
  if (cache.writable) return `${what}, writable`
  // A read-only folder of plans built ahead of time (an image, a shared mount) serves them as it is.
  if (cache.plans > 0) return `${what}, NOT writable: ${cache.plans === 1 ? 'it loads' : 'they load'}, but no other engine can be built here (to build one, ${OTHER_FOLDER})`
  return `${what}, NOT writable: ${OTHER_FOLDER}`
}

export function doctorLines(r: DoctorReport): string[] {
  const { onnxruntime: ort, tensorrt: trt } = r.backends
  const pad = (s: string) => s.padEnd(20)
  const trtDetail = [trt.version && `TensorRT ${trt.version}`, trt.gpu, trt.computeCapability && `compute ${trt.computeCapability}`].filter(Boolean).join(', ')
  const cache = r.engineCache
  return [
    `face-multitask ${r.package.version} (${r.package.root})`,
    '',
    'backends:',
    `  ${pad('onnxruntime (cpu)')}${ort.available ? 'available' : `unavailable: ${ort.reason}`}`,
    `  ${pad('tensorrt (gpu)')}${trt.available ? `available${trtDetail ? ` (${trtDetail})` : ''}` : `unavailable: ${trt.reason}`}`,
    ...(trt.detail ? [`  ${pad('')}${trt.detail}`] : []),
    '',
    `${pad('native addon')}${r.addon.path ?? 'not loaded (see the onnxruntime line)'}`,
    `${pad('node')}${r.node.version} on ${r.node.platform}, N-API ${r.node.napi ?? 'unknown'} (the addon needs ${r.node.napiNeeded})`,
    `${pad('onnxruntime-node')}${r.onnxruntimeNode === undefined ? 'not found' : ort.available ? r.onnxruntimeNode : `${r.onnxruntimeNode}, installed, but the CPU backend does not run (see the onnxruntime line)`}`,
    `${pad('engine cache')}${cache.dir} (${engineCacheText(cache)})`,
  ]
}

/** Exit code 0 when the CPU backend runs (TensorRT's absence is information), 1 when it does not. */
export async function doctorCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommand(argv, {
    json: { type: 'boolean' },
    'engine-dir': { type: 'string' },
  })
  if (positionals.length > 0) throw new UsageError(`takes no arguments, got ${positionals.join(' ')}`)
  // As build (and FaceMultitask.load's engineDir) refuses it.
  if (values['engine-dir'] === '') throw new UsageError('--engine-dir must be the path of a folder (a non-empty string), got ""')
  const report = await doctorReport(values['engine-dir'])
  if (values.json) io.out(JSON.stringify(report, null, 2))
  else for (const line of doctorLines(report)) io.out(line)
  return report.backends.onnxruntime.available ? 0 : 1
}
