/**
 * `npm run bench` (`node --expose-gc --import tsx bench/index.ts`): cachedfetch side by side with
 * every JavaScript HTTP cache we know of (bench/contenders.ts), in one process, against one
 * loopback origin (bench/origin.ts), scenario by scenario:
 *   hit · revalidate · miss    1 KB and 100 KB JSON, one request after another (bench/latency.ts)
 *   collapse · stale           1000 identical requests at once (bench/concurrency.ts)
 *   redis · memory             the storage tiers (bench/storage.ts)
 *   big-body                   a 200 MB body in a child process per contender (bench/big-body.ts)
 * Every scenario checks, from the origin's request counts, that each cache did what the scenario
 * says (a cache that silently misses would make the scoreboard a lie) and exits 1 when one did
 * not. Then the goals are evaluated (bench/goals.ts) and printed met or MISSED.
 *
 * Options (after `npm run bench --`): `--json` prints everything as JSON; `--scenario hit,redis`
 * runs only those (repeatable); `--quick` runs every scenario briefly; `--rounds 7`,
 * `--round-ms 150`, `--warmup-ms 1000` set the latency scenarios' length (the warm-up the Redis
 * scenario's too); `--lib dist` benchmarks a build of cachedfetch (`npm run build` first) instead
 * of src/ through tsx; `--save results.json` also writes the JSON to a file; `--gc` forces a full
 * GC before each batch and round (bench/measure.ts says why that is not the default).
 */
import { writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { bigBody, type BigBodyRun } from './big-body.js'
import { collapse, stale, type CollapseRow, type ConcurrencyRun, type StaleRow } from './concurrency.js'
import { buildField, SCENARIOS, type ScenarioId } from './contenders.js'
import { loadLibrary } from './library.js'
import { evaluateGoals, formatGoals } from './goals.js'
import { latency, type LatencyRun } from './latency.js'
import type { Session } from './measure.js'
import { SLOW_MS, startBenchOrigin, type Size } from './origin.js'
import { formatBigBody, formatCollapse, formatLatency, formatMemory, formatRedis, formatStale, median } from './report.js'
import { memoryTier, redisTier, type MemoryRun, type RedisRun } from './storage.js'

const SIZES: readonly Size[] = ['1k', '100k']

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    scenario: { type: 'string', multiple: true },
    rounds: { type: 'string' },
    'round-ms': { type: 'string' },
    'warmup-ms': { type: 'string' },
    lib: { type: 'string' },
    save: { type: 'string' },
    gc: { type: 'boolean', default: false }
  }
})
const quick = args.quick
const config = {
  scenarios: scenarios(args.scenario),
  rounds: positive(args.rounds ?? (quick ? '3' : '7'), '--rounds'),
  roundMs: positive(args['round-ms'] ?? (quick ? '40' : '150'), '--round-ms'),
  warmupMs: positive(args['warmup-ms'] ?? (quick ? '80' : '1000'), '--warmup-ms'),
  /** Rounds of the 1000-at-once scenarios. */
  burstRounds: quick ? 1 : 3,
  /** Unmeasured bursts before them (bench/concurrency.ts). */
  burstWarmUps: quick ? 1 : 3,
  memoryEntries: 10_000,
  /** A full GC before each batch and round (`--gc`; bench/measure.ts, Session.forcedGc). */
  forcedGc: args.gc,
  lib: args.lib === undefined ? 'src (through tsx)' : resolve(args.lib, 'index.js')
}

const session: Session = {
  progress: (text) => { if (process.stderr.isTTY && !args.json) process.stderr.write(`\r\x1b[K${text}`) },
  warnings: [],
  notes: [],
  forcedGc: config.forcedGc
}

async function main (): Promise<void> {
  if ((globalThis as { gc?: unknown }).gc === undefined) {
    session.warnings.push('run with node --expose-gc (npm run bench does): without it the memory scenario cannot collect garbage before it weighs the heap, and --gc forces no GC')
  }
  const lib = await loadLibrary(args.lib)
  const field = buildField(lib)
  const origin = await startBenchOrigin()
  const meta = environment()
  const began = performance.now()
  const on = (s: ScenarioId): boolean => config.scenarios.includes(s)
  const latencyRuns: LatencyRun[] = []
  let collapseRun: ConcurrencyRun<CollapseRow> | undefined
  let staleRun: ConcurrencyRun<StaleRow> | undefined
  let redisRun: RedisRun | { skipped: string } | undefined
  let memoryRun: MemoryRun | undefined
  let bigBodyRun: BigBodyRun | undefined
  try {
    const plan = { rounds: config.rounds, roundMs: config.roundMs, warmupMs: config.warmupMs, budgetMs: 25_000 }
    for (const scenario of ['hit', 'revalidate', 'miss'] as const) {
      if (!on(scenario)) continue
      for (const size of SIZES) {
        const run = await latency(scenario, size, field, origin, plan, session)
        latencyRuns.push(run)
        // Rounds that disagree this much mean other processes competed for the CPU, not a slow contender.
        const noisy = run.measured.filter((m) => {
          const wall = m.rounds.map((t) => t.wall)
          return (Math.max(...wall) - Math.min(...wall)) / median(wall) > 0.5
        })
        if (noisy.length > 0) {
          session.notes.push(`${scenario} ${size}: rounds differ by more than half the median for ${noisy.length} of ${run.measured.length} contenders: the machine was busy; trust CPU-time ratios more, or rerun`)
        }
      }
    }
    const bursts = { warmUp: config.burstWarmUps, measured: config.burstRounds }
    if (on('collapse')) collapseRun = await collapse(field, origin, bursts, session)
    if (on('stale')) staleRun = await stale(field, origin, bursts, session)
    if (on('redis')) {
      session.progress('redis…')
      // Three times the rounds, a third as long: a Redis round trip moves between 35 and 135 µs as the
      // server's process gets a core or waits for one, and more rounds give its median a steadier footing.
      redisRun = await redisTier(lib, origin, config.rounds * 3, config.roundMs / 3, config.warmupMs, session)
        .catch((error: unknown) => ({ skipped: `failed against ${process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'}: ${(error as Error).message}` }))
    }
    if (on('memory')) memoryRun = await memoryTier(field, origin, config.memoryEntries, session)
    if (on('big-body')) {
      // --quick: only cachedfetch's two faces, the ones with goals.
      const contenders = quick ? field.filter((c) => c.kind === 'cachedfetch') : field
      bigBodyRun = await bigBody(contenders, origin, args.lib === undefined ? undefined : resolve(args.lib), quick, session)
    }
  } finally {
    await origin.close()
  }
  session.progress('')
  meta.seconds = Math.round((performance.now() - began) / 1000)
  meta.loadAfter = os.loadavg().map((n) => n.toFixed(2)).join(' ')

  const redis = redisRun !== undefined && !('skipped' in redisRun) ? redisRun : undefined
  if (redisRun !== undefined && 'skipped' in redisRun) session.notes.push(`redis: skipped: ${redisRun.skipped}`)
  const goals = evaluateGoals({ latency: latencyRuns, collapse: collapseRun, redis, memory: memoryRun, bigBody: bigBodyRun })
  const contenders = field.map(({ id, label, kind, setup, cannot }) => ({ id, label, kind, setup, cannot }))

  const json = JSON.stringify({
    meta, config, contenders, goals,
    scenarios: { latency: latencyRuns, collapse: collapseRun, stale: staleRun, redis: redisRun, memory: memoryRun, bigBody: bigBodyRun },
    notes: session.notes, warnings: session.warnings
  }, null, 2) + '\n'
  if (args.save !== undefined) writeFileSync(args.save, json)
  if (args.json) {
    process.stdout.write(json)
  } else {
    const section = (title: string, body: string): string[] => ['', title, body]
    const lines = [
      'cachedfetch benchmark: the field side by side, one process, one loopback origin',
      `node ${meta.node} · undici ${meta.undici} · ${meta.platform} · ${meta.cpus} CPUs (${meta.cpuModel}) · ${meta.memory} · ${meta.date}`,
      `load average before ${meta.loadBefore}, after ${meta.loadAfter} · ${meta.seconds} s · cachedfetch from ${config.lib}`,
      `latency scenarios: ${config.rounds} rounds × ~${config.roundMs} ms per contender, order alternating, ${session.forcedGc ? 'a forced GC before each batch (--gc)' : 'no forced GC'}; medians of the rounds`
    ]
    for (const run of latencyRuns) {
      const what = {
        hit: 'fresh HIT (max-age=3600), one request after another',
        revalidate: '304 revalidation: the origin answers no-cache + ETag, every use is a conditional request',
        miss: 'miss + store: a new URL each time, each batch from an empty cache'
      }[run.scenario]
      lines.push(...section(`${run.scenario} ${run.size} — ${what}`, formatLatency(run)))
    }
    if (collapseRun !== undefined) {
      lines.push(...section(`collapse 1k — 1000 concurrent identical misses; the origin answers after ${SLOW_MS} ms; ${config.burstRounds} rounds after ${config.burstWarmUps} unmeasured`, formatCollapse(collapseRun)))
    }
    if (staleRun !== undefined) {
      lines.push(...section(`stale 1k — 1000 concurrent hits on an entry inside stale-while-revalidate; ${config.burstRounds} rounds after ${config.burstWarmUps} unmeasured`, formatStale(staleRun)))
    }
    if (redis !== undefined) lines.push(...section('redis 1k — a hit answered from Redis (no memory tier) vs a raw GET of the same stored value', formatRedis(redis)))
    if (memoryRun !== undefined) lines.push(...section('memory — 10 000 entries of 1 KB: heap + ArrayBuffers after GC, per entry', formatMemory(memoryRun)))
    if (bigBodyRun !== undefined) {
      lines.push(...section('big-body — a 200 MB body streamed through, one child process per run; median of 3 runs for cachedfetch and the reference; the reader collects garbage every 8 MiB', formatBigBody(bigBodyRun)))
    }
    lines.push('', 'Goals', formatGoals(goals), ...session.notes.map((note) => `  note: ${note}`))
    process.stdout.write(lines.join('\n') + '\n')
  }
  for (const warning of session.warnings) process.stderr.write(`warning: ${warning}\n`)
  if (session.warnings.length > 0) process.exitCode = 1
}

function environment (): Record<string, string | number> {
  const cpus = os.cpus()
  const undici = (createRequire(import.meta.url)('undici/package.json') as { version: string }).version
  return {
    node: process.version,
    undici,
    platform: `${process.platform} ${process.arch}`,
    cpus: os.availableParallelism(),
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    memory: `${Math.round(os.totalmem() / 1024 ** 3)} GiB`,
    date: new Date().toISOString(),
    loadBefore: os.loadavg().map((n) => n.toFixed(2)).join(' ')
  }
}

function scenarios (named: string[] | undefined): readonly ScenarioId[] {
  if (named === undefined) return SCENARIOS
  const list = named.flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== '')
  for (const name of list) {
    if (!SCENARIOS.includes(name as ScenarioId)) throw new TypeError(`expected --scenario to be one of ${SCENARIOS.join(', ')}, got ${name}`)
  }
  return list as ScenarioId[]
}

function positive (value: string, name: string): number {
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0) throw new TypeError(`expected ${name} to be a positive number, got ${value}`)
  return n
}

await main()
