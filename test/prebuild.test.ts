// `npm publish` runs `prebuild.js --check` first (package.json prepublishOnly): prebuilds/ is not
// in git, so a package published from a fresh clone would otherwise ship no binary at all.
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { checkPrebuild, parseArgs, sourcesDigest } from '../scripts/prebuild'
import { tempDir } from './helpers/temp-dir'

const TUPLE = `${process.platform}-${process.arch}`
const scratch = tempDir('prebuild')
let roots = 0
const tempRoot = () => fs.mkdtempSync(path.join(scratch, `root${roots++}-`))

describe('prebuild --check (before npm publish)', () => {
  it('is what prepublishOnly runs', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    expect(pkg.scripts.prepublishOnly).toMatch(/node dist\/scripts\/prebuild\.js --check$/)
    expect(parseArgs(['--check'])).toMatchObject({ check: true })
  })

  it('fails when this platform has no prebuild, saying how to make one', () => {
    const root = tempRoot()
    expect(() => checkPrebuild(root, () => {})).toThrow(`no prebuild in ${path.join(root, 'prebuilds', TUPLE)}: run \`npm run prebuild\``)
    fs.mkdirSync(path.join(root, 'prebuilds', TUPLE), { recursive: true })
    expect(() => checkPrebuild(root, () => {})).toThrow(/no prebuild in/)
  })

  it('fails when the prebuild there does not load', () => {
    const root = tempRoot()
    fs.mkdirSync(path.join(root, 'prebuilds', TUPLE), { recursive: true })
    fs.writeFileSync(path.join(root, 'prebuilds', TUPLE, 'face-multitask.napi.node'), 'not an ELF file')
    expect(() => checkPrebuild(root, () => {})).toThrow(/does not load:[\s\S]*(invalid ELF header|not a valid|too short)/)
  })

  it('fails when the native sources changed since the prebuild was made (it would ship the old code), or nothing records them', (ctx) => {
    const built = path.join(__dirname, '..', 'build', 'Release', 'face_multitask.node')
    if (!fs.existsSync(built)) ctx.skip('no addon built in this checkout (npm run compile)')
    const root = tempRoot()
    const tuple = path.join(root, 'prebuilds', TUPLE)
    fs.mkdirSync(tuple, { recursive: true })
    fs.copyFileSync(built, path.join(tuple, 'face-multitask.napi.node'))
    fs.mkdirSync(path.join(root, 'native', 'tensorrt'), { recursive: true })
    fs.writeFileSync(path.join(root, 'native', 'tensorrt', 'a.cc'), 'int a = 1;\n')
    fs.writeFileSync(path.join(root, 'CMakeLists.txt'), 'project(x)\n')
    expect(() => checkPrebuild(root, () => {})).toThrow(`the prebuild in ${tuple} was made with no record of its sources: run \`npm run prebuild\` again`)
    fs.writeFileSync(path.join(tuple, 'sources.sha256'), `${sourcesDigest(root)}\n`)
    expect(checkPrebuild(root, () => {})).toEqual([path.join(tuple, 'face-multitask.napi.node')])
    for (const [file, text] of [['native/tensorrt/a.cc', 'int a = 2;\n'], ['native/b.h', ''], ['cmake/embed.cmake', '']]) {
      const before = sourcesDigest(root)
      fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true })
      fs.writeFileSync(path.join(root, file), text)
      expect(sourcesDigest(root), file).not.toBe(before)
      expect(() => checkPrebuild(root, () => {}), file).toThrow(`the prebuild in ${tuple} was built from other sources than CMakeLists.txt, cmake, native hold now: run \`npm run prebuild\` again`)
      fs.writeFileSync(path.join(tuple, 'sources.sha256'), `${sourcesDigest(root)}\n`)
    }
  })
})
