// What every CLI command shares: the output sink, the errors that carry an exit code, a
// wrapper for node:util parseArgs whose complaints become usage errors (exit 2), the check
// that a file given on the command line can be read, and the package's version.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { readableFile } from '../describe'
import { packageRoot } from '../native'

export { messageOf } from '../describe'

/** Where the CLI writes: one call per line (no trailing newline). Tests pass their own. */
export interface Io {
  out: (line: string) => void
  err: (line: string) => void
}

export const processIo: Io = {
  out: (line) => { process.stdout.write(`${line}\n`) },
  err: (line) => { process.stderr.write(`${line}\n`) },
}

/** An error the CLI reports as one message (no stack trace) with its exit code. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: 1 | 2 = 1) {
    super(message)
    this.name = 'CliError'
  }
}

/** Bad arguments: exit code 2, and the message ends with a pointer to the command's help. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, 2)
    this.name = 'UsageError'
  }
}

/** Whether argv asks for help anywhere (checked before parsing, so `--help` beats other mistakes). */
export function wantsHelp(argv: readonly string[]): boolean {
  for (const a of argv) {
    if (a === '--') return false
    if (a === '--help' || a === '-h') return true
  }
  return false
}

/** The `options` of a parseArgs config. */
export type OptionsConfig = NonNullable<ParseArgsConfig['options']>

/** What parseCommand returns for these options: parseArgs' own typing of values and positionals. */
export type ParsedCommand<O extends OptionsConfig> = Pick<
  ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>>,
  'values' | 'positionals'
>

/**
 * parseArgs, strict, with positionals, its complaints as UsageErrors; and a single-value option
 * given twice (--model a --model b) is a UsageError naming it, not "the last one wins". Options
 * declared `multiple: true` may repeat; a repeated boolean flag is harmless and allowed.
 */
export function parseCommand<O extends OptionsConfig>(args: string[], options: O): ParsedCommand<O> {
  let parsed
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true, tokens: true })
  } catch (e) {
    const err = e as Error & { code?: string }
    if (typeof err.code === 'string' && err.code.startsWith('ERR_PARSE_ARGS')) {
      // Node's wording is fine apart from its advice to the program's author about positionals.
      throw new UsageError(err.message.replace(/\s*To specify a positional argument starting with a '-'.*$/s, '').replace(/\n/g, ' '))
    }
    throw e
  }
  const seen = new Map<string, string | undefined>()
  for (const t of parsed.tokens) {
    if (t.kind !== 'option') continue
    const o = options[t.name]
    if (o?.type !== 'string' || o.multiple) continue
    if (seen.has(t.name)) {
      throw new UsageError(`${t.rawName} given more than once ("${seen.get(t.name)}", then "${t.value}"): give it once`)
    }
    seen.set(t.name, t.value)
  }
  return { values: parsed.values, positionals: parsed.positionals }
}

/**
 * That a file named on the command line exists, is a file and can be read; else a CliError
 * (exit 1) in the library's words for a model file: `[<label>: ]cannot read "<file>": <why>`
 * (detect's `--model: cannot read ".../x.onnx": no such file`).
 */
export async function checkReadableFile(file: string, label?: string): Promise<void> {
  const f = await readableFile(file)
  if ('problem' in f) throw new CliError(`${label ? `${label}: ` : ''}cannot read "${file}": ${f.problem}`)
}

/** The package's version (its package.json), or 'unknown' where that cannot be read. */
export function packageVersion(): string {
  try {
    return String(JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')).version)
  } catch {
    return 'unknown'
  }
}
