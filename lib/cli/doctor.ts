// `face-multitask doctor [--json] [--engine-dir DIR]`: what can run here and, for what cannot,
// exactly why — the backends, the native addon, Node and N-API, onnxruntime-node, the engine cache.
import fs from 'node:fs/promises'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { type Availability, available } from '../availability'
import { NAPI_VERSION, nativeAddonPath, packageRoot } from '../native'
import { type Io, UsageError, parseCommandArgs } from './common'

export interface DoctorReport {
  package: { name: string; version: string; root: string }
  node: { version: string; napi: number | undefined; napiNeeded: number; platform: string }
  addon: { path?: string; loaded: boolean }
  onnxruntimeNode: string | undefined
  backends: Availability
  engineCache: { dir: string; exists: boolean; writable: boolean; plans: number }
}

async function packageVersion(root: string): Promise<string> {
  try {
    return String(JSON.parse(await fs.readFile(path.join(root, 'package.json'), 'utf8')).version)
  } catch {
    return 'unknown'
  }
}

async function engineCacheState(dir: string): Promise<DoctorReport['engineCache']> {
  let names: string[]
  try {
    names = await fs.readdir(dir)
  } catch {
    // Missing: is its parent writable (the cache would be created there)?
    const parent = path.dirname(dir)
    const writable = await fs.access(parent, fs.constants.W_OK).then(() => true, () => false)
    return { dir, exists: false, writable, plans: 0 }
  }
  const writable = await fs.access(dir, fs.constants.W_OK).then(() => true, () => false)
  return { dir, exists: true, writable, plans: names.filter((n) => n.endsWith('.plan')).length }
}

/** Everything the doctor checks, as data (the --json output). */
export async function doctorReport(engineDir?: string): Promise<DoctorReport> {
  const root = packageRoot()
  const backends = await available()
  const napi = process.versions.napi ? Number(process.versions.napi) : undefined
  return {
    package: { name: 'face-multitask', version: await packageVersion(root), root },
    node: { version: process.version, napi, napiNeeded: NAPI_VERSION, platform: `${process.platform}-${process.arch}` },
    addon: { path: nativeAddonPath(), loaded: nativeAddonPath() !== undefined },
    onnxruntimeNode: backends.onnxruntime.available ? backends.onnxruntime.version : undefined,
    backends,
    engineCache: await engineCacheState(path.resolve(engineDir ?? path.join(root, 'engines'))),
  }
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
    '',
    `${pad('native addon')}${r.addon.path ?? 'not loaded (see the onnxruntime line)'}`,
    `${pad('node')}${r.node.version} on ${r.node.platform}, N-API ${r.node.napi ?? 'unknown'} (the addon needs ${r.node.napiNeeded})`,
    `${pad('onnxruntime-node')}${r.onnxruntimeNode ?? 'not found'}`,
    `${pad('engine cache')}${cache.dir} (${cache.exists ? `${cache.plans} plan${cache.plans === 1 ? '' : 's'}` : 'not created yet'}, ${cache.writable ? 'writable' : 'NOT writable: pass engineDir to FaceMultitask.load'})`,
  ]
}

/** Exit code 0 when the CPU backend runs (TensorRT's absence is information), 1 when it does not. */
export async function doctorCommand(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parseCommandArgs(() => parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      json: { type: 'boolean' },
      'engine-dir': { type: 'string' },
    },
  }))
  if (positionals.length > 0) throw new UsageError(`takes no arguments, got ${positionals.join(' ')}`)
  const report = await doctorReport(values['engine-dir'])
  if (values.json) io.out(JSON.stringify(report, null, 2))
  else for (const line of doctorLines(report)) io.out(line)
  return report.backends.onnxruntime.available ? 0 : 1
}
