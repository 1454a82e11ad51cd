/**
 * What undici users send through the cache gets what it gets without it. A GET with content (a
 * search API's) is answered for that content, never from or into the store. undici's own
 * interceptors composed above the cache work as they do without it, on a miss, a hit and a 304: a handler whose end callback throws gets that error (undici's retry interceptor
 * throws there to retry), and a handler that replaces its controller's abort() (undici's dump
 * interceptor does) still gets the error its own throw caused. Each case runs on a plain Agent too,
 * the reference.
 */
import { Readable } from 'node:stream'
import { afterEach, describe, expect, it } from 'vitest'
import { interceptors, request, type Dispatcher } from 'undici'
import { cacheInterceptor, createCache } from '../src/index.js'
import { bytes, respond, type Route } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, wholeSecondNow } from './helpers/time.js'
import { waitFor, within } from './helpers/wait.js'

const opened = teardown()
afterEach(() => opened.close())

type Kind = 'plain' | 'cached'
const KINDS: Kind[] = ['plain', 'cached']

/** An Agent with `above` composed over the cache (or over nothing, for the plain reference). */
function dispatcherOf (kind: Kind, above: Dispatcher.DispatcherComposeInterceptor, options: Parameters<typeof createCache>[0] = { retry: false }): Dispatcher {
  const agent = opened.agent()
  // compose() wraps each interceptor around those before it: the last one given is the outermost.
  return kind === 'plain' ? agent.compose(above) : agent.compose(cacheInterceptor({ cache: createCache(options) }), above)
}

/** The request's outcome as a user sees it: status and body, or the error's name. */
async function outcome (dispatcher: Dispatcher, url: string): Promise<string> {
  return await within(request(url, { dispatcher })
    .then(async (response) => `${response.statusCode} ${await response.body.text()}`)
    .catch((error: Error) => `threw ${error.name}`), url)
}

function sequence (...steps: Route[]): Route {
  let n = 0
  return (req, res, seen) => steps[Math.min(n++, steps.length - 1)]!(req, res, seen)
}

/** Throws from the end callback of the `nth` request: undici turns that into the handler's onResponseError. */
function throwsAtEnd (nth: number): Dispatcher.DispatcherComposeInterceptor {
  let requests = 0
  return (dispatch) => (opts, handler) => {
    const throws = ++requests === nth
    return dispatch(opts, {
      onRequestStart: (controller, context) => handler.onRequestStart?.(controller, context),
      onResponseStart: (controller, status, headers, statusText) => handler.onResponseStart?.(controller, status, headers, statusText),
      onResponseData: (controller, chunk) => handler.onResponseData?.(controller, chunk),
      onResponseEnd: (controller, trailers) => {
        if (throws) throw new Error('thrown at the end')
        handler.onResponseEnd?.(controller, trailers)
      },
      onResponseError: (controller, error) => handler.onResponseError?.(controller, error)
    })
  }
}

describe.each(KINDS)('undici interceptors above %s', (kind) => {
  it('retry: a 503 then a 200 gets the 200, on a miss', async () => {
    const origin = await opened.origin({ '/r': sequence(respond(503, {}, 'busy'), respond(200, { 'cache-control': 'max-age=60' }, 'ok')) })
    const dispatcher = dispatcherOf(kind, interceptors.retry({ minTimeout: 1, maxTimeout: 1 }))
    expect(await outcome(dispatcher, `${origin.url}/r`)).toBe('200 ok')
    expect(await outcome(dispatcher, `${origin.url}/r`)).toBe('200 ok')
    expect(origin.hits('/r')).toBe(kind === 'plain' ? 3 : 2)
  })

  it.each([['a miss', 1], ['a hit', 2], ['a 304', 2]] as const)('a handler whose end callback throws gets that error, on %s', async (what, nth) => {
    const origin = await opened.origin({
      '/t': (req, res) => {
        const fields = { etag: '"v1"', 'cache-control': what === 'a 304' ? 'no-cache' : 'max-age=60' }
        if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, fields).end()
        else res.writeHead(200, fields).end('body')
      }
    })
    const url = `${origin.url}/t`
    const dispatcher = dispatcherOf(kind, throwsAtEnd(nth))
    const outcomes = [await outcome(dispatcher, url), await outcome(dispatcher, url), await outcome(dispatcher, url)]
    expect(outcomes).toEqual(['200 body', '200 body', '200 body'].map((ok, i) => i === nth - 1 ? 'threw Error' : ok))
    if (kind === 'cached') expect(origin.hits('/t')).toBe(what === 'a 304' ? 3 : 1)
  })

  // With the cache's own retries on, a request that shares no exchange (a PUT, a GET with content)
  // is answered through its retry layer.
  it.each(['PUT', 'GET with content'])('a handler whose end callback throws gets that error, with retries on: %s', async (what) => {
    const origin = await opened.origin({ '/p': respond(200, { 'content-type': 'text/plain' }, 'done') })
    const dispatcher = dispatcherOf(kind, throwsAtEnd(1), { retry: { baseDelay: 1 } })
    const send = async (): Promise<string> => await within(request(`${origin.url}/p`, { dispatcher, method: what === 'PUT' ? 'PUT' : 'GET', body: 'content' })
      .then(async (response) => `${response.statusCode} ${await response.body.text()}`)
      .catch((error: Error) => `threw ${error.name}`), what)
    expect([await send(), await send()]).toEqual(['threw Error', '200 done'])
  })

  it('dump: a body past its maxSize fails, on a miss and on a hit', async () => {
    const big = bytes(200_000)
    const origin = await opened.origin({ '/big': respond(200, { 'cache-control': 'max-age=60' }, big) })
    const dispatcher = dispatcherOf(kind, interceptors.dump({ maxSize: 100_000 }))
    expect(await outcome(dispatcher, `${origin.url}/big`)).toBe('threw AbortError')
    expect(await outcome(dispatcher, `${origin.url}/big`)).toBe('threw AbortError')
  })
})

describe('undici\'s redirect interceptor below the cache (compose(interceptors.redirect(), cacheInterceptor()))', () => {
  /** The cache outermost: it sees only the answer the last hop gave. */
  const redirectBelow = (): Dispatcher => opened.agent().compose(interceptors.redirect({ maxRedirections: 3 }), cacheInterceptor({ cache: createCache() }))
  const as = async (dispatcher: Dispatcher, url: string, authorization: string): Promise<string> =>
    await request(url, { dispatcher, headers: { authorization } }).then(async (response) => await response.body.text())

  it('stores no answer a redirect led to under the URL asked for: not another user\'s, not another origin\'s, not past a no-store hop', async () => {
    const origin = await opened.origin({
      '/me': (req, res) => { res.writeHead(302, { location: `/profile/${String(req.headers.authorization).split(' ')[1]}` }).end() },
      '/profile/alice': respond(200, { 'cache-control': 'public, max-age=3600' }, 'alice\'s profile'),
      '/profile/bob': respond(200, { 'cache-control': 'public, max-age=3600' }, 'bob\'s profile'),
      '/latest': sequence(respond(302, { location: '/release/1', 'cache-control': 'no-store' }), respond(302, { location: '/release/2', 'cache-control': 'no-store' })),
      '/release/1': respond(200, { 'cache-control': 'max-age=31536000, immutable' }, 'release 1'),
      '/release/2': respond(200, { 'cache-control': 'max-age=31536000, immutable' }, 'release 2')
    })
    const other = await opened.origin({ '/page': respond(200, { 'cache-control': 'public, max-age=3600' }, 'another origin\'s page') })
    origin.route('/go', sequence(respond(302, { location: `${other.url}/page` }), respond(200, { 'cache-control': 'max-age=60' }, 'its own page')))
    const dispatcher = redirectBelow()
    expect(await as(dispatcher, `${origin.url}/me`, 'Bearer alice')).toBe('alice\'s profile')
    expect(await as(dispatcher, `${origin.url}/me`, 'Bearer bob')).toBe('bob\'s profile')
    expect(await outcome(dispatcher, `${origin.url}/latest`)).toBe('200 release 1')
    expect(await outcome(dispatcher, `${origin.url}/latest`)).toBe('200 release 2')
    expect(await outcome(dispatcher, `${origin.url}/go`)).toBe('200 another origin\'s page')
    expect(await outcome(dispatcher, `${origin.url}/go`)).toBe('200 its own page')
  })

  it('judges each of the cache\'s own retries by its own hops: a retry redirected is not stored, one not redirected after a redirected attempt is', async () => {
    const origin = await opened.origin({
      '/me': sequence(respond(503, {}, 'busy'), (req, res) => { res.writeHead(302, { location: `/profile/${String(req.headers.authorization).split(' ')[1]}` }).end() }),
      '/profile/alice': respond(200, { 'cache-control': 'public, max-age=3600' }, 'alice\'s profile'),
      '/profile/bob': respond(200, { 'cache-control': 'public, max-age=3600' }, 'bob\'s profile'),
      '/p': sequence(respond(302, { location: '/busy' }), respond(200, { 'cache-control': 'max-age=3600' }, 'p')),
      '/busy': respond(503, {}, 'busy')
    })
    const dispatcher = opened.agent().compose(interceptors.redirect({ maxRedirections: 3 }), cacheInterceptor({ cache: createCache({ retry: { baseDelay: 1, maxDelay: 1 } }) }))
    expect(await as(dispatcher, `${origin.url}/me`, 'Bearer alice')).toBe('alice\'s profile')
    expect(await as(dispatcher, `${origin.url}/me`, 'Bearer bob')).toBe('bob\'s profile')
    expect(await outcome(dispatcher, `${origin.url}/p`)).toBe('200 p')
    expect(await outcome(dispatcher, `${origin.url}/p`)).toBe('200 p')
    expect(origin.hits('/p')).toBe(2)
  })

  it('judges each attempt of undici\'s retry interceptor between them by its own hops, the cache\'s own retries on or off', async () => {
    for (const retry of [undefined, false] as const) {
      const origin = await opened.origin({
        '/me': sequence(respond(503, {}, 'busy'), (req, res) => { res.writeHead(302, { location: `/profile/${String(req.headers.authorization).split(' ')[1]}` }).end() }),
        '/profile/alice': respond(200, { 'cache-control': 'public, max-age=3600' }, 'alice\'s profile'),
        '/profile/bob': respond(200, { 'cache-control': 'public, max-age=3600' }, 'bob\'s profile')
      })
      const cache = createCache(retry === false ? { retry } : {})
      const dispatcher = opened.agent().compose(interceptors.redirect({ maxRedirections: 3 }), interceptors.retry({ minTimeout: 1, maxTimeout: 1 }), cacheInterceptor({ cache }))
      expect(await as(dispatcher, `${origin.url}/me`, 'Bearer alice')).toBe('alice\'s profile')
      await cache.flush()
      expect(await as(dispatcher, `${origin.url}/me`, 'Bearer bob')).toBe('bob\'s profile')
    }
  })

  it('redirects a stale-while-revalidate refresh as its caller\'s request would be (its maxRedirections), and drops the entry of a URL that now redirects (found by a hunt)', async () => {
    const clock = manualClock(wholeSecondNow())
    const origin = await opened.origin({
      '/a': sequence(
        respond(200, { 'cache-control': 'max-age=10, stale-while-revalidate=60' }, 'a'),
        respond(301, { location: '/b', 'cache-control': 'max-age=3600' })),
      '/b': respond(200, { 'cache-control': 'no-store' }, 'b')
    })
    const cache = createCache({ now: clock.now })
    // The redirects are the caller's to ask for, request by request (undici 7's types no longer name
    // maxRedirections; its redirect interceptor reads it).
    const FOLLOW = { maxRedirections: 3 }
    const dispatcher = opened.agent().compose(interceptors.redirect(), cacheInterceptor({ cache }))
    const get = async (): Promise<string> => await request(`${origin.url}/a`, { dispatcher, ...FOLLOW })
      .then(async (response) => `${response.statusCode} ${await response.body.text()}`)
    expect(await get()).toBe('200 a')
    clock.advance(20)
    expect(await get()).toBe('200 a')
    await waitFor(() => origin.hits('/b') === 1, 'the refresh, redirected')
    await cache.flush()
    // Neither the 301, stored for a caller that follows redirects, nor the stale 200 of a URL that redirects now.
    expect(await get()).toBe('200 b')
    expect(origin.hits('/a')).toBe(3)
  })

  it.each([['in the foreground', 'max-age=10'], ['in the background', 'max-age=10, stale-while-revalidate=60']])(
    'lets no 304 of a redirect\'s target freshen what was stored for the URL that now redirects, %s (found by a review)', async (_where, cacheControl) => {
      const clock = manualClock(wholeSecondNow())
      // Two resources whose versions are counted alike: the cache's If-None-Match "1" for /a, carried to /b, matches there.
      const origin = await opened.origin({
        '/a': sequence(respond(200, { date: clock.date(), 'cache-control': cacheControl, etag: '"1"' }, 'a'), respond(301, { location: '/b' })),
        '/b': (req, res) => {
          const fields = { date: clock.date(), etag: '"1"', 'cache-control': 'max-age=600' }
          if (req.headers['if-none-match'] === '"1"') res.writeHead(304, fields).end()
          else res.writeHead(200, fields).end('b')
        }
      })
      const cache = createCache({ now: clock.now, retry: false })
      const dispatcher = opened.agent().compose(interceptors.redirect(), cacheInterceptor({ cache }))
      const FOLLOW = { maxRedirections: 3 }
      const get = async (): Promise<string> => await request(`${origin.url}/a`, { dispatcher, ...FOLLOW })
        .then(async (response) => `${response.statusCode} ${await response.body.text()}`)
      expect(await get()).toBe('200 a')
      clock.advance(20)
      // The stale entry's revalidation, redirected: its caller has the stored body this once (its own
      // request sent no validator, and has nothing a 304 could confirm).
      expect(await get()).toBe('200 a')
      await cache.flush()
      expect(await get()).toBe('200 b')
      expect(await get()).toBe('200 b')
    })

  it('still stores an answer no redirect led to, and serves it', async () => {
    const origin = await opened.origin({ '/plain': respond(200, { 'cache-control': 'max-age=60' }, 'plain') })
    const dispatcher = redirectBelow()
    expect(await outcome(dispatcher, `${origin.url}/plain`)).toBe('200 plain')
    expect(await outcome(dispatcher, `${origin.url}/plain`)).toBe('200 plain')
    expect(origin.hits('/plain')).toBe(1)
  })
})

describe('request fields undici refuses (found by a hunt)', () => {
  /** The outcome of a request with these fields: status and body, or the error's name and message. */
  async function sent (dispatcher: Dispatcher, url: string, headers?: unknown): Promise<string> {
    return await request(url, { dispatcher, headers: headers as never })
      .then(async (response) => `${response.statusCode} ${await response.body.text()}`, (error: Error) => `threw ${error.name}: ${error.message}`)
  }

  const refused: Array<[string, () => unknown]> = [
    ['a Buffer value', () => ({ 'x-a': Buffer.from('1') })],
    ['a symbol value', () => ({ 'x-a': Symbol('1') })],
    ['a value with CR LF', () => ({ 'x-a': 'v\r\nx-injected: 1' })],
    ['an object in a list of values', () => ({ 'x-a': ['1', {}] })],
    ['a name that is no token', () => ({ 'x a': '1' })],
    ['pairs of three in an array', () => [['x-a', '1', 'x']]],
    ['a flat list of odd length', () => ['x-a', '1', 'x-b']],
    ['an iterator of entries that are not pairs', function * () { yield ['x-a', '1', 'extra'] }],
    ['Host twice', () => ['host', 'a.test', 'Host', 'b.test']],
    ['a Content-Length that is no number', () => ({ 'content-length': '1e3' })],
    ['a Connection that lists no tokens', () => ({ connection: 'close, x y' })]
  ]

  it.each(refused)('%s: fails on a hit as through a plain Agent, counted as no lookup', async (_what, headers) => {
    const origin = await opened.origin({ '/r': respond(200, { 'cache-control': 'max-age=60' }, 'ok') })
    const url = `${origin.url}/r`
    const plain = await sent(opened.agent(), url, headers())
    expect(plain).toMatch(/^threw /)
    const cache = createCache()
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache }))
    expect(await sent(dispatcher, url)).toBe('200 ok')
    expect(await sent(dispatcher, url, headers())).toBe(plain)
    expect(cache.stats()).toMatchObject({ hits: 0, misses: 1 })
    expect(origin.hits('/r')).toBe(1)
  })

  // Pairs in an array, which undici's Request refuses, its dns interceptor below makes a flat list of (found by a review).
  it('serves the fields undici takes in every shape: a list of values, primitives, an iterator of pairs, pairs in an array', async () => {
    const origin = await opened.origin({ '/r': respond(200, { 'cache-control': 'max-age=60' }, 'ok') })
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache: createCache() }))
    const url = `${origin.url}/r`
    for (const headers of [{ 'x-a': ['1', 2, null], 'x-b': 3, 'x-c': true }, new Map([['x-a', '1']]).entries(), ['x-a', '1', 'connection', 'keep-alive'], Object.entries({ 'x-a': '1' })]) {
      expect(await sent(dispatcher, url, headers)).toBe('200 ok')
    }
    expect(origin.hits('/r')).toBe(1)
  })
})

describe('a GET with content', () => {
  it('passes the cache by: each gets the answer to its own content, and its stream is read', async () => {
    const origin = await opened.origin({
      '/search': async (req, res) => {
        let body = ''
        for await (const chunk of req) body += String(chunk)
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }).end(`found ${body}`)
      }
    })
    const cache = createCache()
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache }))
    const search = async (body: string | Readable): Promise<string> => {
      const response = await request(`${origin.url}/search`, { dispatcher, method: 'GET', body })
      return `${response.headers['cache-status'] as string}: ${await response.body.text()}`
    }

    expect(await search('alpha')).toBe('cachedfetch; fwd=bypass; fwd-status=200: found alpha')
    expect(await search('beta')).toBe('cachedfetch; fwd=bypass; fwd-status=200: found beta')
    const stream = Readable.from([Buffer.from('gamma')])
    expect(await search(stream)).toBe('cachedfetch; fwd=bypass; fwd-status=200: found gamma')
    expect(stream.readableEnded).toBe(true)
    expect(origin.hits('/search')).toBe(3)
    expect(cache.stats()).toMatchObject({ stored: 0, bypassed: 3 })
  })

  it('reads an empty body as none: a GET given body \'\' or an empty buffer is looked up and stored', async () => {
    const origin = await opened.origin({ '/search': respond(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }, 'found all') })
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache: createCache() }))
    const statuses: unknown[] = []
    for (const body of ['', Buffer.alloc(0), new Uint8Array(0)]) {
      const response = await request(`${origin.url}/search`, { dispatcher, method: 'GET', body })
      await response.body.text()
      statuses.push(response.headers['cache-status'])
    }
    expect(statuses).toEqual(['cachedfetch; fwd=uri-miss; fwd-status=200; stored', expect.stringMatching(/^cachedfetch; hit/), expect.stringMatching(/^cachedfetch; hit/)])
    expect(origin.hits('/search')).toBe(1)
    // And identical ones share an exchange, as any GETs do.
    const same = async (): Promise<string> => await (await request(`${origin.url}/search?again`, { dispatcher, method: 'GET', body: '' })).body.text()
    expect(await Promise.all([same(), same()])).toEqual(['found all', 'found all'])
    expect(origin.hits('/search?again')).toBe(1)
  })

  it('answers only-if-cached with a 504, as a request the cache passes by: nothing stored serves it', async () => {
    const origin = await opened.origin({ '/search': respond(200, { 'cache-control': 'max-age=60' }, 'found') })
    const dispatcher = opened.agent().compose(cacheInterceptor())
    const response = await request(`${origin.url}/search`, { dispatcher, method: 'GET', body: 'alpha', cacheMode: 'only-if-cached' } as never)
    expect([response.statusCode, response.headers['cache-status'], await response.body.text()]).toEqual([504, 'cachedfetch; detail=only-if-cached', ''])
    expect(origin.hits('/search')).toBe(0)
  })
})

describe('a handler that aborts without a reason', () => {
  it('is told with undici\'s RequestAbortedError on a hit and on a miss, as through a plain Agent', async () => {
    const origin = await opened.origin({ '/a': respond(200, { 'cache-control': 'max-age=60' }, bytes(200_000)) })
    const agent = opened.agent()
    const dispatcher = agent.compose(cacheInterceptor({ cache: createCache({ retry: false }) }))
    /** The error a handler that aborts at its first chunk is told of. */
    const abortedWith = async (via: Dispatcher): Promise<unknown> => await new Promise((resolve) => {
      via.dispatch({ origin: origin.url, path: '/a', method: 'GET', headers: {} }, {
        onRequestStart: () => {},
        onResponseStart: () => {},
        onResponseData: (controller) => { controller.abort(undefined as unknown as Error) },
        onResponseEnd: () => { resolve('ended') },
        onResponseError: (_controller, error) => { resolve({ name: error.name, code: (error as { code?: string }).code }) }
      })
    })
    const plain = await abortedWith(agent)
    expect(plain).toEqual({ name: 'AbortError', code: 'UND_ERR_ABORTED' })
    expect(await abortedWith(dispatcher)).toEqual(plain)
    await (await request(`${origin.url}/a`, { dispatcher })).body.arrayBuffer()
    expect(await abortedWith(dispatcher)).toEqual(plain)
  })
})
