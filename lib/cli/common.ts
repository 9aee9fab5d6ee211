// What every CLI command shares: the output sink, the errors that carry an exit code, and a
// wrapper for node:util parseArgs whose complaints become usage errors (exit 2).
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

/**
 * Runs a node:util parseArgs call (strict, with positionals) and turns its complaints into
 * UsageErrors in plain words: parseCommandArgs(() => parseArgs({ args, options, ... })).
 */
export function parseCommandArgs<T>(parse: () => T): T {
  try {
    return parse()
  } catch (e) {
    const err = e as Error & { code?: string }
    if (typeof err.code === 'string' && err.code.startsWith('ERR_PARSE_ARGS')) {
      // Node's wording is fine apart from its advice to the program's author about positionals.
      throw new UsageError(err.message.replace(/\s*To specify a positional argument starting with a '-'.*$/s, '').replace(/\n/g, ' '))
    }
    throw e
  }
}

/** The message of anything thrown, for one line of output. */
export function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message
  return String(e)
}
