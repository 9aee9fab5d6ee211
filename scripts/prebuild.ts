// `npm run prebuild`: builds the addon with cmake-js and stores it where node-gyp-build finds it
// in an installed package: prebuilds/<platform>-<arch>/face-multitask.napi[.glibc|.musl][.armv7].node.
//
// prebuildify does the naming, stripping and placing; it only knows how to build with node-gyp,
// so it is handed a stand-in "node-gyp" (a two-line script) that runs cmake-js instead. The build
// happens in build/prebuild/, apart from the dev build in build/Release, so running this never
// removes the binary that tests in a clone load. One N-API 9 binary serves every Node.js >= 20.9.
import { execFileSync, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import path from 'node:path'
import { NAPI_VERSION, packageRoot } from '../lib/native'

interface PrebuildifyOptions {
  cwd: string
  out: string
  name: string
  napi: boolean
  targets: string[]
  platform: string
  arch: string
  strip: boolean
  tagLibc: boolean
  tagArmv: boolean
  nodeGyp: string
  quiet: boolean
}
type Prebuildify = (opts: PrebuildifyOptions, cb: (err?: Error | null) => void) => void

export interface PrebuildArgs {
  /** Clean build (cmake-js rebuild) instead of an incremental one. */
  clean: boolean
  /** Strip symbols (linux and macOS only). */
  strip: boolean
  /** Build nothing: only check the prebuild already in prebuilds/ (npm's prepublishOnly). */
  check: boolean
}

const USAGE = `usage: node dist/scripts/prebuild.js [--clean] [--no-strip] [--check]
  Builds the addon with cmake-js and writes prebuilds/<platform>-<arch>/<name>.napi[.<libc>].node
  (prebuildify's layout, read by node-gyp-build), then checks that node-gyp-build loads it.
  --clean     rebuild from scratch (default: incremental, in build/prebuild/)
  --no-strip  keep symbols (default: strip on linux and macOS)
  --check     build nothing; fail unless this platform's prebuild is there, loads, and was built
              from the native sources there now
              (run by npm before \`npm publish\`)`

export function parseArgs(argv: string[]): PrebuildArgs | 'help' {
  const args: PrebuildArgs = { clean: false, strip: process.platform === 'linux' || process.platform === 'darwin', check: false }
  for (const arg of argv) {
    if (arg === '--help' || arg === '-h') return 'help'
    else if (arg === '--clean') args.clean = true
    else if (arg === '--no-strip') args.strip = false
    else if (arg === '--strip') args.strip = true
    else if (arg === '--check') args.check = true
    else throw new Error(`unknown argument ${JSON.stringify(arg)}\n${USAGE}`)
  }
  return args
}

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

/** Writes the node-gyp stand-in: whatever prebuildify asks of node-gyp, it runs cmake-js. */
function writeShim(dir: string, command: string[]): string {
  if (process.platform === 'win32') {
    const file = path.join(dir, 'node-gyp-shim.cmd')
    fs.writeFileSync(file, `@echo off\r\n${command.map((a) => `"${a}"`).join(' ')}\r\nexit /b %errorlevel%\r\n`)
    return file
  }
  const file = path.join(dir, 'node-gyp-shim')
  fs.writeFileSync(
    file,
    `#!/bin/sh\n# prebuildify calls this as node-gyp ("rebuild --target=... --release"); it builds with cmake-js.\nexec ${command.map(shq).join(' ')}\n`,
  )
  fs.chmodSync(file, 0o755)
  return file
}

/** The oldest glibc a prebuild must load on (Ubuntu 20.04 has 2.31, RHEL 8 and Debian 10 2.28). */
export const GLIBC_MAX = '2.28'

function compareVersions(a: string, b: string): number {
  const x = a.split('.').map(Number)
  const y = b.split('.').map(Number)
  for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0)
  return 0
}

/** The newest glibc symbol version a Linux binary needs (objdump -T), undefined where objdump is missing. */
export function glibcNeeded(file: string): string | undefined {
  let out: string
  try {
    out = execFileSync('objdump', ['-T', file], { encoding: 'utf8', maxBuffer: 64 << 20 })
  } catch {
    return undefined
  }
  return [...out.matchAll(/\bGLIBC_(\d+(?:\.\d+)+)\b/g)].map((m) => m[1]).sort(compareVersions).at(-1)
}

/** Refuses a glibc prebuild that would not load on glibc GLIBC_MAX (native/glibc_compat.h keeps it loading). */
function checkGlibc(file: string, log: (s: string) => void): void {
  const need = glibcNeeded(file)
  if (need === undefined) return log(`prebuild: objdump not found: the glibc ${path.basename(file)} needs is unchecked`)
  if (compareVersions(need, GLIBC_MAX) > 0) {
    throw new Error(`${file} needs glibc ${need}, newer than ${GLIBC_MAX}: it would not load on older Linux distributions ` +
      '(a new glibc symbol version not pinned in native/glibc_compat.h?)')
  }
  log(`prebuild: ${path.basename(file)} needs glibc ${need} or later`)
}

/** What the addon is built from: a prebuild made from other sources is stale. */
const SOURCES = ['CMakeLists.txt', 'cmake', 'native']
/** Beside the prebuilds: the digest of SOURCES they were built from (prebuild --check compares it). */
const SOURCES_FILE = 'sources.sha256'

/** SHA-256 over SOURCES under `root`: every file's path and bytes, in path order. */
export function sourcesDigest(root: string): string {
  const files: string[] = []
  const walk = (rel: string): void => {
    const abs = path.join(root, rel)
    if (!fs.existsSync(abs)) return
    if (fs.statSync(abs).isDirectory()) for (const f of fs.readdirSync(abs)) walk(path.join(rel, f))
    else files.push(rel.split(path.sep).join('/'))
  }
  for (const s of SOURCES) walk(s)
  const hash = createHash('sha256')
  for (const f of files.sort()) hash.update(`${f}\0`).update(fs.readFileSync(path.join(root, f))).update('\0')
  return hash.digest('hex')
}

function describe(file: string): string {
  return `${file} (${(fs.statSync(file).size / 1024).toFixed(1)} KiB)`
}

export async function prebuild(args: PrebuildArgs, log: (s: string) => void = console.log): Promise<string[]> {
  const root = packageRoot()
  const req = createRequire(path.join(root, 'package.json'))
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { name: string }
  const platform = os.platform()
  const arch = os.arch()
  const tuple = path.join(root, 'prebuilds', `${platform}-${arch}`)
  const stage = path.join(root, 'build', 'prebuild')
  const stageOut = path.join(stage, 'build') // prebuildify takes the result from <cwd>/build/Release
  fs.mkdirSync(stage, { recursive: true })

  const cmakeJsPkg = req.resolve('cmake-js/package.json')
  const cmakeJsBin = (req(cmakeJsPkg) as { bin: Record<string, string> }).bin['cmake-js']
  const shim = writeShim(stage, [
    process.execPath,
    path.join(path.dirname(cmakeJsPkg), cmakeJsBin),
    args.clean ? 'rebuild' : 'compile',
    '--directory', root,
    '--out', stageOut,
    '--log-level', 'warn',
  ])

  // Old binaries in this platform's folder could outrank the new one (node-gyp-build prefers the
  // most specific name), so the folder is emptied of .node files first.
  if (fs.existsSync(tuple)) {
    for (const f of fs.readdirSync(tuple)) if (f.endsWith('.node')) fs.rmSync(path.join(tuple, f))
  }
  for (const f of fs.existsSync(path.join(stageOut, 'Release')) ? fs.readdirSync(path.join(stageOut, 'Release')) : []) {
    if (f.endsWith('.node')) fs.rmSync(path.join(stageOut, 'Release', f))
  }

  log(`prebuild: cmake-js ${args.clean ? 'rebuild' : 'compile'} in ${path.relative(root, stage)}/ for ${platform}-${arch}, N-API ${NAPI_VERSION}`)
  const prebuildify = req('prebuildify') as Prebuildify
  await new Promise<void>((resolve, reject) => {
    prebuildify(
      {
        cwd: stage,
        out: root,
        // prebuildify 6 puts no tag at all on a napi build (<name>.glibc.node); the explicit napi
        // tag (which node-gyp-build parses) says what the file is: any Node.js with N-API >= 9.
        name: `${pkg.name}.napi`,
        napi: true,
        targets: [], // with napi: one build, named without an ABI tag
        platform,
        arch,
        strip: args.strip,
        tagLibc: platform === 'linux', // a glibc build must not be picked on musl (Alpine), and back
        tagArmv: arch === 'arm',
        nodeGyp: shim,
        quiet: false,
      },
      (err) => (err ? reject(err) : resolve()),
    )
  })

  fs.writeFileSync(path.join(tuple, SOURCES_FILE), `${sourcesDigest(root)}\n`)
  return checkPrebuild(root, log)
}

/**
 * What an installed package will load on this platform: the prebuild's glibc need, and that
 * node-gyp-build (with no build/ folder around) picks it and it loads. Run before `npm publish`
 * too, since prebuilds/ is not in git: a package published from a fresh clone would ship no
 * binary, and every user without a compiler would fail to install it.
 */
export function checkPrebuild(root: string, log: (s: string) => void = console.log): string[] {
  const tuple = path.join(root, 'prebuilds', `${os.platform()}-${os.arch()}`)
  const written = fs.existsSync(tuple) ? fs.readdirSync(tuple).filter((f) => f.endsWith('.node')).map((f) => path.join(tuple, f)) : []
  if (written.length === 0) {
    throw new Error(`no prebuild in ${tuple}: run \`npm run prebuild\` first (the package would ship no binary for ${path.basename(tuple)})`)
  }
  for (const f of written) log(`prebuild: ${describe(f)}`)
  for (const f of written) if (/\.glibc\./.test(path.basename(f))) checkGlibc(f, log)

  const check = spawnSync(
    process.execPath,
    ['-e', 'const p=require("node-gyp-build").resolve(process.argv[1]);const a=require(p);console.log(JSON.stringify({p,n:a.inputFloats}))', root],
    { cwd: packageRoot(), env: { ...process.env, PREBUILDS_ONLY: '1' }, encoding: 'utf8' },
  )
  if (check.status !== 0) throw new Error(`the prebuild in ${tuple} does not load:\n${check.stderr.trim()}`)
  const { p, n } = JSON.parse(check.stdout.trim().split('\n').pop()!) as { p: string; n: number }
  if (!written.includes(p) || typeof n !== 'number') throw new Error(`node-gyp-build resolved ${p}, not a prebuild in ${tuple}`)
  log(`prebuild: node-gyp-build loads ${path.relative(root, p)} (inputFloats ${n})`)
  // A prebuild made before the native code changed would ship the old code under the new version.
  let recorded: string | undefined
  try {
    recorded = fs.readFileSync(path.join(tuple, SOURCES_FILE), 'utf8').trim()
  } catch {
    // no record: said below
  }
  if (recorded !== sourcesDigest(root)) {
    throw new Error(`the prebuild in ${tuple} was ${recorded === undefined ? 'made with no record of its sources' : `built from other sources than ${SOURCES.join(', ')} hold now`}: run \`npm run prebuild\` again`)
  }
  return written
}

if (require.main === module) {
  let args: PrebuildArgs | 'help'
  try {
    args = parseArgs(process.argv.slice(2))
  } catch (e) {
    console.error((e as Error).message)
    process.exit(2)
  }
  if (args === 'help') console.log(USAGE)
  else {
    const job = args.check ? Promise.resolve().then(() => checkPrebuild(packageRoot())) : prebuild(args)
    job.catch((e: unknown) => {
      console.error(`prebuild failed: ${e instanceof Error ? e.message : String(e)}`)
      process.exitCode = 1
    })
  }
}
