/**
 * Invalidation (RFC 9111 §4.4): a non-error answer to an unsafe method invalidates the stored
 * responses for its target URI and for same-origin Location and Content-Location URIs, never another
 * origin's; `cache.invalidate(url)` drops every variant of a URL. The method table is data
 * (fixtures/invalidation.json); every case runs through cachedFetch and through the interceptor.
 * Once `invalidate()` has resolved, nothing it dropped comes back: not from a response that was on
 * its way meanwhile, not from an exchange a later request could join, not from the other variants
 * a write read beside its own while the invalidation ran.
 */
import { EventEmitter } from 'node:events'
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { KeyvStoreAdapter, StoredData } from 'keyv'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { Keyv } from 'keyv'
import { cacheInterceptor, createCache, type Cache } from '../src/index.js'
import { adapters, type Client, type Reply } from './helpers/clients.js'
import { respond, startOrigin, type Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { gate, settle, waitFor, type Gate } from './helpers/wait.js'

interface InvalidationCase {
  readonly method: string
  readonly status: number
  readonly invalidates: boolean
}

const table = JSON.parse(readFileSync(new URL('../fixtures/invalidation.json', import.meta.url), 'utf8')) as { cases: InvalidationCase[] }

/** How a route answers methods other than GET and HEAD. */
interface UnsafeAnswer {
  status: number
  headers: Record<string, string>
}

/**
 * A resource: GET and HEAD get a fresh, cacheable response whose body counts the GETs the origin
 * served; any other method gets `answer`.
 */
function resource (answer: UnsafeAnswer = { status: 204, headers: {} }): (req: IncomingMessage, res: ServerResponse) => void {
  let served = 0
  return (req, res) => {
    if (req.method === 'GET' || req.method === 'HEAD') {
      served += 1
      res.writeHead(200, { 'cache-control': 'max-age=300', 'content-type': 'text/plain' }).end(`${req.url} #${served}`)
      return
    }
    res.writeHead(answer.status, answer.headers).end()
  }
}

describe.each(adapters)('invalidation through $name', ({ connect }) => {
  const opened = teardown()
  let origin: Origin
  let cache: Cache
  let client: Client

  beforeEach(async () => {
    origin = await opened.origin()
    cache = createCache()
    client = opened.add(connect(cache))
  })

  afterEach(() => opened.close())

  /** Stores GET `path` and checks that the next GET is a hit. */
  async function prime (path: string, base = origin): Promise<void> {
    const first = await client.send(`${base.url}${path}`)
    expect(first.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    const second = await client.send(`${base.url}${path}`)
    expect(second.header('cache-status')).toMatch(/^cachedfetch; hit;/)
    expect(base.hits(path)).toBe(1)
  }

  it.each(table.cases)('$method answered $status: invalidates the stored GET = $invalidates', async (c) => {
    origin.route('/thing', resource({ status: c.status, headers: {} }))
    await prime('/thing')

    const unsafe = await client.send(`${origin.url}/thing`, { method: c.method })
    expect(unsafe.status).toBe(c.status)
    expect(unsafe.header('cache-status')).toBe(`cachedfetch; fwd=method; fwd-status=${c.status}`)

    const after = await client.send(`${origin.url}/thing`)
    if (c.invalidates) {
      expect(after.body).toBe('/thing #2')
      expect(after.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    } else {
      expect(after.body).toBe('/thing #1')
      expect(after.header('cache-status')).toMatch(/^cachedfetch; hit;/)
    }
    expect(origin.seen('/thing').filter((r) => r.method === 'GET')).toHaveLength(c.invalidates ? 2 : 1)
  })

  it('invalidates the stored HEAD response as well as the GET', async () => {
    origin.route('/both', resource())
    await prime('/both')
    await client.send(`${origin.url}/both`, { method: 'HEAD' })
    const head = await client.send(`${origin.url}/both`, { method: 'HEAD' })
    expect(head.header('cache-status')).toMatch(/^cachedfetch; hit;/)

    await client.send(`${origin.url}/both`, { method: 'DELETE' })

    expect((await client.send(`${origin.url}/both`, { method: 'HEAD' })).header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    expect((await client.send(`${origin.url}/both`)).header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
  })

  it('invalidates a same-origin Location target', async () => {
    origin.route('/items', resource({ status: 201, headers: { location: '/items/7' } }))
    origin.route('/items/7', resource())
    origin.route('/items/8', resource())
    await prime('/items')
    await prime('/items/7')
    await prime('/items/8')

    await client.send(`${origin.url}/items`, { method: 'POST' })

    expect((await client.send(`${origin.url}/items`)).body).toBe('/items #2')
    expect((await client.send(`${origin.url}/items/7`)).body).toBe('/items/7 #2')
    // A URL the answer did not name stays stored.
    expect((await client.send(`${origin.url}/items/8`)).body).toBe('/items/8 #1')
  })

  it('invalidates a same-origin Content-Location target', async () => {
    origin.route('/edit', resource({ status: 200, headers: { 'content-location': `${origin.url}/doc?v=current` } }))
    origin.route('/doc', resource())
    await prime('/doc?v=current')

    await client.send(`${origin.url}/edit`, { method: 'PUT' })

    const after = await client.send(`${origin.url}/doc?v=current`)
    expect(after.body).toBe('/doc?v=current #2')
    expect(origin.hits('/doc?v=current')).toBe(2)
  })

  it('does not invalidate Location or Content-Location targets on another origin', async () => {
    const other = await startOrigin({ '/shared': resource() })
    try {
      origin.route('/post', resource({
        status: 201,
        headers: { location: `${other.url}/shared`, 'content-location': `${other.url}/shared` }
      }))
      await prime('/shared', other)

      const answer = await client.send(`${origin.url}/post`, { method: 'POST' })
      expect(answer.status).toBe(201)

      const after = await client.send(`${other.url}/shared`)
      expect(after.body).toBe('/shared #1')
      expect(after.header('cache-status')).toMatch(/^cachedfetch; hit;/)
      expect(other.hits('/shared')).toBe(1)
    } finally {
      await other.close()
    }
  })

  it('does not invalidate a Location target when the answer is an error', async () => {
    origin.route('/fail', resource({ status: 409, headers: { location: '/target' } }))
    origin.route('/target', resource())
    await prime('/target')

    await client.send(`${origin.url}/fail`, { method: 'POST' })

    expect((await client.send(`${origin.url}/target`)).body).toBe('/target #1')
    expect(origin.hits('/target')).toBe(1)
  })

  it('cache.invalidate(url) drops every variant of the URL and nothing else', async () => {
    origin.route('/greeting', (req, res) => {
      const lang = req.headers['x-lang'] ?? 'none'
      res.writeHead(200, { 'cache-control': 'max-age=300', vary: 'x-lang' }).end(`hello in ${String(lang)}`)
    })
    origin.route('/bystander', resource())
    const url = `${origin.url}/greeting`
    for (const lang of ['en', 'fr']) await client.send(url, { headers: { 'x-lang': lang } })
    for (const lang of ['en', 'fr']) {
      const hit = await client.send(url, { headers: { 'x-lang': lang } })
      expect(hit.body).toBe(`hello in ${lang}`)
      expect(hit.header('cache-status')).toMatch(/^cachedfetch; hit;/)
    }
    await prime('/bystander')
    expect(origin.hits('/greeting')).toBe(2)

    await cache.invalidate(new URL(url))

    const en = await client.send(url, { headers: { 'x-lang': 'en' } })
    expect(en.body).toBe('hello in en')
    expect(en.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    const fr = await client.send(url, { headers: { 'x-lang': 'fr' } })
    expect(fr.body).toBe('hello in fr')
    expect(fr.header('cache-status')).toBe('cachedfetch; fwd=vary-miss; fwd-status=200; stored')
    expect(origin.hits('/greeting')).toBe(4)
    expect((await client.send(`${origin.url}/bystander`)).header('cache-status')).toMatch(/^cachedfetch; hit;/)
  })
})

/**
 * A Keyv store adapter over a Map whose next delete or set waits for the test (`hold()`), to put an
 * invalidation's delete and a write in the order a race would.
 */
class HeldStore extends EventEmitter implements KeyvStoreAdapter {
  readonly opts = {}
  readonly #map = new Map<string, unknown>()
  readonly #held: { delete?: Gate, set?: Gate } = {}
  /** Calls of each kind waiting for their gate. */
  readonly waiting = { delete: 0, set: 0 }

  /** The next call of `operation` waits until the gate returned is released. */
  hold (operation: 'delete' | 'set'): Gate {
    return (this.#held[operation] = gate())
  }

  get<Value> (key: string): Promise<StoredData<Value> | undefined> {
    return Promise.resolve(this.#map.get(key) as StoredData<Value> | undefined)
  }

  async set (key: string, value: unknown): Promise<boolean> {
    await this.#wait('set')
    this.#map.set(key, value)
    return true
  }

  async delete (key: string): Promise<boolean> {
    await this.#wait('delete')
    return this.#map.delete(key)
  }

  clear (): Promise<void> {
    this.#map.clear()
    return Promise.resolve()
  }

  async #wait (operation: 'delete' | 'set'): Promise<void> {
    const held = this.#held[operation]
    if (held === undefined) return
    this.#held[operation] = undefined
    this.waiting[operation]++
    await held.promise
    this.waiting[operation]--
  }
}

describe.each(adapters)('an invalidation while responses are on their way, through $name', ({ connect }) => {
  const opened = teardown()
  afterEach(() => opened.close())

  /**
   * `/doc` answers `<language> v<version>`, fresh for 5 minutes, varying on Accept-Language. The
   * version is read when the request arrives; the first answer waits for `first` when given.
   */
  async function versioned (first?: Gate): Promise<{ origin: Origin, bump: () => void }> {
    let version = 1
    const origin = await opened.origin({
      '/doc': async (req, res) => {
        const answer = `${String(req.headers['accept-language'] ?? 'none')} v${version}`
        if (origin.hits('/doc') === 1) await first?.promise
        res.writeHead(200, { 'cache-control': 'max-age=300', vary: 'accept-language' }).end(answer)
      }
    })
    return { origin, bump: () => { version++ } }
  }

  /** A cache, and a request of its held at the origin until `answer` is released. */
  async function onItsWay (): Promise<{ answer: Gate, origin: Origin, bump: () => void, cache: Cache, client: Client, url: string, headers: Record<string, string>, early: Promise<Reply> }> {
    const answer = gate()
    const { origin, bump } = await versioned(answer)
    const cache = createCache()
    const client = opened.add(connect(cache))
    const url = `${origin.url}/doc`
    const headers = { 'accept-language': 'en' }
    const early = client.send(url, { headers })
    await waitFor(() => origin.hits('/doc') === 1, 'the first request to reach the origin')
    return { answer, origin, bump, cache, client, url, headers, early }
  }

  it('stores a response that was on its way while 300 invalidations of other URLs ran (a busy fleet publishes as many)', async () => {
    const { answer, origin, cache, client, url, headers, early } = await onItsWay()
    for (let i = 0; i < 300; i++) await cache.invalidate(`${origin.url}/other/${i}`)
    answer.release()
    expect((await early).header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    await cache.flush()
    const later = await client.send(url, { headers })
    expect([later.body, later.header('cache-status')]).toEqual(['en v1', expect.stringMatching(/^cachedfetch; hit/)])
    expect(origin.hits('/doc')).toBe(1)
  })

  it('does not store a response that was on its way while the invalidation ran', async () => {
    const { answer, origin, bump, cache, client, url, headers, early } = await onItsWay()
    bump()
    await cache.invalidate(url)
    answer.release()
    // It began before the invalidation: either version would do; it is the one the origin had then.
    // Not stored, and its Cache-Status does not say it is.
    const before = await early
    expect([before.body, before.header('cache-status')]).toEqual(['en v1', 'cachedfetch; fwd=uri-miss; fwd-status=200'])
    await cache.flush()

    const later = await client.send(url, { headers })
    expect(later.body).toBe('en v2')
    expect(later.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    expect(origin.hits('/doc')).toBe(2)
  })

  it('does not let a request that starts after it join an exchange that began before it', async () => {
    const answer = gate()
    const { origin, bump } = await versioned(answer)
    const cache = createCache()
    const client = opened.add(connect(cache))
    const url = `${origin.url}/doc`
    const headers = { 'accept-language': 'en' }

    const early = client.send(url, { headers })
    await waitFor(() => origin.hits('/doc') === 1, 'the first request to reach the origin')
    bump()
    await cache.invalidate(url)
    const later = client.send(url, { headers })
    try {
      await waitFor(() => origin.hits('/doc') === 2, 'the later request to reach the origin on its own')
    } finally {
      answer.release()
    }

    expect((await early).body).toBe('en v1')
    expect((await later).body).toBe('en v2')
  })

  it('serves nothing an invalidation dropped from an exchange whose lookup read the store while it ran, to its caller or to one that joins it after', async () => {
    // The stored v1 is stale at once and would stand in for a failure, but the lookup that reads it
    // while the invalidation runs counts it as gone (RFC 9111 §4.4): its exchange waits, then fails.
    // Its request went out after the invalidation began, so a request that starts once the
    // invalidation is over may share it: the answer is as new as its own would be.
    let version = 1
    const failure = gate()
    const origin = await opened.origin({
      '/doc': async (_req, res) => {
        if (origin.hits('/doc') === 2) {
          await failure.promise
          res.writeHead(503).end('down')
          return
        }
        res.writeHead(200, { 'cache-control': 'max-age=0, stale-if-error=300', etag: `"v${version}"` }).end(`v${version}`)
      }
    })
    const store = new HeldStore()
    // No memory tier, so that the lookup reads the store; no retries, so that the 503 stands.
    const cache = createCache({ store, maxSize: 0, retry: false })
    const client = opened.add(connect(cache))
    const url = `${origin.url}/doc`
    expect((await client.send(url)).body).toBe('v1')
    await cache.flush()

    version++
    const deleted = store.hold('delete')
    const invalidation = cache.invalidate(url)
    await waitFor(() => store.waiting.delete === 1, 'the invalidation to be deleting')
    const during = client.send(url)
    await waitFor(() => origin.hits('/doc') === 2, 'the revalidation of v1 to reach the origin')
    deleted.release()
    await invalidation

    const after = client.send(url)
    await waitFor(() => cache.stats().misses === 3, 'the later request to join the exchange')
    failure.release()
    // It began while the invalidation ran: the v1 it read was being dropped, and stands in for nothing.
    const failed = await during
    expect([failed.status, failed.body]).toEqual([503, 'down'])
    expect(failed.header('cache-status')).toMatch(/^cachedfetch; fwd=uri-miss; fwd-status=503/)
    const joined = await after
    expect([joined.status, joined.body]).toEqual([503, 'down'])
    expect(joined.header('cache-status')).toMatch(/; collapsed$/)
    expect(origin.hits('/doc')).toBe(2)
    expect((await client.send(url)).body).toBe('v2')
  })

  it('does not serve what a POST invalidated while the invalidation waits for a write to the store (RFC 9111 §4.4)', async () => {
    let version = 1
    const origin = await opened.origin({
      '/item': (req, res) => {
        if (req.method === 'POST') {
          version++
          res.writeHead(204).end()
        } else {
          res.writeHead(200, { 'cache-control': 'max-age=300' }).end(`v${version}`)
        }
      },
      '/other': respond(200, { 'cache-control': 'max-age=300' }, 'other')
    })
    const store = new HeldStore()
    // The memory tier in front, as by default: the stale v1 is in both.
    const cache = createCache({ store })
    const client = opened.add(connect(cache))
    const url = `${origin.url}/item`
    expect((await client.send(url)).body).toBe('v1')
    await cache.flush()

    // Another response's write to the store is on its way (a busy Redis): the POST's invalidation waits for it.
    const set = store.hold('set')
    await client.send(`${origin.url}/other`)
    await waitFor(() => store.waiting.set === 1, 'the other write to reach the store')
    try {
      expect((await client.send(url, { method: 'POST', body: 'x' })).status).toBe(204)
      const after = await client.send(url)
      // Not stored either while the invalidation is under way (its deletes would drop it), and
      // Cache-Status says so.
      expect([after.body, after.header('cache-status')]).toEqual(['v2', 'cachedfetch; fwd=uri-miss; fwd-status=200'])
    } finally {
      set.release()
    }
  })

  it('lets a write already on its way to the store land first, then deletes it', async () => {
    const { origin, bump } = await versioned()
    const store = new HeldStore()
    const cache = createCache({ store, maxSize: 0 })
    const client = opened.add(connect(cache))
    const url = `${origin.url}/doc`
    const headers = { 'accept-language': 'en' }

    const set = store.hold('set')
    expect((await client.send(url, { headers })).body).toBe('en v1')
    await waitFor(() => store.waiting.set === 1, 'the write to reach the store')
    bump()
    const invalidation = cache.invalidate(url)
    await settle()
    set.release()
    await invalidation
    await cache.flush()

    const later = await client.send(url, { headers })
    expect(later.body).toBe('en v2')
    expect(later.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
  })

  it('does not write back another variant that a write read while the invalidation ran', async () => {
    const { origin, bump } = await versioned()
    const store = new HeldStore()
    // No memory tier: every request reads the store, where the race is.
    const cache = createCache({ store, maxSize: 0 })
    const client = opened.add(connect(cache))
    const url = `${origin.url}/doc`
    const fr = { 'accept-language': 'fr' }
    await client.send(url, { headers: fr })
    await cache.flush()

    bump()
    const deleted = store.hold('delete')
    const set = store.hold('set')
    const invalidation = cache.invalidate(url)
    await waitFor(() => store.waiting.delete === 1, 'the invalidation to be deleting')
    // While the delete waits, an English request reads the French variant beside the key, fetches
    // its own and writes both back.
    expect((await client.send(url, { headers: { 'accept-language': 'en' } })).body).toBe('en v2')
    await settle()
    deleted.release()
    await invalidation
    set.release()
    await cache.flush()

    const later = await client.send(url, { headers: fr })
    expect(later.body).toBe('fr v2')
    expect(later.header('cache-status')).not.toMatch(/hit/)
  })
})

describe('cache.invalidate(url, { host }): a virtual host behind one address', () => {
  const opened = teardown()
  afterEach(() => opened.close())

  it('drops what requests that sent that Host stored, and only that', async () => {
    let version = 0
    const origin = await opened.origin({
      '/x': (req, res) => { version++; res.writeHead(200, { 'cache-control': 'max-age=600' }).end(`v${version} for ${String(req.headers.host)}`) }
    })
    const cache = createCache()
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache }))
    const get = async (host?: string): Promise<string> =>
      await (await request(`${origin.url}/x`, { dispatcher, headers: host === undefined ? {} : { host } })).body.text()
    const address = origin.url.slice('http://'.length)
    expect(await get('api.example')).toBe('v1 for api.example')
    expect(await get()).toBe(`v2 for ${address}`)
    // The URL alone is the address's own entry: the virtual host's stays.
    await cache.invalidate(`${origin.url}/x`)
    expect(await get('api.example')).toBe('v1 for api.example')
    await cache.invalidate(`${origin.url}/x`, { host: 'API.example' })
    expect(await get('api.example')).toBe('v3 for api.example')
    expect(origin.hits('/x')).toBe(3)
  })

  it('refuses a host that is no Host value, naming it', async () => {
    const cache = createCache()
    await expect(cache.invalidate('http://127.0.0.1/x', { host: '' })).rejects.toThrow(/options\.host/)
    await expect(cache.invalidate('http://127.0.0.1/x', 'api.example' as never)).rejects.toThrow(/options to be an object/)
    await expect(cache.invalidate('http://127.0.0.1/x', { hots: 'api.example' } as never)).rejects.toThrow(/options\.hots/)
  })

  it('drops, for a Host with or without the default port spelled out (one authority, RFC 9110 §4.2.3), what either stored: the key keeps them apart, as an origin may', async () => {
    let version = 0
    const origin = await opened.origin({
      '/x': (req, res) => {
        if (req.method === 'POST') res.writeHead(204).end()
        else res.writeHead(200, { 'cache-control': 'max-age=600' }).end(`v${++version}`)
      }
    })
    const cache = createCache()
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache }))
    const send = async (method: string, host: string): Promise<string> =>
      await (await request(`${origin.url}/x`, { dispatcher, method, headers: { host }, body: method === 'POST' ? 'z' : undefined })).body.text()
    expect(await send('GET', 'api.test')).toBe('v1')
    expect(await send('GET', 'API.test:80')).toBe('v2')
    await send('POST', 'api.test:80')
    expect(await send('GET', 'api.test')).toBe('v3')
    expect(await send('GET', 'api.test:80')).toBe('v4')
    await cache.invalidate(`${origin.url}/x`, { host: 'api.test' })
    expect(await send('GET', 'api.test:80')).toBe('v5')
    expect(await send('GET', 'api.test')).toBe('v6')
  })
})

describe('invalidate() and invalidatePrefix() read their URL as a request\'s is read', () => {
  const opened = teardown()
  afterEach(() => opened.close())

  it('refuses what is no absolute URL, naming it, as invalidatePrefix() does', async () => {
    const cache = createCache()
    for (const url of [undefined, 123, '/users/1', { href: 'HTTP://EXAMPLE.com/x' }]) {
      await expect(cache.invalidate(url as never)).rejects.toThrow(/expected url to be an absolute URL/)
    }
  })

  it.each(adapters)('drops by a prefix with a fragment what a request without it stored ($name)', async ({ connect }) => {
    let version = 0
    const origin = await opened.origin({ '/users/1': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=300' }).end(`v${++version}`) } })
    const cache = createCache()
    const client = opened.add(connect(cache))
    await client.send(`${origin.url}/users/1`)
    await cache.invalidatePrefix(`${origin.url}/users/#list`)
    expect((await client.send(`${origin.url}/users/1`)).body).toBe('v2')
  })

  it('drops on a POST whose Location ends in an empty query the entry fetch stored for that URL (RFC 9111 §4.4)', async () => {
    let version = 0
    const origin = await opened.origin({
      '/a': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=300' }).end(`v${++version}`) },
      '/create': (_req, res) => { res.writeHead(201, { location: '/a?' }).end() }
    })
    const client = opened.add(adapters[0]!.connect(createCache()))
    expect((await client.send(`${origin.url}/a?`)).body).toBe('v1')
    expect((await client.send(`${origin.url}/a?`)).header('cache-status')).toMatch(/^cachedfetch; hit/)
    await client.send(`${origin.url}/create`, { method: 'POST', body: 'x' })
    expect((await client.send(`${origin.url}/a?`)).body).toBe('v2')
  })
})

describe('an invalidation under way when flush() or close() is called', () => {
  const opened = teardown()
  afterEach(() => opened.close())

  it.each(['flush', 'close'] as const)('is waited for by %s(): the store holds the entry no more, and invalidate() resolves (found by a hunt)', async (how) => {
    // Deletes land late, as across a network: close() used to shut the store under this one.
    const map = new Map<string, unknown>()
    const store = Object.assign(new Map(), {
      get: (name: string) => map.get(name),
      set: (name: string, value: unknown) => { map.set(name, value); return true },
      delete: async (name: string) => { await new Promise((resolve) => setTimeout(resolve, 200)); return map.delete(name) },
      clear: () => map.clear()
    })
    const cache = createCache({ store: new Keyv({ store }) })
    opened.add({ close: () => cache.close() })
    const origin = await opened.origin({ '/i': respond(200, { 'cache-control': 'max-age=600' }, 'i') })
    const client = opened.add(adapters[0]!.connect(cache))
    await client.send(`${origin.url}/i`)
    await cache.flush()
    expect(map.size).toBe(1)

    let outcome = 'under way'
    const invalidated = cache.invalidate(`${origin.url}/i`).then(() => { outcome = 'resolved' }, (error: Error) => { outcome = error.message })
    await cache[how]()
    expect(map.size).toBe(0)
    expect(outcome).toBe('resolved')
    await invalidated
  })
})

describe('an invalidation that cannot reach the store', () => {
  const opened = teardown()
  afterEach(() => opened.close())

  /** A cache on `map` as its store (a Keyv of the cache's own over it), memory off: every hit is the store's. */
  async function stored (map: Map<string, unknown>): Promise<{ cache: Cache, origin: Origin, fetchAll: () => Promise<number> }> {
    const cache = opened.add(createCache({ store: map as never, maxSize: 0 }))
    const origin = await opened.origin(Object.fromEntries(['a', 'b', 'c'].map((name) => [`/p/${name}`, respond(200, { 'cache-control': 'max-age=60', 'cache-tag': 'docs' }, name)])))
    const client = opened.add(adapters[0]!.connect(cache))
    /** Fetches the three; how many the origin answered. */
    const fetchAll = async (): Promise<number> => {
      const before = origin.requests.length
      for (const name of ['a', 'b', 'c']) await client.send(`${origin.url}/p/${name}`)
      await cache.flush()
      return origin.requests.length - before
    }
    expect(await fetchAll()).toBe(3)
    return { cache, origin, fetchAll }
  }

  it('rejects with ERR_STORE_UNREACHABLE when the store deletes nothing, and counts no invalidation: the store may still hold what it was to drop', async () => {
    // A store that reads, writes and lists, and can delete nothing (a Redis gone away, as far as deletes go).
    class Undeletable extends Map<string, unknown> {
      override delete (): boolean { throw new Error('the store is unreachable') }
      override clear (): void { throw new Error('the store is unreachable') }
    }
    const { cache, origin } = await stored(new Undeletable())
    for (const call of [
      () => cache.invalidate(`${origin.url}/p/a`),
      () => cache.invalidateTag('docs'),
      () => cache.invalidatePrefix(`${origin.url}/p/`),
      () => cache.clear()
    ]) {
      await expect(call()).rejects.toMatchObject({ name: 'CachedFetchError', code: 'ERR_STORE_UNREACHABLE' })
    }
    expect(cache.stats().invalidated).toBe(0)
  })

  it('rejects when a listing breaks part way, though it dropped what it found', async () => {
    let broken = false
    class Flaky extends Map<string, unknown> {
      override * entries (): MapIterator<[string, unknown]> {
        let n = 0
        for (const entry of super.entries()) {
          if (broken && n++ >= 1) throw new Error('the listing broke')
          yield entry
        }
      }
    }
    const { cache, origin, fetchAll } = await stored(new Flaky())
    broken = true
    await expect(cache.invalidatePrefix(`${origin.url}/p/`)).rejects.toMatchObject({ code: 'ERR_STORE_UNREACHABLE' })
    broken = false
    // One was found and dropped; the store still held the others.
    expect(await fetchAll()).toBe(1)
  })

  it('resolves over a store Keyv cannot list, which tag and prefix invalidation reach only in memory (a store-error says so)', async () => {
    // A Keyv over a store it cannot list (not a Map): nothing fails, nothing can be found.
    const entries = new Map<string, unknown>()
    const unlistable = {
      get: (key: string) => entries.get(key),
      set: (key: string, value: unknown) => { entries.set(key, value); return true },
      delete: (key: string) => entries.delete(key),
      clear: () => { entries.clear() }
    }
    const cache = opened.add(createCache({ store: new Keyv({ store: unlistable }) }))
    await expect(cache.invalidateTag('docs')).resolves.toBeUndefined()
    await expect(cache.invalidatePrefix('http://127.0.0.1/p/')).resolves.toBeUndefined()
  })
})
