// The command line, called in-process through main() with captured output, plus one run of the
// compiled bin as a child process (the test script builds dist with tsc first).
import { execFile, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import sharp from 'sharp'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import { cgroupCpuQuota } from '../lib/cores'
import { faceToJson } from '../lib/cli/format'
import { NonFiniteOutputError } from '../lib/decode'
import { FaceMultitask } from '../lib/face-multitask'
import { makeFixtureModel } from '../scripts/make-fixture'
import type { Box } from '../lib/types'
import { emptyPng, withIccChunk } from './helpers/png'
import { withoutTensorrt } from './helpers/without-tensorrt'
import { HEADERS_ABSENT } from '../lib/availability'
import { tensorrtReason } from '../lib/cli/run-model'
import { tempDir } from './helpers/temp-dir'
import { run } from './helpers/run-cli'

const dir = tempDir('cli')
const model = path.join(dir, 'fixture.onnx')
const W = 320
const H = 240
const boxes: Box[] = [[100, 50, 260, 250], [20, 30, 80, 90]]
const boxesArg = boxes.map((b) => b.join(',')).join(';')

/** A deterministic RGB test picture: gradients and stripes, so the crops differ. */
function pixels(width: number, height: number): Buffer {
  const data = Buffer.alloc(width * height * 3)
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3
      data[i] = (x * 255) / width
      data[i + 1] = (y * 255) / height
      data[i + 2] = ((x >> 3) + (y >> 3)) % 2 ? 200 : 40
    }
  }
  return data
}

/** What a square crop of py-feat 2.x reports for a box: side = max(w, h) * 1.2, centred. */
function squareBox([x1, y1, x2, y2]: Box) {
  const side = Math.max(x2 - x1, y2 - y1) * 1.2
  return { x: (x1 + x2) / 2 - side / 2, y: (y1 + y2) / 2 - side / 2, width: side, height: side }
}

const png = path.join(dir, 'frame.png')
const jpg = path.join(dir, 'frame.jpg')
const chip = path.join(dir, 'chip.png')
const corrupt = path.join(dir, 'corrupt.jpg')

beforeAll(async () => {
  writeFileSync(model, makeFixtureModel({ generation: 'v2.5' }))
  const raw = { raw: { width: W, height: H, channels: 3 as const } }
  await sharp(pixels(W, H), raw).png().toFile(png)
  await sharp(pixels(W, H), raw).jpeg({ quality: 90 }).toFile(jpg)
  await sharp(pixels(256, 256), { raw: { width: 256, height: 256, channels: 3 } }).png().toFile(chip)
  writeFileSync(corrupt, randomBytes(2048))
})

describe('face-multitask CLI', () => {
  it('--help, -h and no arguments print the usage of every command', async () => {
    for (const argv of [['--help'], ['-h'], []]) {
      const r = await run(...argv)
      expect(r.code).toBe(0)
      expect(r.out).toMatch(/detect <image> --model <onnx>/)
      expect(r.out).toMatch(/\bdemo\b/)
      expect(r.err).toBe('')
    }
  })

  it('the main help lists each command\'s options and -v', async () => {
    const { out } = await run('--help')
    expect(out).toMatch(/^ {2}demo \[--generation [^\]]+\] \[--json\] \[--out-dir DIR\]$/m)
    expect(out).toMatch(/^ {2}export <checkpoint> \[--out DIR\] \[--generation G\] \[--no-fp16\]$/m)
    expect(out).toMatch(/^ {2}export --random-weights --generation G \[--seed N\] \[--out DIR\] \[--no-fp16\]$/m)
    expect(out).toMatch(/^ {2}doctor \[--json\] \[--engine-dir DIR\]$/m)
    expect(out).toMatch(/^ {2}-v, --version +the package version$/m)
    const v = await run('-v')
    expect(v.code).toBe(0)
    expect(v.out).toBe((await run('--version')).out)
  })

  it('--help <command> is help <command>; extra arguments to help or -v are refused, not ignored', async () => {
    const detectHelp = (await run('help', 'detect')).out
    expect(detectHelp).toMatch(/^usage: face-multitask detect/)
    for (const flag of ['--help', '-h']) expect(await run(flag, 'detect')).toMatchObject({ code: 0, out: detectHelp })
    expect(await run('help', 'help')).toMatchObject({ code: 0, out: (await run('help')).out })  // the main help lists `help [command]`
    for (const flag of ['--help', '-h']) expect(await run('help', flag)).toMatchObject({ code: 0, out: (await run('help')).out })  // as after any other command
    const extra = await run('help', 'detect', 'extra')
    expect(extra.code).toBe(2)
    expect(extra.err).toMatch(/^face-multitask: help takes one command at most, got "detect", "extra"/)
    const v = await run('-v', 'extra')
    expect(v.code).toBe(2)
    expect(v.err).toMatch(/^face-multitask: -v takes no arguments, got "extra"/)
  })

  it("each command's --help works without a model", async () => {
    const detect = await run('detect', '--help')
    expect(detect.code).toBe(0)
    expect(detect.out).toMatch(/--boxes/)
    expect(detect.out).toMatch(/EXIF orientation is NOT applied \(a TIFF's is, as py-feat's\s+Pillow fallback does\), nor is an embedded colour profile/)
    expect(detect.out).toMatch(/of an animated GIF or WebP, the\s+first frame/)
    const demo = await run('demo', '-h')
    expect(demo.code).toBe(0)
    expect(demo.out).toMatch(/--generation/)
  })

  describe.each([['PNG', png], ['JPEG', jpg]])('detect on a %s', (_kind, file) => {
    let json: ReturnType<typeof faceToJson>[]

    beforeAll(async () => {
      const r = await run('detect', file, '--model', model, '--boxes', boxesArg, '--json')
      expect(r.err).toMatch(/SYNTHETIC/)
      expect(r.err).toMatch(/face-multitask export/)
      expect(r.code).toBe(0)
      json = JSON.parse(r.out)
    })

    it('prints every face with all its fields', () => {
      expect(json).toHaveLength(boxes.length)
      for (const face of json) {
        expect(Object.keys(face.aus)).toHaveLength(20)
        expect(face.auValues).toHaveLength(20)
        expect(face.mesh).toHaveLength(478 * 3)
        expect(face.landmarks68).toHaveLength(68 * 2)
        expect(face.blendshapeValues).toHaveLength(52)
        expect(Object.keys(face)).toEqual([
          'box', 'emotion', 'emotions', 'valence', 'arousal', 'aus', 'gaze', 'pose', 'blendshapes',
          'landmarks68', 'mesh', 'auValues', 'emotionValues', 'blendshapeValues',
        ])
      }
    })

    it('reports the square crop window of each box', () => {
      json.forEach((face, i) => {
        const want = squareBox(boxes[i])
        expect(face.box.x).toBeCloseTo(want.x, 3)
        expect(face.box.y).toBeCloseTo(want.y, 3)
        expect(face.box.width).toBeCloseTo(want.width, 3)
        expect(face.box.height).toBeCloseTo(want.height, 3)
      })
      // By hand for the first: 160x200 -> side 240 around (180, 150).
      expect([json[0].box.x, json[0].box.y, json[0].box.width]).toEqual([60, 30, 240].map((v) => expect.closeTo(v, 3)))
    })

    it('gives the same numbers as FaceMultitask.detect on the pixels sharp decodes', async () => {
      const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true })
      const m = await FaceMultitask.load({ model })
      try {
        const faces = await m.detect({ data, width: info.width, height: info.height, format: 'rgb' }, { boxes })
        expect(json).toEqual(JSON.parse(JSON.stringify(faces.map(faceToJson))))
        // The float32 values as their shortest decimals: each reads back as the model's float32.
        expect(json[0].mesh.map(Math.fround)).toEqual(Array.from(faces[0].mesh))
        expect(Math.fround(json[1].aus.AU12)).toBe(faces[1].aus.AU12)
        // The box too (float32, as py-feat computes it): 240.12, not 240.1199951171875.
        const [odd] = await m.detect({ data, width: info.width, height: info.height, format: 'rgb' }, { boxes: [[100.3, 50.1, 260.7, 250.2]] })
        const box = faceToJson(odd).box
        expect(Object.values(box).map(Math.fround)).toEqual([odd.box.x, odd.box.y, odd.box.width, odd.box.height])
        expect(box.width).toBe(240.12)  // 1.2 x the longer side, 200.1
        for (const v of Object.values(box)) expect(String(v).replace('.', '').replace(/^0+/, '').length).toBeLessThanOrEqual(9)
        const digits = json[0].mesh.map((v) => String(v).replace(/^-|e.*$/g, '').replace('.', '').replace(/^0+/, '').length)
        expect(Math.max(...digits)).toBeLessThanOrEqual(9)
      } finally {
        await m.close()
      }
    })
  })

  it('prints a readable table without --json', async () => {
    const r = await run('detect', png, '--model', model, '--boxes', boxesArg)
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/face 1 of 2/)
    expect(r.out).toMatch(/AUs \(top 5\)\s+(AU\d\d \d\.\d{3}\s*){5}/)
    expect(r.out).toMatch(/gaze\s+yaw [+-]\d+\.\d° \([+-]\d\.\d{4} rad\)/)
    expect(r.out).toMatch(/52 blendshapes/)
    expect(r.out).toMatch(/backend onnxruntime/)
    // The backend's own name, as load(), bench and doctor use it, is the CPU backend's other name.
    const named = await run('detect', png, '--model', model, '--boxes', boxesArg, '--backend', 'onnxruntime')
    expect(named.code).toBe(0)
    const untimed = (text: string) => text.replace(/load [\d.]+ ms, detect 2 faces [\d.]+ ms/, '')
    expect(untimed(named.out)).toBe(untimed(r.out))
  })

  it('runs a 256x256 chip without --boxes', async () => {
    const r = await run('detect', chip, '--model', model, '--json')
    expect(r.code).toBe(0)
    const faces = JSON.parse(r.out)
    expect(faces).toHaveLength(1)
    expect(faces[0].box).toEqual({ x: 0, y: 0, width: 256, height: 256 })
  })

  it('refuses a frame that is not a chip without --boxes', async () => {
    const r = await run('detect', png, '--model', model)
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/--boxes is required: face detection is not built in yet \(give boxes, or a 256x256 chip\)/)
  })

  it('a corrupt image: exit 1, names the file, no stack trace, and the process goes on', async () => {
    const r = await run('detect', corrupt, '--model', model, '--boxes', boxesArg)
    expect(r.code).toBe(1)
    expect(r.err).toContain(corrupt)
    expect(r.err).toMatch(/not a readable image/)
    expect(r.err).not.toMatch(/\n\s+at /)
    const missing = await run('detect', path.join(dir, 'nope.png'), '--model', model, '--boxes', boxesArg)
    expect(missing.code).toBe(1)
    expect(missing.err).toMatch(/nope\.png" is not a readable image: no such file/)
    // Still alive and working.
    expect((await run('detect', chip, '--model', model, '--json')).code).toBe(0)
  })

  it('an embedded colour profile is not applied (py-feat reads the stored values): the same faces as without it', async () => {
    // A Display P3 profile, taken from a file sharp tags with it, then put into a copy of frame.png
    // as an iCCP chunk: the stored pixels stay exactly those of frame.png.
    const { icc } = await sharp(await sharp(pixels(8, 8), { raw: { width: 8, height: 8, channels: 3 } }).withIccProfile('p3').png().toBuffer()).metadata()
    const tagged = path.join(dir, 'frame-p3.png')
    writeFileSync(tagged, withIccChunk(readFileSync(png), icc!))
    expect((await sharp(tagged).metadata()).icc).toBeDefined()
    // The profile matters: converted to sRGB, the pixels would differ from the stored ones.
    const converted = await sharp(tagged).removeAlpha().raw().toBuffer()
    expect(converted.equals(await sharp(png).removeAlpha().raw().toBuffer())).toBe(false)
    const plain = await run('detect', png, '--model', model, '--boxes', boxesArg, '--json')
    const r = await run('detect', tagged, '--model', model, '--boxes', boxesArg, '--json')
    expect(r.code).toBe(0)
    expect(JSON.parse(r.out)).toEqual(JSON.parse(plain.out))
  })

  it('an animated image: its first frame, as --help says', async () => {
    const frames = Buffer.concat([pixels(W, H), Buffer.alloc(W * H * 3, 255)])
    const anim = path.join(dir, 'anim.webp')
    await sharp(frames, { raw: { width: W, height: 2 * H, channels: 3, pageHeight: H } }).webp({ lossless: true }).toFile(anim)
    expect((await sharp(anim).metadata()).pages).toBe(2)
    const first = await run('detect', png, '--model', model, '--boxes', boxesArg, '--json')
    const r = await run('detect', anim, '--model', model, '--boxes', boxesArg, '--json')
    expect(r.code).toBe(0)
    expect(JSON.parse(r.out)).toEqual(JSON.parse(first.out))
  })

  it.each([
    ['1,2,3', /--boxes: box 1 of 1 \("1,2,3"\) has 3 numbers/],
    ['1,2,3,4;5,6,x,8', /--boxes: box 2 of 2 .*"x" is not a number/],
    ['1,2,3,4,', /--boxes: box 1 of 1 \("1,2,3,4,"\) has an empty number \(a comma too many, or at an end\)/],
    ['1,2,,3,4', /--boxes: box 1 of 1 \("1,2,,3,4"\) has an empty number/],
    ['10,10,5,20', /--boxes: box 1 .*zero or negative size/],
    ['', /--boxes is empty/],
    ['1000,1000,1100,1100', /--boxes: box 1 .*lies entirely outside/],
    // Found once the model's crop is known: a crop beyond float32 (py-feat's precision).
    ['10,10,20,20;0,0,1e39,1e39', /^face-multitask: detect: --boxes: box 2 \(0,0,1e\+39,1e\+39\) has no usable crop in float32/m],
  ])('bad --boxes %j: exit 2 naming --boxes', async (text, message) => {
    const r = await run('detect', png, '--model', model, '--boxes', text)
    expect(r.code).toBe(2)
    expect(r.err).toMatch(message)
    expect(r.out).toBe('')
  })

  it('a frame too small for v2.4\'s stretched crop: exit 2 naming the file', async () => {
    const v24 = path.join(dir, 'v24.onnx')
    writeFileSync(v24, makeFixtureModel({ generation: 'v2.4' }))
    const tiny = path.join(dir, 'one-pixel.png')
    await sharp(Buffer.from([1, 2, 3]), { raw: { width: 1, height: 1, channels: 3 } }).png().toFile(tiny)
    const r = await run('detect', tiny, '--model', v24, '--boxes', '0,0,1,1')
    expect(r.code).toBe(2)
    expect(r.err).toContain(`face-multitask: detect: ${tiny} is 1x1: this model's stretched crop (py-feat v2.4) needs a frame of at least 2x2 pixels`)
  })

  it('--boxes given more than once: all the boxes, in order', async () => {
    const once = await run('detect', png, '--model', model, '--boxes', boxesArg, '--json')
    const twice = await run('detect', png, '--model', model, '--boxes', `${boxes[0].join(',')};`, `--boxes=${boxes[1].join(',')}`, '--json')
    expect(twice.code).toBe(0)
    expect(JSON.parse(twice.out)).toEqual(JSON.parse(once.out))
    const swapped = await run('detect', png, '--model', model, '--boxes', boxes[1].join(','), '--boxes', boxes[0].join(','), '--json')
    expect(JSON.parse(swapped.out).map((f: { box: unknown }) => f.box)).toEqual(JSON.parse(once.out).map((f: { box: unknown }) => f.box).reverse())
    const table = await run('detect', png, '--model', model, '--boxes', boxes[0].join(','), '--boxes', boxes[1].join(','))
    expect(table.out).toMatch(/: 2 faces/)
    // Boxes are counted across all the --boxes, and an empty one is refused.
    const bad = await run('detect', png, '--model', model, '--boxes', boxesArg, '--boxes', '1,2,3')
    expect(bad.code).toBe(2)
    expect(bad.err).toMatch(/--boxes: box 3 of 3 \("1,2,3"\) has 3 numbers/)
    const empty = await run('detect', png, '--model', model, '--boxes', boxesArg, '--boxes', '')
    expect(empty.code).toBe(2)
    expect(empty.err).toMatch(/--boxes is empty/)
  })

  it('detect --help documents repeated --boxes', async () => {
    expect((await run('detect', '--help')).out).toMatch(/May be given more than once: the\s+boxes of all of them, in order/)
  })

  it.each([
    [['--model', 'a.onnx', '--model', 'b.onnx'], '--model given more than once ("a.onnx", then "b.onnx"): give it once'],
    [['--model', 'a.onnx', '--backend', 'cpu', '--backend=auto'], '--backend given more than once ("cpu", then "auto"): give it once'],
  ])('a single-value option given twice (%j): exit 2 naming it', async (args, message) => {
    const r = await run('detect', png, ...args, '--boxes', boxesArg)
    expect(r.code).toBe(2)
    expect(r.err).toContain(`face-multitask: detect: ${message}`)
    expect(r.out).toBe('')
  })

  it('missing --model: exit 2', async () => {
    const r = await run('detect', png, '--boxes', boxesArg)
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/--model is required/)
  })

  it('--backend tensorrt where TensorRT is absent: exit 1 with the exact reason', async (ctx) => {
    await withoutTensorrt(ctx)
    const { tensorrt } = await FaceMultitask.available()
    const r = await run('detect', png, '--model', model, '--boxes', boxesArg, '--backend', 'tensorrt')
    expect(r.code).toBe(1)
    expect(r.err).toBe(`face-multitask: --backend tensorrt is not available: ${tensorrtReason(tensorrt.reason ?? '')}; use --backend auto or cpu`)
    // An addon built without TensorRT's headers: said as such, not as bare "headers absent at build time".
    if (tensorrt.reason === HEADERS_ABSENT) expect(r.err).toMatch(/: this build of the native addon has no TensorRT backend \(TensorRT's headers were absent when it was compiled\); /)
  })

  it('NaN from the model for one face: exit 1, naming that box as --boxes counts it', async () => {
    const face = 'options.boxes[1] = [20, 30, 80, 90]'
    const spy = vi.spyOn(FaceMultitask.prototype, 'detect').mockRejectedValueOnce(new NonFiniteOutputError('p_au', NaN, '', face))
    try {
      const r = await run('detect', png, '--model', model, '--boxes', boxesArg)
      expect([r.code, r.err.split('\n').at(-1)]).toEqual([1, 'face-multitask: the model gave NaN in its output "p_au" for box 2 (20,30,80,90) of --boxes, so that face\'s results would be meaningless; the call gives none'])
    } finally {
      spy.mockRestore()
    }
  })

  it('an empty <image> is a bad argument naming <image>: exit 2, not the library\'s words', async () => {
    const r = await run('detect', '', '--model', model, '--backend', 'cpu')
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/^face-multitask: detect: <image>: empty path/)
    expect(r.err).not.toMatch(/source must be/)
  })

  it('other bad arguments: exit 2', async () => {
    expect((await run('detect', png, '--model', model, '--backend', 'gpu')).err).toMatch(/--backend must be one of auto, cpu, onnxruntime, tensorrt, got "gpu"/)
    expect((await run('detect', png, '--model', model, '--frob')).code).toBe(2)
    expect((await run('detect', '--model', model)).code).toBe(2)
    expect((await run('frobnicate')).code).toBe(2)
  })

  it('a model that fails to load: exit 1 with its message', async () => {
    const junk = path.join(dir, 'junk.onnx')
    writeFileSync(junk, 'not a model\n'.repeat(20))
    const r = await run('detect', png, '--model', junk, '--boxes', boxesArg)
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/junk\.onnx" is not a readable ONNX model/)
    const missing = await run('detect', png, '--model', path.join(dir, 'none.onnx'), '--boxes', boxesArg)
    expect(missing.code).toBe(1)
    expect(missing.err).toMatch(/--model: cannot read .*none\.onnx": no such file/)
  })

  describe('demo', () => {
    const out = path.join(dir, 'demo')

    it('runs and says its numbers are meaningless, at the top and the bottom', async () => {
      const r = await run('demo', '--out-dir', out)
      expect(r.code).toBe(0)
      expect(r.out.match(/MEANINGLESS/g)).toHaveLength(2)
      const lines = r.out.split('\n')
      expect(lines.slice(0, 3).join('\n')).toMatch(/MEANINGLESS/)
      expect(lines.slice(-5).join('\n')).toMatch(/face-multitask detect <image> --model <out\.onnx> --boxes/)
      expect(r.out).toMatch(/face-multitask export <face_multitask_v2\*\.safetensors>/)
      expect(r.out).toMatch(/face 3 of 3/)
      expect(r.out).toMatch(/backend: onnxruntime/)
      expect(r.out).toMatch(/detect 3 faces [\d.]+ ms/)
    })

    it('--json prints JSON on stdout that carries the notice', async () => {
      const r = await run('demo', '--out-dir', out, '--json', '--generation', 'v2.4')
      expect(r.code).toBe(0)
      const result = JSON.parse(r.out)
      expect(result.synthetic).toBe(true)
      expect(result.notice).toMatch(/MEANINGLESS/)
      expect(result.generation).toBe('v2.4')
      // Names no other file is likely to have, since a file of that name is replaced.
      expect([path.basename(result.model), path.basename(result.image.file)]).toEqual(['face_multitask_v2.4.synthetic.onnx', 'face-multitask-demo.png'])
      expect(result.faces).toHaveLength(3)
      expect(result.faces[0].blendshapes).toBeUndefined() // v2.4 has no blendshapes head
      expect(r.err).toMatch(/MEANINGLESS/)
    })

    it('refuses an unknown generation', async () => {
      const r = await run('demo', '--out-dir', out, '--generation', 'v9')
      expect(r.code).toBe(2)
      expect(r.err).toMatch(/--generation: unknown generation "v9"/)
    })
  })

  it('the compiled bin runs as a child process', async () => {
    const bin = path.join(__dirname, '..', 'dist', 'lib', 'cli.js')
    const { stdout } = await promisify(execFile)(process.execPath, [bin, '--help'])
    expect(stdout).toMatch(/usage: face-multitask <command>/)
    const child = await promisify(execFile)(process.execPath, [bin, 'detect']).catch((e) => e)
    expect(child.code).toBe(2)
    expect(child.stderr).toMatch(/<image>: missing image path/)
  })

  it('detect reads an image piped to - or /dev/stdin, as from its file; bytes that are no image are said so', async (ctx) => {
    const bin = path.join(__dirname, '..', 'dist', 'lib', 'cli.js')
    if (!existsSync('/dev/stdin')) ctx.skip('no /dev/stdin here')
    const args = ['--model', model, '--backend', 'cpu', '--json']
    const fromFile = spawnSync(process.execPath, [bin, 'detect', chip, ...args], { encoding: 'utf8' })
    expect(fromFile.status).toBe(0)
    // spawnSync's `input` reaches the child through a pipe: /dev/stdin is a FIFO there, not a file.
    const piped = spawnSync(process.execPath, [bin, 'detect', '/dev/stdin', ...args], { input: readFileSync(chip), encoding: 'utf8' })
    expect([piped.status, piped.stdout]).toEqual([0, fromFile.stdout])
    const dash = spawnSync(process.execPath, [bin, 'detect', '-', ...args], { input: readFileSync(chip), encoding: 'utf8' })
    expect([dash.status, dash.stdout]).toEqual([0, fromFile.stdout])
    const junk = spawnSync(process.execPath, [bin, 'detect', '/dev/stdin', ...args], { input: 'not an image\n', encoding: 'utf8' })
    expect([junk.status, junk.stderr]).toEqual([1, expect.stringMatching(/^face-multitask: "\/dev\/stdin" \(a pipe, 13 bytes read\) is not a readable image: .*unsupported image format\n/)])
    // `-` is named as what it is; the library's advice to decode an image itself is not the CLI's.
    const table = spawnSync(process.execPath, [bin, 'detect', '-', '--model', model, '--backend', 'cpu'], { input: readFileSync(chip), encoding: 'utf8' })
    expect([table.status, table.stdout.split('\n')[0]]).toEqual([0, 'standard input (256x256): a 256x256 chip'])
    const outside = spawnSync(process.execPath, [bin, 'detect', '-', '--model', model, '--boxes', '300,300,400,400'], { input: readFileSync(chip), encoding: 'utf8' })
    expect([outside.status, outside.stderr]).toEqual([2, expect.stringContaining('lies entirely outside standard input, which is 256x256')])
    const huge = spawnSync(process.execPath, [bin, 'detect', '-', ...args], { input: emptyPng(17000, 17000) })
    expect([huge.status, huge.stderr.toString()]).toEqual([1, expect.stringMatching(/^face-multitask: standard input \(a pipe, 65 bytes read\) is 17000x17000 \(289000000 pixels\), more than readImage\(\) decodes .*; scale it down first\n/)])
  })

  it('sizes libuv\'s pool, where images decode, to the cores (a container\'s CPU limit counted; at least 4) unless UV_THREADPOOL_SIZE is set', (ctx) => {
    const bin = path.join(__dirname, '..', 'dist', 'lib', 'cli.js')
    if (!existsSync('/proc/self/task')) ctx.skip('no /proc here to count the threads')
    // A machine of 16 cores, as the child is told (and with FAKE_CPU_MAX, a cgroup v2 quota); at
    // its exit, the pool's size and its threads.
    const preload = path.join(dir, 'cores-16.cjs')
    writeFileSync(preload, `require('node:os').availableParallelism = () => 16
const fs = require('node:fs'), readFileSync = fs.readFileSync, fake = { '/proc/self/cgroup': '0::/\\n', '/sys/fs/cgroup/cpu.max': process.env.FAKE_CPU_MAX }
if (process.env.FAKE_CPU_MAX) fs.readFileSync = (file, ...rest) => (fake[file] ?? readFileSync(file, ...rest))
process.on('exit', () => process.stderr.write(\`POOL \${process.env.UV_THREADPOOL_SIZE} THREADS \${require('node:fs').readdirSync('/proc/self/task').length}\\n\`))
`)
    const threads = (env: NodeJS.ProcessEnv) => {
      const child = spawnSync(process.execPath, ['-r', preload, bin, 'detect', chip, '--model', model, '--backend', 'cpu', '--json'], { env, encoding: 'utf8' })
      expect(child.status, child.stderr).toBe(0)
      const [, pool, count] = /POOL (\S+) THREADS (\d+)/.exec(child.stderr) ?? []
      return { pool, count: Number(count) }
    }
    const { UV_THREADPOOL_SIZE: _, ...unset } = process.env
    const sized = threads(unset)
    const four = threads({ ...unset, UV_THREADPOOL_SIZE: '4' })
    // 16, unless a CPU quota on this machine's cgroup is lower (a CI container's limit)
    const pool = Math.max(4, Math.min(16, Math.floor(cgroupCpuQuota() ?? 16)))
    expect([sized.pool, four.pool]).toEqual([String(pool), '4'])
    expect(sized.count - four.count).toBe(pool - 4)  // the pool's threads, the rest alike
    // A container allowed 6 of the 16 cores: 6 threads.
    expect(threads({ ...unset, FAKE_CPU_MAX: '600000 100000\n' }).pool).toBe('6')
  })

  it('output that cannot be written (a full disk) is said in one line, exit 1, no stack trace', async (ctx) => {
    const bin = path.join(__dirname, '..', 'dist', 'lib', 'cli.js')
    if (!existsSync('/dev/full')) ctx.skip('no /dev/full here to stand for a full disk')
    for (const args of [['--help'], ['inspect', model]]) {
      const full = openSync('/dev/full', 'w')
      const child = spawnSync(process.execPath, [bin, ...args], { stdio: ['ignore', full, 'pipe'], encoding: 'utf8' })
      closeSync(full)
      expect(child.status, args[0]).toBe(1)
      expect(child.stderr, args[0]).toBe('face-multitask: cannot write the output: ENOSPC: no space left on device, write\n')
    }
  })
})

