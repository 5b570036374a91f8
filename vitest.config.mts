import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native code and the SST-based checks take seconds, not milliseconds.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // The JSON report is what .ci/run counts passes and failures from.
    reporters: ['default', 'json'],
    outputFile: { json: 'build/test-results.json' },
  },
});
