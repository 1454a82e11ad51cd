/**
 * A focused loop for the profiler: one contender in one latency scenario, over and over, with
 * nothing else in the process worth sampling.
 * `node --cpu-prof --cpu-prof-dir=.scratch/prof --import tsx bench/profile.ts cachedFetch hit 1k 3000 [dist]`
 * runs cachedFetch fresh hits of the 1 KB body for 3 s, after 3000 untimed ones (against a build in
 * dist/ when named, as the benchmark's `--lib` does), and leaves a .cpuprofile to open in Chrome
 * DevTools or to sum up by self time. Scenarios: hit, revalidate, miss (a new URL each time).
 */
import { buildField } from './contenders.js'
import { loadLibrary } from './library.js'
import { SIZES, startBenchOrigin, type Size } from './origin.js'

const [id = 'cachedFetch', scenario = 'hit', size = '1k', ms = '3000', libDir] = process.argv.slice(2)
const mode = { hit: 'fresh', revalidate: 'revalidate', miss: 'fresh' }[scenario]
if (mode === undefined) throw new TypeError(`expected a scenario of hit, revalidate or miss, got ${scenario}`)
if (!(size in SIZES)) throw new TypeError(`expected a size of ${Object.keys(SIZES).join(', ')}, got ${size}`)
const lib = await loadLibrary(libDir)
const contender = buildField(lib).find((c) => c.id === id)
if (contender === undefined) throw new TypeError(`unknown contender ${id}`)
const origin = await startBenchOrigin()
const client = contender.create()
const directory = `/profile/${id}/${mode}/${size as Size}`
let n = 0
const url = (): string => `${origin.url}${directory}/${scenario === 'miss' ? `m${n++}` : 'doc'}`
const WARMUP_OPS = 3000

// Untimed first: the longer code paths take thousands of operations to be optimised (bench/measure.ts).
for (let i = 0; i < WARMUP_OPS; i++) await client.get(url())
await new Promise((resolve) => setImmediate(resolve))
const start = performance.now()
const cpuStart = process.cpuUsage()
let ops = 0
while (performance.now() - start < Number(ms)) {
  for (let i = 0; i < 200; i++) await client.get(url())
  ops += 200
}
const us = (performance.now() - start) * 1000 / ops
const cpu = process.cpuUsage(cpuStart)
const seen = await origin.seen(directory)
process.stdout.write(`${contender.label}, ${scenario} ${size}: ${ops} ops, ${us.toFixed(2)} µs/op (CPU ${((cpu.user + cpu.system) / ops).toFixed(2)} µs/op in this process), origin saw ${seen.requests} requests (${seen.notModified} × 304)\n`)
await client.close()
await origin.close()
