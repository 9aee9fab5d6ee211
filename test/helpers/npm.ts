import fs from 'node:fs'
import path from 'node:path'

/** npm's own CLI script, so npm runs as `node npm-cli.js` under a PATH that has no npm on it. */
export function npmCli(): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const file = path.join(dir, 'npm')
    if (!dir || !fs.existsSync(file)) continue
    const real = fs.realpathSync(file)
    if (real.endsWith('.js')) return real
    const cli = path.join(path.dirname(real), 'npm-cli.js')
    if (fs.existsSync(cli)) return cli
  }
  const fallback = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js')
  if (fs.existsSync(fallback)) return fallback
  throw new Error('cannot find npm-cli.js')
}
