/**
 * The two tiers, on a Keyv store that counts its reads (a Map underneath, so the test needs no
 * server): a hit in the store fills the memory tier, which then answers alone; the memory tier
 * never keeps an entry longer than the store was told to; writes go to both; `maxSize: 0` leaves
 * the store alone, and serves what the store holds at each read (a value replaced there is read
 * anew, one copied under another key is refused); invalidation by URL, prefix and tag, and
 * `clear()`, reach both tiers and only this cache's namespace. The serialized form round-trips
 * headers and the policy exactly and keeps bodies compact; 10 000 requests leave no listener,
 * timer or heap behind; and a caller that aborts while its hit is read from the store is rejected.
 */
import diagnostics from 'node:diagnostics_channel'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterEach, describe, expect, it } from 'vitest'
import { Keyv } from 'keyv'
import { request } from 'undici'
import { cacheInterceptor, createCache, createCachedFetch, type Cache } from '../src/index.js'
import { PolicyFactory } from '../src/policy.js'
import { deserializeVariants, serializeVariants } from '../src/store/format.js'
import { bodySlice, toStoredBody, variantList, type CacheEntry } from '../src/entry.js'
import type { Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock } from './helpers/time.js'
import { gate, waitFor, within, type Gate } from './helpers/wait.js'

const opened = teardown()
afterEach(() => opened.close())

/** A Keyv store adapter over a Map that counts the reads it answers. */
class CountingMap extends Map<string, unknown> {
  reads = 0
  override get (key: string): unknown {
    this.reads++
    return super.get(key)
  }
}

/** Paths answer with their own path as body, fresh for a minute, tagged by `?tag=`. */
async function taggedOrigin (): Promise<Origin> {
  const origin = await opened.origin()
  for (const path of ['/users/1', '/users/2', '/posts/1', '/posts/2']) {
    origin.route(path, (req, res) => {
      const tags = path.startsWith('/users') ? 'users, people' : 'posts'
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', 'cache-tag': tags, 'surrogate-key': path.replace(/\//g, '-') })
      res.end(path)
    })
  }
  return origin
}

async function status (cache: Cache, url: string): Promise<'hit' | 'origin'> {
  const response = await createCachedFetch({ cache, dispatcher: opened.agent() })(url)
  await response.arrayBuffer()
  return response.headers.get('cache-status')?.startsWith('cachedfetch; hit') === true ? 'hit' : 'origin'
}

async function stored (cache: Cache, count: number): Promise<void> {
  await waitFor(() => cache.stats().stored >= count, `${count} entries stored`)
}

describe('memory in front of a Keyv store', () => {
  it('fills the memory tier from a store hit, and then answers without reading the store', async () => {
    const origin = await taggedOrigin()
    const map = new CountingMap()
    const writer = createCache({ store: map })
    expect(await status(writer, `${origin.url}/users/1`)).toBe('origin')
    await stored(writer, 1)
    expect(map.size).toBe(1)

    // Another cache on the same store: its memory is empty, the store has the entry.
    const reader = createCache({ store: map })
    const before = map.reads
    expect(await status(reader, `${origin.url}/users/1`)).toBe('hit')
    expect(map.reads).toBe(before + 1)
    for (let i = 0; i < 5; i++) expect(await status(reader, `${origin.url}/users/1`)).toBe('hit')
    expect(map.reads).toBe(before + 1)
    expect(reader.stats().bytesInMemory).toBeGreaterThan(0)
    expect(origin.hits('/users/1')).toBe(1)
  })

  it('never keeps an entry in memory longer than the store was told to keep it', async () => {
    const origin = await taggedOrigin()
    const clock = manualClock(Date.now())
    const map = new CountingMap()
    const writer = createCache({ store: map, now: clock.now })
    for (const path of ['/users/1', '/users/2']) expect(await status(writer, origin.url + path)).toBe('origin')
    await stored(writer, 2)
    const reader = createCache({ store: map, now: clock.now })
    for (const path of ['/users/1', '/users/2']) expect(await status(reader, origin.url + path)).toBe('hit')
    const cacheStatus = async (path: string): Promise<string | null> => {
      const response = await createCachedFetch({ cache: reader, dispatcher: opened.agent() })(origin.url + path)
      await response.arrayBuffer()
      return response.headers.get('cache-status')
    }
    // From here on the store holds nothing: what is found is memory's.
    map.clear()

    // Fresh for 60 s and kept 24 h more for revalidation: until then memory holds it (stale)…
    clock.advance(60 + 24 * 3600 - 1)
    expect(await cacheStatus('/users/1')).toMatch(/^cachedfetch; fwd=stale; /)
    // …and past that memory has let it go, with the store.
    clock.advance(2)
    expect(await cacheStatus('/users/2')).toMatch(/^cachedfetch; fwd=uri-miss; /)
  })

  it('with maxSize 0 keeps nothing in memory and reads the store for every request', async () => {
    const origin = await taggedOrigin()
    const map = new CountingMap()
    const cache = createCache({ store: map, maxSize: 0 })
    expect(await status(cache, `${origin.url}/posts/1`)).toBe('origin')
    await stored(cache, 1)
    const reads = map.reads
    for (let i = 0; i < 3; i++) expect(await status(cache, `${origin.url}/posts/1`)).toBe('hit')
    expect(map.reads).toBe(reads + 3)
    expect(cache.stats().bytesInMemory).toBe(0)
    expect(origin.hits('/posts/1')).toBe(1)
  })

  it('with maxSize 0 serves what the store holds now: an entry another cache replaced there is read anew', async () => {
    let version = 0
    const origin = await opened.origin({
      '/doc': (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', etag: `"v${++version}"` })
        res.end(`version ${version}`)
      }
    })
    const url = `${origin.url}/doc`
    const map = new CountingMap()
    const reader = createCache({ store: map, maxSize: 0 })
    const readerFetch = createCachedFetch({ cache: reader, dispatcher: opened.agent() })
    const read = async (): Promise<string> => {
      const response = await readerFetch(url)
      return `${response.headers.get('cache-status')!.startsWith('cachedfetch; hit') ? 'hit' : 'origin'} ${await response.text()}`
    }
    expect(await read()).toBe('origin version 1')
    await stored(reader, 1)
    // The same bytes read again, and again: decoded once (src/store/decoded.ts).
    expect(await read()).toBe('hit version 1')
    expect(await read()).toBe('hit version 1')

    // Another process reloads it, and its answer replaces what the store held.
    const writer = createCache({ store: map, maxSize: 0 })
    const reloaded = await createCachedFetch({ cache: writer, dispatcher: opened.agent() })(url, { cache: 'reload' })
    expect(await reloaded.text()).toBe('version 2')
    await stored(writer, 1)

    expect(await read()).toBe('hit version 2')
    const viaInterceptor = await request(url, { dispatcher: opened.agent().compose(cacheInterceptor({ cache: reader })) })
    expect(viaInterceptor.headers.etag).toBe('"v2"')
    expect(await viaInterceptor.body.text()).toBe('version 2')
    expect(origin.hits('/doc')).toBe(2)
  })

  it('with maxSize 0 does not serve a value copied under another key, though it read that value before under its own', async () => {
    const origin = await taggedOrigin()
    const map = new CountingMap()
    const cache = createCache({ store: map, maxSize: 0 })
    expect(await status(cache, `${origin.url}/users/1`)).toBe('origin')
    await stored(cache, 1)
    expect(await status(cache, `${origin.url}/users/1`)).toBe('hit')

    // The very value, byte for byte, under the key of another URL: it names the key it was stored under.
    const [key, value] = [...map.entries()][0]!
    map.set(key.replace('/users/1', '/users/2'), value)
    const errors: unknown[] = []
    const onError = (event: unknown): void => { errors.push(event) }
    diagnostics.subscribe('cachedfetch:store-error', onError)
    try {
      const response = await createCachedFetch({ cache, dispatcher: opened.agent() })(`${origin.url}/users/2`)
      expect(response.headers.get('cache-status')).toMatch(/^cachedfetch; fwd=uri-miss/)
      expect(await response.text()).toBe('/users/2')
    } finally {
      diagnostics.unsubscribe('cachedfetch:store-error', onError)
    }
    expect(errors).toEqual([expect.objectContaining({ reason: 'get', key: `GET ${origin.url}/users/2` })])
    expect(await status(cache, `${origin.url}/users/1`)).toBe('hit')
  })
})

describe('variants of one URL written at once, with a second tier', () => {
  /** A Keyv store adapter whose every call takes 20 ms, as a remote one might. */
  class SlowMap {
    readonly #map = new Map<string, unknown>()
    async get (key: string): Promise<unknown> { await pause(20); return this.#map.get(key) }
    async set (key: string, value: unknown): Promise<boolean> { await pause(20); this.#map.set(key, value); return true }
    async delete (key: string): Promise<boolean> { await pause(20); return this.#map.delete(key) }
    async clear (): Promise<void> { await pause(20); this.#map.clear() }
  }
  const pause = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }

  it('keeps both: the two writes of one key run one after another, each beside what the other stored', async () => {
    const origin = await opened.origin({
      '/v': (req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', vary: 'accept-language' })
        res.end(String(req.headers['accept-language']))
      }
    })
    const cache = createCache({ store: new SlowMap() as unknown as Map<string, unknown> })
    const cachedFetch = createCachedFetch({ cache, dispatcher: opened.agent() })
    const get = async (language: string): Promise<string> => {
      const response = await cachedFetch(`${origin.url}/v`, { headers: { 'accept-language': language } })
      await response.text()
      return `${language} ${response.headers.get('cache-status')!.includes('; hit') ? 'hit' : 'miss'}`
    }
    await get('en')
    await cache.flush()
    await Promise.all([get('fr'), get('de')])
    await cache.flush()
    expect([await get('en'), await get('fr'), await get('de')]).toEqual(['en hit', 'fr hit', 'de hit'])
    expect(origin.hits('/v')).toBe(3)
  })

  /** A Keyv store adapter that answers its calls one after another, 20 ms each, as SQLite and Redis answer theirs in order. */
  class QueuedMap {
    readonly #map = new Map<string, unknown>()
    #last: Promise<unknown> = Promise.resolve()
    #call<T> (work: () => T): Promise<T> {
      const next = this.#last.then(async () => { await pause(20); return work() })
      this.#last = next
      return next
    }

    async get (key: string): Promise<unknown> { return await this.#call(() => this.#map.get(key)) }
    async set (key: string, value: unknown): Promise<boolean> { return await this.#call(() => { this.#map.set(key, value); return true }) }
    async delete (key: string): Promise<boolean> { return await this.#call(() => this.#map.delete(key)) }
    async clear (): Promise<void> { await this.#call(() => { this.#map.clear() }) }
  }

  it('does not serve an answer whose write is under way once an invalidation that ended while its body came picks it', async () => {
    let version = 1
    let finish: (() => void) | undefined
    const origin = await opened.origin({
      '/item': (_req, res) => {
        const body = `version ${version}`
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', 'content-length': String(body.length) })
        if (finish !== undefined) {
          res.end(body)
          return
        }
        res.write(body.slice(0, 3))
        finish = () => res.end(body.slice(3))
      }
    })
    const cache = createCache({ store: new QueuedMap() as unknown as Map<string, unknown>, namespace: 'queued', storeTimeouts: { read: 5000, write: 5000 } })
    opened.add(cache)
    const client = createCachedFetch({ cache, dispatcher: opened.agent() })
    const url = `${origin.url}/item`
    const first = await client(url)
    version++
    await cache.invalidate(url)
    finish!()
    expect(await first.text()).toBe('version 1')
    // Its write is under way, and will not be made: it is not served meanwhile either.
    const after = await client(url)
    expect([await after.text(), after.headers.get('cache-status')]).toEqual(['version 2', 'cachedfetch; fwd=uri-miss; fwd-status=200; stored'])
  })

  it('serves a stored answer at once, while its write still reads the store, and a newer answer written meanwhile stays the one stored', async () => {
    let version = 0
    const origin = await opened.origin({
      '/doc': (_req, res) => {
        version++
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', etag: `"v${version}"` })
        res.end(`version ${version}`)
      }
    })
    const store = new QueuedMap() as unknown as Map<string, unknown>
    const cache = createCache({ store, namespace: 'queued', storeTimeouts: { read: 5000, write: 5000 } })
    opened.add(cache)
    const client = createCachedFetch({ cache, dispatcher: opened.agent() })
    const get = async (init?: Parameters<typeof client>[1]): Promise<string> => {
      const response = await client(`${origin.url}/doc`, init)
      return `${await response.text()}, ${response.headers.get('cache-status')!.includes('; hit') ? 'hit' : 'origin'}`
    }

    expect(await get()).toBe('version 1, origin')
    // Its write is still reading the store, to store it beside what is there.
    expect(await get()).toBe('version 1, hit')
    expect(await get({ cache: 'reload' })).toBe('version 2, origin')
    await cache.flush()
    expect(await get()).toBe('version 2, hit')
    const other = createCache({ store, namespace: 'queued', storeTimeouts: { read: 5000, write: 5000 } })
    opened.add(other)
    const fromStore = await createCachedFetch({ cache: other, dispatcher: opened.agent() })(`${origin.url}/doc`)
    expect([await fromStore.text(), fromStore.headers.get('cache-status')]).toEqual(['version 2', expect.stringMatching(/^cachedfetch; hit/)])
    expect(origin.hits('/doc')).toBe(2)
  })
})

describe('a store slower than its timeouts', () => {
  it('counts a read that takes too long as a miss and gives a write up, reports both, and the origin answers', async () => {
    const origin = await taggedOrigin()
    // A store that never answers: every call hangs.
    const hanging = { get: () => new Promise(() => {}), set: () => new Promise(() => {}), delete: () => new Promise(() => {}), clear: () => new Promise(() => {}) }
    const cache = createCache({ store: hanging as unknown as Map<string, unknown>, storeTimeouts: { read: 30, write: 60 }, maxSize: 0 })
    const errors: Array<{ reason?: string, error?: unknown }> = []
    const onError = (event: unknown): void => { errors.push(event as { reason?: string, error?: unknown }) }
    diagnostics.subscribe('cachedfetch:store-error', onError)
    try {
      const response = await within(createCachedFetch({ cache, dispatcher: opened.agent() })(`${origin.url}/users/1`), 'a request on a hanging store', 2000)
      expect(await response.text()).toBe('/users/1')
      expect(response.headers.get('cache-status')).toMatch(/^cachedfetch; fwd=uri-miss; fwd-status=200/)
      await waitFor(() => errors.some((e) => e.reason === 'set'), 'the write to be given up')
    } finally {
      diagnostics.unsubscribe('cachedfetch:store-error', onError)
    }
    expect(errors.map((e) => e.reason)).toEqual(expect.arrayContaining(['get', 'set']))
    expect(errors.every((e) => (e.error as Error).name === 'StoreTimeoutError')).toBe(true)
    expect(origin.hits('/users/1')).toBe(1)
    expect(cache.stats().stored).toBe(0)
  })
})

describe('a store whose writes fail', () => {
  /** A Map whose set() rejects, as a store does when its disk is full or its server gone. */
  class FailingWrites extends Map<string, unknown> {
    // @ts-expect-error: a Map's set() returns the map; a store adapter's may reject.
    override set (): Promise<never> { return Promise.reject(new Error('disk full')) }
  }

  it.each([
    ['as a store adapter (our Keyv throws)', () => new FailingWrites(), 'set'],
    ['as a Keyv instance of the caller\'s (it reports by event, and answers false)', () => new Keyv({ store: new FailingWrites() }), 'keyv']
  ] as const)('%s: counts nothing as stored, and says why', async (_name, store, reason) => {
    const origin = await taggedOrigin()
    const cache = createCache({ store: store() as unknown as Map<string, unknown> })
    const errors: Array<{ reason?: string }> = []
    const onError = (event: unknown): void => { errors.push(event as { reason?: string }) }
    diagnostics.subscribe('cachedfetch:store-error', onError)
    try {
      expect(await status(cache, `${origin.url}/posts/1`)).toBe('origin')
      await waitFor(() => errors.length > 0, 'the failed write to be reported')
    } finally {
      diagnostics.unsubscribe('cachedfetch:store-error', onError)
    }
    expect(errors.map((e) => e.reason)).toContain(reason)
    expect(cache.stats().stored).toBe(0)
  })
})

describe('invalidation reaches both tiers', () => {
  const urls = ['/users/1', '/users/2', '/posts/1', '/posts/2']

  async function warm (): Promise<{ origin: Origin, cache: Cache, other: Cache, map: CountingMap }> {
    const origin = await taggedOrigin()
    const map = new CountingMap()
    const cache = createCache({ store: map })
    for (const path of urls) expect(await status(cache, origin.url + path)).toBe('origin')
    await stored(cache, urls.length)
    return { origin, cache, other: createCache({ store: map }), map }
  }

  /** What each URL is for `cache`, asked with only-if-cached so that asking stores nothing. */
  async function survey (cache: Cache, origin: Origin): Promise<Record<string, 'hit' | 'origin'>> {
    const cachedFetch = createCachedFetch({ cache, dispatcher: opened.agent() })
    const result: Record<string, 'hit' | 'origin'> = {}
    for (const path of urls) {
      result[path] = await cachedFetch(origin.url + path, { cache: 'only-if-cached' })
        .then(async (response) => { await response.arrayBuffer(); return 'hit' as const }, () => 'origin' as const)
    }
    return result
  }

  it.each([
    ['invalidate(url)', (cache: Cache, origin: Origin) => cache.invalidate(`${origin.url}/users/1`), ['/users/1']],
    ['invalidatePrefix()', (cache: Cache, origin: Origin) => cache.invalidatePrefix(`${origin.url}/users/`), ['/users/1', '/users/2']],
    ['invalidateTag() from Cache-Tag', (cache: Cache) => cache.invalidateTag('posts'), ['/posts/1', '/posts/2']],
    ['invalidateTag() from Surrogate-Key', (cache: Cache) => cache.invalidateTag('-users-2'), ['/users/2']],
    ['clear()', (cache: Cache) => cache.clear(), urls]
  ] as const)('%s drops exactly those entries from memory and store', async (_name, invalidate, dropped) => {
    const { origin, cache, other, map } = await warm()
    await invalidate(cache, origin)
    expect(map.size).toBe(urls.length - dropped.length)
    // A second cache on the store (memory empty) and the first (memory was full) see the same.
    const gone: readonly string[] = dropped
    const expected = Object.fromEntries(urls.map((path) => [path, gone.includes(path) ? 'origin' : 'hit']))
    expect(await survey(other, origin)).toEqual(expected)
    expect(await survey(cache, origin)).toEqual(expected)
  })

  it('refuses to wrap one store adapter for two namespaces', () => {
    const map = new Map()
    createCache({ store: map, namespace: 'one' })
    expect(() => createCache({ store: map, namespace: 'two' })).toThrow(/options\.store already serves namespace "one"/)
  })

  it('leaves a store adapter unclaimed by a construction refused for another option, for the corrected one', async () => {
    const map = new Map()
    expect(() => createCache({ store: map, namespace: 'first', hosts: { 'Bad.example': {} } })).toThrow(/options\.hosts/)
    expect(() => createCache({ store: map, namespace: 'first', pubsub: true })).toThrow(/options\.pubsub/)
    const cache = createCache({ store: map, namespace: 'second' })
    await cache.close()
  })
})

describe('the stored form', () => {
  const policies = new PolicyFactory(Date.now)

  const request = { method: 'GET', url: 'https://example.com/data?q=1', headers: { accept: 'application/json' } }

  function entryWith (body: Buffer): CacheEntry {
    const headers = { 'content-type': 'application/json', 'cache-control': 'max-age=60, stale-while-revalidate=30', etag: '"v1"', 'set-cookie': ['a=1', 'b=2'], 'x-marker': ':base64:aGk=' }
    const { policy } = policies.create(request, 200, headers, { shared: true, defaultTtl: undefined, forceTtl: 90 })
    return { key: 'GET https://example.com/data?q=1', status: 200, statusText: 'Quite OK', headers, body: toStoredBody(body), policy, vary: { accept: 'application/json', 'accept-language': undefined }, tags: ['a', 'b c'] }
  }

  it('round-trips headers, Vary values, tags and the policy exactly', () => {
    const entry = entryWith(Buffer.from('{"id":1}'))
    const stored = deserializeVariants(serializeVariants(entry.key, { variants: [entry], expires: 123 }), entry.key, policies)!
    const back = variantList(stored.variants)[0]!
    expect(back.headers).toEqual(entry.headers)
    expect(back.policy.toObject()).toEqual(entry.policy.toObject())
    expect(back.policy.directives).toEqual(entry.policy.directives)
    // forceTtl's freshness travels with the entry: another process serves it as this one would.
    expect(back.policy.lifetimeOverride).toBe(90)
    expect(back.policy.lifetime()).toBe(90)
    expect(back.vary).toEqual(entry.vary)
    expect(back.tags).toEqual(entry.tags)
    expect([back.status, back.statusText, bodySlice(back.body).toString()]).toEqual([200, 'Quite OK', '{"id":1}'])
    expect(stored.expires).toBe(123)
  })

  it.each([
    ['JSON text', Buffer.from(JSON.stringify(Array.from({ length: 200 }, (_, i) => ({ id: i, name: `item ${i}` })))), 'none'],
    ['every byte value', Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 256)), 'base64'],
    ['text made of quotes and control characters', Buffer.from('"\u0001'.repeat(2048)), 'base64']
  ])('keeps %s within its bound of inflation, also under Keyv\'s JSON serializer', (_name, body, bound) => {
    const entry = entryWith(body)
    const frame = serializeVariants(entry.key, { variants: [entry], expires: undefined })
    const headerBytes = Buffer.byteLength(frame.slice(0, frame.indexOf('\n') + 1))
    const base64 = Math.ceil(body.byteLength / 3) * 4
    expect(Buffer.byteLength(frame) - headerBytes).toBeLessThanOrEqual(bound === 'none' ? body.byteLength : base64)
    const json = JSON.stringify({ value: frame })
    expect(Buffer.byteLength(json)).toBeLessThanOrEqual(base64 + headerBytes * 2 + 64)
    const back = deserializeVariants((JSON.parse(json) as { value: string }).value, entry.key, policies)!
    expect(bodySlice(variantList(back.variants)[0]!.body).equals(body)).toBe(true)
  })
})

describe('no per-request leftovers', () => {
  it('makes 10 000 requests through a Keyv store with flat listener counts, timers and heap', async () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const origin = await taggedOrigin()
    const keyv = new Keyv({ store: new Map() })
    // Store-only, so that every request reads (and misses write) the store.
    const cache = createCache({ store: keyv, maxSize: 0 })
    const cachedFetch = createCachedFetch({ cache, dispatcher: opened.agent() })
    const urls = ['/users/1', '/users/2', '/posts/1', '/posts/2']
    const run = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i += 50) {
        await Promise.all(Array.from({ length: 50 }, async (_, j) => {
          const response = await cachedFetch(`${origin.url}${urls[(i + j) % 4]}`)
          await response.arrayBuffer()
        }))
      }
    }
    const measure = (): { listeners: number, timers: number, heap: number } => {
      gc()
      return {
        listeners: keyv.listeners('error').length,
        timers: process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length,
        heap: process.memoryUsage().heapUsed
      }
    }
    await run(2000)
    const before = measure()
    await run(10_000)
    const after = measure()
    expect(after.listeners).toBe(before.listeners)
    expect(after.timers).toBeLessThanOrEqual(before.timers)
    expect(after.heap - before.heap).toBeLessThan(8 * 1024 * 1024)
    expect(cache.stats().hits).toBeGreaterThan(11_000)
  })
})

describe('a caller that aborts while its hit is read from the store', () => {
  it('is rejected by cachedFetch() with the signal\'s reason, as fetch rejects a request aborted before its answer, and nothing reaches the origin', async () => {
    const origin = await taggedOrigin()
    /** Reads wait for `held` while it is set. */
    class HeldMap extends Map<string, unknown> {
      held: Gate | undefined
      override get (key: string): unknown {
        const value = super.get(key)
        return this.held === undefined ? value : this.held.promise.then(() => value)
      }
    }
    const map = new HeldMap()
    const cache = createCache({ store: map, maxSize: 0 })
    const cachedFetch = createCachedFetch({ cache, dispatcher: opened.agent() })
    await (await cachedFetch(`${origin.url}/users/1`)).arrayBuffer()
    await stored(cache, 1)
    expect(await (await cachedFetch(`${origin.url}/users/1`)).text()).toBe('/users/1')

    map.held = gate()
    const controller = new AbortController()
    const answer = cachedFetch(`${origin.url}/users/1`, { signal: controller.signal })
    controller.abort()
    map.held.release()
    await expect(within(answer, 'the aborted hit')).rejects.toMatchObject({ name: 'AbortError' })
    expect(origin.hits('/users/1')).toBe(1)
  })
})
