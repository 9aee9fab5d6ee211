// `face-multitask export`: turns a py-feat checkpoint into the ONNX files the runtime loads. The
// work is py-feat's own model code in Python (scripts/export_onnx.py); this only finds the
// project's Python environment and runs the script with the user's arguments.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { packageRoot } from '../native'
import { CliError, type Io, UsageError } from './common'

/** The Python that has torch and py-feat's code: $FACE_MULTITASK_PYTHON, else <package>/.venv. */
export function exportPython(): string {
  const fromEnv = process.env.FACE_MULTITASK_PYTHON
  const python = fromEnv || path.join(packageRoot(), '.venv', process.platform === 'win32' ? 'Scripts/python.exe' : 'bin/python')
  if (!fs.existsSync(python)) {
    throw new CliError(
      `export needs the project's Python environment (torch and py-feat's model code), and ${python} does not exist.\n` +
        `Set it up once with \`npm run setup:python\` in ${packageRoot()}${fromEnv ? ' (or fix FACE_MULTITASK_PYTHON)' : ''}.`,
    )
  }
  return python
}

export async function exportCommand(argv: string[], io: Io): Promise<number> {
  if (argv.length === 0) throw new UsageError('give a checkpoint file, or --random-weights --generation G')
  const python = exportPython()
  const script = path.join(packageRoot(), 'scripts', 'export_onnx.py')
  io.err(`face-multitask: running ${path.relative(process.cwd(), script) || script} with ${python}`)
  // Progress lines stream straight through: an export takes seconds to minutes.
  const child = spawn(python, [script, ...argv], { stdio: 'inherit' })
  return new Promise((resolve, reject) => {
    child.on('error', (e) => reject(new CliError(`could not start ${python}: ${e.message}`)))
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)))
  })
}
