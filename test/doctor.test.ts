// `face-multitask doctor`: each backend available or the exact reason, the addon path, Node and
// N-API, onnxruntime-node; in-process through main() and once as the compiled bin.
import { execFile } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { available } from '../lib/availability'
import { DOCTOR_USAGE, MAIN_USAGE } from '../lib/cli/usage'
import { NAPI_VERSION, nativeAddonPath } from '../lib/native'
import { withoutTensorrt } from './helpers/without-tensorrt'
import { tempDir } from './helpers/temp-dir'
import { run } from './helpers/run-cli'

const scratch = tempDir('doctor')

const ortVersion = JSON.parse(readFileSync(path.join(__dirname, '..', 'node_modules', 'onnxruntime-node', 'package.json'), 'utf8')).version

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

describe('face-multitask doctor', () => {
  it('prints each backend (available, or exactly why not), the addon, Node, N-API and onnxruntime-node', async (ctx) => {
    await withoutTensorrt(ctx)
    const r = await run('doctor')
    const { tensorrt } = await available()
    expect(r.code).toBe(0)
    expect(r.err).toBe('')
    expect(r.out).toMatch(/^ {2}onnxruntime \(cpu\) +available$/m)
    expect(r.out).toContain(`unavailable: ${tensorrt.reason}`)
    expect(r.out).toMatch(/^ {2}tensorrt \(gpu\) +unavailable: ./m)
    expect(nativeAddonPath()).toBeDefined()
    expect(r.out).toMatch(new RegExp(`^native addon +${nativeAddonPath()!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'))
    expect(r.out).toContain(`${process.version} on ${process.platform}-${process.arch}, N-API ${process.versions.napi} (the addon needs ${NAPI_VERSION})`)
    expect(r.out).toMatch(new RegExp(`^onnxruntime-node +${ortVersion.replace(/\./g, '\\.')}$`, 'm'))
    expect(r.out).toMatch(/^engine cache +.*engines \(/m)
  })

  it("prints TensorRT's detail under its line (e.g. a plugin library that is missing while TensorRT is available)", async () => {
    const { doctorLines, doctorReport } = await import('../lib/cli/doctor')
    const report = await doctorReport()
    const detail = 'libnvinfer_plugin.so.10 not loaded (models with RoiAlign, v2.6+, cannot be built or run)'
    report.backends.tensorrt = { available: true, version: '10.14.1', gpu: 'NVIDIA H100', computeCapability: '9.0', detail }
    const lines = doctorLines(report)
    const at = lines.findIndex((l) => /^ {2}tensorrt \(gpu\) +available \(TensorRT 10\.14\.1, NVIDIA H100, compute 9\.0\)$/.test(l))
    expect(at).toBeGreaterThan(0)
    expect(lines[at + 1]).toBe(`${' '.repeat(22)}${detail}`)
    delete report.backends.tensorrt.detail
    expect(doctorLines(report)[at + 1]).toBe('')
  })

  it('--json gives the same as data', async () => {
    const r = await run('doctor', '--json')
    expect(r.code).toBe(0)
    const report = JSON.parse(r.out)
    expect(report.backends).toEqual(await available())
    expect(report.addon).toEqual({ path: nativeAddonPath(), loaded: true })
    expect(report.node).toMatchObject({ version: process.version, napi: Number(process.versions.napi), napiNeeded: NAPI_VERSION })
    expect(report.onnxruntimeNode).toBe(ortVersion)
  })

  it('--engine-dir checks that folder', async () => {
    const dir = path.join(mkdtempSync(path.join(scratch, 'doctor-')), 'engines')
    const r = await run('doctor', '--engine-dir', dir)
    expect(r.out).toContain(`${dir} (not created yet, writable)`)
  })

  it('--engine-dir several missing folders deep: creatable, so writable (the cache makes it with its parents)', async () => {
    const dir = path.join(mkdtempSync(path.join(scratch, 'doctor-')), 'a', 'b', 'engines')
    const r = await run('doctor', '--engine-dir', dir)
    expect(r.code).toBe(0)
    expect(r.out).toContain(`${dir} (not created yet, writable)`)
    expect(JSON.parse((await run('doctor', '--json', '--engine-dir', dir)).out).engineCache).toEqual({ dir, exists: false, writable: true, plans: 0 })
  })

  it('--engine-dir that is a file, or under a file: not usable, with where to choose another', async () => {
    const base = mkdtempSync(path.join(scratch, 'doctor-'))
    const file = path.join(base, 'plain-file')
    writeFileSync(file, 'x')
    const hint = 'choose another folder: --engine-dir DIR on the command line (build, detect, batch, doctor), engineDir in FaceMultitask.load'
    const r = await run('doctor', '--engine-dir', file)
    expect(r.code).toBe(0)
    expect(r.out).toMatch(new RegExp(`^engine cache +${esc(file)} \\(NOT usable: it is a file, not a folder; ${esc(hint)}\\)$`, 'm'))
    const under = path.join(file, 'sub', 'engines')
    expect((await run('doctor', '--engine-dir', under)).out).toContain(`${under} (NOT usable: ${file} is a file, not a folder; ${hint})`)
    const json = JSON.parse((await run('doctor', '--json', '--engine-dir', under)).out)
    expect(json.engineCache).toEqual({ dir: under, exists: false, writable: false, plans: 0, problem: `${file} is a file, not a folder` })
  })

  it('counts the plans the cache can load (with their sidecar), not orphans or folders', async () => {
    const dir = mkdtempSync(path.join(scratch, 'doctor-plans-'))
    writeFileSync(path.join(dir, 'm.fp16.0123456789ab.plan'), 'plan')
    writeFileSync(path.join(dir, 'm.fp16.0123456789ab.json'), '{}')
    writeFileSync(path.join(dir, 'orphan.fp16.ba9876543210.plan'), 'a plan whose sidecar was never written')
    mkdirSync(path.join(dir, 'folder.plan'))
    writeFileSync(path.join(dir, 'folder.json'), '{}')
    expect((await run('doctor', '--engine-dir', dir)).out).toContain(`${dir} (1 plan, writable)`)
  })

  it('a read-only folder of plans serves them: doctor says they load, and where to build others', async () => {
    // The report as for a folder this user cannot write (root writes anywhere, so it is given).
    const dir = mkdtempSync(path.join(scratch, 'doctor-read-only-'))
    const { doctorLines, doctorReport } = await import('../lib/cli/doctor')
    const report = await doctorReport(dir)
    const line = (plans: number) => doctorLines({ ...report, engineCache: { dir, exists: true, writable: false, plans } }).at(-1)
    expect(line(1)).toMatch(new RegExp(`^engine cache +${esc(dir)} \\(1 plan, NOT writable: it loads, but no other engine can be built here \\(to build one, choose another folder: --engine-dir DIR`))
    expect(line(2)).toContain('(2 plans, NOT writable: they load, but no other engine')
    expect(line(0)).toContain('(0 plans, NOT writable: choose another folder: --engine-dir DIR')
  })

  it('onnxruntime-node installed while the CPU backend does not run (the addon does not load): its version, and where the reason is', async () => {
    const { doctorLines, doctorReport } = await import('../lib/cli/doctor')
    const report = await doctorReport(scratch)
    const broken = { ...report, backends: { ...report.backends, onnxruntime: { available: false as const, device: 'cpu' as const, reason: 'the native addon does not load: x' } } }
    expect(doctorLines(broken)).toContain(`onnxruntime-node    ${ortVersion}, installed, but the CPU backend does not run (see the onnxruntime line)`)
    expect(doctorLines({ ...broken, onnxruntimeNode: undefined })).toContain('onnxruntime-node    not found')
  })

  it('--engine-dir= (empty) is a usage error, as for build', async () => {
    const r = await run('doctor', '--engine-dir=')
    expect(r.code).toBe(2)
    expect(r.err).toContain('doctor: --engine-dir must be the path of a folder (a non-empty string), got ""')
    expect(r.out).toBe('')
  })

  it('is listed in the help and has its own', async () => {
    expect(MAIN_USAGE).toMatch(/^ {2}doctor \[--json\]/m)
    expect((await run('help', 'doctor')).out).toBe(DOCTOR_USAGE)
    expect((await run('doctor', '--help')).out).toBe(DOCTOR_USAGE)
  })

  it('bad arguments exit 2', async () => {
    const r = await run('doctor', 'extra')
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/doctor: takes no arguments, got extra/)
    expect((await run('doctor', '--gpu')).code).toBe(2)
    const twice = await run('doctor', '--engine-dir', 'a', '--engine-dir', 'b')
    expect(twice.code).toBe(2)
    expect(twice.err).toMatch(/doctor: --engine-dir given more than once \("a", then "b"\): give it once/)
  })

  it('runs as the compiled bin', async (ctx) => {
    await withoutTensorrt(ctx)
    const bin = path.join(__dirname, '..', 'dist', 'lib', 'cli.js')
    const { stdout } = await promisify(execFile)(process.execPath, [bin, 'doctor'])
    expect(stdout).toMatch(/tensorrt \(gpu\) +unavailable: /)
    expect(stdout).toMatch(/onnxruntime \(cpu\) +available/)
  })
})
