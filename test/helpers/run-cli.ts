// The command line called in-process through main(), its output captured.
import { main } from '../../lib/cli'

/** `face-multitask <argv>`: the exit code, and what went to stdout and to stderr, lines joined. */
export async function run(...argv: string[]) {
  const out: string[] = []
  const err: string[] = []
  const code = await main(argv, { out: (l) => out.push(l), err: (l) => err.push(l) })
  return { code, out: out.join('\n'), err: err.join('\n') }
}
