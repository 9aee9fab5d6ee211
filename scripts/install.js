// `npm install`: keep the addon that loads (a local build, or the prebuild shipped for this
// platform); build it from source with cmake-js when none loads, when --build-from-source (or
// FACE_MULTITASK_BUILD_FROM_SOURCE=1) is set, or when the addon that loads has no TensorRT backend
// but this machine has the TensorRT and CUDA headers to compile one (the prebuild is made without
// them). That last build may fail (no compiler, a header missing): it is made in a folder of its
// own and put in place only once it loads with the backend, so the addon that loaded stays and
// the install still succeeds. FACE_MULTITASK_PREBUILT_ONLY=1 keeps the prebuild. Plain
// JavaScript: it runs before the TypeScript is compiled.
'use strict'
const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const { findTensorrtHeaders } = require('./tensorrt-headers')

const root = path.join(__dirname, '..')
const ADDON = 'face_multitask.node'
const cmakeJs = (command, out) =>
  spawnSync(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), command, '--log-level', 'warn', ...(out ? ['--out', out] : [])], { cwd: root, stdio: 'inherit' })
const fromSource = process.env.npm_config_build_from_source === 'true' || process.env.FACE_MULTITASK_BUILD_FROM_SOURCE === '1'

if (!fromSource) {
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
      '(the addon that loads has none; FACE_MULTITASK_PREBUILT_ONLY=1 skips this)')
    // A folder of its own, configured afresh (CMake looks for the headers at every configure): a
    // failure leaves build/Release, and whatever loads now, as it is.
    const out = path.join('build', 'with-tensorrt')
    const configured = cmakeJs('configure', out)
    const r = configured.status === 0 ? cmakeJs('compile', out) : configured
    const built = path.join(root, out, 'Release', ADDON)
    // What the new build is: 'with' or 'without' the backend, or why it does not load.
    let result = ''
    if (r.status === 0) {
      try {
        result = typeof require(built).tensorrtLoad === 'function' ? 'with' : 'without'
      } catch (e) {
        result = `it does not load (${String((e && e.message) || e).split('\n')[0]})`
      }
    }
    if (r.status !== 0) {
      console.log('face-multitask: that build failed (see its first error above); keeping the addon that loads, which runs on the CPU only. ' +
        'Once the cause is fixed, `npm rebuild face-multitask` tries again.')
    } else if (result !== 'with') {
      console.log(`face-multitask: the addon was built, but ${result === 'without' ? 'without its TensorRT backend (see CMake\'s message above)' : result}; keeping the addon that loads`)
    } else {
      // Where node-gyp-build looks first; renamed into place, so no process ever loads half a file.
      fs.mkdirSync(path.join(root, 'build', 'Release'), { recursive: true })
      const dest = path.join(root, 'build', 'Release', ADDON)
      fs.copyFileSync(built, `${dest}.tmp`)
      fs.renameSync(`${dest}.tmp`, dest)
      // build/ configured with the headers too, so that its next build (`npm run compile` in a clone)
      // makes the addon with the backend again rather than overwrite this one without it.
      cmakeJs('configure')
      console.log(`face-multitask: the addon with its TensorRT backend is in place (${dest})`)
    }
    process.exit(0)
  }
}
const r = cmakeJs('compile')
process.exit(r.status ?? 1)
