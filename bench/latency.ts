/**
 * The latency scenarios, one operation after another, timed in interleaved rounds (bench/measure.ts):
 * - hit: a fresh hit (`max-age=3600`), next to the floor and a plain origin round trip;
 * - revalidate: the origin answers `no-cache` and an ETag, so every use is a conditional request
 *   answered 304, next to a plain undici.request round trip that gets the whole body;
 * - miss: a new URL every time, fetched and stored, each batch starting from an empty cache.
 * Each contender requests under a directory of its own, and the checks prove from the origin's
 * counts that a cache did what the scenario says: only the priming request for a hit, a 304 for
 * every revalidation, a request for every miss and none for a stored URL asked again.
 */
import { setImmediate as tick } from 'node:timers/promises'
import type { Client, Contender, ContenderKind, ScenarioId } from './contenders.js'
import { interleave, type Plan, type Rounds, type Session } from './measure.js'
import { SIZES, type BenchOrigin, type Mode, type Size } from './origin.js'

export type LatencyScenario = Extract<ScenarioId, 'hit' | 'revalidate' | 'miss'>

export interface Check {
  /** Requests the origin saw under the contender's directory, and how many it should have. */
  readonly originRequests: number
  readonly expectedOriginRequests: number
  /** 304s the origin sent it (revalidate). */
  readonly notModified: number
  /** What the client said of its last response. */
  readonly signal: string
  /** Problems that make this contender's numbers wrong. */
  readonly problems: readonly string[]
}

export interface Measured extends Rounds {
  readonly kind: ContenderKind
  readonly check: Check
}

export interface LatencyRun {
  readonly scenario: LatencyScenario
  readonly size: Size
  readonly measured: readonly Measured[]
  readonly cannot: ReadonlyArray<{ readonly label: string, readonly why: string }>
}

const MODE: Record<LatencyScenario, Mode> = { hit: 'fresh', revalidate: 'revalidate', miss: 'fresh' }

export async function latency (scenario: LatencyScenario, size: Size, field: readonly Contender[], origin: BenchOrigin,
  plan: Omit<Plan, 'bodyBytes'>, session: Session): Promise<LatencyRun> {
  const able = field.filter((c) => c.cannot[scenario] === undefined)
  const cannot = field.filter((c) => c.cannot[scenario] !== undefined).map((c) => ({ label: c.label, why: c.cannot[scenario]! }))
  const directory = (c: Contender): string => `/${scenario}/${c.id}/${MODE[scenario]}/${size}`
  const clients = new Map(able.map((c) => [c.id, c.create()]))
  const ops = new Map(able.map((c) => [c.id, 0]))
  const title = `${scenario} ${size}`
  try {
    // Prime: one request stores each entry; a write completes after the body, so give it a turn.
    // Miss + store asks for a new URL each time: the n-th operation's.
    const url = (c: Contender, n: number): string => `${origin.url}${directory(c)}/${scenario === 'miss' ? `m${n}` : 'doc'}`
    if (scenario !== 'miss') {
      for (const c of able) await clients.get(c.id)!.get(url(c, 0))
      await tick()
    }
    const primed = new Map(await Promise.all(able.map(async (c) => [c.id, (await origin.seen(directory(c))).requests] as const)))

    const runners = able.map((c) => ({
      id: c.id,
      label: c.label,
      op: async () => {
        const n = ops.get(c.id)!
        ops.set(c.id, n + 1)
        return clients.get(c.id)!.get(url(c, n))
      },
      // Miss + store: each batch with an empty cache, so that no cache grows without bound.
      before: scenario === 'miss'
        ? async () => {
          await clients.get(c.id)!.close()
          clients.set(c.id, c.create())
        }
        : () => { for (const client of clients.values()) client.settle?.() }
    }))
    const rounds = await interleave(title, runners, { ...plan, bodyBytes: SIZES[size] }, session)

    const measured: Measured[] = []
    for (const [i, c] of able.entries()) {
      const client = clients.get(c.id)!
      const n = ops.get(c.id)!
      const check = await checkContender(scenario, c, client, url(c, n - 1), directory(c), origin, primed.get(c.id)!, n, SIZES[size])
      for (const problem of check.problems) session.warnings.push(`${title}, ${c.label}: ${problem}`)
      measured.push({ ...rounds[i]!, kind: c.kind, check })
    }
    return { scenario, size, measured, cannot }
  } finally {
    for (const client of clients.values()) await client.close()
  }
}

/** What a user would look at to believe the contender did what the scenario says. */
async function checkContender (scenario: LatencyScenario, c: Contender, client: Client, url: string, directory: string,
  origin: BenchOrigin, primed: number, ops: number, bodyBytes: number): Promise<Check> {
  const problems: string[] = []
  const caching = c.kind === 'cachedfetch' || c.kind === 'peer'
  if (c.kind === 'floor') return { originRequests: 0, expectedOriginRequests: 0, notModified: 0, signal: 'no request', problems }

  let expected = 0
  let reply
  if (scenario === 'miss') {
    // Every operation was a miss; then the last URL (`url`), asked again, must come from the cache.
    const before = (await origin.seen(directory)).requests
    const missesOk = before === ops
    if (!missesOk) problems.push(`origin saw ${before} requests for ${ops} operations on new URLs`)
    await tick()
    reply = await client.observe(url)
    const again = (await origin.seen(directory)).requests - before
    expected = ops + (caching ? 0 : 1)
    if (caching && again !== 0) problems.push('a URL just stored, asked again, went to the origin: the miss did not store it')
  } else {
    reply = await client.observe(url)
    const total = ops + 1 + 1 // the priming request, the operations, the observing one
    expected = scenario === 'hit' ? (caching ? 1 : total) : total
    if (scenario === 'hit' && caching) {
      if (primed !== 1) problems.push(`priming took ${primed} origin requests, expected 1`)
      if (!reply.fromCache) problems.push(`the client does not call its answer a cache hit (${reply.signal})`)
    }
  }
  const seen = await origin.seen(directory)
  if (reply.status !== 200 || reply.bytes !== bodyBytes) problems.push(`answered ${reply.status} with ${reply.bytes} bytes`)
  if (seen.requests !== expected) problems.push(`origin saw ${seen.requests} requests, expected ${expected}${scenario === 'hit' && caching ? ': not served from cache' : ''}`)
  if (c.kind === 'cachedfetch') {
    const stats = client.cache?.stats()
    if (scenario === 'hit' && stats !== undefined && stats.misses !== 1) problems.push(`cache.stats() counts ${stats.misses} misses, expected 1`)
    // Revalidation is the point of the scenario for us: every request but the first must be a 304.
    if (scenario === 'revalidate' && seen.notModified !== seen.requests - 1) {
      problems.push(`origin answered ${seen.notModified} of ${seen.requests} requests with 304, expected all but the first`)
    }
  }
  return { originRequests: seen.requests, expectedOriginRequests: expected, notModified: seen.notModified, signal: reply.signal, problems }
}
