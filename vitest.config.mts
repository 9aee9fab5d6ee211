import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // onnxruntime-node is a native addon: separate processes keep it out of worker threads.
    pool: 'forks',
    include: ['test/**/*.test.ts'],
    // The parity suite needs the Python environment: `npm run test:parity` (vitest.parity.config.mts).
    exclude: ['test/parity/**', '**/node_modules/**'],
    // Some tests open ONNX Runtime sessions themselves (not through the package, which turns its
    // telemetry off): keep them as quiet. test/onnxruntime-telemetry.test.ts clears it for its children.
    env: { ORT_DISABLE_TELEMETRY: '1' },
  },
})
