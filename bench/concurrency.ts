/**
 * The concurrency scenarios, 1000 identical requests at once on a 1 KB body, in a few interleaved
 * rounds after a few unmeasured warm-up rounds (a new URL each round):
 * - collapse: 1000 misses of a URL the origin answers after SLOW_MS (an origin farther than
 *   loopback, so that collapsing shows): how many requests the origin saw, and the wall time of
 *   the 1000 next to one request alone through the same client;
 * - stale: 1000 hits of an entry that is stale but inside stale-while-revalidate: the wall time,
 *   how many were served from the cache at once, and how many background revalidations the
 *   origin saw once they settled.
 */
import { setTimeout as sleep, setImmediate as tick } from 'node:timers/promises'
import type { Client, Contender, ContenderId, ScenarioId } from './contenders.js'
import { roundOrder, type Session } from './measure.js'
import { median } from './report.js'
import { SIZES, type BenchOrigin } from './origin.js'

export const CONCURRENCY = 1000

export interface CollapseRow {
  readonly id: ContenderId
  readonly label: string
  /** One request alone through the same client, ms, per round. */
  readonly singleMs: readonly number[]
  /** The 1000 concurrent requests, ms, per round. */
  readonly burstMs: readonly number[]
  /** Origin requests per burst, per round. */
  readonly originRequests: readonly number[]
  readonly medianSingleMs: number
  readonly medianBurstMs: number
  /** medianBurstMs / medianSingleMs: the goal is ≤ 1.5 with one origin request. */
  readonly burstVsSingle: number
}

export interface StaleRow {
  readonly id: ContenderId
  readonly label: string
  readonly burstMs: readonly number[]
  /** Responses of the burst that the client says came from the cache, per round. */
  readonly servedFromCache: readonly number[]
  /** Requests the origin saw during and after the burst, once they settled, per round. */
  readonly revalidations: readonly number[]
  readonly medianBurstMs: number
}

export interface ConcurrencyRun<Row> {
  readonly rows: readonly Row[]
  readonly cannot: ReadonlyArray<{ readonly label: string, readonly why: string }>
}

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {})

export async function collapse (field: readonly Contender[], origin: BenchOrigin, rounds: Rounds, session: Session): Promise<ConcurrencyRun<CollapseRow>> {
  return inRounds('collapse', field, rounds, session, async (c, client, round) => {
    const directory = `/collapse/${c.id}/slow/1k`
    let start = performance.now()
    check(session, c, 'collapse', [await client.get(`${origin.url}${directory}/single-${round}`)])
    const singleMs = performance.now() - start
    const before = (await origin.seen(directory)).requests
    start = performance.now()
    const burst = `${origin.url}${directory}/burst-${round}`
    check(session, c, 'collapse', await Promise.all(Array.from({ length: CONCURRENCY }, () => client.get(burst))))
    const burstMs = performance.now() - start
    return { singleMs, burstMs, originRequests: (await origin.seen(directory)).requests - before }
  }, (c, samples) => {
    const medianSingleMs = median(samples.map((s) => s.singleMs))
    const medianBurstMs = median(samples.map((s) => s.burstMs))
    return {
      id: c.id,
      label: c.label,
      singleMs: samples.map((s) => s.singleMs),
      burstMs: samples.map((s) => s.burstMs),
      originRequests: samples.map((s) => s.originRequests),
      medianSingleMs,
      medianBurstMs,
      burstVsSingle: medianBurstMs / medianSingleMs
    }
  })
}

export async function stale (field: readonly Contender[], origin: BenchOrigin, rounds: Rounds, session: Session): Promise<ConcurrencyRun<StaleRow>> {
  return inRounds('stale', field, rounds, session, async (c, client, round) => {
    const directory = `/stale/${c.id}/swr/1k`
    const url = `${origin.url}${directory}/r${round}`
    await client.get(url)
    // The entry is stored once its body is read; let the write land.
    await sleep(10)
    const before = (await origin.seen(directory)).requests
    const start = performance.now()
    const replies = await Promise.all(Array.from({ length: CONCURRENCY }, () => client.observe(url)))
    const burstMs = performance.now() - start
    check(session, c, 'stale', replies.map((r) => r.bytes))
    return { burstMs, servedFromCache: replies.filter((r) => r.fromCache).length, revalidations: await settled(origin, directory) - before }
  }, (c, samples) => ({
    id: c.id,
    label: c.label,
    burstMs: samples.map((s) => s.burstMs),
    servedFromCache: samples.map((s) => s.servedFromCache),
    revalidations: samples.map((s) => s.revalidations),
    medianBurstMs: median(samples.map((s) => s.burstMs))
  }))
}

/** How many bursts each contender makes: unmeasured first, then measured. */
export interface Rounds {
  readonly warmUp: number
  readonly measured: number
}

/**
 * Runs `round` for every able contender, `rounds.warmUp` times unmeasured (as rounds -warmUp … -1)
 * and then `rounds.measured` times, alternating the order, a forced GC before each only under
 * `--gc` (session.forcedGc); then `summarize`.
 */
async function inRounds<Sample, Row> (scenario: ScenarioId, field: readonly Contender[], rounds: Rounds, session: Session,
  round: (c: Contender, client: Client, round: number) => Promise<Sample>,
  summarize: (c: Contender, samples: readonly Sample[]) => Row): Promise<ConcurrencyRun<Row>> {
  const able = field.filter((c) => c.cannot[scenario] === undefined)
  const cannot = field.filter((c) => c.cannot[scenario] !== undefined).map((c) => ({ label: c.label, why: c.cannot[scenario]! }))
  const clients = new Map(able.map((c) => [c.id, c.create()]))
  const samples = new Map<ContenderId, Sample[]>(able.map((c) => [c.id, []]))
  try {
    // Warm-up bursts are not counted, as the latency scenarios warm up: a burst's 1000 callers run
    // code the JIT has not optimised yet. Measured alone, a contender's first bursts after the very
    // first took 1.3–1.9× its later ones (cachedFetch() 111 and 98 ms, then 71–83; undici's cache
    // 193 and 166, then 91–107; the interceptor 97 and 89, then 63–70).
    for (let r = -rounds.warmUp; r < rounds.measured; r++) {
      for (const c of roundOrder(able, r)) {
        session.progress(`${scenario}: ${r < 0 ? `warm-up ${r + rounds.warmUp + 1}/${rounds.warmUp}` : `round ${r + 1}/${rounds.measured}`} ${c.label}`)
        for (const client of clients.values()) client.settle?.()
        if (session.forcedGc) gc()
        await tick()
        const sample = await round(c, clients.get(c.id)!, r)
        if (r >= 0) samples.get(c.id)!.push(sample)
      }
    }
    return { rows: able.map((c) => summarize(c, samples.get(c.id)!)), cannot }
  } finally {
    for (const client of clients.values()) await client.close()
  }
}

function check (session: Session, c: Contender, scenario: string, bytes: readonly number[]): void {
  const short = bytes.filter((n) => n !== SIZES['1k']).length
  if (short > 0) session.warnings.push(`${scenario}, ${c.label}: ${short} of ${bytes.length} responses did not carry the whole body`)
}

/** The origin's count under `directory` once it has not moved for 100 ms (background work done), at most 3 s. */
async function settled (origin: BenchOrigin, directory: string): Promise<number> {
  let last = (await origin.seen(directory)).requests
  for (let quiet = 0, waited = 0; quiet < 100 && waited < 3000; waited += 20) {
    await sleep(20)
    const now = (await origin.seen(directory)).requests
    quiet = now === last ? quiet + 20 : 0
    last = now
  }
  return last
}
