// `npm publish` runs `prebuild.js --check` first (package.json prepublishOnly): prebuilds/ is not
// in git, so a package published from a fresh clone would otherwise ship no binary at all.
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { checkPrebuild, parseArgs } from '../scripts/prebuild'
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
})
