/**
 * The project's performance goals (issue "Performance: beat every JavaScript HTTP cache"), each
 * evaluated from the numbers of one run and printed met or MISSED with the measured value. A goal
 * whose scenario did not run is left out; one whose contender failed to run is MISSED.
 */
import type { BigBodyRun } from './big-body.js'
import type { CollapseRow, ConcurrencyRun } from './concurrency.js'
import type { ContenderId } from './contenders.js'
import type { LatencyRun } from './latency.js'
import { median, mib, ratio, ratioOf } from './report.js'
import type { MemoryRun, RedisRow, RedisRun } from './storage.js'

export interface Goal {
  readonly id: string
  readonly description: string
  readonly met: boolean
  /** The measured value, as printed. */
  readonly measured: string
  /** How steady it was, or what else decides it. */
  readonly detail: string
}

export interface Results {
  readonly latency: readonly LatencyRun[]
  readonly collapse?: ConcurrencyRun<CollapseRow>
  readonly redis?: RedisRun
  readonly memory?: MemoryRun
  readonly bigBody?: BigBodyRun
}

const PEERS: readonly ContenderId[] = ['undiciCacheRequest', 'undiciCacheFetch', 'makeFetchHappen', 'axiosCache', 'got']
const FACES = [['cachedFetch', 'cachedFetch()'], ['cacheInterceptor', 'the interceptor']] as const
const RSS_LIMIT = 32 * 1024 * 1024

export function evaluateGoals (results: Results): Goal[] {
  const goals: Goal[] = []
  /** A ratio of medians between two contenders of one run, with its spread across rounds. */
  const ratioGoal = (id: string, description: string, run: LatencyRun, over: string, under: string, limit: number): void => {
    const value = ratioOf(run, over, under)
    const a = run.measured.find((m) => m.id === over)?.rounds ?? []
    const b = run.measured.find((m) => m.id === under)?.rounds ?? []
    const perRound = a.map((t, i) => t.wall / (b[i]?.wall ?? NaN))
    const met = perRound.filter((r) => r <= limit).length
    goals.push({
      id,
      description,
      met: value <= limit,
      measured: ratio(value),
      detail: `per round ${ratio(Math.min(...perRound))}–${ratio(Math.max(...perRound))}, met in ${met}/${perRound.length}; by CPU time ${ratio(ratioOf(run, over, under, true))}`
    })
  }

  for (const run of results.latency) {
    if (run.scenario === 'hit') {
      ratioGoal(`hit-floor-${run.size}`, `${run.size} fresh hit: cachedFetch ≤ 1.5× the floor`, run, 'cachedFetch', 'floor', 1.5)
      const peers = run.measured.filter((m) => PEERS.includes(m.id as ContenderId))
      const fastest = peers.reduce((best, m) => median(m.rounds.map((t) => t.wall)) < median(best.rounds.map((t) => t.wall)) ? m : best, peers[0]!)
      ratioGoal(`hit-peers-${run.size}`, `${run.size} fresh hit: cachedFetch faster than every peer (fastest: ${fastest.label})`,
        run, 'cachedFetch', fastest.id, 0.9999)
      ratioGoal(`hit-interceptor-${run.size}`, `${run.size} fresh hit: interceptor ≤ 0.9× undici interceptors.cache (both via request)`,
        run, 'cacheInterceptor', 'undiciCacheRequest', 0.9)
    }
    if (run.scenario === 'revalidate') {
      for (const [face, name] of FACES) {
        ratioGoal(`revalidate-${face}-${run.size}`, `${run.size} 304 revalidation through ${name} ≤ 1.2× a plain undici.request round trip`,
          run, face, 'plainRequest', 1.2)
      }
    }
  }

  if (results.redis !== undefined) {
    // The engine's L2 hit (the storage issue's bar), then each face's, which adds what it adds to a memory hit.
    const faces: ReadonlyArray<readonly [RedisRow['id'], string]> = [['lookup', 'the engine (cache.lookup())'], ...FACES]
    for (const [face, name] of faces) {
      const row = results.redis.rows.find((r) => r.id === face)
      if (row === undefined) continue
      goals.push({
        id: `redis-${face}`,
        description: `Redis L2 hit through ${name} ≤ 2× a raw Redis GET of the same value`,
        met: row.vsRawGet <= 2,
        measured: ratio(row.vsRawGet),
        detail: `${row.medianUs.toFixed(1)} µs; per round ${Math.min(...row.samples).toFixed(1)}–${Math.max(...row.samples).toFixed(1)} µs`
      })
    }
  }

  const memory = results.memory?.rows.find((r) => r.id === 'cacheInterceptor')
  if (memory !== undefined) {
    goals.push({
      id: 'memory',
      description: `L1 memory for ${memory.entries.toLocaleString('en-US')} × 1 KB entries ≤ 1.5× payload bytes`,
      met: memory.vsPayload <= 1.5,
      measured: ratio(memory.vsPayload),
      detail: `${Math.round(memory.bytesPerEntry)} B per entry, heap + buffers after GC`
    })
  }

  for (const row of results.bigBody?.rows ?? []) {
    if (row.id !== 'cachedFetch' && row.id !== 'cacheInterceptor') continue
    const what = row.variant === 'nostore' ? 'uncacheable (no-store)' : 'oversize cacheable'
    goals.push({
      id: `big-body-${row.variant}-${row.id}`,
      description: `200 MB ${what} body through ${row.id === 'cachedFetch' ? 'cachedFetch()' : 'the interceptor'}: peak RSS growth < 32 MiB`,
      met: row.growth < RSS_LIMIT,
      measured: mib(row.growth),
      detail: `${row.ms.toFixed(0)} ms`
    })
  }

  for (const row of results.collapse?.rows ?? []) {
    const face = FACES.find(([id]) => id === row.id)
    if (face === undefined) continue
    const one = row.originRequests.every((n) => n === 1)
    goals.push({
      id: `collapse-${row.id}`,
      description: `1000 concurrent identical misses through ${face[1]}: 1 origin request and wall time ≤ 1.5× a single request`,
      met: one && row.burstVsSingle <= 1.5,
      measured: ratio(row.burstVsSingle),
      detail: `origin requests per burst: ${row.originRequests.join(', ')}; ${row.medianBurstMs.toFixed(1)} ms vs ${row.medianSingleMs.toFixed(1)} ms`
    })
  }
  return goals
}

export function formatGoals (goals: readonly Goal[]): string {
  return goals.map((g) => `  ${g.met ? 'met   ' : 'MISSED'}  ${g.description}: ${g.measured} (${g.detail})`).join('\n')
}
