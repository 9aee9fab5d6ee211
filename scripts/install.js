// `npm install`: keep the addon that loads (a local build, or the prebuild shipped for this
// platform); build it from source with cmake-js only when none loads or --build-from-source is
// set. Plain JavaScript: it runs before the TypeScript is compiled.
'use strict'
const { spawnSync } = require('node:child_process')
const path = require('node:path')

const root = path.join(__dirname, '..')
if (process.env.npm_config_build_from_source !== 'true') {
  try {
    require('node-gyp-build')(root)
    process.exit(0)
  } catch {
    console.log('face-multitask: no prebuilt addon for this platform; building it with cmake-js')
  }
}
const cmakeJs = require.resolve('cmake-js/bin/cmake-js')
const r = spawnSync(process.execPath, [cmakeJs, 'compile', '--log-level', 'warn'], { cwd: root, stdio: 'inherit' })
process.exit(r.status ?? 1)
