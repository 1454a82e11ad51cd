import { defineConfig } from 'vitest/config'

export const config = defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    pool: 'forks'
  }
})

// vitest loads the config's default export; this is the one default export we allow.
// eslint-disable-next-line no-restricted-syntax
export default config
