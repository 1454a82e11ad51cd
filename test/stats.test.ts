/**
 * `cache.stats()` counts every lookup once, through either face: a hit, a stale response served, a
 * miss or a revalidation (bypasses apart). A lookup that found nothing counts as it looks; one that
 * found a stored response and went to the origin counts by what came back, and so must count when
 * nothing does (a refused connection, the caller's abort), and when it shares another's exchange.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createCache, type Cache } from '../src/index.js'
import { adapters, type Client } from './helpers/clients.js'
import type { Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, wholeSecondNow, type ManualClock } from './helpers/time.js'
import { gate, settle, waitFor, type Gate } from './helpers/wait.js'

const BODY = 'x'.repeat(100)

/** The outcomes counted, and their sum: the lookups. */
function counted (cache: Cache): { hits: number, staleServed: number, misses: number, revalidated: number, bypassed: number, lookups: number } {
  const { hits, staleServed, misses, revalidated, bypassed } = cache.stats()
  return { hits, staleServed, misses, revalidated, bypassed, lookups: hits + staleServed + misses + revalidated + bypassed }
}

/** A Keyv store whose reads take a while: a lookup the caller can leave before it is over. */
class SlowStore {
  readonly #map = new Map<string, unknown>()
  async get (key: string): Promise<unknown> { await pause(40); return this.#map.get(key) }
  async set (key: string, value: unknown): Promise<boolean> { this.#map.set(key, value); return await Promise.resolve(true) }
  async delete (key: string): Promise<boolean> { return await Promise.resolve(this.#map.delete(key)) }
  async clear (): Promise<void> { this.#map.clear(); await Promise.resolve() }
}

async function pause (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

describe.each(adapters)('cache.stats() through $name', ({ connect }) => {
  const opened = teardown()
  let clock: ManualClock
  let origin: Origin
  let cache: Cache
  let client: Client

  const open = (options: Parameters<typeof createCache>[0] = {}): void => {
    cache = createCache({ now: clock.now, retry: false, ...options })
    client = opened.add(connect(cache))
  }

  /** `/a` stored with `cacheControl` (and an ETag), then made stale. */
  const storeStale = async (cacheControl: string): Promise<string> => {
    origin.route('/a', (_req, res) => { res.writeHead(200, { date: clock.date(), 'cache-control': cacheControl, etag: '"v1"' }).end(BODY) })
    await client.send(`${origin.url}/a`)
    await cache.flush()
    clock.advance(10)
    return `${origin.url}/a`
  }

  /** `/a` answers a revalidation 304 once the gate it returns is released. */
  const holdRevalidation = (): Gate => {
    const held = gate()
    origin.route('/a', async (_req, res) => {
      await held.promise
      res.writeHead(304, { date: clock.date(), 'cache-control': 'max-age=60', etag: '"v1"' }).end()
    })
    return held
  }

  beforeEach(async () => {
    clock = manualClock(wholeSecondNow())
    origin = await opened.origin()
  })
  afterEach(() => opened.close())

  it.each(['a cold URL', 'a stored one'])('counts a reload of %s as a miss (reason request)', async (what) => {
    open()
    origin.route('/a', (_req, res) => { res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=60' }).end(BODY) })
    if (what === 'a stored one') await client.send(`${origin.url}/a`)
    const before = counted(cache)
    const reloaded = await client.send(`${origin.url}/a`, { cache: 'reload' })
    expect(reloaded.header('cache-status')).toContain('fwd=request')
    expect(counted(cache).misses - before.misses).toBe(1)
    expect(counted(cache).lookups - before.lookups).toBe(1)
  })

  it('counts a miss for each caller whose stale entry\'s revalidation is refused, with nothing to stand in', async () => {
    open()
    const url = await storeStale('max-age=1')
    await origin.close()
    const results = await Promise.allSettled(Array.from({ length: 5 }, async () => await client.send(url)))
    expect(results.map((result) => result.status)).toEqual(Array.from({ length: 5 }, () => 'rejected'))
    expect(counted(cache)).toMatchObject({ misses: 6, lookups: 6 })
  })

  it('counts a miss for a caller on a stale entry that aborts before the answer comes', async () => {
    open()
    const url = await storeStale('max-age=1')
    const held = holdRevalidation()
    const controller = new AbortController()
    const aborted = client.send(url, { signal: controller.signal })
    await waitFor(() => origin.hits('/a') === 2, 'the revalidation to reach the origin')
    controller.abort()
    await expect(aborted).rejects.toThrow()
    held.release()
    await settle()
    expect(counted(cache)).toMatchObject({ misses: 2, revalidated: 0, lookups: 2 })
  })

  it('counts a miss for a caller that joins another\'s revalidation with its stale entry and aborts before the answer', async () => {
    open()
    const url = await storeStale('max-age=1')
    const held = holdRevalidation()
    const first = client.send(url)
    await waitFor(() => origin.hits('/a') === 2, 'the revalidation to reach the origin')
    const controller = new AbortController()
    const joined = client.send(url, { signal: controller.signal })
    await settle()
    controller.abort()
    await expect(joined).rejects.toThrow()
    held.release()
    expect((await first).body).toBe(BODY)
    expect(origin.hits('/a')).toBe(2)
    expect(counted(cache)).toMatchObject({ misses: 2, revalidated: 1, lookups: 3 })
  })

  it('counts a miss for a caller on a stale entry that aborts while an answer stale-if-error covers is held back', async () => {
    open()
    const url = await storeStale('max-age=1, stale-if-error=1000')
    const held = gate()
    origin.route('/a', async (_req, res) => {
      res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=60', 'content-length': String(BODY.length) })
      res.write('x')
      await held.promise
      res.end(BODY.slice(1))
    })
    const controller = new AbortController()
    const aborted = client.send(url, { signal: controller.signal })
    await waitFor(() => origin.hits('/a') === 2, 'the revalidation to reach the origin')
    await settle()
    controller.abort()
    await expect(aborted).rejects.toThrow()
    held.release()
    await settle()
    expect(counted(cache)).toMatchObject({ misses: 2, staleServed: 0, lookups: 2 })
  })

  it.each(['a cold URL', 'a stale entry', 'a fresh entry'])('counts the lookup of a caller that aborts while the store reads %s', async (what) => {
    open({ store: new SlowStore() as never, maxSize: 0 })
    if (what === 'a stale entry') await storeStale('max-age=1')
    else origin.route('/a', (_req, res) => { res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=60' }).end(BODY) })
    if (what === 'a fresh entry') {
      await client.send(`${origin.url}/a`)
      await cache.flush()
    }
    const before = counted(cache)
    const hitsBefore = origin.hits('/a')
    const controller = new AbortController()
    const aborted = client.send(`${origin.url}/a`, { signal: controller.signal })
    await pause(10)
    controller.abort()
    await expect(aborted).rejects.toThrow()
    // The read is over, and the request never went out.
    await pause(80)
    expect(origin.hits('/a')).toBe(hitsBefore)
    const after = counted(cache)
    expect(after.lookups - before.lookups).toBe(1)
    expect(what === 'a fresh entry' ? after.hits - before.hits : after.misses - before.misses).toBe(1)
  })

  it.each(['shared', 'private'])('counts a miss for callers that join, with a stored response of their own, an exchange whose lookup found none (its answer %s)', async (answer) => {
    open()
    const held = gate()
    let first = true
    origin.route('/a', async (req, res) => {
      // The first request without the extra field is held until the others have joined it.
      const held1 = req.headers['x-other'] === undefined && first
      if (held1) {
        first = false
        await held.promise
      }
      // A private answer is for the first caller alone: the others are sent on their own.
      const cacheControl = held1 && answer === 'private' ? 'private, max-age=60' : 'no-cache, max-age=60'
      res.writeHead(200, { date: clock.date(), 'cache-control': cacheControl, etag: '"v1"' }).end(BODY)
    })
    const leader = client.send(`${origin.url}/a`)
    await waitFor(() => origin.hits('/a') === 1, 'the first request to reach the origin')
    // A request with a field of its own (another exchange) stores a response the others then find.
    await client.send(`${origin.url}/a`, { headers: { 'x-other': '1' } })
    await cache.flush()
    const joined = Array.from({ length: 4 }, async () => await client.send(`${origin.url}/a`))
    await settle()
    held.release()
    await Promise.all([leader, ...joined])
    // Each that joined found the stored one (no-cache: to revalidate) and got the first one's answer,
    // or one of its own.
    expect(origin.hits('/a')).toBe(answer === 'shared' ? 2 : 6)
    expect(counted(cache)).toMatchObject({ lookups: 6 })
  })

  it('counts once a caller that found nothing and joined an exchange revalidating a stale entry, sent on alone', async () => {
    // One entry in memory: the stale one is evicted once the revalidation is on its way.
    open({ maxEntries: 1 })
    const url = await storeStale('max-age=1')
    const held = gate()
    origin.route('/a', async (_req, res) => {
      await held.promise
      res.writeHead(200, { date: clock.date(), 'cache-control': 'private, max-age=60' }).end(BODY)
    })
    origin.route('/other', (_req, res) => { res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=60' }).end(BODY) })
    const before = counted(cache)
    const first = client.send(url)
    await waitFor(() => origin.hits('/a') === 2, 'the revalidation to reach the origin')
    await client.send(`${origin.url}/other`)
    const joined = client.send(url)
    await settle()
    held.release()
    await Promise.all([first, joined])
    // The stale one's lookup, /other's, and the one that found nothing: three.
    expect(counted(cache).lookups - before.lookups).toBe(3)
  })
})
