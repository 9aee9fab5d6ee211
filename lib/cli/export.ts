// `face-multitask export`: turns a py-feat checkpoint into the ONNX files the runtime loads. The
// work is py-feat's own model code in Python (scripts/export_onnx.py); this only finds the
// project's Python environment and runs the script with the user's arguments.
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { fileErrorReason } from '../describe'
import { packageRoot } from '../native'
import { CliError, type Io, UsageError } from './common'

/** The Python that has torch and py-feat's code: $FACE_MULTITASK_PYTHON, else the venv
 * `npm run setup:python` made ($FACE_MULTITASK_VENV, as it was told, else <package>/.venv). */
export function exportPython(): string {
  const fromEnv = process.env.FACE_MULTITASK_PYTHON
  const venv = process.env.FACE_MULTITASK_VENV || path.join(packageRoot(), '.venv')
  const python = fromEnv || path.join(venv, process.platform === 'win32' ? 'Scripts/python.exe' : 'bin/python')
  const fix = fromEnv ? ' (or fix FACE_MULTITASK_PYTHON)' : process.env.FACE_MULTITASK_VENV ? ' with the same FACE_MULTITASK_VENV' : ''
  // An installed package has no npm scripts of the user's project; its venv would sit in
  // node_modules, where the next `npm ci` removes it.
  const installed = packageRoot().split(path.sep).includes('node_modules')
  const setUp = installed && !fromEnv
    ? `Set it up once with \`FACE_MULTITASK_VENV=DIR npm explore face-multitask -- npm run setup:python\` ` +
      '(a folder outside node_modules, which npm ci empties) and run export with the same FACE_MULTITASK_VENV.'
    : `Set it up once with \`npm run setup:python\` in ${packageRoot()}${fix}.`
  try {
    fs.statSync(python)
  } catch (e) {
    // A venv's python is a link to the interpreter it was made with: that one may be gone, or out
    // of this user's reach (a venv made by root links into /root).
    const link = fs.lstatSync(python, { throwIfNoEntry: false })?.isSymbolicLink() ? fs.readlinkSync(python) : undefined
    const why = link === undefined ? 'does not exist' : `is a link to ${link}, which cannot be used: ${fileErrorReason(e)}`
    throw new CliError(`export needs the project's Python environment (torch and py-feat's model code), and ${python} ${why}.\n${setUp}`)
  }
  return python
}

/** A path relative to the current directory when it lies inside it, else absolute (no ../../). */
function shownPath(file: string): string {
  const rel = path.relative(process.cwd(), file)
  return rel === '' || rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel) ? file : rel
}

/**
 * The CLI's exit code for the script's: export_onnx.py exits 0 when done, 2 for bad arguments
 * (argparse) and 1 when the export fails; anything else (a crash, 130 for Ctrl-C) is a failure
 * too. A script killed by a signal is a CliError (exit 1) saying so.
 */
export function exportExitCode(code: number | null): 0 | 1 | 2 {
  return code === 0 || code === 2 ? code : 1
}

/**
 * Without the project's environment, the script's own argument and path checks (standard library
 * only: `--check-args`) run with the system's python3, so a wrong argument is said (exit 2, or 1
 * for a missing checkpoint) before the advice to set Python up, as it is with the environment.
 * Undefined when they pass, or no python3 answers as the script does.
 */
function argumentError(script: string, argv: string[], io: Io): number | undefined {
  const r = spawnSync('python3', [script, '--check-args', ...argv], { encoding: 'utf8', timeout: 30_000, windowsHide: true })
  const said = r.stderr?.trimEnd() ?? ''
  if (r.status === 2 && /^usage: export_onnx\.py/m.test(said)) {
    io.err(said)
    return 2
  }
  if (r.status === 1 && said.startsWith('[export] error: ')) {
    io.err(said)
    return 1
  }
  return undefined
}

export async function exportCommand(argv: string[], io: Io): Promise<number> {
  if (argv.length === 0) throw new UsageError('give a checkpoint file, or --random-weights --generation G')
  const script = path.join(packageRoot(), 'scripts', 'export_onnx.py')
  let python: string
  try {
    python = exportPython()
  } catch (e) {
    const code = argumentError(script, argv, io)
    if (code !== undefined) return code
    throw e
  }
  io.err(`face-multitask: running ${shownPath(script)} with ${python}`)
  // Progress lines stream straight through: an export takes seconds to minutes.
  const child = spawn(python, [script, ...argv], { stdio: 'inherit' })
  // Ctrl-C on a terminal reaches the script too (one process group): it stops, removes what it
  // had half written and exits, and its exit code makes ours (1). Without a handler this process
  // would die at once, with 130, before the script is done. A SIGINT sent to this process alone
  // is passed on to the script when it has not stopped by itself a moment later.
  const running = () => child.exitCode === null && child.signalCode === null
  const onSigint = () => {
    setTimeout(() => { if (running()) child.kill('SIGINT') }, 1000).unref()
  }
  // SIGTERM or SIGHUP (a process manager, a closed terminal) stops the script too, which cleans up
  // as for Ctrl-C, rather than leaving it running on its own.
  let stoppedBy: string | undefined
  const onStop = (sig: NodeJS.Signals) => {
    stoppedBy ??= sig
    if (running()) child.kill('SIGTERM')
  }
  process.on('SIGINT', onSigint)
  process.on('SIGTERM', onStop)
  process.on('SIGHUP', onStop)
  return new Promise<number>((resolve, reject) => {
    child.on('error', (e) => reject(new CliError(`could not start ${python}: ${e.message}`)))
    child.on('exit', (code, signal) => {
      // Killed (the OOM killer, kill -9): the script could say nothing, so say it here.
      if (stoppedBy) reject(new CliError(`the export was stopped (${stoppedBy}) before it finished`))
      else if (signal === 'SIGINT') reject(new CliError('the export was interrupted (Ctrl-C) before it finished'))
      else if (signal) reject(new CliError(`the export was killed by ${signal}${signal === 'SIGKILL' ? ' (out of memory?)' : ''} before it finished`))
      else resolve(exportExitCode(code))
    })
  }).finally(() => {
    process.removeListener('SIGINT', onSigint)
    process.removeListener('SIGTERM', onStop)
    process.removeListener('SIGHUP', onStop)
  })
}
