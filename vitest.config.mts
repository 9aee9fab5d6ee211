import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // onnxruntime-node is a native addon: separate processes keep it out of worker threads.
    pool: 'forks',
    include: ['test/**/*.test.ts'],
  },
})
