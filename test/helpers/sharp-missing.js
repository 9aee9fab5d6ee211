// Loaded first (--require) by a process or thread that is to find sharp missing, as where its
// binary was not installed for the platform.
const Module = require('node:module')
const load = Module._load
Module._load = function (request, ...rest) {
  if (request === 'sharp') throw new Error('Could not load the "sharp" module using the linux-x64 runtime')
  return load.call(this, request, ...rest)
}
