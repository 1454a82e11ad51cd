/**
 * `npm run soak`: the long chaos run of test/soak/soak.ts, with progress, the counts and the
 * verdict line at the end; exits 1 when a body was wrong, a request failed while the origin was
 * up, a rejection went unhandled, an exception uncaught, or the heap grew past the bound after
 * warm-up. `npm test` runs a shorter one (test/soak.test.ts).
 *
 * Environment: SOAK_REQUESTS (default 200000), SOAK_CONCURRENCY (50), SOAK_SEED (random; the run
 * prints it, and the same seed makes the same choices again).
 * Run: node --import tsx test/soak/run.ts
 */
import { describeReport, HEAP_GROWTH_BOUND, heapGrowth, soak } from './soak.js'

const report = await soak({
  requests: Number(process.env.SOAK_REQUESTS ?? 200_000),
  concurrency: Number(process.env.SOAK_CONCURRENCY ?? 50),
  perOrigin: 60,
  failureRate: 0.05,
  invalidationRate: 0.01,
  maxLatency: 20,
  seed: Number(process.env.SOAK_SEED ?? Math.floor(Math.random() * 2 ** 32)),
  log: (line) => console.log(line)
})
console.log(describeReport(report))
const failed = report.wrongBodies + report.failedWhileUp + report.unhandledRejections + report.uncaughtExceptions > 0 ||
  heapGrowth(report) > HEAP_GROWTH_BOUND
process.exitCode = failed ? 1 : 0
