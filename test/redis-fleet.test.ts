/**
 * A fleet on one Redis: caches with clients of their own stand for processes. An invalidation in
 * one drops the entry from the others' memory tier (pub/sub); tags and origins are indexed in
 * sorted sets, so invalidating by tag or prefix reads an index instead of scanning; namespaces
 * keep caches apart and `clear()` clears only its own; two real processes sending 200 identical
 * cold requests each make one origin request between them with the coordinator on; and with Redis
 * stopped in the middle of 2000 requests not one fails, and caching resumes when it is back.
 */
import { spawn } from 'node:child_process'
import diagnostics from 'node:diagnostics_channel'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { cacheInterceptor, createCache, createCachedFetch, DEFAULTS, type Cache } from '../src/index.js'
import { lateNotModified, type Origin } from './helpers/origin.js'
import { adminClient, deleteNamespace, hasRedisServer, privateRedis, reachRedis, redisAdapter, REDIS_URL, testNamespace } from './helpers/redis.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, wholeSecondNow } from './helpers/time.js'
import { gate, waitFor } from './helpers/wait.js'

const admin = adminClient()
const unreachable = await reachRedis(admin, 'test/redis-fleet.test.ts')
const NAMESPACE = testNamespace()
const opened = teardown()

afterEach(() => opened.close())
afterAll(async () => {
  await deleteNamespace(admin, NAMESPACE)
  if (admin.isReady) await admin.close()
})

/** A cache on a Redis client of its own: another process's view. Closed after the test. */
function member (options: Parameters<typeof createCache>[0] = {}, url = REDIS_URL): Cache {
  const { adapter, close } = redisAdapter(url)
  const cache = createCache({ store: adapter, namespace: NAMESPACE, ...options })
  opened.add({ close: async () => { await cache.close(); await close() } })
  return cache
}

async function taggedOrigin (): Promise<Origin> {
  const origin = await opened.origin()
  for (const path of ['/users/1', '/users/2', '/posts/1']) {
    origin.route(path, (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', 'cache-tag': path.startsWith('/users') ? 'users' : 'posts' })
      res.end(path)
    })
  }
  return origin
}

/** `hit` when `cache` has the URL (memory or Redis); asking with only-if-cached stores nothing. */
async function held (cache: Cache, url: string): Promise<'hit' | 'miss'> {
  return await createCachedFetch({ cache, dispatcher: opened.agent() })(url, { cache: 'only-if-cached' })
    .then(async (response) => { await response.arrayBuffer(); return 'hit' as const }, () => 'miss' as const)
}

async function fetchAll (cache: Cache, origin: Origin, paths: readonly string[]): Promise<void> {
  const cachedFetch = createCachedFetch({ cache, dispatcher: opened.agent() })
  const before = cache.stats().stored
  for (const path of paths) await (await cachedFetch(origin.url + path, { cache: 'no-cache' })).arrayBuffer()
  await waitFor(() => cache.stats().stored >= before + paths.length, `${paths.length} entries stored`)
}

describe.skipIf(unreachable !== undefined)('caches on one Redis', () => {
  it('lets a late 304 in one process put back no response over the newer one another stored meanwhile (RFC 9111 §4.3.4)', async () => {
    const clock = manualClock(wholeSecondNow())
    const held = gate()
    opened.add({ close: () => Promise.resolve(held.release()) })
    const origin = await opened.origin({ '/doc': lateNotModified(clock.date, held.promise) })
    const a = createCachedFetch({ cache: member({ now: clock.now }), dispatcher: opened.agent() })
    const b = createCachedFetch({ cache: member({ now: clock.now }), dispatcher: opened.agent() })
    await (await b(`${origin.url}/doc`)).text()
    await b.cache.flush()
    clock.advance(200)
    const late = b(`${origin.url}/doc`)
    await waitFor(() => origin.hits('/doc') === 2, 'b\'s revalidation to reach the origin')
    expect(await (await a(`${origin.url}/doc`, { cache: 'reload' })).text()).toBe('v2')
    await a.cache.flush()
    held.release()
    expect(await (await late).text()).toBe('v1')
    await b.cache.flush()
    const third = createCachedFetch({ cache: member({ now: clock.now }), dispatcher: opened.agent() })
    expect(await (await third(`${origin.url}/doc`)).text()).toBe('v2')
  })

  it('drops an entry from the other processes\' memory when one invalidates it, unless pubsub is off', async () => {
    const origin = await taggedOrigin()
    const a = member()
    const b = member()
    const deaf = member({ pubsub: false })
    await fetchAll(a, origin, ['/users/1', '/posts/1'])
    // b and deaf take the entries from Redis into memory.
    for (const cache of [b, deaf]) expect(await held(cache, `${origin.url}/users/1`)).toBe('hit')

    await a.invalidateTag('users')
    await waitFor(() => b.stats().bytesInMemory === 0, 'the message to reach b')
    expect(await held(b, `${origin.url}/users/1`)).toBe('miss')
    // Without the message, memory keeps serving what Redis no longer has.
    expect(await held(deaf, `${origin.url}/users/1`)).toBe('hit')
    expect(await held(b, `${origin.url}/posts/1`)).toBe('hit')
  })

  it('publishes an invalidation made by a process without a memory tier (a purge job), which the others drop from theirs', async () => {
    const origin = await taggedOrigin()
    const a = member()
    await fetchAll(a, origin, ['/users/1'])
    const b = member()
    expect(await held(b, `${origin.url}/users/1`)).toBe('hit')
    expect(b.stats().bytesInMemory).toBeGreaterThan(0)

    const purger = member({ maxSize: 0 })
    await purger.invalidateTag('users')
    await waitFor(() => a.stats().bytesInMemory === 0 && b.stats().bytesInMemory === 0, 'the message to reach a and b')
    expect(await held(b, `${origin.url}/users/1`)).toBe('miss')
  })

  it('leaves an entry another process stores while clear() runs in reach of a later tag invalidation (found by a hunt)', async () => {
    const origin = await taggedOrigin()
    const { adapter, close } = redisAdapter(REDIS_URL)
    const a = createCache({ store: adapter, namespace: NAMESPACE })
    opened.add({ close: async () => { await a.close(); await close() } })
    const b = member()
    // b stores an answer once a's clear() has deleted the entries, before clear() is over.
    const keyv = adapter as unknown as { clear: () => Promise<void> }
    const clearEntries = keyv.clear.bind(keyv)
    keyv.clear = async () => {
      await clearEntries()
      await fetchAll(b, origin, ['/users/1'])
      await b.flush()
    }
    await a.clear()
    expect(await held(member(), `${origin.url}/users/1`)).toBe('hit')
    await a.invalidateTag('users')
    expect(await held(member(), `${origin.url}/users/1`)).toBe('miss')
  })

  it('reaches Redis with the first invalidation of a process that has not used its store yet', async () => {
    const origin = await taggedOrigin()
    await fetchAll(member(), origin, ['/users/1', '/posts/1'])
    const errors: unknown[] = []
    const onError = (event: unknown): void => { errors.push(event) }
    diagnostics.subscribe('cachedfetch:store-error', onError)
    try {
      // A new process whose first act is a purge: its client is still connecting.
      const purger = member()
      await purger.invalidateTag('users')
      await purger.invalidatePrefix(`${origin.url}/posts/`)
    } finally {
      diagnostics.unsubscribe('cachedfetch:store-error', onError)
    }
    expect(errors).toEqual([])
    const reader = member()
    expect([await held(reader, `${origin.url}/users/1`), await held(reader, `${origin.url}/posts/1`)]).toEqual(['miss', 'miss'])
  })

  it('keeps tags and origins in sorted sets, read by invalidateTag and invalidatePrefix', async () => {
    const origin = await taggedOrigin()
    const cache = member()
    await fetchAll(cache, origin, ['/users/1', '/users/2', '/posts/1'])
    const tagIndex = `cachedfetch:${NAMESPACE}:tag:users`
    expect(await admin.type(tagIndex)).toBe('zset')
    expect((await admin.zRange(tagIndex, 0, -1)).sort()).toEqual([`GET ${origin.url}/users/1`, `GET ${origin.url}/users/2`])
    expect(await admin.zCard(`cachedfetch:${NAMESPACE}:origin:${origin.url}`)).toBe(3)

    await cache.invalidateTag('users')
    expect(await admin.exists(tagIndex)).toBe(0)
    const other = member()
    expect(await held(other, `${origin.url}/users/2`)).toBe('miss')
    expect(await held(other, `${origin.url}/posts/1`)).toBe('hit')

    await cache.invalidatePrefix(`${origin.url}/posts/`)
    expect(await held(member(), `${origin.url}/posts/1`)).toBe('miss')
  })

  it('keeps namespaces apart, and clear() clears only its own', async () => {
    const origin = await taggedOrigin()
    const mine = member({ namespace: `${NAMESPACE}-a` })
    const theirs = member({ namespace: `${NAMESPACE}-b` })
    await fetchAll(mine, origin, ['/users/1'])
    expect(await held(member({ namespace: `${NAMESPACE}-b` }), `${origin.url}/users/1`)).toBe('miss')
    await fetchAll(theirs, origin, ['/users/1'])

    await mine.clear()
    expect(await held(member({ namespace: `${NAMESPACE}-a` }), `${origin.url}/users/1`)).toBe('miss')
    expect(await held(member({ namespace: `${NAMESPACE}-b` }), `${origin.url}/users/1`)).toBe('hit')
    const left: string[] = []
    for await (const batch of admin.scanIterator({ MATCH: `*${NAMESPACE}-a*` })) left.push(...batch)
    expect(left).toEqual([])
  })
})

describe.skipIf(unreachable !== undefined)('variants of one URL stored by several processes (RFC 9111 §4.1)', () => {
  /** `/v`: a response per Accept, fresh for a minute; one for `held.accept` waits for `held.until`. */
  async function variedOrigin (held?: { accept: string, until: Promise<unknown> }): Promise<Origin> {
    return await opened.origin({
      '/v': async (req, res) => {
        if (held !== undefined && req.headers.accept === held.accept) await held.until
        res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'accept', 'content-type': 'text/plain' })
        res.end(`body for ${String(req.headers.accept)}`)
      }
    })
  }

  async function get (cache: Cache, url: string, accept: string): Promise<string> {
    return await (await createCachedFetch({ cache, dispatcher: opened.agent() })(url, { headers: { accept } })).text()
  }

  it('serves a variant another process stored in Redis, though memory holds another variant of the URL', async () => {
    const origin = await variedOrigin()
    const [a, b] = [member(), member()]
    expect(await get(a, `${origin.url}/v`, 'x')).toBe('body for x')
    await a.flush()
    expect(await get(b, `${origin.url}/v`, 'y')).toBe('body for y')
    await b.flush()
    // a's memory has x alone; Redis has both.
    expect(await get(a, `${origin.url}/v`, 'y')).toBe('body for y')
    expect(origin.hits('/v')).toBe(2)
  })

  it('keeps both of two variants one process stores at once', async () => {
    const origin = await variedOrigin()
    const cache = member()
    await get(cache, `${origin.url}/v`, 'x')
    await cache.flush()
    await Promise.all([get(cache, `${origin.url}/v`, 'y'), get(cache, `${origin.url}/v`, 'z')])
    await cache.flush()
    const fresh = member()
    for (const accept of ['x', 'y', 'z']) expect(await get(fresh, `${origin.url}/v`, accept)).toBe(`body for ${accept}`)
    expect(origin.hits('/v')).toBe(3)
  })

  it('lets a waiter whose memory holds another variant take the lease holder\'s entry: one origin request', async () => {
    let release!: (value: unknown) => void
    const origin = await variedOrigin({ accept: 'y', until: new Promise((resolve) => { release = resolve }) })
    const a = member({ coordinate: { lease: 5000, wait: 5000 } })
    const b = member({ coordinate: { lease: 5000, wait: 5000 } })
    expect(await get(a, `${origin.url}/v`, 'x')).toBe('body for x')
    await a.flush()
    const holder = get(b, `${origin.url}/v`, 'y')
    await waitFor(() => origin.hits('/v') === 2, 'the holder to reach the origin')
    const waiter = get(a, `${origin.url}/v`, 'y')
    await waitFor(() => a.stats().misses === 2, 'the waiter to look up')
    release(undefined)
    expect([await holder, await waiter]).toEqual(['body for y', 'body for y'])
    expect(origin.hits('/v')).toBe(2)
  })
})

describe.skipIf(unreachable !== undefined)('an invalidation racing a read from Redis', () => {
  it('leaves nothing behind in memory: the next request after invalidateTag() resolves is not a hit', async () => {
    const origin = await taggedOrigin()
    const writer = member()
    await fetchAll(writer, origin, ['/users/1'])
    const reader = member()
    const cachedFetch = createCachedFetch({ cache: reader, dispatcher: opened.agent() })
    for (let round = 0; round < 20; round++) {
      await fetchAll(writer, origin, ['/users/1'])
      expect(await held(reader, `${origin.url}/users/1`)).toBe('hit')
      // The read starts while this cache's own invalidation is on its way to Redis.
      const invalidated = reader.invalidateTag('users')
      await (await cachedFetch(`${origin.url}/users/1`, { cache: 'only-if-cached' }).catch(() => undefined))?.arrayBuffer()
      await invalidated
      expect(await held(reader, `${origin.url}/users/1`)).toBe('miss')
    }
  })
})

describe.skipIf(unreachable !== undefined)('an invalidation in another process while an answer is on its way here', () => {
  it.each([
    ['POST', 'a memory tier'], ['invalidate()', 'a memory tier'], ['POST', 'no memory tier'], ['invalidate()', 'no memory tier']
  ])('is not undone by storing that answer (%s in the other process, %s here): neither serves the old one after (RFC 9111 §4.4)', async (how, here) => {
    let version = 1
    let answer: (() => void) | undefined
    const origin = await opened.origin({
      '/item': (req, res) => {
        if (req.method === 'POST') {
          version++
          res.writeHead(204).end()
          return
        }
        // The origin reads the item now; it answers the first GET once the test says so.
        const body = `version ${version}`
        const send = (): void => { res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }).end(body) }
        if (answer === undefined) answer = send
        else send()
      }
    })
    const url = `${origin.url}/item`
    const a = member()
    const b = member(here === 'no memory tier' ? { maxSize: 0 } : {})
    const fetchA = createCachedFetch({ cache: a, dispatcher: opened.agent() })
    const fetchB = createCachedFetch({ cache: b, dispatcher: opened.agent() })

    const onItsWay = fetchB(url)
    await waitFor(() => origin.hits('/item') === 1, 'b\'s request to reach the origin')
    if (how === 'POST') {
      expect((await fetchA(url, { method: 'POST' })).status).toBe(204)
    } else {
      version++
      await a.invalidate(url)
    }
    // Time for the message to reach b over loopback (it takes well under a millisecond).
    await new Promise((resolve) => setTimeout(resolve, 100))
    answer!()
    expect(await (await onItsWay).text()).toBe('version 1')
    await b.flush()
    for (const cachedFetch of [fetchB, fetchA]) expect(await (await cachedFetch(url)).text()).toBe('version 2')
  })
})

describe.skipIf(unreachable !== undefined)('the coordinator within one Redis', () => {
  /** An origin whose answers wait for the test; counts what arrived. */
  async function heldOrigin (cacheControl: string): Promise<{ origin: Origin, answer: () => void }> {
    const waiting: Array<() => void> = []
    const origin = await opened.origin({
      '/doc': (_req, res) => {
        waiting.push(() => {
          res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': cacheControl })
          res.end('doc')
        })
      }
    })
    return { origin, answer: () => { for (const send of waiting.splice(0)) send() } }
  }

  it('lets waiters fetch at once, all together, once the holder knows its answer cannot be shared', async () => {
    const { origin, answer } = await heldOrigin('no-store')
    // DEFAULTS.coordinate, spread and changed, is an option as it is.
    const [a, b, c] = [1, 2, 3].map(() => member({ coordinate: { ...DEFAULTS.coordinate, poll: 5 } }))
    const first = createCachedFetch({ cache: a!, dispatcher: opened.agent() })(`${origin.url}/doc`)
    await waitFor(() => origin.hits('/doc') === 1, 'the holder to reach the origin')
    const others = [b!, c!].map((cache) => createCachedFetch({ cache, dispatcher: opened.agent() })(`${origin.url}/doc`))
    answer()
    await (await first).text()
    // Both waiters are at the origin together, neither waiting for the other's answer.
    await waitFor(() => origin.hits('/doc') === 3, 'both waiters to reach the origin')
    answer()
    for (const response of await Promise.all(others)) expect(await response.text()).toBe('doc')
  })

  it('opens no Redis connection again for a request that was under way when the cache closed (the README\'s order: cache, then client)', async () => {
    const { origin, answer } = await heldOrigin('max-age=60')
    const { adapter, close } = redisAdapter(REDIS_URL)
    const cache = createCache({ store: adapter, namespace: NAMESPACE, coordinate: true })
    const client = (adapter as unknown as { client: { isOpen: boolean } }).client
    const pending = createCachedFetch({ cache, dispatcher: opened.agent() })(`${origin.url}/doc`)
    await waitFor(() => origin.hits('/doc') === 1, 'the request to reach the origin')
    await cache.close()
    await close()
    expect(client.isOpen).toBe(false)
    answer()
    expect(await (await pending).text()).toBe('doc')
    // Its lease's release, after the answer, would have opened the client again, and kept the process alive.
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(client.isOpen).toBe(false)
  })

  it('flush() waits for the lease a coordinated miss ends: none is left behind for others to sit out', async () => {
    const origin = await opened.origin({ '/doc': (_req, res) => { res.writeHead(200, { 'cache-control': 'no-store' }).end('doc') } })
    const { adapter, close } = redisAdapter(REDIS_URL)
    const cache = createCache({ store: adapter, namespace: NAMESPACE, coordinate: true })
    expect(await (await createCachedFetch({ cache, dispatcher: opened.agent() })(`${origin.url}/doc`)).text()).toBe('doc')
    await cache.flush()
    // The process exits right after: what it had not sent by then never goes.
    ;(adapter as unknown as { client: { destroy: () => void } }).client.destroy()
    await cache.close()
    await close()
    // The lease says "fetch for yourselves" (a no-store answer serves nobody else), held by no one.
    expect(await admin.get(`cachedfetch:${NAMESPACE}:lease:GET ${origin.url}/doc`)).toBe('pass')
  })

  it('lets a waiter wait no longer than its wait, though its poll is longer', async () => {
    const { origin, answer } = await heldOrigin('max-age=60')
    const a = member({ coordinate: { lease: 30_000, wait: 200, poll: 30_000 } })
    const b = member({ coordinate: { lease: 30_000, wait: 200, poll: 30_000 } })
    const first = createCachedFetch({ cache: a, dispatcher: opened.agent() })(`${origin.url}/doc`)
    await waitFor(() => origin.hits('/doc') === 1, 'the holder to reach the origin')
    const second = createCachedFetch({ cache: b, dispatcher: opened.agent() })(`${origin.url}/doc`)
    // A liveness bound well short of the poll: the waiter goes once its 200 ms are up.
    await waitFor(() => origin.hits('/doc') === 2, 'the waiter to go to the origin after its wait', 5000)
    answer()
    for (const response of await Promise.all([first, second])) expect(await response.text()).toBe('doc')
  })

  it('ends the lease when the holder\'s request is aborted, so that waiters do not wait it out', async () => {
    const { origin, answer } = await heldOrigin('max-age=60')
    const a = member({ coordinate: { lease: 30_000, wait: 30_000 } })
    const b = member({ coordinate: { lease: 30_000, wait: 30_000 } })
    const controller = new AbortController()
    const first = createCachedFetch({ cache: a, dispatcher: opened.agent() })(`${origin.url}/doc`, { signal: controller.signal })
    await waitFor(() => origin.hits('/doc') === 1, 'the holder to reach the origin')
    const second = createCachedFetch({ cache: b, dispatcher: opened.agent() })(`${origin.url}/doc`)
    controller.abort()
    await expect(first).rejects.toThrow()
    await waitFor(() => origin.hits('/doc') === 2, 'the waiter to go to the origin itself', 3000)
    answer()
    expect(await (await second).text()).toBe('doc')
  })

  it('ends the leases a cache holds when it is closed, so that waiters in other processes go at once (found by a hunt)', async () => {
    const { origin, answer } = await heldOrigin('max-age=60')
    const a = member({ coordinate: { lease: 30_000, wait: 30_000 } })
    const b = member({ coordinate: { lease: 30_000, wait: 30_000 } })
    const first = createCachedFetch({ cache: a, dispatcher: opened.agent() })(`${origin.url}/doc`)
    await waitFor(() => origin.hits('/doc') === 1, 'the holder to reach the origin')
    const second = createCachedFetch({ cache: b, dispatcher: opened.agent() })(`${origin.url}/doc`)
    await waitFor(() => b.stats().misses === 1, 'the waiter to look up')
    // Its answer still to come, which nothing will store now.
    await a.close()
    await waitFor(() => origin.hits('/doc') === 2, 'the waiter to go to the origin itself', 3000)
    answer()
    for (const response of await Promise.all([first, second])) expect(await response.text()).toBe('doc')
  })

  it('ends a lease its claim was granted after close() began, so that waiters in other processes go at once (found by a review)', async () => {
    const { origin, answer } = await heldOrigin('max-age=60')
    // A's Redis a few ms away: its claim is answered 30 ms after it is sent, within storeTimeouts.read.
    const { adapter, close } = redisAdapter(REDIS_URL)
    opened.add({ close })
    const client = (adapter as unknown as { client: { eval: (script: unknown, options: { arguments?: string[] }) => Promise<unknown> } }).client
    const evaluate = client.eval.bind(client)
    let claimed = false
    client.eval = async (script, options) => {
      if (options.arguments?.[2] === 'pass') {
        claimed = true
        await new Promise((resolve) => setTimeout(resolve, 30))
      }
      return await evaluate(script, options)
    }
    const coordinate = { lease: 30_000, wait: 30_000 }
    const a = createCache({ store: adapter, namespace: NAMESPACE, coordinate })
    const first = createCachedFetch({ cache: a, dispatcher: opened.agent() })(`${origin.url}/doc`)
    await waitFor(() => claimed, 'A\'s claim to be sent')
    await a.close()
    await waitFor(() => origin.hits('/doc') === 1, 'A at the origin')
    const second = createCachedFetch({ cache: member({ coordinate }), dispatcher: opened.agent() })(`${origin.url}/doc`)
    await waitFor(() => origin.hits('/doc') === 2, 'the waiter to go to the origin itself', 3000)
    answer()
    for (const response of await Promise.all([first, second])) expect(await response.text()).toBe('doc')
  })

  it('lets a waiter aborted by its signal go at once, under undici.request too, not when the lease wait ends', async () => {
    const { origin, answer } = await heldOrigin('max-age=60')
    const a = member({ coordinate: { lease: 30_000, wait: 30_000 } })
    const b = member({ coordinate: { lease: 30_000, wait: 30_000 } })
    const holder = request(`${origin.url}/doc`, { dispatcher: opened.agent().compose(cacheInterceptor({ cache: a })) })
    await waitFor(() => origin.hits('/doc') === 1, 'the holder to reach the origin')
    const controller = new AbortController()
    const waiter = request(`${origin.url}/doc`, { dispatcher: opened.agent().compose(cacheInterceptor({ cache: b })), signal: controller.signal })
    await waitFor(() => b.stats().misses === 1, 'the waiter to look up')
    const started = performance.now()
    controller.abort()
    expect(await waiter.then(() => 'answered', (error: Error) => error.name)).toBe('AbortError')
    expect(performance.now() - started).toBeLessThan(2000)
    answer()
    expect(await (await holder).body.text()).toBe('doc')
  })

  it('counts no time before a request went out in its answer\'s age: not the wait for another process\'s lease (RFC 9111 §4.2.3)', async () => {
    const clock = manualClock()
    const waiting: Array<() => void> = []
    const origin = await opened.origin({
      '/doc': (_req, res) => {
        waiting.push(() => {
          res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', date: clock.date() })
          res.end('doc')
        })
      }
    })
    const a = member({ coordinate: { lease: 30_000, wait: 30_000 }, now: clock.now })
    const b = member({ coordinate: { lease: 30_000, wait: 30_000 }, now: clock.now })
    const controller = new AbortController()
    const first = createCachedFetch({ cache: a, dispatcher: opened.agent() })(`${origin.url}/doc`, { signal: controller.signal })
    await waitFor(() => origin.hits('/doc') === 1, 'the holder to reach the origin')
    const fetchB = createCachedFetch({ cache: b, dispatcher: opened.agent() })
    const second = fetchB(`${origin.url}/doc`)
    await waitFor(() => b.stats().misses === 1, 'the waiter to look up')
    // Ten seconds pass, by the caches' clock, before the waiter may go to the origin itself.
    clock.advance(10)
    controller.abort()
    await expect(first).rejects.toThrow()
    await waitFor(() => origin.hits('/doc') === 2, 'the waiter to go to the origin itself', 3000)
    for (const send of waiting.splice(0)) send()
    expect(await (await second).text()).toBe('doc')

    const hit = await fetchB(`${origin.url}/doc`)
    expect([hit.headers.get('age'), hit.headers.get('cache-status')]).toEqual(['0', 'cachedfetch; hit; ttl=60'])
    await hit.arrayBuffer()
  })

  it('does not hold a reload back: it goes to the origin while another process holds the lease', async () => {
    const { origin, answer } = await heldOrigin('max-age=60')
    const a = member({ coordinate: true })
    const b = member({ coordinate: true })
    const first = createCachedFetch({ cache: a, dispatcher: opened.agent() })(`${origin.url}/doc`)
    await waitFor(() => origin.hits('/doc') === 1, 'the holder to reach the origin')
    const reload = createCachedFetch({ cache: b, dispatcher: opened.agent() })(`${origin.url}/doc`, { cache: 'reload' })
    await waitFor(() => origin.hits('/doc') === 2, 'the reload to reach the origin')
    answer()
    expect(await (await first).text()).toBe('doc')
    expect(await (await reload).text()).toBe('doc')
  })
})

describe.skipIf(unreachable !== undefined)('the coordinator and a request that must reach the origin anyway', () => {
  it.each([
    ['Cache-Control: no-cache', { 'cache-control': 'no-cache' }],
    ['Cache-Control: max-age=0 (fetch\'s no-cache mode)', { 'cache-control': 'max-age=0' }],
    ['Pragma: no-cache', { pragma: 'no-cache' }],
    ['Cache-Control: min-fresh=3600', { 'cache-control': 'min-fresh=3600' }]
  ])('sends one with %s at once, not behind another process\'s lease, which it may not take', async (_name, headers) => {
    const answer = gate()
    opened.add({ close: () => Promise.resolve(answer.release()) })
    const origin = await opened.origin({
      '/doc': async (_req, res) => {
        if (origin.hits('/doc') === 1) await answer.promise
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }).end('doc')
      }
    })
    const [a, b] = [1, 2].map(() => member({ coordinate: { lease: 30_000, wait: 30_000 } }))
    const holder = request(`${origin.url}/doc`, { dispatcher: opened.agent().compose(cacheInterceptor({ cache: a! })) })
    await waitFor(() => origin.hits('/doc') === 1, 'the lease holder to reach the origin')
    const other = request(`${origin.url}/doc`, { headers, dispatcher: opened.agent().compose(cacheInterceptor({ cache: b! })) })
    await waitFor(() => origin.hits('/doc') === 2, 'the other request to reach the origin while the holder waits', 2000)
    answer.release()
    expect(await (await holder).body.text()).toBe('doc')
    expect(await (await other).body.text()).toBe('doc')
  })
})

describe.skipIf(unreachable !== undefined)('two processes, 200 identical cold requests each', () => {
  const script = fileURLToPath(new URL('./processes/fleet-client.ts', import.meta.url))

  /** Starts both processes, lets them go at once, and returns what each printed. */
  async function fleet (url: string, namespace: string, coordinate: boolean): Promise<Array<{ statuses: Record<string, number>, bodies: Record<string, number>, failures: number }>> {
    const config = JSON.stringify({ url, redisUrl: REDIS_URL, namespace, coordinate, requests: 200 })
    const children = [0, 1].map(() => spawn(process.execPath, ['--import', 'tsx', script, config], { stdio: ['pipe', 'pipe', 'inherit'] }))
    const outputs = children.map((child) => {
      const lines = createInterface({ input: child.stdout })
      const all: string[] = []
      return { ready: new Promise<void>((resolve) => lines.on('line', (line) => { all.push(line); if (line === 'ready') resolve() })), done: new Promise<string[]>((resolve) => child.on('close', () => resolve(all))) }
    })
    await Promise.all(outputs.map((output) => output.ready))
    for (const child of children) child.stdin.end('go\n')
    const printed = await Promise.all(outputs.map((output) => output.done))
    return printed.map((lines) => JSON.parse(lines.at(-1)!) as { statuses: Record<string, number>, bodies: Record<string, number>, failures: number })
  }

  async function slowOrigin (): Promise<Origin> {
    return await opened.origin({
      '/report': (_req, res) => {
        // Slow enough that both processes miss while the first request is out.
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
          res.end('the report')
        }, 400)
      }
    })
  }

  it('make one origin request in all with the coordinator on', async () => {
    const origin = await slowOrigin()
    const results = await fleet(`${origin.url}/report`, `${NAMESPACE}-on`, true)
    expect(origin.hits('/report')).toBe(1)
    for (const result of results) {
      expect(result.failures).toBe(0)
      expect(result.bodies).toEqual({ 'the report': 200 })
    }
  }, 30_000)

  it('make one origin request per process with it off', async () => {
    const origin = await slowOrigin()
    const results = await fleet(`${origin.url}/report`, `${NAMESPACE}-off`, false)
    expect(origin.hits('/report')).toBe(2)
    for (const result of results) expect(result.bodies).toEqual({ 'the report': 200 })
  }, 30_000)
})

describe.skipIf(unreachable !== undefined || !hasRedisServer())('Redis stopped and started again under load', () => {
  it('fails no request of 2000 while Redis is down, reports store errors, and serves hits again once it is back', async () => {
    const redis = opened.add(await privateRedis())
    const origin = await opened.origin()
    for (let i = 0; i < 40; i++) {
      origin.route(`/item/${i}`, (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
        res.end(`item ${i}`)
      })
    }
    // Store only, so that every request goes through Redis.
    const cache = member({ maxSize: 0 }, redis.url)
    const cachedFetch = createCachedFetch({ cache, dispatcher: opened.agent() })
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
    process.on('unhandledRejection', onUnhandled)
    let failures = 0
    let wrong = 0
    let sent = 0
    let restarted: Promise<void> | undefined
    const worker = async (): Promise<void> => {
      while (sent < 2000) {
        const i = sent++
        if (i === 500) redis.stop()
        if (i === 1200) restarted = redis.start()
        const n = i % 40
        try {
          const response = await cachedFetch(`${origin.url}/item/${n}`)
          if (await response.text() !== `item ${n}`) wrong++
        } catch {
          failures++
        }
      }
    }
    try {
      await Promise.all(Array.from({ length: 20 }, worker))
      await restarted
      expect(failures).toBe(0)
      expect(wrong).toBe(0)
      expect(cache.stats().storeErrors).toBeGreaterThan(0)
      // Back up: entries are written again and then served from Redis, without a restart.
      let status = ''
      const until = Date.now() + 10_000
      while (!status.startsWith('cachedfetch; hit') && Date.now() < until) {
        const response = await cachedFetch(`${origin.url}/item/0`)
        await response.arrayBuffer()
        status = response.headers.get('cache-status') ?? ''
        if (!status.startsWith('cachedfetch; hit')) await new Promise((resolve) => setTimeout(resolve, 50))
      }
      expect(status).toMatch(/^cachedfetch; hit/)
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  }, 60_000)
})
