// `face-multitask batch`: many images from a JSON-lines list into a JSON-lines results file that a
// rerun goes on with. Faces are checked against the library's detect() on the same decoded pixels
// (whose values parity.test.ts checks against py-feat); what is checked here is that every line
// gets its result, once, in order, through errors, a stopped model, Ctrl-C and reruns.
import { execFileSync, spawn } from 'node:child_process'
import fs, { existsSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import path from 'node:path'
import sharp from 'sharp'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import { formatSeconds, Progress } from '../lib/cli/batch'
import { faceToJson } from '../lib/cli/format'
import { BatchThreads } from '../lib/cli/batch-threads'
import { FileLock } from '../lib/engine-cache'
import { NonFiniteOutputError } from '../lib/decode'
import { FaceMultitask } from '../lib/face-multitask'
import type { Box, ImageInput } from '../lib/types'
import { makeFixtureModel } from '../scripts/make-fixture'
import { withExternalData } from './helpers/external-data'
import { spyOnLoad } from './helpers/spy-load'
import { tempDir } from './helpers/temp-dir'
import { run } from './helpers/run-cli'

// A file batch's threads load first (--require), to fail the system's calls there; undefined: none.
const threadPreload = vi.hoisted(() => ({ file: undefined as string | undefined }))
vi.mock('node:worker_threads', async (original) => {
  const real = await original<typeof import('node:worker_threads')>()
  class Worker extends real.Worker {
    constructor(file: ConstructorParameters<typeof real.Worker>[0], options: ConstructorParameters<typeof real.Worker>[1] = {}) {
      const batchs = String(file).endsWith('batch-worker.js')
      super(file, batchs && threadPreload.file ? { ...options, execArgv: ['--require', threadPreload.file] } : options)
    }
  }
  return { ...real, Worker }
})

const dir = tempDir('batch')
const model = path.join(dir, 'fixture.onnx')
const otherModel = path.join(dir, 'other.onnx')
const list = path.join(dir, 'list.jsonl')
const boxes: Box[] = [[100, 50, 260, 220], [20, 30, 80, 90]]

/** Runs the CLI with `spy` in place (fault injection), restored after. */
async function runWith(spy: { mockRestore(): void }, ...argv: string[]) {
  try {
    return await run(...argv)
  } finally {
    spy.mockRestore()
  }
}

/** Runs batch with detect() going through `wrap` (fault injection: delays, failures), restored after. */
async function runWrapped(wrap: (image: ImageInput, detect: () => Promise<unknown>) => Promise<unknown>, ...argv: string[]) {
  const original = FaceMultitask.prototype.detect
  const spy = vi.spyOn(FaceMultitask.prototype, 'detect').mockImplementation(function (this: FaceMultitask, image: never, options?: never) {
    return wrap(image, () => original.call(this, image, options)) as never
  } as never)
  try {
    return await run('batch', ...argv)
  } finally {
    spy.mockRestore()
  }
}

/**
 * Stubs fs.writeSync for files other than stdout and stderr: `onWrite` gets the write's number
 * (1: the results file's header), the bytes asked for and the real write; what it returns (or
 * throws) is the call's. Restored by the returned spy's mockRestore().
 */
function stubWrites(onWrite: (n: number, bytes: Buffer, write: (b: Buffer) => number) => number) {
  const original = fs.writeSync as (fd: number, data: unknown, ...rest: unknown[]) => number
  let n = 0
  return vi.spyOn(fs, 'writeSync').mockImplementation(((fd: number, data: string | NodeJS.ArrayBufferView, ...rest: unknown[]) => {
    if (fd === 1 || fd === 2) return original(fd, data, ...rest)
    // Either form: a string, or a buffer with an offset and a length.
    const bytes = typeof data === 'string'
      ? Buffer.from(data)
      : Buffer.from(data.buffer, data.byteOffset + ((rest[0] as number | undefined) ?? 0), (rest[1] as number | undefined) ?? data.byteLength - ((rest[0] as number | undefined) ?? 0))
    return onWrite(++n, bytes, (b) => original(fd, b, 0, b.length, rest[2] ?? null))
  }) as typeof fs.writeSync)
}

const enospc = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })

/** A list of 20 lines whose first (a.png, 320 px wide) can be made slow by runWrapped. */
function slowFirstList(name: string): string {
  const file = path.join(dir, name)
  const lines = Array.from({ length: 20 }, (_, i) => (i === 0 ? { image: 'a.png', boxes } : { image: 'b.png', boxes: [[5, 5, 90, 70]] }))
  writeFileSync(file, lines.map((e) => JSON.stringify(e)).join('\n') + '\n')
  return file
}

function pixels(width: number, height: number, seed: number): Buffer {
  const data = Buffer.alloc(width * height * 3)
  for (let i = 0; i < data.length; i++) data[i] = (i * seed + (i >> 7)) % 251
  return data
}

async function png(name: string, width: number, height: number, seed: number): Promise<void> {
  await sharp(pixels(width, height, seed), { raw: { width, height, channels: 3 } }).png().toFile(path.join(dir, name))
}

async function decoded(name: string): Promise<ImageInput> {
  const { data, info } = await sharp(path.join(dir, name)).raw().toBuffer({ resolveWithObject: true })
  return { data, width: info.width, height: info.height, format: 'rgb' }
}

function records(file: string): Record<string, unknown>[] {
  return readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>)
}

/**
 * Runs batch over `listFile` one line at a time, each line's detect() taking `lineMs` longer, with
 * the 5-second flush to the disk every 20 ms; `flush` (a spy on fs.fsync) restored after.
 */
async function flushingOften(flush: { mockRestore(): void }, lineMs: number, listFile: string, out: string) {
  const setIntervalReal = globalThis.setInterval
  const timers = vi.spyOn(globalThis, 'setInterval').mockImplementation(((fn: () => void, ms?: number) => setIntervalReal(fn, ms === 5000 ? 20 : ms)) as typeof setInterval)
  try {
    return await runWrapped(async (_image, detect) => {
      await new Promise((resolve) => setTimeout(resolve, lineMs))
      return detect()
    }, listFile, '--model', model, '--out', out, '--backend', 'cpu', '--concurrency', '1')
  } finally {
    timers.mockRestore()
    flush.mockRestore()
  }
}

/** A results file's text without its header's outFromList (where --out sat): runs into other files compare equal. */
function resultsText(file: string): string {
  const [head, ...rest] = readFileSync(file, 'utf8').split('\n')
  const { outFromList: _, ...header } = JSON.parse(head) as Record<string, unknown>
  return [JSON.stringify(header), ...rest].join('\n')
}

const LIST = [
  { image: 'a.png', boxes },
  { image: 'chip.png', id: 'subject-7' },
  '',
  'not json',
  { image: 'missing.png' },
  { image: 'b.png', boxes: [[400, 400, 500, 500]] },
  { image: 'b.png', boxes: [[5, 5, 90, 70]], id: 3 },
  { image: 'a.png', boxes: [] },
]
const lineText = (e: (typeof LIST)[number]) => (typeof e === 'string' ? e : JSON.stringify(e))

let want: Record<number, unknown[]>
beforeAll(async () => {
  writeFileSync(model, makeFixtureModel({ generation: 'v2.5' }))
  writeFileSync(otherModel, makeFixtureModel({ generation: 'v2.8' }))
  await png('a.png', 320, 240, 7)
  await png('b.png', 200, 150, 13)
  await png('chip.png', 256, 256, 5)
  writeFileSync(list, LIST.map(lineText).join('\n') + '\n')
  const m = await FaceMultitask.load({ model, backend: 'cpu' })
  try {
    const json = (faces: Parameters<typeof faceToJson>[0][]) => JSON.parse(JSON.stringify(faces.map(faceToJson))) as unknown[]
    want = {
      1: json(await m.detect(await decoded('a.png'), { boxes })),
      2: json(await m.detect(await decoded('chip.png'))),
      7: json(await m.detect(await decoded('b.png'), { boxes: [[5, 5, 90, 70]] })),
      8: [],
    }
  } finally {
    await m.close()
  }
})

describe('face-multitask batch', () => {
  it('writes one record per list line, in order: the faces detect() gives, or the line\'s error', async () => {
    const out = path.join(dir, 'first.jsonl')
    const r = await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu')
    expect(r.code).toBe(0)
    expect(r.err).toMatch(/SYNTHETIC test model/)
    expect(r.err).toMatch(/batch: 7 lines this run \(4 faces, 3 with errors\) in .*; 7\/7 lines in /)
    const [header, ...rest] = records(out)
    expect(header).toMatchObject({ faceMultitaskBatch: 1, list: fs.realpathSync(list), model })
    expect(rest.map((x) => x.line)).toEqual([1, 2, 4, 5, 6, 7, 8])  // line 3 is blank
    const byLine = Object.fromEntries(rest.map((x) => [x.line as number, x]))
    for (const [line, faces] of Object.entries(want)) expect(byLine[line].faces).toEqual(faces)
    // A face's keys in detect --json's order (toEqual does not compare the order; the bytes do).
    expect(Object.keys((byLine[1].faces as object[])[0])).toEqual([
      'box', 'emotion', 'emotions', 'valence', 'arousal', 'aus', 'gaze', 'pose', 'blendshapes',
      'landmarks68', 'mesh', 'auValues', 'emotionValues', 'blendshapeValues',
    ])
    expect(byLine[2]).toMatchObject({ id: 'subject-7', image: 'chip.png' })
    expect(byLine[7]).toMatchObject({ id: 3, image: 'b.png' })
    expect(byLine[4]).toEqual({ line: 4, error: expect.stringMatching(/^not JSON: /) })
    expect(byLine[5]).toEqual({ line: 5, image: 'missing.png', error: `"${path.join(dir, 'missing.png')}" is not a readable image: no such file` })
    expect(byLine[6]).toEqual({ line: 6, image: 'b.png', error: 'boxes[0] = [400, 400, 500, 500] lies entirely outside the 200x150 frame' })
  })

  it("a line whose image the model's crop cannot take says so in the list's terms", async () => {
    const tiny = path.join(dir, 'tiny.png')
    await sharp(Buffer.alloc(3, 9), { raw: { width: 1, height: 1, channels: 3 } }).png().toFile(tiny)
    const v24 = path.join(dir, 'v24.onnx')
    writeFileSync(v24, makeFixtureModel({ generation: 'v2.4' }))
    const lines = path.join(dir, 'crop-lines.jsonl')
    writeFileSync(lines, [{ image: 'tiny.png', boxes: [[0, 0, 1, 1]] }, { image: 'b.png' }].map(lineText).join('\n') + '\n')
    const out = path.join(dir, 'crop-lines-results.jsonl')
    expect((await run('batch', lines, '--model', v24, '--out', out, '--backend', 'cpu')).code).toBe(3)
    expect(records(out).slice(1).map((x) => x.error)).toEqual([
      "the image is 1x1: this model's stretched crop (py-feat v2.4) needs a frame of at least 2x2 pixels",
      'boxes is required: the image is 200x150, and only 256x256 chips can run without boxes',
    ])
  })

  it('a rerun keeps the lines done, redoes a line cut off mid-write, and gives the same file', async () => {
    const full = readFileSync(path.join(dir, 'first.jsonl'))
    const cut = path.join(dir, 'cut.jsonl')
    const lines = full.toString('utf8').split('\n')
    const keep = lines[0].length + lines[1].length + lines[2].length + 3 + 10  // header, lines 1 and 2, 10 bytes of line 4's record
    writeFileSync(cut, full.subarray(0, keep))
    const r = await run('batch', list, '--model', model, '--out', cut, '--backend', 'cpu')
    expect(r.code).toBe(0)
    expect(r.err).toContain('batch: dropped an incomplete last line of 10 bytes (a run stopped while writing it); its image runs again')
    expect(r.err).toContain('batch: 2 of 7 lines already have results')
    expect(r.err).toMatch(/batch: 5 lines this run/)
    expect(readFileSync(cut).equals(full)).toBe(true)
    const again = await run('batch', list, '--model', model, '--out', cut, '--backend', 'cpu')
    expect([again.code, again.err]).toEqual([0, `batch: all 7 lines already have results in ${cut}: nothing left to run`])
    // Cut by hand and saved by an editor, which ends the file with a newline: not whole JSON, so redone too.
    const last = Buffer.byteLength(lines[lines.length - 2])
    const half = Math.floor(last / 2)
    writeFileSync(cut, Buffer.concat([full.subarray(0, full.length - 1 - last + half), Buffer.from('\n')]))
    const redone = await run('batch', list, '--model', model, '--out', cut, '--backend', 'cpu')
    expect(redone.code).toBe(0)
    expect(redone.err).toContain(`batch: dropped an incomplete last line of ${half + 1} bytes (not whole JSON: cut by hand, or by a copy that stopped?); its image runs again`)
    expect(redone.err).toContain('batch: 6 of 7 lines already have results')
    expect(readFileSync(cut).equals(full)).toBe(true)
  })

  it('a rerun over a results file of a GiB or more says it reads it first', async () => {
    const full = readFileSync(path.join(dir, 'first.jsonl'))
    const big = path.join(dir, 'big-cut.jsonl')
    const lines = full.toString('utf8').split('\n')
    writeFileSync(big, full.subarray(0, lines[0].length + lines[1].length + 2))  // the header and line 1
    truncateSync(big, 2 ** 30)  // and a GiB of a line cut off mid-write (sparse: no disk used)
    const r = await run('batch', list, '--model', model, '--out', big, '--backend', 'cpu')
    expect(r.code).toBe(0)
    expect(r.err.split('\n').slice(0, 2)).toEqual([
      `batch: reading the 1.0 GiB of results in ${big} to go on from them`,
      `batch: dropped an incomplete last line of ${2 ** 30 - lines[0].length - lines[1].length - 2} bytes (a run stopped while writing it); its image runs again`,
    ])
    expect(readFileSync(big).equals(full)).toBe(true)
  })

  it('--no-mesh leaves the mesh out and keeps the rest; a rerun that changes the choice is refused', async () => {
    const out = path.join(dir, 'no-mesh.jsonl')
    const r = await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu', '--no-mesh')
    expect(r.code).toBe(0)
    const [header, ...rest] = records(out)
    expect(header).toMatchObject({ mesh: false })
    const byLine = Object.fromEntries(rest.map((x) => [x.line as number, x]))
    for (const [line, faces] of Object.entries(want)) {
      const without = (faces as Record<string, unknown>[]).map(({ mesh, ...f }) => (expect(mesh).toHaveLength(478 * 3), f))
      expect(byLine[line].faces).toEqual(without)
      expect(JSON.stringify(byLine[line].faces)).toBe(JSON.stringify(without))  // the same keys in the same order
    }
    const again = await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu')
    expect([again.code, again.err]).toEqual([1, `face-multitask: --out: "${out}" holds results of faces without their mesh (--no-mesh; this run has none): going on would mix two runs in one file; give another --out, or the same list, model and --no-mesh choice`])
  })

  it('a results file of another model, or not of batch at all, is refused and left as it was', async () => {
    const out = path.join(dir, 'first.jsonl')
    const before = readFileSync(out)
    const r = await run('batch', list, '--model', otherModel, '--out', out)
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/--out: ".*first\.jsonl" holds results of another model \(.*fixture\.onnx, sha256 [0-9a-f]{12}\.\.\.; --model is [0-9a-f]{12}\.\.\.\): going on would mix two runs in one file; give another --out, or the same list, model and --no-mesh choice$/)
    expect(readFileSync(out).equals(before)).toBe(true)
    // Another model's results cut off mid-line: still refused, and not cut further.
    const torn = path.join(dir, 'torn.jsonl')
    writeFileSync(torn, before.subarray(0, before.length - 40))
    expect((await run('batch', list, '--model', otherModel, '--out', torn)).code).toBe(1)
    expect(readFileSync(torn).equals(before.subarray(0, before.length - 40))).toBe(true)
    for (const text of ['my notes\n', 'my notes\nwithout a last newline', 'one line without a newline']) {
      const notOurs = path.join(dir, 'notes.txt')
      writeFileSync(notOurs, text)
      const n = await run('batch', list, '--model', model, '--out', notOurs)
      expect([n.code, n.err]).toEqual([1, `face-multitask: --out: "${notOurs}" was not written by face-multitask batch (its first line is not a batch header); give another --out`])
      expect(readFileSync(notOurs, 'utf8')).toBe(text)
    }
    // The lock sits beside the file --out names through a symlink: an error names that lock.
    const target = path.join(fs.realpathSync(dir), `${'r'.repeat(246)}.jsonl`)  // its lock's name is longer than a file name may be
    writeFileSync(target, '')
    const longLink = path.join(dir, 'long-name-link.jsonl')
    symlinkSync(target, longLink)
    const tooLong = await run('batch', list, '--model', model, '--out', longLink)
    expect([tooLong.code, tooLong.err]).toEqual([1, expect.stringContaining(`face-multitask: --out: cannot write "${target}.lock" beside the results: `)])
    const folder = await run('batch', list, '--model', model, '--out', dir)
    const notAFile = 'is not a regular file: batch writes its results to a file, which a rerun with the same --out goes on from'
    expect([folder.code, folder.err]).toEqual([1, `face-multitask: --out: "${dir}" ${notAFile}`])
    // Stdout, a device, a pipe: refused before a lock is made beside them (root may write in /dev).
    const fifo = path.join(dir, 'results.fifo')
    execFileSync('mkfifo', [fifo])
    for (const out of ['/dev/null', fifo]) {
      const r = await run('batch', list, '--model', model, '--out', out)
      expect([r.code, r.err]).toEqual([1, `face-multitask: --out: "${out}" ${notAFile}`])
      expect(existsSync(`${out}.lock`)).toBe(false)
    }
    const dash = await run('batch', list, '--model', model, '--out', '-')
    expect([dash.code, dash.err]).toEqual([2, expect.stringContaining('batch: --out: "-" (stdout) cannot hold the results: batch writes them to a file, which a rerun with the same --out goes on from')])
    expect(existsSync('-')).toBe(false)
    const nowhere = path.join(dir, 'no-such-folder', 'out.jsonl')
    const w = await run('batch', list, '--model', model, '--out', nowhere)
    expect([w.code, w.err]).toEqual([1, `face-multitask: --out: the folder "${path.dirname(nowhere)}" does not exist`])
  })

  it('a list changed since the results were begun is refused; lines added at its end are run', async () => {
    const own = path.join(dir, 'growing.jsonl')
    writeFileSync(own, [lineText(LIST[0]), lineText(LIST[1])].join('\n') + '\n')
    const out = path.join(dir, 'growing-results.jsonl')
    expect((await run('batch', own, '--model', model, '--out', out, '--backend', 'cpu')).code).toBe(0)
    writeFileSync(own, [lineText(LIST[0]), lineText(LIST[1]), lineText(LIST[6])].join('\n') + '\n')
    const grown = await run('batch', own, '--model', model, '--out', out, '--backend', 'cpu')
    expect([grown.code, grown.err]).toEqual([0, expect.stringContaining('batch: 2 of 3 lines already have results')])
    expect(records(out).slice(1).map((x) => [x.line, x.faces])).toEqual([[1, want[1]], [2, want[2]], [3, want[7]]])
    const before = readFileSync(out)
    writeFileSync(own, [lineText(LIST[6]), lineText(LIST[0]), lineText(LIST[1]), lineText(LIST[6])].join('\n') + '\n')  // a line inserted at the top
    const changed = await run('batch', own, '--model', model, '--out', out, '--backend', 'cpu')
    expect([changed.code, changed.err]).toEqual([1, expect.stringContaining('holds results of a list that has changed since (other than by lines added at its end), so its line numbers may name other images')])
    expect(readFileSync(out).equals(before)).toBe(true)
    // A list whose last line (whole JSON) has no newline: text added right after it extends that
    // line (refused), a new line after it does not (run), whether it begins with \n or \r\n.
    const open = path.join(dir, 'open-ended.jsonl')
    const openOut = path.join(dir, 'open-ended-results.jsonl')
    const unended = `${lineText(LIST[0])}\n${lineText(LIST[6])}`
    writeFileSync(open, unended)
    expect((await run('batch', open, '--model', model, '--out', openOut, '--backend', 'cpu')).code).toBe(0)
    writeFileSync(open, `${unended}${lineText(LIST[1])}\n`)  // the last line extended
    const extended = await run('batch', open, '--model', model, '--out', openOut, '--backend', 'cpu')
    expect([extended.code, extended.err]).toEqual([1, expect.stringContaining('holds results of a list that has changed since')])
    writeFileSync(open, `${unended}\r\n${lineText(LIST[1])}\r\n`)  // a line added after it, as a Windows editor ends lines
    const added = await run('batch', open, '--model', model, '--out', openOut, '--backend', 'cpu')
    expect([added.code, added.err]).toEqual([0, expect.stringContaining('batch: 2 of 3 lines already have results')])
    expect(records(openOut).slice(1).map((x) => [x.line, x.faces])).toEqual([[1, want[1]], [2, want[7]], [3, want[2]]])
  })

  it('lines added at the list\'s end, once a run has taken them, are held to their bytes as the first ones are', async () => {
    const own = path.join(dir, 'grown-edited.jsonl')
    const out = path.join(dir, 'grown-edited-results.jsonl')
    const two = [LIST[0], LIST[1]].map(lineText).join('\n') + '\n'
    writeFileSync(own, two)
    expect((await run('batch', own, '--model', model, '--out', out, '--backend', 'cpu')).code).toBe(0)
    writeFileSync(own, `${two}${lineText(LIST[6])}\n`)
    const grown = await run('batch', own, '--model', model, '--out', out, '--backend', 'cpu')
    expect([grown.code, grown.err]).toEqual([0, expect.stringContaining('batch: 2 of 3 lines already have results')])
    expect(records(out)[0]).toMatchObject({ listBytes: statSync(own).size })
    const before = readFileSync(out)
    writeFileSync(own, `${two}${lineText(LIST[7])}\n`)  // the added line edited: its result is of another image
    const edited = await run('batch', own, '--model', model, '--out', out, '--backend', 'cpu')
    expect([edited.code, edited.err]).toEqual([1, expect.stringContaining('holds results of a list that has changed since')])
    expect(readFileSync(out).equals(before)).toBe(true)
    // A header written without room for a larger size (as before it had) keeps its first size and hash.
    const compact = path.join(dir, 'grown-compact-results.jsonl')
    writeFileSync(own, two)
    expect((await run('batch', own, '--model', model, '--out', compact, '--backend', 'cpu')).code).toBe(0)
    const [head, ...rest] = readFileSync(compact, 'utf8').split('\n')
    const oldHead = JSON.stringify(JSON.parse(head))
    expect(oldHead).not.toBe(head)
    writeFileSync(compact, [oldHead, ...rest].join('\n'))
    writeFileSync(own, `${two}${lineText(LIST[6])}\n`)
    const old = await run('batch', own, '--model', model, '--out', compact, '--backend', 'cpu')
    expect([old.code, old.err]).toEqual([0, expect.stringContaining('batch: 2 of 3 lines already have results')])
    expect(readFileSync(compact, 'utf8').split('\n')[0]).toBe(oldHead)
  })

  it('a last line without a line ending that is not JSON (still being written) is left for the next run, which runs it once whole', async () => {
    const file = path.join(dir, 'being-written.jsonl')
    const out = path.join(dir, 'being-written-results.jsonl')
    writeFileSync(file, `${lineText(LIST[0])}\n{"image": "chip.png", "i`)
    const r = await run('batch', file, '--model', model, '--out', out, '--backend', 'cpu')
    expect(r.code).toBe(0)
    expect(r.err).toContain(`batch: line 2 of ${file} has no line ending and is not JSON: it may still be being written, so it is left for the next run`)
    expect(r.err).toMatch(/batch: 1 lines this run \(2 faces, 0 with errors\) in .*; 1\/1 lines in /)
    expect(records(out).slice(1).map((x) => x.line)).toEqual([1])
    writeFileSync(file, `${lineText(LIST[0])}\n{"image": "chip.png", "id": "subject-7"}\n`)  // the writer finished it
    const again = await run('batch', file, '--model', model, '--out', out, '--backend', 'cpu')
    expect([again.code, again.err]).toEqual([0, expect.stringContaining('batch: 1 of 2 lines already have results')])
    expect(records(out).slice(1).map((x) => [x.line, x.id, x.faces])).toEqual([[1, undefined, want[1]], [2, 'subject-7', want[2]]])
  })

  it('lines added to the list during a run are left for the next run, a line cut short among them too', async () => {
    const file = path.join(dir, 'appended.jsonl')
    const out = path.join(dir, 'appended-results.jsonl')
    writeFileSync(file, [LIST[0], LIST[6]].map(lineText).join('\n') + '\n')
    const load = FaceMultitask.load.bind(FaceMultitask)
    const spy = vi.spyOn(FaceMultitask, 'load').mockImplementation(async (options) => {
      fs.appendFileSync(file, `${lineText(LIST[1])}\n{"image": "chip.png", "i`)  // a program appends to the list meanwhile
      return load(options)
    })
    const r = await runWith(spy, 'batch', file, '--model', model, '--out', out, '--backend', 'cpu')
    expect(r.code).toBe(0)
    expect(r.err).toMatch(/batch: 2 lines this run \(3 faces, 0 with errors\) in .*; 2\/2 lines in /)
    expect(records(out).slice(1).map((x) => x.line)).toEqual([1, 2])
    fs.appendFileSync(file, 'd": "subject-7"}\n')
    const again = await run('batch', file, '--model', model, '--out', out, '--backend', 'cpu')
    expect([again.code, again.err]).toEqual([0, expect.stringContaining('batch: 2 of 4 lines already have results')])
    expect(records(out).slice(1).map((x) => [x.line, x.faces])).toEqual([[1, want[1]], [2, want[7]], [3, want[2]], [4, want[2]]])
  })

  it('a list with a byte-order mark, CRLF line ends and a lone \\r inside a line (JSON whitespace) reads as its lines', async () => {
    const odd = path.join(dir, 'odd.jsonl')
    writeFileSync(odd, '\uFEFF' + lineText(LIST[0]) + '\r\n' + '{"image": "chip.png",\r"id": "subject-7"}\r\n' + lineText(LIST[6]))  // no newline at the end
    const out = path.join(dir, 'odd-results.jsonl')
    expect((await run('batch', odd, '--model', model, '--out', out, '--backend', 'cpu')).code).toBe(0)
    expect(records(out).slice(1).map((x) => [x.line, x.faces])).toEqual([[1, want[1]], [2, want[2]], [3, want[7]]])
  })

  it('a results file holding only its header, without the newline (a run stopped right after it), goes on', async () => {
    const out = path.join(dir, 'header-only.jsonl')
    const header = readFileSync(path.join(dir, 'first.jsonl'), 'utf8').split('\n')[0]
    writeFileSync(out, header)
    const r = await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu')
    expect(r.code).toBe(0)
    expect(readFileSync(out).equals(readFileSync(path.join(dir, 'first.jsonl')))).toBe(true)
  })

  it('a results file holding only part of its header (a run stopped while writing it) is begun again', async () => {
    const first = path.join(dir, 'first.jsonl')
    const header = readFileSync(first, 'utf8').split('\n')[0]
    const out = path.join(dir, 'part-header.jsonl')
    for (const cut of [5, 40, header.length - 1]) {
      writeFileSync(out, header.slice(0, cut))
      const r = await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu')
      expect([r.code, r.err]).toEqual([0, expect.stringContaining(`batch: "${out}" held only part of a batch header (a run stopped while writing it) and no results; begun again for this run`)])
      expect(resultsText(out)).toBe(resultsText(first))
    }
  })

  it('a run whose model does not load leaves no results file it made; one that was there keeps its header', async () => {
    const broken = path.join(dir, 'broken.onnx')
    writeFileSync(broken, 'not an onnx file')
    const out = path.join(dir, 'failed-load-new.jsonl')
    const r = await run('batch', list, '--model', broken, '--out', out, '--backend', 'cpu')
    expect([r.code, r.err]).toEqual([1, expect.stringContaining(broken)])
    expect(fs.existsSync(out)).toBe(false)
    expect(fs.existsSync(`${out}.lock`)).toBe(false)
    // An empty file the user made is not removed: the failed run's header stays in it (begun again below).
    writeFileSync(out, '')
    expect((await run('batch', list, '--model', broken, '--out', out, '--backend', 'cpu')).code).toBe(1)
    expect(records(out)).toEqual([expect.objectContaining({ faceMultitaskBatch: 1, model: broken })])
  })

  it('a model whose weights sit beside it (ONNX external data) is another model when those weights change, its .onnx the same', async () => {
    const folder = path.join(dir, 'external')
    fs.mkdirSync(folder, { recursive: true })
    const ext = path.join(folder, 'm.onnx')
    const weights = path.join(folder, 'm.weights')
    const first = withExternalData(makeFixtureModel({ generation: 'v2.5' }), 'm.weights')
    writeFileSync(ext, first.onnx)
    writeFileSync(weights, first.weights)
    const out = path.join(dir, 'external-results.jsonl')
    const short = path.join(dir, 'short-list.jsonl')
    writeFileSync(short, LIST.slice(0, 2).map(lineText).join('\n') + '\n')
    expect((await run('batch', short, '--model', ext, '--out', out, '--backend', 'cpu')).code).toBe(0)
    expect(records(out)[0]).toMatchObject({ modelExternalData: [{ location: 'm.weights', sha256: expect.stringMatching(/^[0-9a-f]{64}$/) }] })
    // The same .onnx, other weights (another fixture of the generation: the same layout), a line added.
    const other = withExternalData(makeFixtureModel({ generation: 'v2.5', seed: 2 }), 'm.weights')
    expect(other.weights.length).toBe(first.weights.length)
    writeFileSync(weights, other.weights)
    fs.appendFileSync(short, lineText(LIST[7]) + '\n')
    const before = readFileSync(out)
    const r = await run('batch', short, '--model', ext, '--out', out, '--backend', 'cpu')
    expect([r.code, r.err]).toEqual([1, expect.stringContaining(`holds results of another model (${ext} with other weights in "m.weights", its ONNX external data): going on would mix two runs in one file`)])
    expect(readFileSync(out).equals(before)).toBe(true)
    // The weights as they were: it goes on.
    writeFileSync(weights, first.weights)
    const again = await run('batch', short, '--model', ext, '--out', out, '--backend', 'cpu')
    expect([again.code, again.err]).toEqual([0, expect.stringContaining('batch: 2 of 3 lines already have results')])
    // A weights file gone: said before anything is written.
    rmSync(weights)
    const gone = await run('batch', short, '--model', ext, '--out', path.join(dir, 'external-gone.jsonl'), '--backend', 'cpu')
    expect([gone.code, gone.err]).toEqual([1, `face-multitask: --model: ${ext} keeps weights in "m.weights" (ONNX external data), which cannot be read: no such file`])
    expect(existsSync(path.join(dir, 'external-gone.jsonl'))).toBe(false)
  })

  it('a results file with no result yet, begun for another model (its load failed) or list, is begun again for this run', async () => {
    const broken = path.join(dir, 'broken.onnx')
    writeFileSync(broken, 'not an onnx file')
    const out = path.join(dir, 'failed-load.jsonl')
    writeFileSync(out, '')  // there before: the failed run keeps its header in it
    expect((await run('batch', list, '--model', broken, '--out', out, '--backend', 'cpu')).code).toBe(1)
    expect(records(out)).toEqual([expect.objectContaining({ faceMultitaskBatch: 1, model: broken })])  // the header alone
    const r = await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu')
    expect(r.code).toBe(0)
    expect(r.err).toContain(`batch: "${out}" held no results yet, only the header of a run of another model (${broken}, sha256 `)
    expect(resultsText(out)).toBe(resultsText(path.join(dir, 'first.jsonl')))
    // The same without the header's newline (a run stopped right after writing it), and for another list.
    const other = path.join(dir, 'other-list.jsonl')
    writeFileSync(other, lineText(LIST[0]) + '\n')
    const otherOut = path.join(dir, 'other-list-results.jsonl')
    expect((await run('batch', other, '--model', model, '--out', otherOut, '--backend', 'cpu')).code).toBe(0)
    writeFileSync(out, readFileSync(otherOut, 'utf8').split('\n')[0])
    const again = await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu')
    expect([again.code, again.err]).toEqual([0, expect.stringContaining(`only the header of a run of another list (${fs.realpathSync(other)}); begun again`)])
    expect(resultsText(out)).toBe(resultsText(path.join(dir, 'first.jsonl')))
  })

  it('the same list reached through a symlink goes on with its results', async () => {
    const link = path.join(dir, 'list-link.jsonl')
    symlinkSync(list, link)
    const r = await run('batch', link, '--model', model, '--out', path.join(dir, 'first.jsonl'), '--backend', 'cpu')
    expect([r.code, r.err]).toEqual([0, `batch: all 7 lines already have results in ${path.join(dir, 'first.jsonl')}: nothing left to run`])
  })

  it('a list reached through a symlink in another folder reads its images from the folder of the file it points to', async () => {
    const elsewhere = path.join(dir, 'elsewhere')
    fs.mkdirSync(elsewhere)
    const link = path.join(elsewhere, 'list.jsonl')
    symlinkSync(list, link)
    // Begun by the list's own path, stopped after line 2, then gone on with through the symlink.
    const out = path.join(dir, 'via-link-elsewhere.jsonl')
    const first = readFileSync(path.join(dir, 'first.jsonl'), 'utf8')
    writeFileSync(out, first.split('\n').slice(0, 3).join('\n') + '\n')
    const r = await run('batch', link, '--model', model, '--out', out, '--backend', 'cpu')
    expect([r.code, r.err]).toEqual([0, expect.stringContaining('batch: 2 of 7 lines already have results')])
    expect(readFileSync(out, 'utf8')).toBe(first)
    // Begun through it: the same records as by the list's own path.
    const fresh = path.join(dir, 'via-link-elsewhere-fresh.jsonl')
    expect((await run('batch', link, '--model', model, '--out', fresh, '--backend', 'cpu')).code).toBe(0)
    expect(resultsText(fresh)).toBe(resultsText(path.join(dir, 'first.jsonl')))
  })

  it('a job folder moved whole (list, images, results) goes on with its results; the same list elsewhere with those results is refused', async () => {
    // One job folder: a list of relative image paths, its images, and a run stopped after line 1.
    const job = path.join(dir, 'job')
    fs.mkdirSync(job)
    for (const f of ['a.png', 'b.png']) fs.copyFileSync(path.join(dir, f), path.join(job, f))
    const jobList = path.join(job, 'list.jsonl')
    const begunAs = path.join(fs.realpathSync(job), 'list.jsonl')
    writeFileSync(jobList, [{ image: 'a.png', boxes }, { image: 'b.png', boxes: [[5, 5, 90, 70]] }, { image: 'a.png', boxes: [] }].map((e) => JSON.stringify(e)).join('\n') + '\n')
    const full = await run('batch', jobList, '--model', model, '--out', path.join(job, 'results.jsonl'), '--backend', 'cpu')
    expect(full.code).toBe(0)
    const whole = readFileSync(path.join(job, 'results.jsonl'), 'utf8')
    const [head, first] = whole.split('\n')
    expect(JSON.parse(head)).toMatchObject({ list: begunAs, outFromList: 'results.jsonl' })
    writeFileSync(path.join(job, 'results.jsonl'), `${head}\n${first}\n`)
    // Moved (another disk or mount point): the same bytes, the results beside the list as before.
    const moved = path.join(dir, 'job-moved')
    fs.renameSync(job, moved)
    const movedOut = path.join(moved, 'results.jsonl')
    // The same list content in a folder of its own, pointed at the moved job's results: refused.
    const other = path.join(dir, 'job-other')
    fs.mkdirSync(other)
    fs.copyFileSync(path.join(moved, 'list.jsonl'), path.join(other, 'list.jsonl'))
    const refused = await run('batch', path.join(other, 'list.jsonl'), '--model', model, '--out', movedOut, '--backend', 'cpu')
    expect(refused.code).toBe(1)
    expect(refused.err).toContain(`holds results of another list (${begunAs})`)
    expect(readFileSync(movedOut, 'utf8')).toBe(`${head}\n${first}\n`)
    const r = await run('batch', path.join(moved, 'list.jsonl'), '--model', model, '--out', movedOut, '--backend', 'cpu')
    expect(r.code).toBe(0)
    expect(r.err).toContain(`batch: the results were begun for ${begunAs}; ${fs.realpathSync(path.join(moved, 'list.jsonl'))} is the same list with the results beside it as they were (the folder moved): going on`)
    expect(r.err).toContain('batch: 1 of 3 lines already have results')
    expect(readFileSync(movedOut, 'utf8')).toBe(whole)
  })

  it('a line refused for its keys still names its image and id in its record', async () => {
    const odd = path.join(dir, 'odd-keys.jsonl')
    writeFileSync(odd, '{"image": "b.png", "box": [[5, 5, 90, 70]]}\n{"image": "b.png", "id": [1]}\n{"image": 7}\n' +
      '{"image": "b.png", "box": [[5, 5, 90, 70]], "id": "A"}\n{"image": 7, "id": 8}\n{"image": "b.png", "boxes": 5, "id": "C"}\n')
    const out = path.join(dir, 'odd-keys-results.jsonl')
    // Every line an error: the records are written, and the exit code (3) says so.
    const r = await run('batch', odd, '--model', model, '--out', out, '--backend', 'cpu')
    expect(r.code).toBe(3)
    expect(r.err).toContain(`batch: every line this run read got an "error" (see ${out}); image paths are relative to the list's folder`)
    expect(records(out).slice(1)).toEqual([
      { line: 1, image: 'b.png', error: 'unknown key "box" (the keys are image, boxes and id)' },
      { line: 2, image: 'b.png', error: '"id" must be a string or a number' },
      { line: 3, error: '"image" must be the path of an image file' },
      { line: 4, id: 'A', image: 'b.png', error: 'unknown key "box" (the keys are image, boxes and id)' },
      { line: 5, id: 8, error: '"image" must be the path of an image file' },
      { line: 6, id: 'C', image: 'b.png', error: '"boxes" must be an array of [x1, y1, x2, y2] boxes' },
    ])
    // A rerun with nothing left to run is done (0); one good line among errors is too.
    expect((await run('batch', odd, '--model', model, '--out', out, '--backend', 'cpu')).code).toBe(0)
    writeFileSync(odd, '{"image": "b.png", "box": [[5, 5, 90, 70]]}\n{"image": "b.png", "boxes": [[5, 5, 90, 70]]}\n')
    expect((await run('batch', odd, '--model', model, '--out', path.join(dir, 'odd-keys-mixed.jsonl'), '--backend', 'cpu')).code).toBe(0)
  })

  it('a numeric id that is an integer past 2^53 or beyond a double (JSON.parse would round it) is refused, saying to give it as a string; a fraction is kept', async () => {
    const ids = path.join(dir, 'ids.jsonl')
    const b = '"image": "b.png", "boxes": [[5, 5, 90, 70]]'
    writeFileSync(ids, [`{${b}, "id": 12345678901234567890}`, `{${b}, "id": 12345678901234567891}`, `{${b}, "id": 9007199254740991}`, `{${b}, "id": "12345678901234567890"}`, `{${b}, "id": 1.5}`, `{${b}, "id": 1e400}`].join('\n') + '\n')
    const out = path.join(dir, 'ids-results.jsonl')
    expect((await run('batch', ids, '--model', model, '--out', out, '--backend', 'cpu')).code).toBe(0)
    const refused = (text: string) => `"id" ${text} is an integer over 9007199254740991 in size, which would not be kept as written: give it as a string ("id": "${text}")`
    expect(records(out).slice(1).map((x) => [x.line, x.id, x.error])).toEqual([
      [1, undefined, refused('12345678901234567890')],
      [2, undefined, refused('12345678901234567891')],
      [3, 9007199254740991, undefined],
      [4, '12345678901234567890', undefined],
      [5, 1.5, undefined],
      [6, undefined, '"id" 1e400 is beyond the range of a number, which would not be kept as written: give it as a string ("id": "1e400")'],
    ])
  })

  it('Ctrl-C while the last images finish: every line has its result, so exit 0', async () => {
    const one = path.join(dir, 'one-line.jsonl')
    writeFileSync(one, lineText(LIST[0]) + '\n')
    const out = path.join(dir, 'one-line-results.jsonl')
    const r = await runWrapped(async (_image, detect) => {
      process.emit('SIGINT')  // the batch command's handler runs; the process is not signalled
      return detect()
    }, one, '--model', model, '--out', out, '--backend', 'cpu')
    expect(r.code).toBe(0)
    expect(r.err).toContain('batch: interrupted: finishing the images in flight')
    expect(r.err).not.toContain('batch: stopped')
    expect(records(out).slice(1).map((x) => x.line)).toEqual([1])
  })

  it('a results file that cannot be written stops the run with one message; what was written is kept and a rerun finishes it', async () => {
    const out = path.join(dir, 'full-disk.jsonl')
    const original = fs.writeSync
    let writes = 0
    const spy = vi.spyOn(fs, 'writeSync').mockImplementation(((...a: Parameters<typeof fs.writeSync>) => {
      if (a[0] !== 1 && a[0] !== 2 && ++writes === 3) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })
      return (original as (...x: unknown[]) => number)(...a)
    }) as typeof fs.writeSync)
    const r = await runWith(spy, 'batch', list, '--model', model, '--out', out, '--backend', 'cpu', '--concurrency', '1')
    expect([r.code, r.err]).toEqual([1, expect.stringContaining(`face-multitask: cannot write ${out}: ENOSPC: no space left on device, write; stopped: the results so far are in ${out}`)])
    expect(records(out).slice(1).map((x) => x.line)).toEqual([1])  // the header, line 1, then the failed write
    expect((await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu')).code).toBe(0)
    expect(resultsText(out)).toBe(resultsText(path.join(dir, 'first.jsonl')))
  })

  it('a write that writes part of a record (a full disk) is finished by the next write; a record is never left in part', async () => {
    const first = path.join(dir, 'first.jsonl')
    // Line 2's record (the 3rd write) written in part, the rest then written.
    const out = path.join(dir, 'short-write.jsonl')
    const whole = await runWith(stubWrites((n, bytes, write) => write(n === 3 ? bytes.subarray(0, 100) : bytes)), 'batch', list, '--model', model, '--out', out, '--backend', 'cpu', '--concurrency', '1')
    expect(whole.code).toBe(0)
    expect(resultsText(out)).toBe(resultsText(first))
    // Written in part, the rest then refused: the part is cut off, and the run stops.
    const full = path.join(dir, 'short-write-full.jsonl')
    const r = await runWith(stubWrites((n, bytes, write) => {
      if (n === 4) throw enospc()
      return write(n === 3 ? bytes.subarray(0, 100) : bytes)
    }), 'batch', list, '--model', model, '--out', full, '--backend', 'cpu', '--concurrency', '1')
    expect([r.code, r.err]).toEqual([1, expect.stringContaining(`face-multitask: cannot write ${full}: ENOSPC: no space left on device, write; stopped: the results so far are in ${full}`)])
    expect(r.err).toMatch(/batch: 1 lines this run/)
    expect(resultsText(full)).toBe(resultsText(first).split('\n').slice(0, 2).join('\n') + '\n')  // the header and line 1, whole
    expect((await run('batch', list, '--model', model, '--out', full, '--backend', 'cpu')).code).toBe(0)
    expect(resultsText(full)).toBe(resultsText(first))
  })

  it('a flush to the disk that fails stops the run as a failed write does; closing the file failing still releases the lock', async () => {
    const eio = () => { throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }) }
    const out = path.join(dir, 'fsync-fails.jsonl')
    // The flush fails; each line takes 50 ms.
    const flush = vi.spyOn(fs, 'fsync').mockImplementation(((_fd: number, done: (e: Error | null) => void) => setImmediate(() => done(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' })))) as typeof fs.fsync)
    let r = await flushingOften(flush, 50, list, out)
    expect([r.code, r.err]).toEqual([1, expect.stringContaining(`face-multitask: cannot write ${out}: EIO: i/o error, fsync; stopped: the results so far are in ${out}, and the same command goes on from there`)])
    expect(records(out).length).toBeLessThan(8)
    expect(existsSync(`${out}.lock`)).toBe(false)
    expect((await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu')).code).toBe(0)
    expect(resultsText(out)).toBe(resultsText(path.join(dir, 'first.jsonl')))
    // Only the flush when the file is closed fails: every line ran, but not all may be on the disk.
    const closed = path.join(dir, 'fsync-fails-on-close.jsonl')
    const fsync = vi.spyOn(fs, 'fsyncSync').mockImplementation(eio)
    try {
      r = await run('batch', list, '--model', model, '--out', closed, '--backend', 'cpu')
    } finally {
      fsync.mockRestore()
    }
    expect([r.code, r.err]).toEqual([1, expect.stringContaining(`face-multitask: cannot write ${closed}: EIO: i/o error, fsync; stopped`)])
    expect(existsSync(`${closed}.lock`)).toBe(false)
  })

  it('the 5-second flush runs beside the lines, not in their way, and the file is closed only once it is done', async () => {
    const long = path.join(dir, 'long-list.jsonl')
    writeFileSync(long, Array(24).fill(JSON.stringify({ image: 'a.png', boxes })).join('\n') + '\n')
    const out = path.join(dir, 'slow-flush.jsonl')
    // Each flush takes 150 ms (on libuv's pool); each line takes 30 ms.
    const events: string[] = []
    const fsyncReal = fs.fsync
    const fsyncSyncReal = fs.fsyncSync
    const flush = vi.spyOn(fs, 'fsync').mockImplementation(((fd: number, done: (e: Error | null) => void) => {
      events.push(`flush after ${records(out).length - 1} lines`)
      setTimeout(() => fsyncReal(fd, (e) => { events.push('flushed'); done(e) }), 150)
    }) as typeof fs.fsync)
    const close = vi.spyOn(fs, 'fsyncSync').mockImplementation((fd) => { events.push('closed'); fsyncSyncReal(fd) })
    let r
    try {
      r = await flushingOften(flush, 30, long, out)
    } finally {
      close.mockRestore()
    }
    expect(r.code).toBe(0)
    const [, ...rest] = records(out)
    expect(rest.map((x) => x.line)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1))
    for (const x of rest) expect(x.faces).toEqual(want[1])
    // One flush at a time, lines written while each ran, and the last one done before the close.
    const starts = events.filter((e) => e.startsWith('flush after')).map((e) => Number(/\d+/.exec(e)![0]))
    expect(starts.length).toBeGreaterThanOrEqual(2)
    expect(starts[1] - starts[0]).toBeGreaterThanOrEqual(2)
    expect(events.join()).not.toMatch(/flush after[^,]*,flush after/)
    expect(events.slice(-2)).toEqual(['flushed', 'closed'])
  })

  it('a results file another run is writing is refused; a lock left by a run that died is taken over', async () => {
    const out = path.join(dir, 'locked.jsonl')
    const lock = await FileLock.acquire(`${out}.lock`)
    try {
      const r = await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu')
      expect([r.code, r.err]).toEqual([1, `face-multitask: --out: "${out}" is being written by another batch run (pid ${process.pid} on this host): one run per results file`])
      expect(existsSync(out)).toBe(false)
    } finally {
      await lock.release()
    }
    // Another path to the same file (a symlink) is the same file: refused too.
    const link = path.join(dir, 'locked-link.jsonl')
    writeFileSync(out, '')
    symlinkSync(out, link)
    const held = await FileLock.acquire(`${out}.lock`)
    try {
      const r = await run('batch', list, '--model', model, '--out', link, '--backend', 'cpu')
      expect([r.code, r.err]).toEqual([1, expect.stringContaining('is being written by another batch run')])
    } finally {
      await held.release()
    }
    rmSync(out)
    rmSync(link)
    writeFileSync(`${out}.lock`, JSON.stringify({ pid: 2 ** 22 + 12345, hostname: hostname(), createdAt: new Date().toISOString(), token: 'dead' }))
    const r = await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu')
    expect(r.code).toBe(0)
    expect(existsSync(`${out}.lock`)).toBe(false)
    // One left by a run that died in another container (its pid means nothing here), unrefreshed
    // for two days: refused, saying to remove it.
    const other = path.join(dir, 'locked-elsewhere.jsonl')
    writeFileSync(`${other}.lock`, JSON.stringify({ pid: 1, hostname: 'old-container', createdAt: new Date().toISOString(), token: 'gone' }))
    const twoDays = new Date(Date.now() - 2 * 86_400_000)
    fs.utimesSync(`${other}.lock`, twoDays, twoDays)
    const refused = await run('batch', list, '--model', model, '--out', other, '--backend', 'cpu')
    expect([refused.code, refused.err]).toEqual([1, `face-multitask: --out: "${other}" is being written by another batch run (pid 1 on host old-container): one run per results file; ` +
      `its lock ${other}.lock has not been refreshed for 48 h 0 min (a run refreshes it every 10 s): if no run is writing the results (one stopped in another container or on another host), remove that file`])
  })

  // A lost GPU, or a bug inside the model's code (a TypeError like a bad input's): not the line's
  // fault, so no record is written for it, and the run stops.
  it.each([
    ['a lost GPU', new Error('CUDA error 999: the device was lost')],
    ['a TypeError from inside the model', new TypeError("Cannot read properties of undefined (reading 'mesh')")],
  ])('an error of the model itself (%s) stops the run, keeping what was done in list order; the same command then finishes it', async (_what, error) => {
    const out = path.join(dir, `stopped-${error.name}.jsonl`)
    const r = await runWrapped(
      (image, detect) => (image.width === 256 ? Promise.reject(error) : detect()),  // the chip, line 2
      list, '--model', model, '--out', out, '--backend', 'cpu', '--concurrency', '4',
    )
    expect(r.code).toBe(1)
    expect(r.err).toContain(`face-multitask: line 2 (chip.png): ${error.message}; stopped: the results so far are in ${out}, and the same command goes on from there`)
    // Lines after the failed one may have run too; they are not written, so the file stays in list order.
    expect(records(out).slice(1).map((x) => x.line)).toEqual([1])
    const rerun = await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu')
    expect(rerun.code).toBe(0)
    expect(resultsText(out)).toBe(resultsText(path.join(dir, 'first.jsonl')))
  })

  it.each(['EMFILE', 'EIO'])('an error of the system reading an image (%s) stops the run rather than stand as that image\'s error; the same command then finishes it', async (code) => {
    const out = path.join(dir, `stopped-${code}.jsonl`)
    // Images are read on batch's threads: each loads this first.
    threadPreload.file = path.join(dir, `fail-${code}.cjs`)
    writeFileSync(threadPreload.file, `const fsp = require('node:fs/promises')
const readFile = fsp.readFile
fsp.readFile = (file, ...rest) => String(file).endsWith('chip.png')  // line 2
  ? Promise.reject(Object.assign(new Error(\`${code}: the system failed, open '\${file}'\`), { code: '${code}' }))
  : readFile(file, ...rest)
`)
    let r
    try {
      r = await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu', '--concurrency', '4')
    } finally {
      threadPreload.file = undefined
    }
    expect(r.code).toBe(1)
    expect(r.err).toMatch(new RegExp(`face-multitask: line 2 \\(chip\\.png\\): ".*chip\\.png" could not be read: ${code}: the system failed, open '.*chip\\.png'; stopped: the results so far are in .*stopped-${code}\\.jsonl, and the same command goes on from there`))
    expect(records(out).slice(1).map((x) => x.line)).toEqual([1])
    const rerun = await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu')
    expect(rerun.code).toBe(0)
    expect(resultsText(out)).toBe(resultsText(path.join(dir, 'first.jsonl')))
  })

  it('a sharp that cannot load (its binary missing) stops the run before any line is recorded as unreadable; the same command then finishes it', async () => {
    const out = path.join(dir, 'no-sharp.jsonl')
    threadPreload.file = path.join(__dirname, 'helpers', 'sharp-missing.js')
    let r
    try {
      r = await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu')
    } finally {
      threadPreload.file = undefined
    }
    expect([r.code, r.err]).toEqual([1, expect.stringContaining(`face-multitask: batch's thread reading images and writing results failed: Could not load the "sharp" module using the linux-x64 runtime; stopped: the results so far are in ${out}`)])
    expect(records(out).slice(1)).toEqual([])
    expect((await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu')).code).toBe(0)
    expect(resultsText(out)).toBe(resultsText(path.join(dir, 'first.jsonl')))
  })

  it('a list replaced at its path while the run reads it (a new file renamed over it) stops the run rather than be read under the first one\'s hash', async () => {
    const replaced = path.join(dir, 'replaced.jsonl')
    writeFileSync(replaced, LIST.map(lineText).join('\n') + '\n')
    const out = path.join(dir, 'replaced-results.jsonl')
    const load = FaceMultitask.load.bind(FaceMultitask)
    // While the model loads (after the list was hashed and counted), another list takes its path.
    const spy = vi.spyOn(FaceMultitask, 'load').mockImplementationOnce(async (options) => {
      writeFileSync(`${replaced}.new`, [...LIST].reverse().map(lineText).join('\n') + '\n')
      fs.renameSync(`${replaced}.new`, replaced)
      return load(options)
    })
    const r = await runWith(spy, 'batch', replaced, '--model', model, '--out', out, '--backend', 'cpu')
    expect([r.code, r.err]).toEqual([1, expect.stringContaining(`face-multitask: ${replaced} was replaced while this run read it (another file is at its path now): run the command again; stopped: the results so far are in ${out}`)])
    expect(records(out).slice(1)).toEqual([])
    // The file holds no result yet: the rerun begins it again for the list now there.
    const rerun = await run('batch', replaced, '--model', model, '--out', out, '--backend', 'cpu')
    expect(rerun.code).toBe(0)
    expect(records(out).slice(1).map((x) => x.image)).toEqual([...LIST].reverse().filter((e) => e !== '').map((e) => (typeof e === 'string' ? undefined : e.image)))
  })

  it('behind one slow image, at most 4 x concurrency lines are started and held: memory stays bounded', async () => {
    const out = path.join(dir, 'slow-results.jsonl')
    let calls = 0
    let startedWhileHeld = 0
    const r = await runWrapped(async (image, detect) => {
      calls++
      if (image.width === 320) {
        await new Promise((r) => setTimeout(r, 300))  // line 1 is slow; the others run meanwhile
        startedWhileHeld = calls
      }
      return detect()
    }, slowFirstList('slow.jsonl'), '--model', model, '--out', out, '--backend', 'cpu', '--concurrency', '2')
    expect(r.code).toBe(0)
    // Line 1 and at most 7 more waiting to be written after it (without the bound, all 20 start).
    expect(startedWhileHeld).toBeLessThanOrEqual(8)
    expect(startedWhileHeld).toBeGreaterThanOrEqual(4)
    expect(records(out).slice(1).map((x) => x.line)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
  })

  it('a model error on a slow line while the lines behind it wait to be written still ends the run', async () => {
    const out = path.join(dir, 'slow-fail-results.jsonl')
    const r = await runWrapped(async (image, detect) => {
      if (image.width !== 320) return detect()
      await new Promise((r) => setTimeout(r, 300))  // the others fill the write queue meanwhile
      throw new Error('CUDA error 700: an illegal memory access was encountered')
    }, slowFirstList('slow-fail.jsonl'), '--model', model, '--out', out, '--backend', 'cpu', '--concurrency', '2')
    expect([r.code, r.err]).toEqual([1, expect.stringContaining('face-multitask: line 1 (a.png): CUDA error 700: an illegal memory access was encountered; stopped')])
    expect(r.err).toContain('batch: 0 lines this run')  // the lines behind the failed one are not written
    expect(records(out).slice(1)).toEqual([])
  }, 20_000)

  it('a thread of batch\'s that fails stops the run as a model error does; what was written is kept and a rerun finishes it', async () => {
    const out = path.join(dir, 'format-failed.jsonl')
    const original = BatchThreads.prototype.format
    let calls = 0
    const spy = vi.spyOn(BatchThreads.prototype, 'format').mockImplementation(function (this: BatchThreads, record) {
      return ++calls === 2 ? Promise.reject(new Error("batch's thread reading images and writing results failed: out of memory")) : original.call(this, record)
    })
    const r = await runWith(spy, 'batch', list, '--model', model, '--out', out, '--backend', 'cpu', '--concurrency', '1')
    expect([r.code, r.err]).toEqual([1, expect.stringContaining(`face-multitask: batch's thread reading images and writing results failed: out of memory; stopped: the results so far are in ${out}`)])
    expect(records(out).slice(1).map((x) => x.line)).toEqual([1])  // line 2's faces were the second record sent
    expect((await run('batch', list, '--model', model, '--out', out, '--backend', 'cpu')).code).toBe(0)
    expect(resultsText(out)).toBe(resultsText(path.join(dir, 'first.jsonl')))
  })

  it('NaN from the model for a line\'s faces is that line\'s error and the run goes on (a stop would stop every rerun there)', async () => {
    const out = path.join(dir, 'nan-results.jsonl')
    const r = await runWrapped(async (image, detect) => {
      if (image.width === 320) throw new NonFiniteOutputError('emotion_logits', NaN, '', 'options.boxes[0] = [100, 50, 260, 220]')
      return detect()
    }, slowFirstList('nan.jsonl'), '--model', model, '--out', out, '--backend', 'cpu')
    expect(r.code).toBe(0)
    const got = records(out).slice(1)
    expect(got[0]).toEqual({ line: 1, image: 'a.png', error: 'the model gave NaN in its output "emotion_logits" for boxes[0] = [100, 50, 260, 220], so that face\'s results would be meaningless; the call gives none' })
    expect(got.slice(1).map((x) => [x.line, (x.faces as unknown[]).length])).toEqual(Array.from({ length: 19 }, (_, i) => [i + 2, 1]))
  })

  it('--workers, --threads and --no-spin-wait make the CPU sessions', async () => {
    const { spy, infos } = spyOnLoad()
    const r = await runWith(spy, 'batch', list, '--model', model, '--out', path.join(dir, 'workers-results.jsonl'), '--backend', 'cpu', '--workers', '2', '--threads', '1')
    expect(r.code).toBe(0)
    expect(infos.map((i) => i.device)).toEqual(['cpu (2 workers x 1 thread)'])
    const sleeping = spyOnLoad()
    const again = await runWith(sleeping.spy, 'batch', list, '--model', model, '--out', path.join(dir, 'no-spin-results.jsonl'), '--backend', 'cpu', '--threads', '1', '--no-spin-wait')
    expect(again.code).toBe(0)
    expect(sleeping.infos.map((i) => i.device)).toEqual(['cpu (1 worker x 1 thread, no spin-wait)'])
  })

  it('bad arguments are usage errors (exit 2) naming the argument', async () => {
    const cases: [string[], RegExp][] = [
      [[list, '--model', model], /--out is required/],
      [[list, '--out', 'x.jsonl'], /--model is required/],
      [['--model', model, '--out', 'x.jsonl'], /<list>: missing the list file/],
      [[list, '--model', model, '--out', 'x.jsonl', '--concurrency', '0'], /--concurrency must be an integer from 1 to 4096, got "0"/],
      [[list, '--model', model, '--out', 'x.jsonl', '--concurrency', '2.5'], /--concurrency must be an integer from 1 to 4096, got "2\.5"/],
      [[list, '--model', model, '--out', 'x.jsonl', '--workers', '65'], /--workers must be an integer from 1 to 64, got "65"/],
      [[list, '--model', model, '--out', 'x.jsonl', '--threads', '0'], /--threads must be an integer from 1 to 256, got "0"/],
      [[list, '--model', model, '--out', 'x.jsonl', '--backend', 'gpu'], /--backend must be one of auto, cpu, onnxruntime, tensorrt, got "gpu"/],
    ]
    for (const [argv, message] of cases) {
      const r = await run('batch', ...argv)
      expect([r.code, r.err]).toEqual([2, expect.stringMatching(message)])
    }
  })
})

describe('readLines (the list and results files)', () => {
  it('splits on \\n alone, drops a \\r before it and a byte-order mark, and joins a line longer than many read chunks', async () => {
    const { readLines } = await import('../lib/cli/lines')
    const long = 'x'.repeat(300_000) + '\u00e9'.repeat(50_000)  // several 64 KB chunks, multi-byte characters across their edges
    const file = path.join(dir, 'lines.txt')
    writeFileSync(file, `\uFEFFfirst\r\n${long}\na\rb\n\nlast without newline`)
    const got: string[] = []
    for await (const line of readLines(file)) got.push(line)
    expect(got).toEqual(['first', long, 'a\rb', '', 'last without newline'])
    const head: string[] = []
    for await (const line of readLines(file, Buffer.byteLength('\uFEFFfirst\r\n'))) head.push(line)
    expect(head).toEqual(['first'])  // only the bytes asked for
  })

  it('lineHeads gives the first bytes of each line, across read chunks (4 MiB), as readLines splits them', async () => {
    const { lineHeads, readLines } = await import('../lib/cli/lines')
    const file = path.join(dir, 'heads.txt')
    // Lines shorter and longer than the head, one running over several chunks, empty lines, and
    // a chunk edge inside a head: the sixth line begins 5 bytes before the second chunk ends.
    const lines = ['{"line":1,"a":1}', 'y'.repeat(8 * 2 ** 20 - 131), '', 'short', 'z'.repeat(100), '{"line":123456789,"faces":[]}', '']
    expect(lines.slice(0, 5).reduce((at, line) => at + line.length + 1, 0)).toBe(8 * 2 ** 20 - 5)
    writeFileSync(file, lines.join('\n') + '\n')
    const size = statSync(file).size
    const whole: string[] = []
    for await (const line of readLines(file, size)) whole.push(line)
    const heads: string[] = []
    for await (const head of lineHeads(file, size, 12)) heads.push(head.toString('latin1'))
    expect(heads).toEqual(whole.map((line) => line.slice(0, 12)))
    expect(heads).toHaveLength(lines.length)
    const cut: string[] = []
    for await (const head of lineHeads(file, Buffer.byteLength(lines[0]) + 5, 64)) cut.push(head.toString('latin1'))
    expect(cut).toEqual([lines[0], 'yyyy'])  // only the bytes asked for; a last line without its newline whole
  })
})

it('durations in the progress line and summary are rounded before they are split (119.7 s is 2 min 0 s, not 1 min 60 s)', () => {
  expect([59.94, 59.96, 119.7, 3599.4, 3599.6, 7199, 7230].map(formatSeconds)).toEqual(['59.9 s', '1 min 0 s', '2 min 0 s', '59 min 59 s', '1 h 0 min', '2 h 0 min', '2 h 1 min'])
})

it('the progress line: rate and ETA from the lines finished (results wait to be written in list order); on a rerun the faces and errors say they are this run\'s', () => {
  const io = { out: () => {}, err: () => {} }
  const first = new Progress(io, 40, 0)
  Object.assign(first, { ran: 1, finished: 20, faces: 2, errors: 0 })  // one line written, 19 more waiting behind a slow one
  expect(first.line(performance.now() + 10_000)).toBe('batch: 1/40 lines (2.5%) · 2 faces, 0 errors · 2.0 lines/s · ETA 10.0 s')
  const rerun = new Progress(io, 40, 30)
  Object.assign(rerun, { ran: 4, finished: 4, faces: 6, errors: 1 })
  expect(rerun.line(performance.now() + 2_000)).toBe('batch: 34/40 lines (85.0%) · this run 4 lines, 6 faces, 1 errors · 2.0 lines/s · ETA 3.0 s')
  expect(new Progress(io, 40, 0).line()).toBe('batch: 0/40 lines (0.0%) · 0 faces, 0 errors · 0.0 lines/s')  // no ETA before a line ends
})

describe('face-multitask batch, its messages unreadable', () => {
  it('a closed stderr (`2>&1 | head -1`, a log collector gone) does not stop the run: every line gets its result', async () => {
    await png('small.png', 320, 240, 5)
    const smallList = path.join(dir, 'no-stderr.jsonl')
    writeFileSync(smallList, Array.from({ length: 20 }, (_, i) => JSON.stringify({ image: 'small.png', boxes: [[10 + i, 10, 200, 200]] })).join('\n') + '\n')
    const out = path.join(dir, 'no-stderr-results.jsonl')
    const child = spawn(process.execPath, [path.join(__dirname, '..', 'dist', 'lib', 'cli.js'), 'batch', smallList, '--model', model, '--out', out, '--backend', 'cpu'], { stdio: ['ignore', 'ignore', 'pipe'] })
    child.stderr.destroy()  // its reading end closed: each of the run's messages (the synthetic model's first) fails with EPIPE
    expect(await new Promise((resolve) => child.on('exit', resolve))).toBe(0)
    expect(records(out).slice(1).map((x) => x.line)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1))
  }, 60_000)
})

describe('face-multitask batch, interrupted (Ctrl-C)', () => {
  it('finishes and writes the images in flight, exits 130; the same command then does only the rest', async () => {
    const n = 1500
    await png('big.png', 1280, 960, 11)  // slow enough to decode that the run is still going when interrupted
    const bigList = path.join(dir, 'big.jsonl')
    writeFileSync(bigList, Array.from({ length: n }, (_, i) => JSON.stringify({ image: 'big.png', boxes: [[100 + (i % 50), 100, 400, 420]] })).join('\n') + '\n')
    const out = path.join(dir, 'big-results.jsonl')
    const child = spawn(process.execPath, [path.join(__dirname, '..', 'dist', 'lib', 'cli.js'), 'batch', bigList, '--model', model, '--out', out, '--backend', 'cpu', '--concurrency', '4'])
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    // Interrupted once a few results are on disk.
    for (let i = 0; i < 600; i++) {
      await new Promise((r) => setTimeout(r, 50))
      try {
        if (statSync(out).size > 50_000) break
      } catch { /* not created yet */ }
    }
    child.kill('SIGINT')
    expect(await exited).toBe(130)
    expect(stderr).toContain('batch: interrupted: finishing the images in flight, then stopping')
    expect(stderr).toContain('batch: stopped; the same command goes on from where this run stopped')
    const firstRun = records(out).slice(1).map((x) => x.line as number)  // every line whole JSON
    expect(firstRun.length).toBeGreaterThan(0)
    expect(firstRun.length).toBeLessThan(n)
    expect(firstRun).toEqual(Array.from({ length: firstRun.length }, (_, i) => i + 1))  // in order, none lost
    const rerun = await run('batch', bigList, '--model', model, '--out', out, '--backend', 'cpu')
    expect(rerun.code).toBe(0)
    expect(rerun.err).toContain(`batch: ${firstRun.length} of ${n} lines already have results`)
    expect(records(out).slice(1).map((x) => x.line)).toEqual(Array.from({ length: n }, (_, i) => i + 1))
  }, 120_000)

  it('a second Ctrl-C that comes with the first (the main thread busy as both come) ends it at once, by the signal; the same command then finishes', async () => {
    const n = 40
    const twiceList = path.join(dir, 'twice.jsonl')
    writeFileSync(twiceList, Array.from({ length: n }, (_, i) => JSON.stringify({ image: 'b.png', boxes: [[5 + (i % 20), 5, 90, 70]] })).join('\n') + '\n')
    // Both signals are sent before the main thread gets back to its event loop to read either.
    const preload = path.join(dir, 'two-sigints.js')
    writeFileSync(preload, [
      `const { FaceMultitask } = require(${JSON.stringify(path.join(__dirname, '..', 'dist', 'lib', 'face-multitask.js'))})`,
      'const detect = FaceMultitask.prototype.detect',
      'let sent = false',
      'FaceMultitask.prototype.detect = function (...a) {',
      "  if (!sent) { sent = true; process.kill(process.pid, 'SIGINT'); process.kill(process.pid, 'SIGINT') }",
      '  return detect.apply(this, a)',
      '}',
    ].join('\n'))
    const out = path.join(dir, 'twice-results.jsonl')
    const child = spawn(process.execPath, ['-r', preload, path.join(__dirname, '..', 'dist', 'lib', 'cli.js'), 'batch', twiceList, '--model', model, '--out', out, '--backend', 'cpu', '--concurrency', '1'])
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const exit = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (code, signal) => resolve([code, signal])))
    expect([exit, stderr]).toEqual([[null, 'SIGINT'], expect.stringContaining('batch: interrupted: finishing the images in flight')])
    expect(stderr).not.toContain('batch: stopped')
    const rerun = await run('batch', twiceList, '--model', model, '--out', out, '--backend', 'cpu')
    expect(rerun.code).toBe(0)
    expect(records(out).slice(1).map((x) => x.line)).toEqual(Array.from({ length: n }, (_, i) => i + 1))
  }, 60_000)
})
