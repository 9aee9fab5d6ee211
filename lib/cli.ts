#!/usr/bin/env node
// The face-multitask command line: `detect` runs a model on an image's faces, `batch` on a list
// of images (resumable), `demo` runs the whole pipeline on a synthetic model and a drawn image,
// `export` and `inspect` make and read model files, `build` makes a TensorRT engine ahead of
// time, `doctor` says what runs here.
// Each command lives in lib/cli/.
// Exit codes: 0 done, 1 failed (unreadable image or model, inference error), 2 bad arguments,
// 3 batch ran lines and every one got an "error", 130 interrupted (batch: Ctrl-C).
import { usableCores } from './cores'
import { CliError, type Io, messageOf, packageVersion, processIo, UsageError, wantsHelp } from './cli/common'
import { BATCH_USAGE, BUILD_USAGE, DEMO_USAGE, DETECT_USAGE, DOCTOR_USAGE, EXPORT_USAGE, INSPECT_USAGE, MAIN_USAGE } from './cli/usage'

interface Command {
  usage: string
  /** Loaded on use, so `--help` needs neither sharp nor onnxruntime. */
  run: (argv: string[], io: Io) => Promise<number>
}

const COMMANDS: Record<string, Command> = {
  detect: { usage: DETECT_USAGE, run: async (argv, io) => (await import('./cli/detect')).detectCommand(argv, io) },
  batch: { usage: BATCH_USAGE, run: async (argv, io) => (await import('./cli/batch')).batchCommand(argv, io) },
  demo: { usage: DEMO_USAGE, run: async (argv, io) => (await import('./cli/demo')).demoCommand(argv, io) },
  export: { usage: EXPORT_USAGE, run: async (argv, io) => (await import('./cli/export')).exportCommand(argv, io) },
  inspect: { usage: INSPECT_USAGE, run: async (argv, io) => (await import('./cli/inspect')).inspectCommand(argv, io) },
  doctor: { usage: DOCTOR_USAGE, run: async (argv, io) => (await import('./cli/doctor')).doctorCommand(argv, io) },
  build: { usage: BUILD_USAGE, run: async (argv, io) => (await import('./cli/build')).buildCommand(argv, io) },
}

async function dispatch(argv: string[], io: Io): Promise<number> {
  const [first, ...rest] = argv
  if (first === undefined) {
    io.out(MAIN_USAGE)
    return 0
  }
  if (first === '--version' || first === '-v') {
    if (rest.length > 0) throw new UsageError(`${first} takes no arguments, got ${rest.map((a) => `"${a}"`).join(', ')}`)
    io.out(packageVersion())
    return 0
  }
  // `--help detect` as `help detect`.
  if (first === 'help' || first === '--help' || first === '-h') {
    const topic = rest[0]
    if (rest.length > 1) throw new UsageError(`${first} takes one command at most, got ${rest.map((a) => `"${a}"`).join(', ')}`)
    if (topic === undefined || topic === 'help' || topic === '--help' || topic === '-h') io.out(MAIN_USAGE)
    else if (Object.hasOwn(COMMANDS, topic)) io.out(COMMANDS[topic].usage)
    else throw new UsageError(`help: unknown command "${topic}" (commands: ${Object.keys(COMMANDS).join(', ')})`)
    return 0
  }
  if (!Object.hasOwn(COMMANDS, first)) {
    const what = first.startsWith('-') ? `unknown option "${first}" before the command` : `unknown command "${first}"`
    throw new UsageError(`${what} (commands: ${Object.keys(COMMANDS).join(', ')})`)
  }
  const command = COMMANDS[first]
  if (wantsHelp(rest)) {
    io.out(command.usage)
    return 0
  }
  try {
    return await command.run(rest, io)
  } catch (e) {
    if (e instanceof UsageError) throw new UsageError(`${first}: ${e.message}\n(run \`face-multitask ${first} --help\` for usage)`)
    throw e
  }
}

/**
 * Runs the CLI on argv (the arguments after the program name) and returns the exit code. Errors
 * are printed as one message on io.err, never thrown; nothing here calls process.exit.
 */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  try {
    return await dispatch(argv, io)
  } catch (e) {
    if (e instanceof CliError) {
      const hint = e instanceof UsageError && !e.message.includes('--help') ? '\n(run `face-multitask --help` for usage)' : ''
      io.err(`face-multitask: ${e.message}${hint}`)
      return e.exitCode
    }
    // Not one of ours (a bug, or a library failure): still one message; the stack on request.
    io.err(`face-multitask: ${messageOf(e)}`)
    const debug = process.env.FACE_MULTITASK_DEBUG
    if (debug && debug !== '0' && e instanceof Error && e.stack) io.err(e.stack)
    return 1
  }
}

if (require.main === module) {
  // sharp decodes on libuv's pool (and the CPU backend preprocesses there), which holds 4
  // threads unless UV_THREADPOOL_SIZE says otherwise: at most 4 images decoding at once, which
  // on a many-core GPU machine bounds `batch` well under the model. One per core, unless set;
  // read by libuv when the pool first runs, which is after this line.
  process.env.UV_THREADPOOL_SIZE ??= String(Math.min(1024, Math.max(4, usableCores())))
  // `face-multitask detect ... --json | head` closes stdout early: stop quietly, not with EPIPE.
  // Any other failure (`> results.json` on a full disk) is said in one line, as other errors are.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0)
    process.stderr.write(`face-multitask: cannot write the output: ${messageOf(e)}\n`)
    process.exit(1)
  })
  // stderr carries only messages and progress: one that cannot be written (`2>&1 | head`, a log
  // collector gone) must not end a batch run whose results go to a file.
  process.stderr.on('error', () => {})
  main(process.argv.slice(2)).then((code) => { process.exitCode = code })
}
