/**
 * Per-host policy: one cache, hosts with policies of their own, told apart in one run by what the
 * origin sees. Host names resolve to the loopback origin through the agent's own lookup, so
 * `api.example.test` and `v1.api.example.test` are real requests to real sockets. The most specific
 * pattern wins (exact host and port, exact host, longest wildcard, the cache's options); a bad
 * policy is a TypeError at construction naming the host and the key; a request's cachePolicy goes
 * over its host's.
 */
import type { LookupFunction } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { Agent, request } from 'undici'
import { cacheInterceptor, createCache, createCachedFetch, type CacheOptions } from '../src/index.js'
import type { Origin, Route } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, wholeSecondNow } from './helpers/time.js'
import { waitFor } from './helpers/wait.js'

const opened = teardown()
afterEach(() => opened.close())

/** Every name is 127.0.0.1, where the test's origins listen. */
const loopback: LookupFunction = (_hostname, options, callback) => {
  if ((options as { all?: boolean }).all === true) (callback as unknown as (error: null, addresses: Array<{ address: string, family: number }>) => void)(null, [{ address: '127.0.0.1', family: 4 }])
  else callback(null, '127.0.0.1', 4)
}

function agent (): Agent {
  return opened.add(new Agent({ connect: { lookup: loopback } }))
}

/** An origin answering every path with `headers` and the path as body. */
async function originWith (headers: Record<string, string>, route?: Route): Promise<Origin> {
  const origin = await opened.origin()
  const answer: Route = route ?? ((req, res) => { res.writeHead(200, headers); res.end(req.url) })
  for (const path of ['/a', '/b', '/big', '/list?id=1&utm_source=x', '/list?utm_campaign=y&id=1', '/list?id=1']) origin.route(path, answer)
  return origin
}

const port = (origin: Origin): string => new URL(origin.url).port

/** Sends GETs through one cachedFetch, reads each body, returns the Cache-Status of each. */
async function statuses (options: CacheOptions, urls: readonly string[], init?: Parameters<ReturnType<typeof createCachedFetch>>[1]): Promise<string[]> {
  const cache = createCache(options)
  const cachedFetch = createCachedFetch({ cache, dispatcher: agent() })
  const seen: string[] = []
  for (const url of urls) {
    const response = await cachedFetch(url, init)
    await response.arrayBuffer()
    seen.push(response.headers.get('cache-status') ?? '')
    // Whatever the response stored is in before the next request.
    await waitFor(() => cache.stats().inFlight === 0, 'the exchange to end')
    await new Promise((resolve) => setImmediate(resolve))
  }
  return seen
}

describe('hosts with policies of their own, in one cache', () => {
  it('stores for the host with a defaultTtl what the origin gives no freshness, and not for the other', async () => {
    // No Cache-Control, no Expires, no validators: nothing to store by the RFC alone.
    const origin = await originWith({ 'content-type': 'text/plain' })
    const p = port(origin)
    const options: CacheOptions = { hosts: { 'api.example.test': { defaultTtl: 60 } } }
    const urls = [`http://api.example.test:${p}/a`, `http://api.example.test:${p}/a`, `http://other.example.test:${p}/a`, `http://other.example.test:${p}/a`]
    const seen = await statuses(options, urls)
    expect(seen[1]).toMatch(/^cachedfetch; hit; ttl=\d+$/)
    expect(seen[3]).toMatch(/^cachedfetch; fwd=uri-miss; fwd-status=200$/)
    expect(origin.hits('/a')).toBe(3)
  })

  it('serves a response that says max-age=0 for forceTtl seconds on its host only', async () => {
    const origin = await originWith({ 'content-type': 'text/plain', 'cache-control': 'max-age=0', etag: '"v1"' })
    const p = port(origin)
    const seen = await statuses({ hosts: { [`forced.example.test:${p}`]: { forceTtl: 30 } } },
      [`http://forced.example.test:${p}/a`, `http://forced.example.test:${p}/a`, `http://plain.example.test:${p}/a`, `http://plain.example.test:${p}/a`])
    // forceTtl, less the seconds the test took (a busy machine takes a few).
    expect(seen[1]).toMatch(/^cachedfetch; hit; ttl=(2\d|30)$/)
    // The other host revalidates the stale entry, as RFC 9111 says.
    expect(seen[3]).toMatch(/^cachedfetch; fwd=stale; fwd-status=200/)
    expect(origin.hits('/a')).toBe(3)
  })

  it('sends a disabled host past the cache, and leaves the others cached', async () => {
    const origin = await originWith({ 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
    const p = port(origin)
    const seen = await statuses({ hosts: { 'off.example.test': { enabled: false } } },
      [`http://off.example.test:${p}/a`, `http://off.example.test:${p}/a`, `http://on.example.test:${p}/b`, `http://on.example.test:${p}/b`])
    expect(seen.slice(0, 2)).toEqual(['cachedfetch; fwd=bypass; fwd-status=200', 'cachedfetch; fwd=bypass; fwd-status=200'])
    expect(seen[3]).toMatch(/^cachedfetch; hit/)
    expect([origin.hits('/a'), origin.hits('/b')]).toEqual([2, 1])
  })

  it('reads a pattern\'s port as a number: a zero-padded one is the same port', async () => {
    const origin = await originWith({ 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
    const p = port(origin)
    const seen = await statuses({ hosts: { [`off.example.test:00${p}`]: { enabled: false } } },
      [`http://off.example.test:${p}/a`, `http://off.example.test:${p}/a`])
    expect(seen).toEqual(['cachedfetch; fwd=bypass; fwd-status=200', 'cachedfetch; fwd=bypass; fwd-status=200'])
    expect(origin.hits('/a')).toBe(2)
  })

  it('keys a host\'s URLs through its key hook: tracking parameters share one entry', async () => {
    const origin = await originWith({ 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
    const p = port(origin)
    const key = (url: URL): URL => {
      for (const name of [...url.searchParams.keys()]) if (name.startsWith('utm_')) url.searchParams.delete(name)
      return url
    }
    const seen = await statuses({ hosts: { 'shop.example.test': { key } } },
      [`http://shop.example.test:${p}/list?id=1&utm_source=x`, `http://shop.example.test:${p}/list?utm_campaign=y&id=1`, `http://shop.example.test:${p}/list?id=1`])
    expect(seen.slice(1)).toEqual([expect.stringMatching(/^cachedfetch; hit/), expect.stringMatching(/^cachedfetch; hit/)])
    expect(origin.requests.length).toBe(1)
  })

  it('revalidates an entry shared through the key hook with its validator, whichever URL asks', async () => {
    const clock = manualClock()
    const origin = await originWith({}, (req, res) => {
      if (req.headers['if-none-match'] === '"v1"') {
        res.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=60' }).end()
        return
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', etag: '"v1"' }).end('list')
    })
    const p = port(origin)
    const key = (url: URL): URL => {
      for (const name of [...url.searchParams.keys()]) if (name.startsWith('utm_')) url.searchParams.delete(name)
      return url
    }
    const cache = createCache({ now: clock.now, hosts: { 'shop.example.test': { key } } })
    const cachedFetch = createCachedFetch({ cache, dispatcher: agent() })
    await (await cachedFetch(`http://shop.example.test:${p}/list?id=1&utm_source=x`)).arrayBuffer()
    await cache.flush()
    clock.advance(120)
    const response = await cachedFetch(`http://shop.example.test:${p}/list?utm_campaign=y&id=1`)
    expect(await response.text()).toBe('list')
    expect(response.headers.get('cache-status')).toMatch(/^cachedfetch; fwd=stale; fwd-status=304/)
    expect(origin.requests.map((r) => r.headers['if-none-match'])).toEqual([undefined, '"v1"'])
  })

  it('serves a host with ignoreRequestNoCache from the cache though the request says no-cache', async () => {
    const origin = await originWith({ 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
    const p = port(origin)
    const init = { headers: { 'cache-control': 'no-cache' } }
    const seen = await statuses({ hosts: { 'deaf.example.test': { ignoreRequestNoCache: true } } },
      [`http://deaf.example.test:${p}/a`, `http://deaf.example.test:${p}/a`, `http://hearing.example.test:${p}/b`, `http://hearing.example.test:${p}/b`], init)
    expect(seen[1]).toMatch(/^cachedfetch; hit/)
    expect(seen[3]).toMatch(/^cachedfetch; fwd=request|^cachedfetch; fwd=stale/)
    expect([origin.hits('/a'), origin.hits('/b')]).toEqual([1, 2])
  })

  it('keeps a body over a host\'s maxEntrySize out of the cache, and retries per host', async () => {
    let failures = 0
    const origin = await originWith({}, (req, res) => {
      if (req.url === '/b' && failures++ < 1) {
        res.writeHead(503, { 'content-type': 'text/plain' }).end('busy')
        return
      }
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
      res.end(req.url === '/big' ? 'x'.repeat(2048) : String(req.url))
    })
    const p = port(origin)
    const seen = await statuses({ hosts: { 'small.example.test': { maxEntrySize: 1024, retry: false } } },
      [`http://small.example.test:${p}/big`, `http://small.example.test:${p}/big`, `http://small.example.test:${p}/b`])
    // Not a hit: the body outgrew the host's bound and was not kept (a body of unknown length is
    // announced as stored when it starts, before its size is known).
    expect(seen[1]).toMatch(/^cachedfetch; fwd=uri-miss; fwd-status=200/)
    // No retries on this host: the 503 is the answer.
    expect(seen[2]).toMatch(/fwd-status=503/)
    expect([origin.hits('/big'), origin.hits('/b')]).toEqual([2, 1])
  })

  it('applies a request\'s cachePolicy over its host\'s', async () => {
    const origin = await originWith({ 'content-type': 'text/plain' })
    const p = port(origin)
    const host = `http://api.example.test:${p}`
    const seen = await statuses({ hosts: { 'api.example.test': { defaultTtl: 60 } } }, [`${host}/a`, `${host}/a`], { cachePolicy: { enabled: false } })
    expect(seen).toEqual(['cachedfetch; fwd=bypass; fwd-status=200', 'cachedfetch; fwd=bypass; fwd-status=200'])
  })
})

describe('a host policy never costs a request', () => {
  it('keys a request by its own URL when the key hook throws or returns no URL, and unsafe methods still invalidate', async () => {
    const origin = await originWith({ 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
    const p = port(origin)
    const key = (url: URL): URL => {
      if (url.pathname === '/a') throw new Error('a bug in the application\'s hook')
      return undefined as unknown as URL
    }
    const unhandled: unknown[] = []
    const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
    process.on('unhandledRejection', onUnhandled)
    try {
      const cache = createCache({ hosts: { 'hooked.example.test': { key } } })
      const cachedFetch = createCachedFetch({ cache, dispatcher: agent() })
      const get = async (path: string, init?: Parameters<typeof cachedFetch>[1]): Promise<string> => {
        const response = await cachedFetch(`http://hooked.example.test:${p}${path}`, init)
        await response.arrayBuffer()
        return response.headers.get('cache-status') ?? ''
      }
      expect(await get('/a')).toMatch(/^cachedfetch; fwd=uri-miss; fwd-status=200; stored/)
      await waitFor(() => cache.stats().stored === 1, 'the entry under its own URL')
      expect(await get('/a')).toMatch(/^cachedfetch; hit/)
      expect(await get('/b')).toMatch(/^cachedfetch; fwd=uri-miss/)
      // A POST answered 200 invalidates the URL, through the same throwing hook.
      await get('/a', { method: 'POST' })
      await cache.flush()
      expect(await get('/a')).toMatch(/^cachedfetch; fwd=uri-miss/)
      await new Promise((resolve) => setImmediate(resolve))
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })

  it('sends concurrent requests to a disabled host each to the origin: no single-flight either', async () => {
    const origin = await originWith({ 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
    const cachedFetch = createCachedFetch({ hosts: { 'off.example.test': { enabled: false } }, dispatcher: agent() })
    const responses = await Promise.all([1, 2, 3].map(() => cachedFetch(`http://off.example.test:${port(origin)}/a`)))
    for (const response of responses) expect(response.headers.get('cache-status')).toBe('cachedfetch; fwd=bypass; fwd-status=200')
    await Promise.all(responses.map((response) => response.arrayBuffer()))
    expect(origin.hits('/a')).toBe(3)
  })

  it('matches a fully qualified name (a trailing dot) to its host\'s policy', async () => {
    const origin = await originWith({ 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
    const seen = await statuses({ hosts: { 'off.example.test': { enabled: false } } }, [`http://off.example.test.:${port(origin)}/a`])
    expect(seen).toEqual(['cachedfetch; fwd=bypass; fwd-status=200'])
  })
})

describe('the most specific pattern wins', () => {
  it('exact host and port, then exact host, then the longest wildcard, then the cache\'s options', async () => {
    const origin = await originWith({ 'content-type': 'text/plain' })
    const other = await originWith({ 'content-type': 'text/plain' })
    const p = port(origin)
    const clock = manualClock(wholeSecondNow())
    const hosts = {
      '*.example.test': { defaultTtl: 10 },
      '*.api.example.test': { defaultTtl: 20 },
      'v1.api.example.test': { defaultTtl: 30 },
      [`v1.api.example.test:${p}`]: { defaultTtl: 40 }
    }
    const ttl = async (url: string): Promise<string> => {
      const [, second] = await statuses({ hosts, now: clock.now }, [url, url])
      return /ttl=(\d+)/.exec(second!)?.[1] ?? second!
    }
    expect(await ttl(`http://v1.api.example.test:${p}/a`)).toBe('40')
    expect(await ttl(`http://v1.api.example.test:${port(other)}/a`)).toBe('30')
    expect(await ttl(`http://v2.api.example.test:${p}/a`)).toBe('20')
    expect(await ttl(`http://deep.www.example.test:${p}/a`)).toBe('10')
    // A wildcard covers subdomains, not the domain itself: no policy, nothing stored.
    expect(await ttl(`http://example.test:${p}/a`)).toMatch(/^cachedfetch; fwd=uri-miss/)
  })
})

describe('an internationalised domain', () => {
  it('is named in Unicode or in punycode, exact or under a wildcard, as the URL parser writes its host', async () => {
    const cache = createCache({ hosts: { 'bücher.example': { forceTtl: 7 }, '*.straße.example': { forceTtl: 8 }, 'xn--caf-dma.example:8080': { forceTtl: 9 } } })
    const lifetime = (url: string): number => cache.explain({ url }, 200, { 'cache-control': 'max-age=0' }).lifetime
    expect([lifetime('http://bücher.example/x'), lifetime('http://xn--bcher-kva.example/x')]).toEqual([7, 7])
    expect(lifetime('https://www.straße.example/x')).toBe(8)
    expect(lifetime('http://café.example:8080/x')).toBe(9)
    expect(lifetime('http://buecher.example/x')).toBe(0)
    await cache.close()
  })

  it('is one host, whichever way it is named', () => {
    expect(() => createCache({ hosts: { 'bücher.example': {}, 'xn--bcher-kva.example': {} } })).toThrow(/options\.hosts to name each host once, got "bücher\.example" and "xn--bcher-kva\.example"/)
    expect(() => createCache({ hosts: { 'Bücher.example': {} } })).toThrow(/options\.hosts keys .*"Bücher\.example"/)
  })
})

describe('a bad host policy is a TypeError at construction, naming the host and the key', () => {
  it.each([
    [{ '*.example.com': { defaultTtl: -1 } }, /options\.hosts\["\*\.example\.com"\]\.defaultTtl/],
    [{ 'api.example.com': { forceTtl: '60' } }, /options\.hosts\["api\.example\.com"\]\.forceTtl/],
    [{ 'api.example.com': { maxAge: 60 } }, /unknown option options\.hosts\["api\.example\.com"\]\.maxAge/],
    [{ 'api.example.com': { key: 'utm' } }, /options\.hosts\["api\.example\.com"\]\.key/],
    [{ 'api.example.com': { methods: ['POST'] } }, /options\.hosts\["api\.example\.com"\]\.methods\[0\]/],
    [{ 'API.example.com': {} }, /options\.hosts keys .*"API\.example\.com"/],
    [{ 'api.*.com': {} }, /options\.hosts keys .*"api\.\*\.com"/],
    [{ 'api.example.com': null }, /options\.hosts\["api\.example\.com"\]/],
    [{ '*.example.com:8080': {} }, /options\.hosts keys .*"\*\.example\.com:8080"/],
    [{ 'api.example.com:99999': {} }, /options\.hosts keys .*"api\.example\.com:99999"/],
    [{ 'api.example.com:8080': { enabled: false }, 'api.example.com:08080': { defaultTtl: 5 } }, /options\.hosts to name each host once, got "api\.example\.com:8080" and "api\.example\.com:08080"/],
    // No domain ends in a number: it would match 127.0.0.1 by its text.
    [{ '*.0.0.1': { enabled: false } }, /options\.hosts keys .*"\*\.0\.0\.1"/]
  ])('%j', (hosts, message) => {
    expect(() => createCache({ hosts } as unknown as CacheOptions)).toThrow(message)
    expect(() => createCachedFetch({ hosts } as unknown as CacheOptions)).toThrow(TypeError)
  })

  it('refuses a request policy that sets what only a host may (shared, methods, key)', async () => {
    const origin = await originWith({ 'content-type': 'text/plain' })
    const cachedFetch = createCachedFetch({ dispatcher: agent() })
    await expect(cachedFetch(`${origin.url}/a`, { cachePolicy: { shared: false } as never })).rejects.toThrow(/unknown option cachePolicy\.shared/)
  })

  it('refuses a request policy given as a Map, which would be read as no policy at all', async () => {
    const origin = await originWith({ 'content-type': 'text/plain' })
    const cachedFetch = createCachedFetch({ dispatcher: agent() })
    await expect(cachedFetch(`${origin.url}/a`, { cachePolicy: new Map([['enabled', false]]) as never })).rejects.toThrow(/expected cachePolicy to be an object, got a Map/)
    expect(origin.hits('/a')).toBe(0)
  })

  it('refuses a misspelt cacheMode dispatch option, which would be read as the default and its answer stored', async () => {
    const origin = await originWith({ 'content-type': 'text/plain' })
    const dispatcher = agent().compose(cacheInterceptor())
    await expect(request(`${origin.url}/a`, { dispatcher, cacheMode: 'no-stor' } as never)).rejects.toThrow(/cacheMode dispatch option .*got string "no-stor"/)
    expect(origin.hits('/a')).toBe(0)
  })
})
