/**
 * RFC 9111 §3: which responses the cache stores. Each case in fixtures/storable.json is sent twice,
 * with the same request, through cachedFetch and through the undici interceptor: a stored response
 * makes the second a hit the origin never sees; anything else reaches the origin twice. Before
 * either, cache.explain() must say the same of it.
 */
import { readFileSync } from 'node:fs'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createCache } from '../src/index.js'
import { adapters } from './helpers/clients.js'
import { startOrigin, type Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'

interface StorableCase {
  readonly name: string
  readonly method?: string
  readonly status: number
  /** An array value is sent as several field lines. */
  readonly response: Record<string, string | string[]>
  readonly request?: Record<string, string>
  readonly mode: 'shared' | 'private'
  readonly stored: boolean
}

const { cases } = JSON.parse(readFileSync(new URL('../fixtures/storable.json', import.meta.url), 'utf8')) as
  { cases: StorableCase[] }

let origin: Origin
const opened = teardown()

beforeAll(async () => {
  origin = await startOrigin()
})

afterEach(() => opened.close())

afterAll(async () => {
  await origin.close()
})

for (const { name: adapter, connect } of adapters) {
  describe(`storability through ${adapter}`, () => {
    it.each(cases.map((c, i) => ({ ...c, path: `/${adapter}/${i}` })))('$name', async (c) => {
      const method = c.method ?? 'GET'
      origin.route(c.path, (_req, res) => {
        res.writeHead(c.status, c.response)
        res.end(`body of ${c.path}`)
      })
      const cache = createCache({ shared: c.mode === 'shared', retry: false })
      const client = opened.add(connect(cache))
      const url = origin.url + c.path
      const headers = c.request ?? {}
      // cache.explain() says what the engine does.
      expect(cache.explain({ method, url, headers }, c.status, c.response).storable).toBe(c.stored)

      const first = await client.send(url, { method, headers })
      const second = await client.send(url, { method, headers })

      expect(first.status).toBe(c.status)
      expect(second.status).toBe(c.status)
      expect(second.body).toBe(first.body)
      if (c.stored) {
        expect(first.header('cache-status')).toMatch(/; stored$/)
        expect(second.header('cache-status')).toMatch(/^cachedfetch; hit; ttl=\d+$/)
        expect(origin.hits(c.path)).toBe(1)
      } else {
        expect(first.header('cache-status')).not.toContain('stored')
        expect(second.header('cache-status')).not.toContain('hit')
        expect(origin.hits(c.path)).toBe(2)
      }
    })
  })
}

describe('cache.explain() on a response without content', () => {
  // RFC 9110 §9.3.2, §15.3.5, §15.4.5: a HEAD response, a 204 and a 304 have no body, whatever
  // their Content-Length says; the engine stores them however large it claims to be.
  it.each([
    { method: 'GET', status: 204 },
    { method: 'GET', status: 304 },
    { method: 'HEAD', status: 200 }
  ])('$method answered $status: a Content-Length past maxEntrySize is no reason', async ({ method, status }) => {
    const cache = createCache({ maxEntrySize: 1000 })
    const explanation = cache.explain({ method, url: 'https://example.test/empty', headers: {} }, status, { 'cache-control': 'max-age=60', 'content-length': '5000' })
    expect(explanation.reasons.filter((reason) => reason.includes('maxEntrySize'))).toEqual([])
    await cache.close()
  })

  it('a 200 to GET with that Content-Length is over maxEntrySize', async () => {
    const cache = createCache({ maxEntrySize: 1000 })
    const explanation = cache.explain({ method: 'GET', url: 'https://example.test/full', headers: {} }, 200, { 'cache-control': 'max-age=60', 'content-length': '5000' })
    expect(explanation.reasons).toEqual(['its body (5000 bytes) is over maxEntrySize (1000)'])
    await cache.close()
  })
})

describe('cache.explain() reads fields as the engine does', () => {
  it('takes request fields named in any case, as a request through the cache sends them: Authorization keeps a plain max-age from a shared cache (RFC 9111 §3.5)', async () => {
    const cache = createCache()
    for (const headers of [{ Authorization: 'Bearer x' }, { authorization: 'Bearer x' }, new Headers({ Authorization: 'Bearer x' })]) {
      expect(cache.explain({ url: 'https://example.test/mine', headers }, 200, { 'Cache-Control': 'max-age=60' }).storable).toBe(false)
    }
    expect(cache.explain({ url: 'https://example.test/mine', headers: { 'Cache-Control': 'no-store' } }, 200, { 'cache-control': 'max-age=60' }).storable).toBe(false)
    await cache.close()
  })

  it('takes a fetch Response\'s Headers as the response fields, and a request without fields', async () => {
    const cache = createCache()
    const received = new Response('x', { headers: { 'cache-control': 'max-age=60', etag: '"v1"' } }).headers
    const explanation = cache.explain({ url: new URL('https://example.test/doc') }, 200, received)
    expect(explanation).toMatchObject({ storable: true, lifetime: 60, revalidation: { 'if-none-match': '"v1"' } })
    await cache.close()
  })

  it('says why memory alone cannot keep an entry past maxSize, as the engine refuses it', async () => {
    const cache = createCache({ maxSize: 10_000 })
    const explanation = cache.explain({ url: 'https://example.test/large' }, 200, { 'cache-control': 'max-age=60', 'content-length': '20000' })
    expect(explanation.storable).toBe(false)
    expect(explanation.reasons).toEqual([expect.stringMatching(/^its entry \(20000 bytes of body, \d+ of fields and bookkeeping\) is over maxSize \(10000\), and memory is the only tier$/)])
    await cache.close()
  })

  it('refuses a request that is no object and a status that is none, naming them', async () => {
    const cache = createCache()
    expect(() => cache.explain(undefined as never, 200, {})).toThrow(/the request to explain/)
    expect(() => cache.explain({ url: 'https://example.test/' }, '200' as never, {})).toThrow(/the status to explain/)
    expect(() => cache.explain({} as never, 200, {})).toThrow(/the request to explain/)
    expect(() => cache.explain({ url: 'https://example.test/' }, 200, 'cache-control: max-age=60' as never)).toThrow(/the headers to explain/)
    expect(() => cache.explain({ url: 'https://example.test/', headers: 5 as never }, 200, {})).toThrow(/the request's headers/)
    await cache.close()
  })
})
