/**
 * `npm run bench` (`node --expose-gc --import tsx bench/index.ts [--json]`): the cost of a fresh
 * cache HIT, side by side with undici's own cache and with the floor every fetch-shaped hit pays
 * (building a Response and reading its body); then the storage tiers (bench/storage.ts). One process, one loopback origin serving a 1 KB
 * JSON body that may be cached for an hour. Every contender is primed first; then it is warmed
 * up and measured in interleaved rounds (alternating the order, a GC before each batch), and the
 * median µs/op of the rounds is reported. The benchmark checks that each cache really hit — its
 * origin path saw only the priming request, and responses carry Age (and our Cache-Status) — and
 * warns, with exit code 1, when one did not.
 *
 * Options (after `npm run bench --`): `--json` prints the results as JSON; `--rounds 7`,
 * `--round-ms 300` (time per contender per round) and `--warmup-ms 600` set the length;
 * `--lib dist` benchmarks a build of cachedfetch instead of src/; `--cache-control no-store`
 * changes what the origin sends, to see the hit checks fail.
 */
import { createRequire } from 'node:module'
import os from 'node:os'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { setImmediate as tick } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { buildContenders, type Contender, type ContenderId, type Library, type Observed } from './contenders.js'
import { jsonBody, startBenchOrigin, type BenchOrigin } from './origin.js'
import { evaluateGoals, formatGoals, formatResults, summarize, type Sample } from './report.js'
import { formatStorage, storageBench } from './storage.js'

const BODY_BYTES = 1024
/** Past this, no new round starts (at least three run): a busy machine must not stretch the run. */
const BUDGET_MS = 45_000

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    rounds: { type: 'string', default: '7' },
    'round-ms': { type: 'string', default: '300' },
    'warmup-ms': { type: 'string', default: '600' },
    lib: { type: 'string' },
    'cache-control': { type: 'string', default: 'max-age=3600' }
  }
})
const config = {
  rounds: positive(args.rounds, '--rounds'),
  roundMs: positive(args['round-ms'], '--round-ms'),
  warmupMs: positive(args['warmup-ms'], '--warmup-ms'),
  bodyBytes: BODY_BYTES,
  cacheControl: args['cache-control'],
  lib: args.lib === undefined ? 'src (through tsx)' : resolve(args.lib, 'index.js')
}

const gc = (globalThis as { gc?: () => void }).gc
/** Problems that make the numbers wrong: a cache that missed, a short body. Exit code 1. */
const warnings: string[] = []
/** Conditions that make the numbers less certain: a busy machine. */
const notes: string[] = []
const progress = (text: string): void => {
  if (process.stderr.isTTY && !args.json) process.stderr.write(`\r\x1b[K${text}`)
}

/** Operations each contender has run, for comparing with what the origin saw. */
const opsRun = new Map<ContenderId, number>()
const count = (c: Contender, n: number): void => { opsRun.set(c.id, (opsRun.get(c.id) ?? 0) + n) }

interface Timing {
  /** Wall-clock µs per operation: the latency a caller sees. */
  readonly wall: number
  /**
   * CPU µs per operation (process.cpuUsage, all threads): the work done. Unlike wall time it does
   * count time spent waiting for a CPU, so on a busy machine its ratios are often steadier.
   */
  readonly cpu: number
}

async function batch (c: Contender, n: number): Promise<Timing> {
  gc?.()
  let bytes = 0
  const cpu = process.cpuUsage()
  const start = process.hrtime.bigint()
  for (let i = 0; i < n; i++) bytes += await c.op()
  const elapsed = Number(process.hrtime.bigint() - start)
  const used = process.cpuUsage(cpu)
  count(c, n)
  if (bytes !== n * BODY_BYTES) warnings.push(`${c.label}: read ${bytes} body bytes in ${n} operations, expected ${n * BODY_BYTES}`)
  return { wall: elapsed / 1000 / n, cpu: (used.user + used.system) / n }
}

/** Runs a contender for about `ms`, in growing batches; returns its µs/op. */
async function runFor (c: Contender, ms: number): Promise<number> {
  let n = 16
  let total = 0
  let us = 0
  while (total < ms * 1000) {
    const timing = await batch(c, n)
    // The larger of the two: GC threads can make CPU time exceed wall time.
    us = Math.max(timing.wall, timing.cpu)
    total += us * n
    n *= 2
  }
  return us
}

async function observe (c: Contender): Promise<Observed> {
  count(c, 1)
  return c.observe()
}

interface Check {
  readonly id: ContenderId
  readonly originRequests: number
  readonly expectedOriginRequests: number
  readonly cacheStatus: string | undefined
  readonly age: string | undefined
  readonly problems: readonly string[]
}

/** What a user would look at to believe a contender hit its cache (or, uncached, did not). */
function check (c: Contender, seen: Observed, origin: BenchOrigin, primed: number): Check {
  const problems: string[] = []
  const cacheStatus = seen.headers['cache-status']
  const age = seen.headers.age
  const originRequests = c.path === undefined ? 0 : origin.hits(c.path)
  let expected = 0
  if (seen.status !== 200 || seen.bytes !== BODY_BYTES) problems.push(`answered ${seen.status} with ${seen.bytes} bytes`)
  if (c.kind === 'cachedfetch' || c.kind === 'undici-cache') {
    expected = primed
    if (primed !== 1) problems.push(`priming took ${primed} origin requests, expected 1`)
    if (originRequests !== primed) problems.push(`origin saw ${originRequests - primed} requests after priming: not served from cache`)
    if (age === undefined || !/^\d+$/.test(age)) problems.push(`no Age header on a hit (age: ${age ?? 'absent'})`)
  }
  if (c.kind === 'cachedfetch') {
    if (cacheStatus === undefined || !/(^|,\s*)cachedfetch; hit(;|$)/.test(cacheStatus)) {
      problems.push(`Cache-Status is not a hit: ${cacheStatus ?? 'absent'}`)
    }
    const stats = c.cache?.stats()
    const ops = opsRun.get(c.id) ?? 0
    if (stats !== undefined && (stats.misses !== 1 || stats.hits !== ops - 1)) {
      problems.push(`cache.stats() counts ${stats.hits} hits and ${stats.misses} misses for ${ops} requests, expected ${ops - 1} and 1`)
    }
  }
  if (c.kind === 'origin') {
    expected = opsRun.get(c.id) ?? 0
    if (originRequests !== expected) problems.push(`origin saw ${originRequests} requests for ${expected} operations`)
    if (age !== undefined) problems.push('uncached request came back with an Age header')
  }
  return { id: c.id, originRequests, expectedOriginRequests: expected, cacheStatus, age, problems }
}

async function main (): Promise<void> {
  const body = jsonBody(BODY_BYTES)
  const origin = await startBenchOrigin(body, args['cache-control'])
  const field = buildContenders(await library(), origin.url, body)
  const { contenders } = field
  if (gc === undefined) warnings.push('run with node --expose-gc (npm run bench does): without it garbage from one contender is collected during another')

  try {
    // Prime: one request stores each entry; the write completes after the body, so give it a turn.
    progress('priming…')
    for (const c of contenders) {
      count(c, 1)
      await c.op()
    }
    await tick()
    const primed = new Map(contenders.map((c) => [c.id, c.path === undefined ? 0 : origin.hits(c.path)]))
    for (const c of contenders) {
      const first = check(c, await observe(c), origin, primed.get(c.id)!)
      for (const problem of first.problems) warnings.push(`${c.label} (after priming): ${problem}`)
    }

    // Warm up twice over, in both orders, and size each contender's batch to about roundMs.
    const perOp = new Map<ContenderId, number>()
    for (const [pass, order] of [contenders, [...contenders].reverse()].entries()) {
      for (const c of order) {
        progress(`warming up (${pass + 1}/2): ${c.label}`)
        perOp.set(c.id, await runFor(c, config.warmupMs / 2))
      }
    }
    const opsPerRound = new Map(contenders.map((c) =>
      [c.id, Math.max(50, Math.round(config.roundMs * 1000 / perOp.get(c.id)!))]))

    const samples = new Map<ContenderId, Timing[]>(contenders.map((c) => [c.id, []]))
    const began = performance.now()
    for (let round = 0; round < config.rounds; round++) {
      if (round >= 3 && performance.now() - began > BUDGET_MS) {
        notes.push(`stopped after ${round} of ${config.rounds} rounds to stay within ${BUDGET_MS / 1000} s; the machine is busy`)
        break
      }
      const order = round % 2 === 0 ? contenders : [...contenders].reverse()
      for (const c of order) {
        progress(`round ${round + 1}/${config.rounds}: ${c.label}`)
        samples.get(c.id)!.push(await batch(c, opsPerRound.get(c.id)!))
      }
    }
    progress('')

    const checks: Check[] = []
    for (const c of contenders) {
      const result = check(c, await observe(c), origin, primed.get(c.id)!)
      checks.push(result)
      for (const problem of result.problems) warnings.push(`${c.label}: ${problem}`)
    }

    const rows: Sample[] = contenders.map((c) => ({
      id: c.id,
      label: c.label,
      kind: c.kind,
      opsPerRound: opsPerRound.get(c.id)!,
      samples: samples.get(c.id)!.map((t) => t.wall),
      cpuSamples: samples.get(c.id)!.map((t) => t.cpu)
    }))
    const results = summarize(rows)
    // Rounds that disagree this much mean other processes competed for the CPU, not a slow contender.
    const noisy = results.filter((r) => (r.maxUs - r.minUs) / r.medianUs > 0.5).map((r) => r.label)
    if (noisy.length > 0) {
      notes.push(`timings were noisy (rounds differ by more than half the median) for: ${noisy.join('; ')}. ` +
        'The machine was busy: trust the CPU-time ratios more, or rerun.')
    }
    const goals = evaluateGoals(rows)
    const meta = environment()
    const storage = await storageBench(await library(), body, progress)
    progress('')

    if (args.json) {
      const stats = Object.fromEntries(contenders.filter((c) => c.cache !== undefined).map((c) => [c.id, c.cache!.stats()]))
      process.stdout.write(JSON.stringify({ meta, config, results, goals, storage, checks, stats, notes, warnings }, null, 2) + '\n')
    } else {
      const lines = [
        'cachedfetch benchmark: fresh cache HIT of a 1 KB JSON body from a loopback origin',
        `node ${meta.node} · undici ${meta.undici} · ${meta.platform} · ${meta.cpus} CPUs (${meta.cpuModel}) · ${meta.date}`,
        `${config.rounds} rounds × ~${config.roundMs} ms per contender, order alternating, GC before each batch; medians of the rounds`,
        `cachedfetch from ${config.lib}`,
        '',
        formatResults(results),
        '',
        'Goals',
        formatGoals(goals),
        ...notes.map((note) => `  note: ${note}`),
        '',
        formatStorage(storage),
        '',
        'Hit checks (origin requests for the contender\'s path: seen / expected)',
        ...checks.filter((k) => k.id !== 'floor').map((k) => {
          const c = contenders.find((x) => x.id === k.id)!
          const status = k.cacheStatus === undefined ? '' : `  cache-status: ${k.cacheStatus}`
          const age = k.age === undefined ? '' : `  age: ${k.age}`
          return `  ${k.problems.length === 0 ? 'ok  ' : 'FAIL'}  ${c.label}: ${k.originRequests} / ${k.expectedOriginRequests}${age}${status}`
        })
      ]
      process.stdout.write(lines.join('\n') + '\n')
    }
    for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`)
    if (warnings.length > 0) process.exitCode = 1
  } finally {
    await field.close()
    await origin.close()
  }
}

/**
 * cachedfetch as the benchmark runs it. tsx compiles src/ with esbuild's keepNames, which wraps
 * every closure made per call in a defineProperty; `--lib dist` (after `npm run build`) measures
 * the JavaScript that ships instead.
 */
async function library (): Promise<Library> {
  if (args.lib === undefined) return import('../src/index.js')
  return await import(pathToFileURL(resolve(args.lib, 'index.js')).href) as Library
}

function environment (): { node: string, undici: string, platform: string, cpus: number, cpuModel: string, date: string } {
  const cpus = os.cpus()
  const undici = (createRequire(import.meta.url)('undici/package.json') as { version: string }).version
  return {
    node: process.version,
    undici,
    platform: `${process.platform} ${process.arch}`,
    cpus: os.availableParallelism(),
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    date: new Date().toISOString()
  }
}

function positive (value: string, name: string): number {
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0) throw new TypeError(`expected ${name} to be a positive number, got ${value}`)
  return n
}

await main()
