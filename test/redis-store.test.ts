/**
 * Redis as the store, built as a user builds it: a node-redis client that fails a command at once
 * while it is not connected (`disableOfflineQueue`), under `@keyv/redis` that throws its errors
 * (`throwOnErrors`), in a Keyv with a namespace. Entries written by one cache are hits for another
 * cache on its own client (another process's view), byte for byte; a corrupt value under the
 * cache key is a miss and is replaced; and with Redis unreachable every request is still answered
 * by the origin, promptly, with the failures counted and no rejection left unhandled.
 *
 * Needs a Redis at REDIS_URL (default redis://127.0.0.1:6379). Without one the suite is skipped
 * with a warning, except under CI, where that is a failure. Every key it writes is under a
 * namespace of its own, deleted after the run.
 */
import diagnostics from 'node:diagnostics_channel'
import { readFileSync } from 'node:fs'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { Keyv } from 'keyv'
import KeyvRedis, { createClient } from '@keyv/redis'
import { createCache, createCachedFetch, type Cache } from '../src/index.js'
import { BINARY, getBytes, storedFields } from './helpers/binary.js'
import { adapters } from './helpers/clients.js'
import { respond, type Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { gate, settle, waitFor, within } from './helpers/wait.js'
import { adminClient, deleteNamespace, reachRedis, redisAdapter, REDIS_URL, testNamespace } from './helpers/redis.js'

const admin = adminClient()
const unreachable = await reachRedis(admin, 'test/redis-store.test.ts')
/** This run's namespace: the keys it writes, and the only keys it deletes. */
const NAMESPACE = testNamespace()

interface CorruptValue {
  readonly name: string
  readonly raw?: string
}

/** Values written straight into Redis, bypassing Keyv's serializer: one Keyv cannot parse, one it can but that is no entry. */
const corruptValues = (JSON.parse(readFileSync(new URL('../fixtures/corrupt-store-values.json', import.meta.url), 'utf8')) as CorruptValue[])
  .filter((value) => value.name.startsWith('text that is not JSON') || value.name.startsWith('a Keyv record whose value is a number'))

const opened = teardown()

afterEach(() => opened.close())

afterAll(async () => {
  await deleteNamespace(admin, NAMESPACE)
  if (admin.isReady) await admin.close()
})

/** The store as the README builds it; its client is closed after the test. */
function redisStore (url = REDIS_URL): Keyv {
  const client = createClient({ url, disableOfflineQueue: true })
  const store = new Keyv({ store: new KeyvRedis(client, { throwOnErrors: true }), namespace: NAMESPACE })
  opened.add({
    close: async () => {
      if (client.isReady) await client.close()
      else if (client.isOpen) client.destroy()
    }
  })
  return store
}

/** The store as the README builds it, a Keyv instance of namespace `namespace`; its client is closed after the test. */
function keyvOf (namespace: string | undefined): Keyv {
  const { adapter, close } = redisAdapter()
  opened.add({ close })
  return new Keyv({ store: adapter, namespace, throwOnErrors: true })
}

/** A cache on `store`, closed (its pub/sub connection with it) before the store's client. */
function cacheOn (store: Keyv): Cache {
  const cache = createCache({ store })
  opened.add({ close: () => cache.close() })
  return cache
}

/** The Redis key Keyv writes a cache key under: @keyv/redis's "namespace::" before Keyv's own "namespace:". */
function redisKey (cacheKey: string): string {
  return `${NAMESPACE}::${NAMESPACE}:${cacheKey}`
}

async function redisKeysOf (origin: Origin): Promise<string[]> {
  const keys: string[] = []
  for await (const batch of admin.scanIterator({ MATCH: redisKey(`GET ${origin.url}/*`), COUNT: 100 })) keys.push(...batch)
  return keys.sort()
}

async function storedCount (cache: Cache, count: number): Promise<void> {
  await waitFor(() => cache.stats().stored >= count, `${count} entries written to Redis`)
}

describe.skipIf(unreachable !== undefined)('a Keyv instance\'s namespace, as the key of the cache\'s own Redis keys', () => {
  // (A Keyv of no namespace, whose prefix was the start of the default namespace's entry keys, is
  // not tried here: its clear() empties all of a shared Redis that is outside any namespace.)
  it('keeps the indexes of one with a colon out of the clear() of the one it starts with (found by a hunt)', async () => {
    const origin = await opened.origin({ '/t': respond(200, { 'cache-control': 'max-age=600', 'cache-tag': 'docs' }, 't') })
    const url = `${origin.url}/t`
    const kept = cacheOn(keyvOf(`${NAMESPACE}:v2`))
    const other = cacheOn(keyvOf(NAMESPACE))
    await (await createCachedFetch({ cache: kept, dispatcher: opened.agent() })(url)).text()
    await kept.flush()
    await other.clear()
    // Its index gone, the tag invalidation would resolve and leave the entry.
    await kept.invalidateTag('docs')
    const fresh = cacheOn(keyvOf(`${NAMESPACE}:v2`))
    const after = await createCachedFetch({ cache: fresh, dispatcher: opened.agent() })(url, { cache: 'only-if-cached' }).then((response) => response.status, () => 504)
    expect(after).toBe(504)
  })
})

describe.skipIf(unreachable !== undefined).each(adapters)('Redis as store through $name', (adapter) => {
  it('stores a miss in Redis and serves it, bytes and headers unchanged, to a second cache on its own client', async () => {
    const origin = await opened.origin({
      '/binary': (_req, res) => {
        res.writeHead(200, [
          ['content-type', 'application/octet-stream'],
          ['content-length', String(BINARY.byteLength)],
          ['cache-control', 'max-age=60'],
          ['etag', '"bytes-v1"'],
          ['last-modified', 'Tue, 01 Jul 2025 10:00:00 GMT'],
          ['x-note', 'first'],
          ['x-note', 'second']
        ])
        res.end(BINARY)
      }
    })
    const url = `${origin.url}/binary`
    const first = cacheOn(redisStore())

    const miss = await getBytes(adapter.name, first, url, opened.agent())
    expect(miss.headers['cache-status']).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    expect(miss.body.equals(BINARY)).toBe(true)
    await storedCount(first, 1)
    expect(await redisKeysOf(origin)).toEqual([redisKey(`GET ${url}`)])

    const hit = await getBytes(adapter.name, first, url, opened.agent())
    expect(hit.headers['cache-status']).toMatch(/^cachedfetch; hit; ttl=\d+$/)
    expect(hit.body.equals(BINARY)).toBe(true)

    // Another process: a cache of its own, on a client of its own, reading the same namespace.
    const second = cacheOn(redisStore())
    const elsewhere = await getBytes(adapter.name, second, url, opened.agent())
    expect(elsewhere.headers['cache-status']).toMatch(/^cachedfetch; hit; ttl=\d+$/)
    expect(elsewhere.headers.age).toMatch(/^\d+$/)
    expect(elsewhere.body.equals(BINARY)).toBe(true)
    expect(storedFields(elsewhere.headers)).toEqual(storedFields(miss.headers))
    expect(storedFields(elsewhere.headers)).toMatchObject({ 'x-note': 'first, second', etag: '"bytes-v1"', 'content-length': '256' })
    expect(origin.hits('/binary')).toBe(1)
  })

  it('does not write an entry to Redis that it could not index, where tag and prefix invalidation would never find it', async () => {
    const origin = await opened.origin({ '/tagged': respond(200, { 'cache-control': 'max-age=300', 'cache-tag': 'group' }, 'v1') })
    const url = `${origin.url}/tagged`
    // A client that refuses EVAL (an ACL without scripting, a proxy without Lua), as the index's script needs.
    const refusing = redisStore()
    const client = refusing.store as { getClient: () => Promise<object> }
    const getClient = client.getClient.bind(client)
    client.getClient = async () => new Proxy(await getClient(), {
      get: (target, name) => name === 'eval'
        ? () => Promise.reject(new Error('NOPERM this user has no permissions to run the \'eval\' command'))
        : (Reflect.get(target, name) as unknown)
    })
    const writer = cacheOn(refusing)
    await getBytes(adapter.name, writer, url, opened.agent())
    await writer.flush()
    expect(writer.stats().stored).toBe(0)

    const reader = cacheOn(redisStore())
    const elsewhere = await getBytes(adapter.name, reader, url, opened.agent())
    expect(elsewhere.headers['cache-status']).toMatch(/^cachedfetch; fwd=uri-miss/)
    await reader.flush()
    // What the reader stored is indexed: a purge by tag reaches it in Redis.
    await reader.invalidateTag('group')
    expect(await redisKeysOf(origin)).toEqual([])
  })

  it('keeps an entry indexed whose write lands after another process\'s tag invalidation read the index and took the key out of it', async () => {
    let version = 0
    const origin = await opened.origin({ '/raced': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=600', 'cache-tag': 'raced' }).end(`v${++version}`) } })
    const url = `${origin.url}/raced`
    // A's write of the entry is slow (a busy link, a large value): held until released.
    const held = redisStore()
    const writing = gate()
    const released = gate()
    const writer = held.store as { set: (...args: unknown[]) => Promise<unknown> }
    const set = writer.set.bind(writer)
    writer.set = async (...args) => {
      if (String(args[0]).includes('/raced')) {
        writing.release()
        await released.promise
      }
      return await set(...args)
    }
    const a = cacheOn(held)
    const b = cacheOn(redisStore())
    const c = createCache({ store: redisStore(), maxSize: 0 })
    opened.add({ close: () => c.close() })
    for (const cache of [a, b, c]) await cache.flush()

    await getBytes(adapter.name, a, url, opened.agent())
    await writing.promise
    // B's invalidation while A's write is on its way: it reads the index, finds no entry yet, and takes the key out.
    await b.invalidateTag('raced')
    released.release()
    await a.flush()
    // Every write landed: a later invalidation of the tag reaches what A wrote.
    await b.invalidateTag('raced')
    expect(await redisKeysOf(origin)).toEqual([])
    const elsewhere = await getBytes(adapter.name, c, url, opened.agent())
    expect(elsewhere.body.toString()).toBe('v2')
  })

  it('keeps two Vary variants of one URL side by side for a second cache', async () => {
    const origin = await opened.origin({
      '/greeting': (req, res) => {
        const french = req.headers['accept-language'] === 'fr'
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', vary: 'accept-language' })
        res.end(french ? 'bonjour' : 'hello')
      }
    })
    const url = `${origin.url}/greeting`
    const first = cacheOn(redisStore())
    const writer = opened.add(adapter.connect(first))

    const english = await writer.send(url, { headers: { 'accept-language': 'en' } })
    expect(english.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    await storedCount(first, 1)
    const french = await writer.send(url, { headers: { 'accept-language': 'fr' } })
    expect(french.header('cache-status')).toBe('cachedfetch; fwd=vary-miss; fwd-status=200; stored')
    await storedCount(first, 2)

    const reader = opened.add(adapter.connect(cacheOn(redisStore())))
    const frenchAgain = await reader.send(url, { headers: { 'accept-language': 'fr' } })
    const englishAgain = await reader.send(url, { headers: { 'accept-language': 'en' } })
    expect(frenchAgain.header('cache-status')).toMatch(/^cachedfetch; hit; ttl=\d+$/)
    expect(frenchAgain.body).toBe('bonjour')
    expect(englishAgain.header('cache-status')).toMatch(/^cachedfetch; hit; ttl=\d+$/)
    expect(englishAgain.body).toBe('hello')
    expect(origin.hits('/greeting')).toBe(2)
  })

  describe('a corrupt value written straight into Redis under the cache key', () => {
    it.each(corruptValues)('$name: is a miss served by the origin, reported, and replaced', async ({ raw }) => {
      const origin = await opened.origin({
        '/doc': (_req, res) => {
          res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
          res.end('from the origin')
        }
      })
      const url = `${origin.url}/doc`
      const cacheKey = `GET ${url}`
      await admin.set(redisKey(cacheKey), raw!, { PX: 60_000 })
      const cache = cacheOn(redisStore())
      const client = opened.add(adapter.connect(cache))
      const errors: Array<{ key?: unknown, reason?: unknown }> = []
      const onError = (event: unknown): void => { errors.push(event as { key?: unknown, reason?: unknown }) }
      diagnostics.subscribe('cachedfetch:store-error', onError)
      try {
        const reply = await client.send(url)
        expect(reply.status).toBe(200)
        expect(reply.body).toBe('from the origin')
        expect(reply.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
        await storedCount(cache, 1)
      } finally {
        diagnostics.unsubscribe('cachedfetch:store-error', onError)
      }
      expect(errors).toContainEqual(expect.objectContaining({ key: cacheKey, reason: 'get' }))

      // The origin's answer now stands under the same Redis key, in the cache's own format.
      const stored = await admin.get(redisKey(cacheKey))
      expect(stored).not.toBe(raw)
      const frame = (JSON.parse(stored!) as { value: string }).value
      expect(frame.startsWith(`cachedfetch/3 {"k":${JSON.stringify(cacheKey)},`)).toBe(true)
      const hit = await client.send(url)
      expect(hit.header('cache-status')).toMatch(/^cachedfetch; hit; ttl=\d+$/)
      expect(hit.body).toBe('from the origin')
      expect(origin.hits('/doc')).toBe(1)
    })
  })

  it('answers every request, promptly, while Redis cannot be reached, and memory still serves', async () => {
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
    process.on('unhandledRejection', onUnhandled)
    try {
      const origin = await opened.origin()
      for (let i = 1; i <= 5; i++) {
        origin.route(`/item/${i}`, (_req, res) => {
          res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
          res.end(`item ${i}`)
        })
      }
      // Nothing listens on port 1: every connection attempt is refused.
      const cache = cacheOn(redisStore('redis://127.0.0.1:1'))
      const client = opened.add(adapter.connect(cache))
      for (let i = 1; i <= 5; i++) {
        const reply = await within(client.send(`${origin.url}/item/${i}`), `request ${i} with Redis down`, 1000)
        expect(reply.status).toBe(200)
        expect(reply.body).toBe(`item ${i}`)
        expect(reply.header('cache-status')).toMatch(/^cachedfetch; fwd=uri-miss; fwd-status=200/)
      }
      // The memory tier does not depend on Redis.
      const again = await within(client.send(`${origin.url}/item/1`), 'a repeat with Redis down', 1000)
      expect(again.header('cache-status')).toMatch(/^cachedfetch; hit/)
      expect(origin.requests.length).toBe(5)
      expect(cache.stats().storeErrors).toBeGreaterThan(0)
      await settle()
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })
})
