import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // onnxruntime-node is a native addon: separate processes keep it out of worker threads.
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    // The parity suite needs the Python environment: `npm run test:parity` (vitest.parity.config.mts).
    exclude: ['test/parity/**', '**/node_modules/**'],
  },
})
