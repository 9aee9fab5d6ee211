// `npm install`: keep the addon that loads (a local build, or the prebuild shipped for this
// platform); build it from source with cmake-js when none loads, when --build-from-source is
// set, or when the addon that loads has no TensorRT backend but this machine has the TensorRT
// and CUDA headers to compile one (the prebuild is made without them). That last build may fail
// (no compiler, say): the prebuilt addon then stays and the install still succeeds.
// FACE_MULTITASK_PREBUILT_ONLY=1 keeps the prebuild. Plain JavaScript: it runs before the
// TypeScript is compiled.
'use strict'
const { spawnSync } = require('node:child_process')
const path = require('node:path')
const { findTensorrtHeaders } = require('./tensorrt-headers')

const root = path.join(__dirname, '..')
const cmakeJs = (command) =>
  spawnSync(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), command, '--log-level', 'warn'], { cwd: root, stdio: 'inherit' })
const compile = () => cmakeJs('compile')

if (process.env.npm_config_build_from_source !== 'true') {
  let addon = null
  try {
    addon = require('node-gyp-build')(root)
  } catch (e) {
    // None for this platform, or one that does not load here (a glibc or CPU it was not made for): said as it is.
    const why = String((e && e.message) || e).split('\n')[0]
    console.log(`face-multitask: no prebuilt addon loads here (${why}); building it with cmake-js`)
  }
  if (addon) {
    const headers = findTensorrtHeaders()
    if (typeof addon.tensorrtLoad === 'function' || !headers.include || process.env.FACE_MULTITASK_PREBUILT_ONLY === '1') process.exit(0)
    console.log(`face-multitask: TensorRT ${headers.major} headers at ${headers.include}: building the addon with its TensorRT backend ` +
      '(the prebuilt one has none; FACE_MULTITASK_PREBUILT_ONLY=1 skips this)')
    // Configured again first: `compile` alone keeps a build folder's configuration, and one made
    // before the headers were installed would build the addon without the backend again (CMake
    // looks for the headers at every configure).
    const configured = cmakeJs('configure')
    const r = configured.status === 0 ? compile() : configured
    if (r.status !== 0) {
      console.log('face-multitask: that build failed (see above); keeping the prebuilt addon, which runs on the CPU only. ' +
        'Once the build works (CMake >= 3.18, a C++17 compiler), `npm rebuild face-multitask` makes it again.')
    } else if (typeof require('node-gyp-build')(root).tensorrtLoad !== 'function') {
      console.log('face-multitask: the addon was built, but without its TensorRT backend: see CMake\'s message above')
    }
    process.exit(0)
  }
}
const r = compile()
process.exit(r.status ?? 1)
