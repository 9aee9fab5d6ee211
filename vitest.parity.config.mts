// `npm run test:parity`: our CPU pipeline against py-feat's own Python code (test/parity/).
// Needs the Python environment of `npm run setup:python` (.venv/) and the compiled dist/ (the
// exporter reads dist/lib/contract-metadata.js). Minutes, not seconds: kept out of `npm test`.
import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // onnxruntime-node is a native addon: separate processes keep it out of worker threads.
    pool: 'forks',
    include: ['test/parity/**/*.test.ts'],
    // The suite runs one generation after another; each spawns the exporter and py-feat.
    fileParallelism: false,
    testTimeout: 10 * 60_000,
    hookTimeout: 15 * 60_000,
    // The suite refuses to run (it skips, saying why) unless this config started it.
    env: { FACE_MULTITASK_PARITY: '1' },
  },
})
