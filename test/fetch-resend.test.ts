/**
 * A cachedFetch call that must reach the origin for a plain request of a shape fetch has sent
 * before (a revalidation, a miss) sends what fetch sent itself, to its own path
 * (src/adapters/sent.ts), without a run of undici.fetch: the origin must see exactly what fetch
 * would send, field for field and in order, and the caller must get what fetch would have given
 * it — fetch's own handling (decoding, redirects) for an answer fetch would change, fetch's errors
 * for an abort.
 *
 * undici.fetch is wrapped to count its runs; everything else in undici is the real thing.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { gzipSync } from 'node:zlib'
import type * as Undici from 'undici'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createCache, createCachedFetch } from '../src/index.js'
import type { Origin, Route } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { gate, waitFor } from './helpers/wait.js'

const runs = vi.hoisted(() => ({ fetch: 0 }))
vi.mock('undici', async (importOriginal) => {
  const undici = await importOriginal<typeof Undici>()
  return {
    ...undici,
    fetch: async (...args: Parameters<typeof undici.fetch>) => {
      runs.fetch++
      return await undici.fetch(...args)
    }
  }
})

const opened = teardown()
beforeEach(() => { runs.fetch = 0 })
afterEach(() => opened.close())

/** Stored, but revalidated on every use (RFC 9111 §5.2.2.4): what each request after the first does. */
const REVALIDATE = { 'cache-control': 'no-cache', etag: '"v1"' }

/** 304 to a matching If-None-Match, else 200 with `body`. */
function answer (req: IncomingMessage, res: ServerResponse, body: string, fields: Record<string, string> = REVALIDATE): void {
  if (req.headers['if-none-match'] === fields.etag) res.writeHead(304, fields).end()
  else res.writeHead(200, { ...fields, 'content-type': 'text/plain' }).end(body)
}

/** `answer` as a route, keeping each request's raw header lines in `raw`. */
function revalidated (body: string, raw: string[][] = []): Route {
  return (req, res) => {
    raw.push(req.rawHeaders)
    answer(req, res, body)
  }
}

/** Raw header lines with the names in lower case. */
function lowerNames (raw: string[]): string[] {
  return raw.map((item, i) => i % 2 === 0 ? item.toLowerCase() : item)
}

async function setUp (routes: Record<string, Route>): Promise<{ server: Origin, cache: ReturnType<typeof createCache>, cachedFetch: ReturnType<typeof createCachedFetch> }> {
  const server = await opened.origin(routes)
  const cache = createCache()
  return { server, cache, cachedFetch: createCachedFetch({ cache, dispatcher: opened.agent() }) }
}

describe('a cachedFetch revalidation of a request fetch has sent before', () => {
  it('sends what fetch sent, field for field and in order, plus the validator, and serves the stored body, without a run of undici.fetch', async () => {
    const raw: string[][] = []
    const { server, cache, cachedFetch } = await setUp({ '/doc': revalidated('version 1', raw) })
    const init = { headers: { 'X-Client': 'tests', accept: 'text/plain' } }

    expect(await (await cachedFetch(`${server.url}/doc`, init)).text()).toBe('version 1')
    expect(runs.fetch).toBe(1)
    const again = await cachedFetch(`${server.url}/doc`, init)

    expect(runs.fetch).toBe(1)
    expect(server.hits('/doc')).toBe(2)
    // Names compared in lower case (RFC 9110 §5.1): a revalidation writes them so, through fetch or not.
    const [first, second] = raw.map(lowerNames)
    expect(second).toEqual([...first!, 'if-none-match', '"v1"'])
    expect(again.status).toBe(200)
    expect(again.url).toBe(`${server.url}/doc`)
    expect(again.type).toBe('basic')
    expect(again.redirected).toBe(false)
    expect(again.headers.get('content-type')).toBe('text/plain')
    expect(again.headers.get('cache-status')).toMatch(/^cachedfetch; fwd=stale; fwd-status=304; ttl=-?\d+$/)
    expect(() => { again.headers.set('x-mine', '1') }).toThrow(TypeError)
    expect(await again.text()).toBe('version 1')
    expect(cache.stats()).toMatchObject({ hits: 0, misses: 1, revalidated: 1 })
  })

  it('sends fields given as an iterator, which can be read once, on every path', async () => {
    const { server, cachedFetch } = await setUp({ '/doc': revalidated('version 1') })
    // fetch takes any iterable of pairs (a WebIDL sequence), though undici's type names arrays only.
    const fields = (): [string, string][] => new Map([['authorization', 'Bearer token'], ['x-client', 'tests']]).entries() as unknown as [string, string][]

    await cachedFetch(`${server.url}/doc`, { headers: fields() })
    await cachedFetch(`${server.url}/doc`, { headers: fields() })

    expect(server.seen('/doc').map((r) => `${String(r.headers.authorization)} ${String(r.headers['x-client'])}`))
      .toEqual(['Bearer token tests', 'Bearer token tests'])
  })

  it('sends a HEAD as fetch sent it, and answers it without a body', async () => {
    const raw: string[][] = []
    const { server, cachedFetch } = await setUp({ '/doc': revalidated('version 1', raw) })

    await cachedFetch(`${server.url}/doc`, { method: 'HEAD' })
    const again = await cachedFetch(`${server.url}/doc`, { method: 'HEAD' })

    expect(runs.fetch).toBe(1)
    expect(server.seen('/doc').map((r) => r.method)).toEqual(['HEAD', 'HEAD'])
    expect(raw[1]).toEqual([...raw[0]!, 'if-none-match', '"v1"'])
    expect(again.status).toBe(200)
    expect(again.body).toBeNull()
  })

  it('keeps each set of caller fields apart: a revalidation carries its own caller\'s', async () => {
    const fields = { ...REVALIDATE, vary: 'x-tenant' }
    const { server, cachedFetch } = await setUp({
      '/doc': (req, res) => { answer(req, res, `for ${String(req.headers['x-tenant'])}`, fields) }
    })
    const as = (tenant: string): Promise<string> => cachedFetch(`${server.url}/doc`, { headers: { 'x-tenant': tenant } }).then(async (r) => await r.text())

    expect([await as('a'), await as('b')]).toEqual(['for a', 'for b'])
    expect([await as('b'), await as('a')]).toEqual(['for b', 'for a'])

    expect(runs.fetch).toBe(2)
    expect(server.seen('/doc').map((r) => `${String(r.headers['x-tenant'])} ${r.headers['if-none-match'] ?? 'unconditional'}`))
      .toEqual(['a unconditional', 'b unconditional', 'b "v1"', 'a "v1"'])
  })

  it('hands an answer fetch would change to fetch: a new version sent gzip is decoded, the origin asked once', async () => {
    let version = 1
    const { server, cachedFetch } = await setUp({
      '/doc': (req, res) => {
        if (version === 1) answer(req, res, 'version 1')
        else res.writeHead(200, { 'cache-control': 'no-cache', etag: '"v2"', 'content-encoding': 'gzip' }).end(gzipSync('version 2'))
      }
    })
    await cachedFetch(`${server.url}/doc`)
    version = 2

    const changed = await cachedFetch(`${server.url}/doc`)

    expect(await changed.text()).toBe('version 2')
    expect(changed.headers.get('content-encoding')).toBe('gzip')
    expect(server.hits('/doc')).toBe(2)
    expect(runs.fetch).toBe(2)
  })

  it('hands a redirect to fetch, which follows it', async () => {
    let moved = false
    const { server, cachedFetch } = await setUp({
      '/doc': (req, res) => {
        if (moved) res.writeHead(302, { location: '/new' }).end()
        else answer(req, res, 'version 1')
      },
      '/new': (_req, res) => { res.writeHead(200, { 'cache-control': 'no-store' }).end('the new place') }
    })
    await cachedFetch(`${server.url}/doc`)
    moved = true

    const redirected = await cachedFetch(`${server.url}/doc`)

    expect(redirected.redirected).toBe(true)
    expect(redirected.url).toBe(`${server.url}/new`)
    expect(await redirected.text()).toBe('the new place')
    expect(server.hits('/doc')).toBe(2)
    expect(server.hits('/new')).toBe(1)
  })

  it('fails with the signal\'s reason when aborted while the origin answers, as fetch does; the next call is served', async () => {
    const held = gate()
    let hold = false
    const { server, cachedFetch } = await setUp({
      '/doc': async (req, res) => {
        if (hold) await held.promise
        answer(req, res, 'version 1')
      }
    })
    await cachedFetch(`${server.url}/doc`)
    hold = true
    const controller = new AbortController()

    const aborted = cachedFetch(`${server.url}/doc`, { signal: controller.signal })
    await waitFor(() => server.hits('/doc') === 2, 'the revalidation to reach the origin')
    controller.abort(new Error('changed my mind'))

    await expect(aborted).rejects.toThrow('changed my mind')
    hold = false
    held.release()
    expect(await (await cachedFetch(`${server.url}/doc`)).text()).toBe('version 1')
    expect(runs.fetch).toBe(1)
  })

  it('remembers the last 1024 shapes of request (the caller\'s fields, here): an older one runs undici.fetch again', async () => {
    const { server, cachedFetch } = await setUp({ '/doc': revalidated('version 1') })
    const call = async (n: number): Promise<void> => { await (await cachedFetch(`${server.url}/doc`, { headers: { 'x-n': String(n) } })).arrayBuffer() }
    for (let n = 0; n <= 1024; n++) await call(n)
    expect(runs.fetch).toBe(1025)

    await call(1024)
    expect(runs.fetch).toBe(1025)
    await call(0)
    expect(runs.fetch).toBe(1026)
    expect(server.seen('/doc').filter((r) => r.headers['x-n'] === '0')).toHaveLength(2)
  })

  it('forgets the shape used longest ago, not the one recorded first: a shape sent again is kept', async () => {
    const { server, cachedFetch } = await setUp({ '/doc': revalidated('version 1') })
    const call = async (n: number): Promise<void> => { await (await cachedFetch(`${server.url}/doc`, { headers: { 'x-n': String(n) } })).arrayBuffer() }
    for (let n = 0; n < 1024; n++) await call(n)
    await call(0)
    await call(0)
    expect(runs.fetch).toBe(1024)

    await call(1024)
    expect(runs.fetch).toBe(1025)
    await call(0)
    expect(runs.fetch).toBe(1025)
    await call(1)
    expect(runs.fetch).toBe(1026)
  })
})

describe('a cachedFetch request of a shape fetch has sent before, to another URL', () => {
  it('is sent without fetch, to its own path and query as fetch sends them, with the fields fetch sent', async () => {
    const raw: string[][] = []
    const paths: string[] = []
    const route = (body: string): Route => (req, res) => {
      raw.push(req.rawHeaders)
      paths.push(req.url!)
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' }).end(body)
    }
    const { server, cachedFetch } = await setUp({ '/first': route('first'), '/second': route('second'), '/third': route('third') })
    const init = { headers: { 'x-client': 'tests' } }

    expect(await (await cachedFetch(`${server.url}/first`, init)).text()).toBe('first')
    expect(await (await cachedFetch(`${server.url}/second?q=a b&r=é`, init)).text()).toBe('second')
    expect(await (await cachedFetch(`${server.url}/third?`, init)).text()).toBe('third')

    expect(runs.fetch).toBe(1)
    expect(paths).toEqual(['/first', '/second?q=a%20b&r=%C3%A9', '/third?'])
    expect(raw.map(lowerNames)).toEqual(Array.from({ length: 3 }, () => lowerNames(raw[0]!)))
  })

  it('goes to fetch for another origin, or another set of fields', async () => {
    const { server, cachedFetch } = await setUp({ '/doc': revalidated('version 1') })
    const other = await opened.origin({ '/doc': revalidated('version 1') })

    await cachedFetch(`${server.url}/doc`)
    await cachedFetch(`${other.url}/doc`)
    await cachedFetch(`${server.url}/doc`, { headers: { 'x-client': 'tests' } })

    expect(runs.fetch).toBe(3)
  })

  it('leaves a URL with credentials to fetch, which refuses it', async () => {
    const { server, cachedFetch } = await setUp({ '/doc': revalidated('version 1') })
    await cachedFetch(`${server.url}/doc`)

    await expect(cachedFetch(server.url.replace('http://', 'http://user:secret@') + '/doc')).rejects.toThrow(TypeError)
    expect(server.hits('/doc')).toBe(1)
  })
})
