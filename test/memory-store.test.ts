/**
 * Stores: the default in-memory store stays within `maxSize` bytes and `maxEntries` entries by
 * evicting the least recently used entries, and any Keyv instance works as `store`, round-tripping
 * entries through its serialization and treating whatever does not parse as a miss; a private
 * cache's entries on a Keyv are never served by a shared cache on the same Keyv.
 */
import diagnostics from 'node:diagnostics_channel'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterEach, describe, expect, it } from 'vitest'
import { Keyv } from 'keyv'
import { request } from 'undici'
import { createCache, createCachedFetch, cacheInterceptor, type Cache } from '../src/index.js'
import { adapters } from './helpers/clients.js'
import { corruptValue, corruptValues, wellFormedFrame } from './helpers/corrupt.js'
import { respond, type Origin, type Route } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, wholeSecondNow } from './helpers/time.js'
import { gate, within } from './helpers/wait.js'


const opened = teardown()

afterEach(() => opened.close())

function fetchWith (cache: Cache): ReturnType<typeof createCachedFetch> {
  return createCachedFetch({ cache, dispatcher: opened.agent() })
}

/** Every path answers with `size` bytes, fresh for a minute. */
function sizedRoute (size: number): Route {
  return (req, res) => {
    const body = Buffer.alloc(size, req.url ?? '/')
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size), 'cache-control': 'max-age=60' })
    res.end(body)
  }
}

/** Fetches a path, reads its body, and says whether it was a hit. */
async function served (cachedFetch: ReturnType<typeof createCachedFetch>, server: Origin, path: string): Promise<'hit' | 'origin'> {
  const response = await cachedFetch(server.url + path)
  await response.arrayBuffer()
  return response.headers.get('cache-status')?.startsWith('cachedfetch; hit') === true ? 'hit' : 'origin'
}

describe('memory and a second tier, with variants memory cannot hold', () => {
  for (const { name, connect } of adapters) {
    it(`a variant trimmed from memory (maxSize) is still served by the store after the URL's next write (${name})`, async () => {
      const origin = await opened.origin({
        '/page': (req, res) => {
          res.writeHead(200, { 'cache-control': 'max-age=300', vary: 'accept-language' }).end('x'.repeat(9000) + String(req.headers['accept-language']))
        }
      })
      const store = new Map<string, unknown>()
      const cache = createCache({ store: store as never, maxSize: 50_000 })
      const client = opened.add(connect(cache))
      const languages = ['en', 'fr', 'de', 'es', 'it', 'nl', 'pt', 'pl']
      for (const language of languages) {
        await client.send(`${origin.url}/page`, { headers: { 'accept-language': language } })
        await cache.flush()
      }
      expect(origin.hits('/page')).toBe(languages.length)
      // Every language was stored; memory holds the newest five or so, the store all of them.
      const again = await client.send(`${origin.url}/page`, { headers: { 'accept-language': 'en' } })
      expect(again.body.endsWith('en')).toBe(true)
      expect(again.header('cache-status')).toMatch(/^cachedfetch; hit/)
      expect(origin.hits('/page')).toBe(languages.length)
    })

    it(`a variant too large for memory alone stays in the store after another variant of the URL is stored (${name})`, async () => {
      const origin = await opened.origin({
        '/page': (req, res) => {
          const large = req.headers['accept-language'] === 'fr'
          res.writeHead(200, { 'cache-control': 'max-age=300', vary: 'accept-language' }).end(large ? 'f'.repeat(7_900) : String(req.headers['accept-language']))
        }
      })
      const cache = createCache({ store: new Map() as never, maxSize: 8_000 })
      const client = opened.add(connect(cache))
      for (const language of ['en', 'fr', 'de']) {
        await client.send(`${origin.url}/page`, { headers: { 'accept-language': language } })
        await cache.flush()
      }
      const fr = await client.send(`${origin.url}/page`, { headers: { 'accept-language': 'fr' } })
      expect(fr.header('cache-status')).toMatch(/^cachedfetch; hit/)
      expect(origin.hits('/page')).toBe(3)
    })

    it(`reports as evicted only variants memory held, once each (${name})`, async () => {
      const origin = await opened.origin({
        '/page': (req, res) => {
          res.writeHead(200, { 'cache-control': 'max-age=300', vary: 'accept-language' }).end('x'.repeat(9000) + String(req.headers['accept-language']))
        }
      })
      const store = new Map<string, unknown>()
      // Another cache (another process) fills the store with eight variants.
      const writer = createCache({ store: store as never, maxSize: 1_000_000 })
      const writerClient = opened.add(connect(writer))
      const languages = ['en', 'fr', 'de', 'es', 'it', 'nl', 'pt', 'pl']
      for (const language of languages) {
        await writerClient.send(`${origin.url}/page`, { headers: { 'accept-language': language } })
        await writer.flush()
      }
      const evicted: unknown[] = []
      const listen = (event: unknown): void => { evicted.push(event) }
      diagnostics.subscribe('cachedfetch:evicted', listen)
      opened.add({ close: () => Promise.resolve(void diagnostics.unsubscribe('cachedfetch:evicted', listen)) })
      // This cache's memory holds nothing; it reads the store, whose eight variants do not fit.
      const reader = createCache({ store: store as never, maxSize: 50_000 })
      const readerClient = opened.add(connect(reader))
      for (let i = 0; i < 5; i++) {
        const r = await readerClient.send(`${origin.url}/page`, { headers: { 'accept-language': 'en' } })
        expect(r.header('cache-status')).toMatch(/^cachedfetch; hit/)
      }
      // Memory held none of what its fills from the store left out.
      expect(evicted).toEqual([])
      expect(reader.stats().evicted).toBe(0)
    })
  }
})

describe('memory beside a second tier, and a newest variant larger than maxSize', () => {
  it('keeps in memory the variants it held when the newest alone is too large for it', async () => {
    const origin = await opened.origin({
      '/v': (req, res) => {
        const v = String(req.headers['x-v'])
        res.writeHead(200, { 'cache-control': 'max-age=600', vary: 'x-v' }).end(`${v}:`.padEnd(v === '4' ? 6000 : 1400, '.'))
      }
    })
    const map = new Map<string, unknown>()
    const calls: string[] = []
    const store = Object.assign(new Map(), {
      get: (key: string) => { calls.push(`get ${key}`); return map.get(key) },
      set: (key: string, value: unknown) => { map.set(key, value); return true },
      delete: (key: string) => map.delete(key)
    })
    const cache = createCache({ store: store as never, maxSize: 4000 })
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache }))
    const get = async (v: string) => {
      const response = await request(`${origin.url}/v`, { dispatcher, headers: { 'x-v': v } })
      return { body: (await response.body.text()).slice(0, 2), status: response.headers['cache-status'] }
    }
    for (const v of ['1', '2', '3']) {
      await get(v)
      await cache.flush()
    }
    // Memory holds 3 and 2 (1 left out, the store keeps it); 3 is a hit from memory.
    const reads = calls.filter((call) => call.startsWith('get ')).length
    expect((await get('3')).status).toMatch(/^cachedfetch; hit/)
    expect(calls.filter((call) => call.startsWith('get ')).length).toBe(reads)
    // A variant too large for memory: stored in the store only.
    await get('4')
    await cache.flush()
    const before = calls.filter((call) => call.startsWith('get ')).length
    const three = await get('3')
    expect(three.status).toMatch(/^cachedfetch; hit/)
    // Still answered from memory, as before the write of 4.
    expect(calls.filter((call) => call.startsWith('get ')).length).toBe(before)
  })
})

describe('the default memory store', () => {
  it('evicts the least recently used entries once maxSize bytes are held', async () => {
    const paths = ['/a', '/b', '/c', '/d', '/e']
    const server = await opened.origin(Object.fromEntries(paths.map((p) => [p, sizedRoute(10_000)])))
    // Room for four 10 kB bodies with their headers and bookkeeping, not five.
    const maxSize = 46_000
    const cache = createCache({ maxSize })
    const cachedFetch = fetchWith(cache)

    for (const path of ['/a', '/b', '/c', '/d']) expect(await served(cachedFetch, server, path)).toBe('origin')
    expect(cache.stats().evicted).toBe(0)
    expect(cache.stats().bytesInMemory).toBeGreaterThan(40_000)
    expect(cache.stats().bytesInMemory).toBeLessThanOrEqual(maxSize)

    // /a is used again, so /b is now the least recently used.
    expect(await served(cachedFetch, server, '/a')).toBe('hit')
    expect(await served(cachedFetch, server, '/e')).toBe('origin')
    expect(cache.stats().evicted).toBe(1)
    expect(cache.stats().bytesInMemory).toBeLessThanOrEqual(maxSize)

    expect(await served(cachedFetch, server, '/a')).toBe('hit')
    expect(await served(cachedFetch, server, '/e')).toBe('hit')
    expect(await served(cachedFetch, server, '/d')).toBe('hit')
    // /b was evicted: it goes to the origin again (and, stored again, pushes out /c).
    expect(await served(cachedFetch, server, '/b')).toBe('origin')
    expect(await served(cachedFetch, server, '/c')).toBe('origin')
    expect(server.hits('/a')).toBe(1)
    expect(server.hits('/b')).toBe(2)
    expect(server.hits('/c')).toBe(2)
    expect(server.hits('/d')).toBe(1)
    expect(server.hits('/e')).toBe(1)
    expect(cache.stats().evicted).toBe(3)
    expect(cache.stats().bytesInMemory).toBeLessThanOrEqual(maxSize)
  })

  it.each(adapters.flatMap((adapter) => (['clear', 'invalidatePrefix'] as const).map((call) => ({ ...adapter, call }))))(
    'serves each URL its own body after an evicted listener calls $call() back: through $name (found by a hunt)', async ({ connect, call }) => {
      const server = await opened.origin({ '/k': sizedRoute(3000) })
      const cache = createCache({ maxSize: 10_000 })
      const client = opened.add(connect(cache))
      let calls = 0
      const listener = (): void => {
        if (calls++ === 0) void (call === 'clear' ? cache.clear() : cache.invalidatePrefix(`${server.url}/k`))
      }
      diagnostics.subscribe('cachedfetch:evicted', listener)
      try {
        // Three fit; the fourth evicts the first, and the listener calls back in that eviction.
        for (let n = 1; n <= 6; n++) await client.send(`${server.url}/k?n=${n}`)
        await cache.flush()
        for (let n = 1; n <= 6; n++) expect((await client.send(`${server.url}/k?n=${n}`)).body).toBe(`/k?n=${n}`.repeat(500).slice(0, 3000))
      } finally {
        diagnostics.unsubscribe('cachedfetch:evicted', listener)
      }
      expect(calls).toBeGreaterThan(0)
      expect(cache.stats().bytesInMemory).toBeLessThanOrEqual(10_000)
    })

  it('evicts the least recently used entries past maxEntries', async () => {
    const paths = ['/1', '/2', '/3', '/4']
    const server = await opened.origin(Object.fromEntries(paths.map((p) => [p, sizedRoute(10)])))
    const cache = createCache({ maxEntries: 3 })
    const cachedFetch = fetchWith(cache)

    for (const path of ['/1', '/2', '/3']) expect(await served(cachedFetch, server, path)).toBe('origin')
    expect(await served(cachedFetch, server, '/1')).toBe('hit')
    expect(await served(cachedFetch, server, '/4')).toBe('origin')
    expect(cache.stats().evicted).toBe(1)

    expect(await served(cachedFetch, server, '/1')).toBe('hit')
    expect(await served(cachedFetch, server, '/3')).toBe('hit')
    expect(await served(cachedFetch, server, '/4')).toBe('hit')
    expect(await served(cachedFetch, server, '/2')).toBe('origin')
    expect(server.hits('/2')).toBe(2)
    expect(server.hits('/1')).toBe(1)
    expect(cache.stats().evicted).toBe(2)
  })

  it('keeps within maxSize when one entry alone is larger than it, and serves that body from the origin', async () => {
    const server = await opened.origin({ '/small': sizedRoute(100), '/huge': sizedRoute(20_000) })
    const maxSize = 8_000
    const cache = createCache({ maxSize })
    const cachedFetch = fetchWith(cache)

    expect(await served(cachedFetch, server, '/small')).toBe('origin')
    const huge = await cachedFetch(`${server.url}/huge`)
    expect((await huge.arrayBuffer()).byteLength).toBe(20_000)
    // Within maxEntrySize, but no tier can keep it: not said to be stored, nor counted so.
    expect(huge.headers.get('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200')
    expect(await served(cachedFetch, server, '/huge')).toBe('origin')
    expect(cache.stats().bytesInMemory).toBeLessThanOrEqual(maxSize)
    expect(await served(cachedFetch, server, '/small')).toBe('hit')
    expect(cache.stats().stored).toBe(1)
  })

  it('stores, and says it stores, no body within maxSize whose fields and bookkeeping take the entry past it', async () => {
    const server = await opened.origin({ '/edge': sizedRoute(7_900) })
    const cache = createCache({ maxSize: 8_000 })
    const cachedFetch = fetchWith(cache)
    const first = await cachedFetch(`${server.url}/edge`)
    await first.arrayBuffer()
    expect(first.headers.get('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200')
    expect(await served(cachedFetch, server, '/edge')).toBe('origin')
    expect(cache.stats().stored).toBe(0)
  })

  it('draws explain()\'s line for memory alone where the engine draws it, for a response without Date too (the engine dates it)', async () => {
    const maxSize = 8_000
    const headers = { 'content-type': 'application/octet-stream', 'cache-control': 'max-age=60' }
    let size = 0
    const server = await opened.origin({
      '/undated': (_req, res) => {
        res.sendDate = false
        res.writeHead(200, { ...headers, 'content-length': String(size) }).end(Buffer.alloc(size, 'u'))
      }
    })
    const cache = createCache({ maxSize })
    const url = `${server.url}/undated`
    const explained = (length: number): boolean => cache.explain({ url }, 200, { ...headers, 'content-length': String(length) }).storable
    const besides = Number(/(\d+) of fields and bookkeeping/.exec(cache.explain({ url }, 200, { ...headers, 'content-length': String(maxSize) }).reasons[0]!)![1])
    const cachedFetch = fetchWith(cache)
    for (const [length, storable] of [[maxSize - besides + 1, false], [maxSize - besides, true]] as const) {
      size = length
      expect({ length, explained: explained(length) }).toEqual({ length, explained: storable })
      expect({ length, served: [await served(cachedFetch, server, '/undated'), await served(cachedFetch, server, '/undated')] })
        .toEqual({ length, served: ['origin', storable ? 'hit' : 'origin'] })
    }
  })

  it('keeps a URL\'s other variants in memory when a new one alone is past maxSize (a second tier keeps that one)', async () => {
    const server = await opened.origin({
      '/page': (req, res) => {
        const large = req.headers['accept-language'] === 'fr'
        res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'accept-language' }).end(large ? 'f'.repeat(7_900) : 'en')
      }
    })
    const evicted: unknown[] = []
    const listen = (event: unknown): void => { evicted.push(event) }
    diagnostics.subscribe('cachedfetch:evicted', listen)
    opened.add({ close: () => Promise.resolve(void diagnostics.unsubscribe('cachedfetch:evicted', listen)) })
    const cache = createCache({ store: new Map() as never, maxSize: 8_000 })
    const cachedFetch = fetchWith(cache)
    for (const language of ['en', 'fr']) await (await cachedFetch(`${server.url}/page`, { headers: { 'accept-language': language } })).arrayBuffer()
    await cache.flush()
    expect(evicted).toEqual([])
    expect(cache.stats().bytesInMemory).toBeGreaterThan(0)
  })

  describe.each(adapters)('through $name', ({ connect }) => {
    it('keeps a URL\'s newest variants when together they pass maxSize: the oldest go, reported as evicted, not the URL', async () => {
      const origin = await opened.origin({
        '/page': (req, res) => {
          res.writeHead(200, { 'cache-control': 'max-age=300', vary: 'accept-language' }).end('x'.repeat(9000) + String(req.headers['accept-language']))
        }
      })
      const cache = createCache({ maxSize: 100_000 })
      const client = opened.add(connect(cache))
      const evicted: unknown[] = []
      const listen = (event: unknown): void => { evicted.push(event) }
      diagnostics.subscribe('cachedfetch:evicted', listen)
      opened.add({ close: () => Promise.resolve(void diagnostics.unsubscribe('cachedfetch:evicted', listen)) })
      // Eleven variants of about 9 KB: together past maxSize, each far within it.
      const languages = ['en', 'fr', 'de', 'es', 'it', 'nl', 'pt', 'pl', 'sv', 'da', 'fi']
      for (const language of languages) await client.send(`${origin.url}/page`, { headers: { 'accept-language': language } })
      expect(evicted).toHaveLength(1)
      for (const language of languages.slice(1)) {
        const again = await client.send(`${origin.url}/page`, { headers: { 'accept-language': language } })
        expect(again.body.endsWith(language)).toBe(true)
        expect(again.header('cache-status'), language).toMatch(/^cachedfetch; hit/)
      }
      expect(origin.hits('/page')).toBe(languages.length)
      expect(cache.stats().bytesInMemory).toBeLessThanOrEqual(100_000)
    })

    it('drops an entry once the cache\'s clock is past its retention, even in the millisecond of an earlier read', async () => {
      const server = await opened.origin({ '/doc': respond(200, { 'cache-control': 'max-age=1', etag: '"v1"' }, 'doc') })
      const clock = manualClock(wholeSecondNow())
      const cache = createCache({ now: clock.now })
      const client = opened.add(connect(cache))
      await client.send(`${server.url}/doc`)
      expect(cache.stats().stored).toBe(1)

      // Both requests look the entry up before either yields: the first reads the store's clock,
      // the second two days later by the cache's clock, past the entry's retention (its freshness and a day).
      const hit = client.send(`${server.url}/doc`)
      clock.advance(2 * 24 * 3600)
      const late = client.send(`${server.url}/doc`)
      expect((await hit).header('cache-status')).toMatch(/^cachedfetch; hit/)
      expect((await late).body).toBe('doc')
      // Gone from the store: sent as a new request, not revalidated.
      expect(server.requests.map((r) => r.headers['if-none-match'])).toEqual([undefined, undefined])
    })
  })

  it('counts the request values a variant keeps for its Vary against maxSize: a client choosing them cannot grow memory past it', async () => {
    const origin = await opened.origin({ '/v': respond(200, { 'cache-control': 'max-age=60', vary: 'x-pad' }, 'ok') })
    const cache = createCache({ maxSize: 1024 * 1024 })
    const cachedFetch = createCachedFetch({ cache, dispatcher: opened.agent() })
    // 32 variants of one URL, each keeping an 8000-byte value: 256 000 bytes held.
    for (let i = 0; i < 32; i++) await (await cachedFetch(`${origin.url}/v`, { headers: { 'x-pad': String(i).padEnd(8000, 'x') } })).text()
    const again = await cachedFetch(`${origin.url}/v`, { headers: { 'x-pad': '31'.padEnd(8000, 'x') } })
    await again.text()
    expect(again.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(cache.stats().bytesInMemory).toBeGreaterThanOrEqual(32 * 8000)
  })
})

describe('a Keyv instance as store', () => {
  function binaryBody (): Buffer {
    return Buffer.from(Array.from({ length: 256 }, (_, i) => i))
  }

  async function keyvOrigin (): Promise<Origin> {
    return opened.origin({
      '/json': (_req, res) => {
        res.writeHead(200, 'Quite OK', [
          ['content-type', 'application/json'],
          ['cache-control', 'max-age=60'],
          ['etag', '"v1"'],
          ['x-multi', 'one'],
          ['x-multi', 'two'],
          // A value that looks like a serializer's own marker must come back as the same text.
          ['x-marker', ':base64:aGVsbG8='],
          ['link', '</a>; rel="preload", </b>; rel="preload"']
        ])
        res.end('{"hello":"world","n":[1,2,3]}')
      },
      '/binary': (_req, res) => {
        const body = binaryBody()
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.byteLength), 'cache-control': 'max-age=60' })
        res.end(body)
      }
    })
  }

  /** Headers as a cache serves them: hop-by-hop fields are never stored (RFC 9111 §3.1). */
  function headersOf (response: Response): [string, string][] {
    const skipped = new Set(['age', 'cache-status', 'connection', 'keep-alive', 'transfer-encoding'])
    return [...response.headers].filter(([name]) => !skipped.has(name))
  }

  /** Waits until the cache has finished `count` writes: a Keyv write completes after the body. */
  async function storedCount (cache: Cache, count: number): Promise<void> {
    for (let turn = 0; turn < 100 && cache.stats().stored < count; turn++) await new Promise((resolve) => setImmediate(resolve))
    expect(cache.stats().stored).toBe(count)
  }

  it('round-trips a text entry through serialization: body and headers identical on the hit', async () => {
    const server = await keyvOrigin()
    const cache = createCache({ store: new Keyv() })
    const cachedFetch = fetchWith(cache)

    const miss = await cachedFetch(`${server.url}/json`)
    const missBody = await miss.text()
    await storedCount(cache, 1)
    const hit = await cachedFetch(`${server.url}/json`)
    expect(hit.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(hit.status).toBe(200)
    expect(hit.statusText).toBe('Quite OK')
    expect(await hit.text()).toBe(missBody)
    expect(headersOf(hit)).toEqual(headersOf(miss))
    expect(hit.headers.get('x-marker')).toBe(':base64:aGVsbG8=')
    expect(server.hits('/json')).toBe(1)
  })

  it('round-trips a binary body holding every byte 0-255', async () => {
    const server = await keyvOrigin()
    const cache = createCache({ store: new Keyv() })
    const cachedFetch = fetchWith(cache)

    const miss = await cachedFetch(`${server.url}/binary`)
    expect(Buffer.from(await miss.arrayBuffer()).equals(binaryBody())).toBe(true)
    await storedCount(cache, 1)
    const hit = await cachedFetch(`${server.url}/binary`)
    expect(hit.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(Buffer.from(await hit.arrayBuffer()).equals(binaryBody())).toBe(true)
    expect(headersOf(hit)).toEqual(headersOf(miss))
    expect(server.hits('/binary')).toBe(1)
  })

  it('shares entries between the fetch adapter and the interceptor through the same Keyv', async () => {
    const server = await keyvOrigin()
    const cache = createCache({ store: new Keyv() })
    const cachedFetch = fetchWith(cache)
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache }))

    await (await cachedFetch(`${server.url}/binary`)).arrayBuffer()
    await storedCount(cache, 1)
    const hit = await request(`${server.url}/binary`, { dispatcher })
    expect(hit.headers['cache-status']).toMatch(/^cachedfetch; hit/)
    expect(Buffer.from(await hit.body.arrayBuffer()).equals(binaryBody())).toBe(true)
    expect(server.hits('/binary')).toBe(1)
  })

  it('keeps a variant stored for a request without the Vary field apart from one with it', async () => {
    const server = await opened.origin({
      '/tenant': (req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', vary: 'X-Tenant' })
        res.end(`tenant: ${String(req.headers['x-tenant'] ?? 'none')}`)
      }
    })
    const cache = createCache({ store: new Keyv() })
    const cachedFetch = fetchWith(cache)

    expect(await (await cachedFetch(`${server.url}/tenant`)).text()).toBe('tenant: none')
    await storedCount(cache, 1)
    const blue = await cachedFetch(`${server.url}/tenant`, { headers: { 'x-tenant': 'blue' } })
    expect(blue.headers.get('cache-status')).toMatch(/fwd=vary-miss/)
    expect(await blue.text()).toBe('tenant: blue')
    await storedCount(cache, 2)

    const none = await cachedFetch(`${server.url}/tenant`)
    expect(none.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(await none.text()).toBe('tenant: none')
    const blueAgain = await cachedFetch(`${server.url}/tenant`, { headers: { 'x-tenant': 'blue' } })
    expect(blueAgain.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(await blueAgain.text()).toBe('tenant: blue')
    expect(server.hits('/tenant')).toBe(2)
  })

  describe.each(adapters)('a private and a shared cache on one Keyv, through $name', ({ connect }) => {
    it('never serves from the shared cache what the private cache stored for its user', async () => {
      const server = await opened.origin({
        '/me': (req, res) => {
          const user = req.headers.authorization?.replace('Bearer ', '') ?? 'nobody'
          res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'private, max-age=60', 'set-cookie': `sid=${user}` })
          res.end(`profile of ${user}`)
        }
      })
      const keyv = new Keyv()
      const browserCache = createCache({ shared: false, store: keyv })
      const serverCache = createCache({ shared: true, store: keyv })
      const browser = opened.add(connect(browserCache))
      const service = opened.add(connect(serverCache))
      const url = `${server.url}/me`
      const alice = { headers: { authorization: 'Bearer alice' } }

      expect((await browser.send(url, alice)).body).toBe('profile of alice')
      await storedCount(browserCache, 1)
      // The private cache keeps it for its one user ...
      const again = await browser.send(url, alice)
      expect(again.body).toBe('profile of alice')
      expect(again.header('cache-status')).toMatch(/^cachedfetch; hit/)
      expect(server.hits('/me')).toBe(1)

      // ... and the shared cache on the same store asks the origin, never handing alice's session on.
      const anonymous = await service.send(url)
      expect(anonymous.body).toBe('profile of nobody')
      expect(anonymous.header('set-cookie')).toBe('sid=nobody')
      expect(anonymous.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200')
      expect(server.hits('/me')).toBe(2)
    })
  })

  it('reads the well-formed frame the corrupt cases are made from as a stored (stale) entry', async () => {
    const server = await keyvOrigin()
    const keyv = new Keyv()
    const cache = createCache({ store: keyv })
    const url = `${server.url}/binary`
    await keyv.set(`GET ${url}`, corruptValue(wellFormedFrame, `GET ${url}`, url))
    const response = await createCachedFetch({ cache, dispatcher: opened.agent() })(url)
    await response.arrayBuffer()
    // Its policy dates from 1970: stored, stale, so it is revalidated rather than missed.
    expect(response.headers.get('cache-status')).toMatch(/^cachedfetch; fwd=stale; fwd-status=200/)
    expect(cache.stats().storeErrors).toBe(0)
  })

  it.each(['fetch', 'interceptor'] as const)('answers a lookup that finds a corrupt value without waiting for its delete, and stores the new answer after that delete (%s)', async (adapter) => {
    const server = await keyvOrigin()
    const url = `${server.url}/binary`
    const key = `GET ${url}`
    // The store's deletes wait (another process holds the SQLite file for a write, say); reads do not.
    const map = new Map<string, unknown>()
    const deleting = gate()
    let deletes = 0
    const store = Object.assign(new Map(), {
      get: (name: string) => map.get(name),
      set: (name: string, value: unknown) => { map.set(name, value); return true },
      delete: async (name: string) => { deletes++; await deleting.promise; return map.delete(name) }
    })
    const keyv = new Keyv({ store })
    await keyv.set(key, corruptValue(corruptValues[0]!, key, url))
    const cache = createCache({ store: keyv, maxSize: 0, storeTimeouts: { read: 1000, write: 10_000 } })
    const agent = opened.agent()
    const get = adapter === 'fetch'
      ? async () => Buffer.from(await (await createCachedFetch({ cache, dispatcher: agent })(url)).arrayBuffer())
      : async () => Buffer.from(await (await request(url, { dispatcher: agent.compose(cacheInterceptor({ cache })) })).body.arrayBuffer())

    expect((await within(get(), 'the answer, while the delete waits', 2000)).equals(binaryBody())).toBe(true)
    expect(deletes).toBe(1)
    deleting.release()
    await cache.flush()
    expect((await get()).equals(binaryBody())).toBe(true)
    expect(server.hits('/binary')).toBe(1)
  })

  describe('a corrupt value under the cache key is a miss, not a throw', () => {
    for (const corrupt of corruptValues) {
      for (const adapter of ['fetch', 'interceptor'] as const) {
        it(`${corrupt.name} (${adapter})`, async () => {
          const server = await keyvOrigin()
          const keyv = new Keyv()
          const cache = createCache({ store: keyv })
          const url = `${server.url}/binary`
          const key = `GET ${url}`
          if (corrupt.raw !== undefined) {
            // Keyv keeps serialized strings in its Map under "namespace:key".
            (keyv.store as Map<string, unknown>).set(`keyv:${key}`, corrupt.raw)
          } else {
            await keyv.set(key, corruptValue(corrupt, key, url))
          }

          const agent = opened.agent()
          let body: Buffer
          let status: string | undefined
          if (adapter === 'fetch') {
            const response = await createCachedFetch({ cache, dispatcher: agent })(url)
            status = response.headers.get('cache-status') ?? undefined
            body = Buffer.from(await response.arrayBuffer())
          } else {
            const response = await request(url, { dispatcher: agent.compose(cacheInterceptor({ cache })) })
            status = response.headers['cache-status'] as string | undefined
            body = Buffer.from(await response.body.arrayBuffer())
          }
          expect(status ?? '').not.toMatch(/; hit/)
          expect(body.equals(binaryBody())).toBe(true)
          expect(server.hits('/binary')).toBe(1)

          // The origin's answer replaced the corrupt value.
          await storedCount(cache, 1)
          const hit = await createCachedFetch({ cache, dispatcher: agent })(url)
          expect(hit.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
          expect(Buffer.from(await hit.arrayBuffer()).equals(binaryBody())).toBe(true)
          expect(server.hits('/binary')).toBe(1)
        })
      }
    }
  })
})

describe('maxSize against the heap the entries really hold', () => {
  for (const { name, connect } of adapters) {
    it(`entries of a response with 40 header fields hold no more than 1.5× maxSize of heap once memory is full (${name})`, async () => {
      setFlagsFromString('--expose-gc')
      const gc = runInNewContext('gc') as () => void
      const held = async (): Promise<number> => {
        for (let i = 0; i < 4; i++) { gc(); await new Promise((resolve) => setTimeout(resolve, 10)) }
        const usage = process.memoryUsage()
        return usage.heapUsed + usage.arrayBuffers
      }
      // An ordinary API response behind a CDN carries 20–40 fields (x-amz-*, cf-*, security headers):
      // past about 16, V8 keeps a record's properties in a hash table, 64 bytes or so each.
      const fields: string[] = ['cache-control', 'max-age=3600', 'content-type', 'application/json']
      for (let i = 0; i < 38; i++) fields.push(`x-field-${i}`, `value-${i}`)
      const origin = await opened.origin({ '/e': (_req, res) => { res.writeHead(200, fields).end('{"ok":true}') } })
      const maxSize = 2 * 1024 * 1024
      const cache = createCache({ maxSize })
      const client = opened.add(connect(cache))
      for (let i = 0; i < 200; i++) await client.send(`${origin.url}/e?warm=${i}`)
      await cache.clear()
      const before = await held()
      let i = 0
      while (cache.stats().evicted === 0) await client.send(`${origin.url}/e?n=${i++}`)
      const after = await held()
      expect(cache.stats().bytesInMemory).toBeLessThanOrEqual(maxSize)
      expect(after - before).toBeLessThan(1.5 * maxSize)
    }, 60_000)
  }
})
