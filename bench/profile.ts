/**
 * A focused loop for the profiler: one contender's fresh hit, over and over, with nothing else in
 * the process worth sampling. `node --cpu-prof --cpu-prof-dir=.scratch/prof --import tsx
 * bench/profile.ts cachedFetch 3000 [dist]` runs cachedFetch hits for 3 s (against a build in
 * dist/ when named, as the benchmark's `--lib` does) and leaves a .cpuprofile to open in Chrome
 * DevTools or to sum up by self time.
 */
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { buildContenders, type ContenderId, type Library } from './contenders.js'
import { jsonBody, startBenchOrigin } from './origin.js'

const [id = 'cachedFetch', ms = '3000', libDir] = process.argv.slice(2)
const lib = libDir === undefined
  ? await import('../src/index.js')
  : await import(pathToFileURL(resolve(libDir, 'index.js')).href) as Library
const body = jsonBody(1024)
const origin = await startBenchOrigin(body)
const field = buildContenders(lib, origin.url, body)
const contender = field.contenders.find((c) => c.id === id as ContenderId)
if (contender === undefined) throw new TypeError(`unknown contender ${id}; expected one of ${field.contenders.map((c) => c.id).join(', ')}`)

await contender.op()
await new Promise((resolve) => setImmediate(resolve))
const start = performance.now()
let ops = 0
while (performance.now() - start < Number(ms)) {
  for (let i = 0; i < 1000; i++) await contender.op()
  ops += 1000
}
const us = (performance.now() - start) * 1000 / ops
process.stdout.write(`${contender.label}: ${ops} ops, ${us.toFixed(2)} µs/op, origin saw ${contender.path === undefined ? 0 : origin.hits(contender.path)} requests\n`)
await field.close()
await origin.close()
