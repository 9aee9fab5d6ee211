// Where the addon's build finds TensorRT's and CUDA's headers: the same places, in the same
// order, as CMakeLists.txt looks (keep the two lists together). The install script uses it to
// build the TensorRT backend from source on a machine that has the headers, since the prebuilt
// addon is made without them. Plain JavaScript: it runs before the TypeScript is compiled.
'use strict'
const fs = require('node:fs')
const path = require('node:path')

function tensorrtDirs(env) {
  return [env.TENSORRT_INCLUDE_DIR, env.TENSORRT_ROOT && path.join(env.TENSORRT_ROOT, 'include'),
    '/usr/include/x86_64-linux-gnu', '/usr/include/aarch64-linux-gnu', '/usr/local/tensorrt/include'].filter(Boolean)
}

function cudaDirs(env) {
  return [env.CUDA_INCLUDE_DIR, env.CUDA_PATH && path.join(env.CUDA_PATH, 'include'),
    env.CUDA_HOME && path.join(env.CUDA_HOME, 'include'), '/usr/local/cuda/include', '/usr/include'].filter(Boolean)
}

/** The TensorRT headers the backend includes (NvInferPlugin.h: Debian/Ubuntu ship it apart, in libnvinfer-headers-plugin-dev). */
const TENSORRT_HEADERS = ['NvInfer.h', 'NvOnnxParser.h', 'NvInferPlugin.h']

/**
 * The headers a build would use: { include, cuda, major } when TensorRT >= 10 and CUDA's headers
 * are both found; otherwise { why } saying what is missing.
 */
function findTensorrtHeaders(env = process.env, exists = fs.existsSync, read = (f) => fs.readFileSync(f, 'utf8')) {
  const dirs = tensorrtDirs(env)
  const include = dirs.find((d) => TENSORRT_HEADERS.every((h) => exists(path.join(d, h))))
  if (!include) {
    const part = dirs.find((d) => exists(path.join(d, 'NvInfer.h')))
    if (part) return { why: `TensorRT headers at ${part} lack ${TENSORRT_HEADERS.filter((h) => !exists(path.join(part, h))).join(', ')} (Debian/Ubuntu: libnvinfer-headers-plugin-dev, libnvonnxparsers-dev)` }
    return { why: `no TensorRT headers (${TENSORRT_HEADERS.join(', ')}) where the build looks` }
  }
  let major = NaN
  try {
    const m = /^#define (?:NV_TENSORRT_MAJOR|TRT_MAJOR_ENTERPRISE) +(\d+)/m.exec(read(path.join(include, 'NvInferVersion.h')))
    if (m) major = Number(m[1])
  } catch {
    // no NvInferVersion.h: not a TensorRT the build accepts
  }
  if (!(major >= 10)) return { why: `TensorRT headers at ${include} are not 10.x or later` }
  const cuda = cudaDirs(env).find((d) => exists(path.join(d, 'cuda_runtime_api.h')) && exists(path.join(d, 'cuda.h')))
  if (!cuda) return { why: `TensorRT ${major} headers at ${include}, but no CUDA headers (cuda_runtime_api.h, cuda.h)` }
  return { include, cuda, major }
}

module.exports = { findTensorrtHeaders }
