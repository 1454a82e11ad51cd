/**
 * The cache key is the target URI as the origin sees it (RFC 9110 §7.1): undici.request's `query`
 * option and a `Host` request header are part of it, so requests the origin tells apart are stored,
 * served and single-flighted apart; an origin names the same entry however it is written. Through
 * the undici interceptor: fetch has no `query` option (its URL carries the query) and does not
 * send a caller's `Host`. A `key` hook's calls are counted through both.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { request, type Dispatcher } from 'undici'
import { cacheInterceptor, createCache, createCachedFetch, type Cache } from '../src/index.js'
import type { Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { gate, waitFor } from './helpers/wait.js'

interface Reply {
  readonly body: string
  readonly cacheStatus: string | undefined
}

const opened = teardown()
let origin: Origin
let cache: Cache
let dispatcher: Dispatcher

beforeEach(async () => {
  origin = await opened.origin()
  cache = createCache()
  dispatcher = opened.agent().compose(cacheInterceptor({ cache }))
})

afterEach(() => opened.close())

async function get (url: string, options: { query?: Record<string, unknown>, headers?: Record<string, string> } = {}): Promise<Reply> {
  const response = await request(url, { dispatcher, ...options })
  const status = response.headers['cache-status']
  return { body: await response.body.text(), cacheStatus: Array.isArray(status) ? status.join(', ') : status }
}

const MISS_STORED = 'cachedfetch; fwd=uri-miss; fwd-status=200; stored'
const HIT = /^cachedfetch; hit;/

describe('the query option', () => {
  /** `/item` names the request target it saw, query included. */
  function item (): void {
    origin.route('/item', (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }).end(`you asked for ${req.url}`)
    })
  }

  it('keeps { query: { id: 1 } } and { query: { id: 2 } } apart, each served its own answer', async () => {
    item()
    const url = `${origin.url}/item`

    const one = await get(url, { query: { id: 1 } })
    const two = await get(url, { query: { id: 2 } })
    expect(one).toEqual({ body: 'you asked for /item?id=1', cacheStatus: MISS_STORED })
    expect(two).toEqual({ body: 'you asked for /item?id=2', cacheStatus: MISS_STORED })
    expect(origin.requests.map((r) => r.path)).toEqual(['/item?id=1', '/item?id=2'])

    const oneAgain = await get(url, { query: { id: 1 } })
    const twoAgain = await get(url, { query: { id: 2 } })
    expect(oneAgain.body).toBe('you asked for /item?id=1')
    expect(oneAgain.cacheStatus).toMatch(HIT)
    expect(twoAgain.body).toBe('you asked for /item?id=2')
    expect(twoAgain.cacheStatus).toMatch(HIT)
    expect(origin.requests).toHaveLength(2)
  })

  it('is the same entry as the same query written in the URL', async () => {
    item()

    const inOption = await get(`${origin.url}/item`, { query: { id: 7 } })
    const inUrl = await get(`${origin.url}/item?id=7`)
    expect(inOption.cacheStatus).toBe(MISS_STORED)
    expect(inUrl.body).toBe('you asked for /item?id=7')
    expect(inUrl.cacheStatus).toMatch(HIT)
    expect(origin.requests).toHaveLength(1)
  })

  it('treats an empty query as none, as undici does when it sends the request', async () => {
    item()

    const empty = await get(`${origin.url}/item`, { query: {} })
    const none = await get(`${origin.url}/item`)
    expect(empty).toEqual({ body: 'you asked for /item', cacheStatus: MISS_STORED })
    expect(none.body).toBe('you asked for /item')
    expect(none.cacheStatus).toMatch(HIT)
    expect(origin.requests.map((r) => r.path)).toEqual(['/item'])
  })

  it('does not collapse concurrent requests that differ only in their query', async () => {
    const answer = gate()
    // Released at the latest when the test ends, so that a failed test leaves no request held.
    opened.add({ close: () => Promise.resolve(answer.release()) })
    origin.route('/item', async (req, res) => {
      await answer.promise
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }).end(`you asked for ${req.url}`)
    })
    const url = `${origin.url}/item`

    const calls = [3, 4].map((id) => get(url, { query: { id } }))
    await waitFor(() => origin.requests.length === 2, 'each request to reach the origin on its own')
    answer.release()
    const [three, four] = await Promise.all(calls)

    expect(three!.body).toBe('you asked for /item?id=3')
    expect(four!.body).toBe('you asked for /item?id=4')
    expect(three!.cacheStatus).toBe(MISS_STORED)
    expect(four!.cacheStatus).toBe(MISS_STORED)
    expect(origin.requests.map((r) => r.path).sort()).toEqual(['/item?id=3', '/item?id=4'])
  })
})

describe('the origin a dispatch names', () => {
  beforeEach(() => {
    origin.route('/doc', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }).end('the document')
    })
  })

  async function dispatchTo (to: string | URL): Promise<Reply> {
    const response = await dispatcher.request({ origin: to, path: '/doc', method: 'GET' })
    const status = response.headers['cache-status']
    return { body: await response.body.text(), cacheStatus: Array.isArray(status) ? status.join(', ') : status }
  }

  it('is one entry whether the origin comes as a string, a URL, or a string with a trailing slash', async () => {
    expect(await dispatchTo(origin.url)).toEqual({ body: 'the document', cacheStatus: MISS_STORED })
    expect((await dispatchTo(new URL(origin.url))).cacheStatus).toMatch(HIT)
    expect((await dispatchTo(`${origin.url}/`)).cacheStatus).toMatch(HIT)
    expect(origin.hits('/doc')).toBe(1)
  })

  it('leaves an origin with a path, a query or a fragment to undici, which refuses it, however often it comes', async () => {
    for (const to of [`${origin.url}/base`, `${origin.url}/base`, new URL(`${origin.url}/base`), `${origin.url}/?q=1`, `${origin.url}/#f`]) {
      await expect(dispatchTo(to)).rejects.toThrow('invalid url')
    }
    expect(origin.requests).toEqual([])
    expect(cache.stats()).toMatchObject({ misses: 0, bypassed: 0, stored: 0 })
  })
})

describe('the Host header', () => {
  /** `/` names the host it was asked for, as a server with virtual hosts does. */
  function site (): void {
    origin.route('/', (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }).end(`site ${String(req.headers.host)}`)
    })
  }

  it('keeps the answers for two hosts on one origin apart', async () => {
    site()
    const url = `${origin.url}/`

    const a = await get(url, { headers: { host: 'tenant-a.example' } })
    const b = await get(url, { headers: { host: 'tenant-b.example' } })
    expect(a).toEqual({ body: 'site tenant-a.example', cacheStatus: MISS_STORED })
    expect(b).toEqual({ body: 'site tenant-b.example', cacheStatus: MISS_STORED })
    expect(origin.requests.map((r) => r.headers.host)).toEqual(['tenant-a.example', 'tenant-b.example'])

    const aAgain = await get(url, { headers: { host: 'tenant-a.example' } })
    const bAgain = await get(url, { headers: { host: 'tenant-b.example' } })
    expect(aAgain.body).toBe('site tenant-a.example')
    expect(aAgain.cacheStatus).toMatch(HIT)
    expect(bAgain.body).toBe('site tenant-b.example')
    expect(bAgain.cacheStatus).toMatch(HIT)
    expect(origin.requests).toHaveLength(2)
  })

  it('keeps the answers of two origins apart when both are sent the same Host header', async () => {
    // Two servers behind one name, asked one by one: each node's own /status is what the caller wants.
    const other = await opened.origin()
    const servers = [origin, other]
    servers.forEach((server, n) => {
      server.route('/status', (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }).end(`node ${n}`)
      })
    })

    const first = await get(`${origin.url}/status`, { headers: { host: 'internal.example' } })
    const second = await get(`${other.url}/status`, { headers: { host: 'internal.example' } })
    expect(first).toEqual({ body: 'node 0', cacheStatus: MISS_STORED })
    expect(second).toEqual({ body: 'node 1', cacheStatus: MISS_STORED })
    expect(servers.map((server) => server.hits('/status'))).toEqual([1, 1])
  })

  it('shares the entry of a request without one when it names the origin itself', async () => {
    site()
    const url = `${origin.url}/`
    const own = new URL(origin.url).host

    const plain = await get(url)
    const named = await get(url, { headers: { host: own } })
    expect(plain).toEqual({ body: `site ${own}`, cacheStatus: MISS_STORED })
    expect(named.body).toBe(`site ${own}`)
    expect(named.cacheStatus).toMatch(HIT)
    expect(origin.requests).toHaveLength(1)
  })
})

describe('the key in Cache-Status, when cacheStatusKey asks for it', () => {
  it('names the key a response is stored and served under: the private prefix and a key hook included', async () => {
    origin.route('/items', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
      res.end('items')
    })
    const strip = (url: URL): URL => { url.searchParams.delete('utm_source'); return url }
    const keyed = createCache({ cacheStatusKey: true, shared: false, key: strip })
    const through = opened.agent().compose(cacheInterceptor({ cache: keyed }))
    const read = async (): Promise<string> => {
      const response = await request(`${origin.url}/items?utm_source=mail`, { dispatcher: through })
      await response.body.text()
      return String(response.headers['cache-status'])
    }
    const key = `private GET ${origin.url}/items`
    expect(await read()).toBe(`cachedfetch; fwd=uri-miss; fwd-status=200; stored; key="${key}"`)
    await waitFor(() => keyed.stats().stored === 1, 'the entry to be stored')
    expect(await read()).toMatch(new RegExp(`^cachedfetch; hit; ttl=\\d+; key="${key.replace(/[.?]/g, '\\$&')}"$`))
    // Without the option, no key.
    expect((await get(`${origin.url}/items`)).cacheStatus).toBe(MISS_STORED)
  })
  it('gives the key as a valid sf-string, a Host header\'s bytes past ASCII percent-encoded (RFC 9211 §2.7, RFC 8941 §3.3.3)', async () => {
    origin.route('/h', (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('h') })
    const through = opened.agent().compose(cacheInterceptor({ cache: createCache({ cacheStatusKey: true }) }))
    const keyOf = async (host: string): Promise<string | undefined> => {
      const response = await request(`${origin.url}/h`, { dispatcher: through, headers: { host } })
      await response.body.text()
      return /; key=("(?:[^"\\]|\\.)*")$/.exec(String(response.headers['cache-status']))?.[1]
    }
    const key = await keyOf('caf\u00e9.example')
    expect(key).toMatch(/^"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"$/)
    expect(key).toContain('host=caf%E9.example')
    // A % written so is encoded too: the two keys stay apart.
    expect(await keyOf('caf%E9.example')).toContain('host=caf%25e9.example')
  })
})

describe('a key hook', () => {
  /**
   * The hook is the application's code, run as often as the cache needs a key: once for each lookup,
   * not again for the flight, the entry stored and the Cache-Status of the same request (it ran
   * three times for a miss through the interceptor, twice for a 304).
   */
  it('runs once for each request through the interceptor, and once more for a miss or 304 through fetch, whose fast path looks up first', async () => {
    origin.route('/fresh', (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60', etag: '"f"' }).end('fresh') })
    origin.route('/checked', (req, res) => {
      if (req.headers['if-none-match'] === '"c"') res.writeHead(304, { 'cache-control': 'no-cache', etag: '"c"' }).end()
      else res.writeHead(200, { 'cache-control': 'no-cache', etag: '"c"' }).end('checked')
    })
    const calls = { interceptor: [] as string[], fetch: [] as string[] }
    for (const face of ['interceptor', 'fetch'] as const) {
      const hooked = createCache({ cacheStatusKey: true, key: (url) => { calls[face].push(url.pathname); return url } })
      const through = opened.agent().compose(cacheInterceptor({ cache: hooked }))
      const fetch = createCachedFetch({ cache: hooked })
      const send = async (path: string): Promise<string> => face === 'fetch'
        ? await (await fetch(`${origin.url}${path}`)).text()
        : await (await request(`${origin.url}${path}`, { dispatcher: through })).body.text()
      for (const path of ['/fresh', '/fresh', '/checked', '/checked']) {
        expect(await send(path)).toBe(path.slice(1))
        await hooked.flush()
      }
    }
    // A miss, a hit, a miss, a 304.
    expect(calls.interceptor).toEqual(['/fresh', '/fresh', '/checked', '/checked'])
    expect(calls.fetch).toEqual(['/fresh', '/fresh', '/fresh', '/checked', '/checked', '/checked', '/checked'])
    expect(origin.requests.filter((r) => r.headers['if-none-match'] === '"c"')).toHaveLength(2)
  })
})
