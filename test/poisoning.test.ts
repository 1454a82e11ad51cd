/**
 * A cache that serves the wrong body to the wrong caller is worse than no cache. These cases think
 * like an attacker: credentials, Set-Cookie, Vary, the key (scheme, host, port, path, query, and
 * the forms that look alike), Content-Location and Location, invalidation across origins, header
 * fields that are malformed or oversize, HEAD beside GET. Every case runs against real loopback
 * origins that record what they saw, through cachedFetch and through the undici interceptor where
 * both can send the request.
 */
import { readFileSync } from 'node:fs'
import { connect as netConnect } from 'node:net'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Agent, type Dispatcher } from 'undici'
import { cacheInterceptor, createCache, type Cache } from '../src/index.js'
import { FIELD_LIMITS } from '../src/field-limits.js'
import { adapters, type Client, type Reply } from './helpers/clients.js'
import type { Origin, Route } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'

const HIT = /^cachedfetch; hit; ttl=\d+$/
const STORED = /; stored$/

const opened = teardown()
afterEach(() => opened.close())

/** `Bearer alice` / `session=alice` → `alice`; nothing → `anyone`. */
function who (headers: Record<string, string | string[] | undefined>): string {
  const credential = String(headers.authorization ?? headers.cookie ?? 'anyone')
  return credential.replace(/^(Bearer |session=)/, '')
}

/** Answers with `headers` and a body naming whose request it saw, and the target it was sent. */
function forWhom (headers: Record<string, string | string[]>): Route {
  return (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', ...headers })
    res.end(`for ${who(req.headers)} at ${req.url}`)
  }
}

/** An Agent that connects every origin (any name, port or scheme of http) to `origin`'s socket. */
function pointedAt (origin: Origin): Agent {
  const port = Number(new URL(origin.url).port)
  return new Agent({
    connect: (_options, callback) => {
      const socket = netConnect(port, '127.0.0.1')
      socket.once('connect', () => callback(null, socket)).once('error', (error) => callback(error, null))
    }
  })
}

/** An interceptor that sets one response field on its way up: a dispatcher below the cache that hands anything over. */
function settingField (name: string, value: string): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (opts, handler) => dispatch(opts, {
    onRequestStart: (controller, context) => handler.onRequestStart?.(controller, context),
    onResponseStart: (controller, status, headers, text) => handler.onResponseStart?.(controller, status, { ...headers, [name]: value }, text),
    onResponseData: (controller, chunk) => handler.onResponseData?.(controller, chunk),
    onResponseEnd: (controller, trailers) => handler.onResponseEnd?.(controller, trailers),
    onResponseError: (controller, error) => handler.onResponseError?.(controller, error)
  })
}

interface CredentialCase {
  readonly name: string
  readonly mode: 'shared' | 'private'
  readonly credential: 'authorization' | 'cookie'
  readonly response: Record<string, string | string[]>
  readonly stored: boolean
  readonly sharedWith: 'everyone' | 'alice' | 'nobody'
}

const credentialCases = (JSON.parse(readFileSync(new URL('../fixtures/credentials.json', import.meta.url), 'utf8')) as { cases: CredentialCase[] }).cases

for (const { name: adapter, connect } of adapters) {
  describe(`through ${adapter}`, () => {
    let origin: Origin

    beforeEach(async () => {
      origin = await opened.origin()
    })

    function client (options: Parameters<typeof createCache>[0] = {}, dispatcher?: Dispatcher): Client {
      return opened.add(connect(createCache({ retry: false, ...options }), dispatcher))
    }

    describe('responses to requests with Authorization or Cookie', () => {
      it.each(credentialCases)('$name', async (c) => {
        origin.route('/me', forWhom(c.response))
        const c1 = client({ shared: c.mode === 'shared' })
        const url = `${origin.url}/me`
        const as = (user: string): Record<string, string> => ({ [c.credential]: c.credential === 'authorization' ? `Bearer ${user}` : `session=${user}` })

        const first = await c1.send(url, { headers: as('alice') })
        const again = await c1.send(url, { headers: as('alice') })
        const bob = await c1.send(url, { headers: as('bob') })
        const anyone = await c1.send(url)

        expect(first.body).toBe('for alice at /me')
        expect(again.body).toBe('for alice at /me')
        if (c.stored) expect(again.header('cache-status')).toMatch(HIT)
        else expect(again.header('cache-status')).not.toMatch(/hit/)
        expect(bob.body).toBe(c.sharedWith === 'everyone' ? 'for alice at /me' : 'for bob at /me')
        expect(anyone.body).toBe(c.sharedWith === 'everyone' ? 'for alice at /me' : 'for anyone at /me')
        const served = c.sharedWith === 'everyone' ? 1 : c.stored ? 3 : 4
        expect(origin.hits('/me')).toBe(served)
      })

      it('keeps credentials that differ only in case apart when the response varies on them', async () => {
        origin.route('/me', forWhom({ 'cache-control': 'public, max-age=60', vary: 'authorization' }))
        const c1 = client()
        await c1.send(`${origin.url}/me`, { headers: { authorization: 'Bearer alice' } })
        const other = await c1.send(`${origin.url}/me`, { headers: { authorization: 'Bearer ALICE' } })
        expect(other.body).toBe('for ALICE at /me')
        expect(origin.hits('/me')).toBe(2)
      })
    })

    describe('Set-Cookie', () => {
      /** Each answer sets its own session: `session=user-N` for the origin's Nth request. */
      function sessions (headers: Record<string, string>): void {
        let n = 0
        origin.route('/session', (_req, res) => {
          n += 1
          res.writeHead(200, { 'content-type': 'text/plain', 'set-cookie': `session=user-${n}`, ...headers }).end(`for request ${n}`)
        })
      }

      const neverStored = [
        'max-age=60',
        'public, s-maxage=60, immutable',
        'private="set-cookie", max-age=60',
        'no-cache="set-cookie", max-age=60',
        'max-age=60, private="Set-Cookie"'
      ]
      it.each(neverStored)('is never stored in a shared cache, nor its cookie handed to the next caller (Cache-Control: %s)', async (cacheControl) => {
        sessions({ 'cache-control': cacheControl })
        const c1 = client()
        const first = await c1.send(`${origin.url}/session`)
        const second = await c1.send(`${origin.url}/session`)
        expect(first.header('set-cookie')).toBe('session=user-1')
        expect(second.header('set-cookie')).toBe('session=user-2')
        expect(second.body).toBe('for request 2')
        expect(first.header('cache-status')).not.toMatch(STORED)
        expect(origin.hits('/session')).toBe(2)
      })

      it('is stored with its cookie in a private cache when private="set-cookie" says only the cookie is private', async () => {
        sessions({ 'cache-control': 'private="set-cookie", max-age=60' })
        const c1 = client({ shared: false })
        await c1.send(`${origin.url}/session`)
        const second = await c1.send(`${origin.url}/session`)
        expect(second.header('cache-status')).toMatch(HIT)
        expect(second.header('set-cookie')).toBe('session=user-1')
        expect(origin.hits('/session')).toBe(1)
      })

      it('is never served from a private cache without revalidation when no-cache="set-cookie" names it', async () => {
        sessions({ 'cache-control': 'no-cache="set-cookie", max-age=60', etag: '"v1"' })
        const c1 = client({ shared: false })
        await c1.send(`${origin.url}/session`)
        const second = await c1.send(`${origin.url}/session`)
        expect(second.header('cache-status')).not.toMatch(/^cachedfetch; hit/)
        expect(origin.seen('/session')[1]!.headers['if-none-match']).toBe('"v1"')
      })

      it('in a 304 for a stored response, reaches that caller only: the freshened entry is not stored with it', async () => {
        let n = 0
        origin.route('/page', (req, res) => {
          n += 1
          if (req.headers['if-none-match'] === '"v1"' && n === 2) {
            // Alice's revalidation: fresh for a minute, and her session.
            res.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=60', 'set-cookie': 'session=alice' }).end()
            return
          }
          if (req.headers['if-none-match'] === '"v1"') {
            res.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=0' }).end()
            return
          }
          res.writeHead(200, { etag: '"v1"', 'cache-control': 'max-age=0', 'content-type': 'text/plain' }).end('the page')
        })
        const c1 = client()
        await c1.send(`${origin.url}/page`)
        const alice = await c1.send(`${origin.url}/page`)
        const bob = await c1.send(`${origin.url}/page`)
        expect(alice.header('set-cookie')).toBe('session=alice')
        expect(alice.body).toBe('the page')
        expect(bob.header('set-cookie')).toBeUndefined()
        expect(bob.body).toBe('the page')
        expect(bob.header('cache-status')).toMatch(/fwd=stale; fwd-status=304/)
        expect(origin.hits('/page')).toBe(3)
      })
    })

    describe('Vary keeps variants apart', () => {
      const cases: [string, string | string[], Record<string, string>[]][] = [
        ['Accept-Language', 'Accept-Language', [{ 'accept-language': 'en' }, { 'accept-language': 'fr' }, {}]],
        ['a field named twice, in two cases, with odd spacing', ' ACCEPT-LANGUAGE ,\taccept-language ', [{ 'accept-language': 'en' }, { 'accept-language': 'fr' }]],
        ['fields on two Vary lines', ['x-tenant', 'Authorization'], [{ 'x-tenant': 'a', authorization: 'Bearer alice' }, { 'x-tenant': 'a', authorization: 'Bearer bob' }, { 'x-tenant': 'b', authorization: 'Bearer alice' }]],
        ['Cookie, with and without one', 'Cookie', [{ cookie: 'session=alice' }, {}, { cookie: 'session=bob' }, { cookie: '' }]]
      ]
      it.each(cases)('%s', async (_name, vary, requests) => {
        origin.route('/v', (req, res) => {
          const headers: Record<string, string | string[]> = { 'content-type': 'text/plain', 'cache-control': 'public, max-age=60', vary }
          res.writeHead(200, headers)
          res.end(JSON.stringify([req.headers['accept-language'], req.headers['x-tenant'], req.headers.authorization, req.headers.cookie]))
        })
        const c1 = client()
        const first: Reply[] = []
        for (const headers of requests) first.push(await c1.send(`${origin.url}/v`, { headers }))
        const second: Reply[] = []
        for (const headers of requests) second.push(await c1.send(`${origin.url}/v`, { headers }))
        expect(new Set(first.map((r) => r.body)).size).toBe(requests.length)
        expect(second.map((r) => r.body)).toEqual(first.map((r) => r.body))
        for (const reply of second) expect(reply.header('cache-status')).toMatch(HIT)
        expect(origin.hits('/v')).toBe(requests.length)
      })

      it('never stores Vary: *, even when public and asked without credentials', async () => {
        origin.route('/star', forWhom({ 'cache-control': 'public, max-age=60', vary: 'Accept, *' }))
        const c1 = client()
        await c1.send(`${origin.url}/star`)
        await c1.send(`${origin.url}/star`)
        expect(origin.hits('/star')).toBe(2)
      })
    })

    describe('the cache key: scheme, host, port, path and query exactly', () => {
      /** Each target answers with the target the origin saw, and is cacheable. */
      function echoing (paths: readonly string[]): void {
        for (const path of paths) origin.route(path.split('?')[0]!, forWhom({ 'cache-control': 'max-age=60' }))
      }

      // RFC 3986 §6.2.2 makes `%7E` and `~`, `%41` and `A`, `%2f` and `%2F` equivalent; the WHATWG
      // URL parser (fetch's) keeps each as written, and so does the key: an origin that routes them
      // apart must never be served one's answer for the other. `%2F` is no `/` (RFC 3986 §2.2).
      const lookAlikes: [string, string[]][] = [
        ['percent-encoded unreserved characters', ['/~user', '/%7Euser', '/%7euser']],
        ['percent-encoded letters and case', ['/A', '/a', '/%41', '/%61']],
        ['an encoded slash', ['/a/b', '/a%2fb', '/a%2Fb']],
        ['query order and encodings', ['/q?a=1&b=2', '/q?b=2&a=1', '/q?a=%31&b=2', '/q?a=1&b=2&', '/q?A=1&b=2']]
      ]
      it.each(lookAlikes)('keeps look-alike targets apart: %s', async (_name, paths) => {
        echoing(paths)
        const c1 = client()
        for (const path of paths) expect((await c1.send(origin.url + path)).body).toBe(`for anyone at ${path}`)
        for (const path of paths) {
          const again = await c1.send(origin.url + path)
          expect(again.body).toBe(`for anyone at ${path}`)
          expect(again.header('cache-status')).toMatch(HIT)
        }
        expect(origin.requests.map((r) => r.path)).toEqual(paths)
      })

      it('shares one entry between names of one origin the URL parser makes equal: host case, default port, IPv4 and IPv6 forms', async () => {
        origin.route('/k', (req, res) => {
          res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }).end(`host ${String(req.headers.host)}`)
        })
        const c1 = client({}, pointedAt(origin))
        const names = [
          ['http://Example.TEST:80/k', 'http://example.test/k'],
          ['http://[0:0::1]/k', 'http://[::1]:80/k'],
          ['http://0x7f.1/k', 'http://127.0.0.1/k']
        ]
        for (const [first, second] of names) {
          const a = await c1.send(first!)
          const b = await c1.send(second!)
          expect(b.body).toBe(a.body)
          expect(b.header('cache-status')).toMatch(HIT)
        }
        expect(origin.requests.map((r) => r.headers.host)).toEqual(['example.test', '[::1]', '127.0.0.1'])
      })

      it('keeps a trailing-dot host, another port and another host apart', async () => {
        origin.route('/k', (req, res) => {
          res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' }).end(`host ${String(req.headers.host)}`)
        })
        const c1 = client({}, pointedAt(origin))
        const urls = ['http://example.test/k', 'http://example.test./k', 'http://example.test:8080/k', 'http://other.test/k']
        for (const url of urls) await c1.send(url)
        for (const url of urls) {
          const again = await c1.send(url)
          expect(again.body).toBe(`host ${new URL(url).host}`)
          expect(again.header('cache-status')).toMatch(HIT)
        }
        expect(origin.hits('/k')).toBe(4)
      })

      if (adapter === 'cachedFetch') {
        it('never serves a URL with userinfo: fetch refuses it, stored or not', async () => {
          echoing(['/k'])
          const c1 = client()
          await c1.send(`${origin.url}/k`)
          const withUser = origin.url.replace('http://', 'http://mallory:secret@')
          await expect(c1.send(`${withUser}/k`)).rejects.toThrow(/credentials/)
          expect(origin.hits('/k')).toBe(1)
        })

        it('sends a URL with dot segments or an empty fragment as fetch resolves it, and keys it so', async () => {
          echoing(['/b'])
          const c1 = client()
          await c1.send(`${origin.url}/b`)
          for (const url of ['/a/../b', '/a/%2e%2E/b', '/./b', '/b#', '/b#x']) {
            const again = await c1.send(origin.url + url)
            expect(again.body).toBe('for anyone at /b')
            expect(again.header('cache-status')).toMatch(HIT)
          }
          expect(origin.requests.map((r) => r.path)).toEqual(['/b'])
        })
      } else {
        it('keys a URL with userinfo as undici sends it: without, and with no credentials sent', async () => {
          echoing(['/k'])
          const c1 = client()
          const withUser = origin.url.replace('http://', 'http://mallory:secret@')
          await c1.send(`${withUser}/k`)
          const plain = await c1.send(`${origin.url}/k`)
          expect(plain.header('cache-status')).toMatch(HIT)
          expect(origin.requests).toHaveLength(1)
          expect(origin.requests[0]!.headers.authorization).toBeUndefined()
        })
      }
    })

    describe('Content-Location and Location to another origin', () => {
      it('cannot put an answer under another origin\'s key: a Content-Location elsewhere stores nothing there', async () => {
        const other = await opened.origin({ '/x': forWhom({ 'cache-control': 'max-age=60' }) })
        origin.route('/page', forWhom({ 'cache-control': 'max-age=60', 'content-location': `${other.url}/x`, location: `${other.url}/x` }))
        const c1 = client()
        await c1.send(`${origin.url}/page`)
        const there = await c1.send(`${other.url}/x`)
        expect(there.header('cache-status')).toMatch(/fwd=uri-miss/)
        expect(other.hits('/x')).toBe(1)
        // And what other stored stays other's.
        await c1.send(`${origin.url}/page`, { headers: { 'cache-control': 'no-cache' } })
        const still = await c1.send(`${other.url}/x`)
        expect(still.header('cache-status')).toMatch(HIT)
        expect(other.hits('/x')).toBe(1)
      })

      it('cannot invalidate another port\'s, another scheme\'s or a protocol-relative target; the same origin in capitals is invalidated', async () => {
        const other = await opened.origin()
        const port = new URL(other.url).port
        const mine = new URL(origin.url).port
        for (const server of [origin, other]) for (const path of ['/x', '/y']) server.route(path, forWhom({ 'cache-control': 'max-age=60' }))
        const c1 = client()
        const targets = [`${other.url}/x`, `//127.0.0.1:${port}/y`, `https://127.0.0.1:${mine}/x`, `HTTP://127.0.0.1:${mine}/y`]
        const all = [`${origin.url}/x`, `${origin.url}/y`, `${other.url}/x`, `${other.url}/y`]
        for (const target of targets) {
          origin.route('/post', (_req, res) => { res.writeHead(201, { location: target, 'content-location': target }).end() })
          for (const url of all) await c1.send(url)
          await c1.send(`${origin.url}/post`, { method: 'POST', body: 'x' })
          await c1.send(`${origin.url}/post`, { method: 'POST', body: 'x' })
        }
        for (const url of all) await c1.send(url)
        // Only the same-origin target, /y at this origin, was ever invalidated.
        expect([origin.hits('/x'), origin.hits('/y'), other.hits('/x'), other.hits('/y')]).toEqual([1, 2, 1, 1])
      })
    })

    describe('header fields at store time', () => {
      /** Answers with `fields` besides max-age, and counts. */
      function withFields (fields: Record<string, string>): void {
        origin.route('/f', (_req, res) => {
          res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', ...fields }).end('fields')
        })
      }

      async function storedTwice (c1: Client): Promise<boolean> {
        const first = await c1.send(`${origin.url}/f`)
        const second = await c1.send(`${origin.url}/f`)
        expect(first.status).toBe(200)
        expect(second.status).toBe(200)
        expect(second.body).toBe(first.body)
        return HIT.test(second.header('cache-status') ?? '')
      }

      it('CR, LF, NUL, a folded line or a bad name on the wire are refused by undici before the cache sees them', async () => {
        // (A CR LF followed by a name and a colon is a second field: the wire cannot tell an injected one.)
        const forms = ['x-a: one\ntwo', 'x-a: one\rtwo', 'x-a: one\0two', 'x-a: one\r\n two', 'x a: one']
        for (const [n, form] of forms.entries()) {
          origin.route(`/raw${n}`, (req) => {
            req.socket.end(`HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\n${form}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi`)
          })
        }
        const c1 = client()
        for (const n of forms.keys()) {
          await expect(c1.send(`${origin.url}/raw${n}`)).rejects.toThrow()
          await expect(c1.send(`${origin.url}/raw${n}`)).rejects.toThrow()
          expect(origin.hits(`/raw${n}`)).toBe(2)
        }
      })

      const malformed: [string, string, string][] = [
        ['a CR LF and a field after it', 'x-a', 'one\r\nset-cookie: session=injected'],
        ['a lone LF', 'x-a', 'one\ntwo'],
        ['a NUL', 'x-a', 'one\0two'],
        ['a lone CR', 'x-a', 'one\rtwo'],
        ['a character past Latin-1', 'x-a', 'one\u0100two'],
        ['a name that is no token', 'x a', 'value'],
        ['a name with a letter past ASCII', 'x-\u00e9', 'value'],
        ['an empty name', '', 'value']
      ]
      it.each(malformed)('a field with %s, from a dispatcher below the cache, reaches its caller but is not stored', async (_name, field, value) => {
        withFields({})
        const c1 = client({}, new Agent().compose(settingField(field, value)))
        expect(await storedTwice(c1)).toBe(false)
        expect(origin.hits('/f')).toBe(2)
      })

      it(`stores a field value of ${FIELD_LIMITS.value} characters, and not one of ${FIELD_LIMITS.value + 1}`, async () => {
        const agent = (): Agent => new Agent({ maxHeaderSize: 1024 * 1024 })
        withFields({ 'x-big': 'v'.repeat(FIELD_LIMITS.value) })
        expect(await storedTwice(client({}, agent()))).toBe(true)
        withFields({ 'x-big': 'v'.repeat(FIELD_LIMITS.value + 1) })
        expect(await storedTwice(client({}, agent()))).toBe(false)
      })

      it('passes a 100 KB field through unstored when the Agent lets it in; undici refuses it by default', async () => {
        withFields({ 'x-big': 'v'.repeat(100 * 1024) })
        const c1 = client({}, new Agent({ maxHeaderSize: 1024 * 1024 }))
        expect(await storedTwice(c1)).toBe(false)
        await expect(client().send(`${origin.url}/f`)).rejects.toThrow()
        expect(origin.hits('/f')).toBe(3)
      })

      it(`passes through unstored more than ${FIELD_LIMITS.total} characters of fields in all, each within bounds`, async () => {
        const fields = (n: number): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-f${i}`, 'v'.repeat(7 * 1024)]))
        const agent = (): Agent => new Agent({ maxHeaderSize: 1024 * 1024 })
        withFields(fields(8))
        expect(await storedTwice(client({}, agent()))).toBe(true)
        withFields(fields(10))
        expect(await storedTwice(client({}, agent()))).toBe(false)
      })

      it(`passes a 1000-field response through unstored (more than ${FIELD_LIMITS.count} fields); 100 fields are stored`, async () => {
        const fields = (n: number): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`x-f${i}`, String(i)]))
        withFields(fields(100))
        expect(await storedTwice(client())).toBe(true)
        withFields(fields(1000))
        const c1 = client()
        expect(await storedTwice(c1)).toBe(false)
        expect((await c1.send(`${origin.url}/f`)).header('x-f999')).toBe('999')
      })
    })

    describe('HEAD beside GET', () => {
      const body = 'the whole document'

      beforeEach(() => {
        origin.route('/doc', (req, res) => {
          res.writeHead(200, {
            'content-type': 'text/plain',
            'cache-control': 'max-age=60',
            'content-length': String(body.length),
            'x-answered': req.method ?? ''
          })
          res.end(req.method === 'HEAD' ? undefined : body)
        })
      })

      for (const order of [['GET', 'HEAD'], ['HEAD', 'GET']]) {
        it(`${order.join(' then ')}: each stored under its own method, HEAD never with a body, GET always with its own`, async () => {
          const c1 = client()
          const url = `${origin.url}/doc`
          for (const method of order) {
            const miss = await c1.send(url, { method })
            expect(miss.header('cache-status')).toMatch(/fwd=uri-miss/)
          }
          for (const method of [...order, ...order]) {
            const hit = await c1.send(url, { method })
            expect(hit.header('cache-status')).toMatch(HIT)
            expect(hit.header('x-answered')).toBe(method)
            expect(hit.body).toBe(method === 'HEAD' ? '' : body)
            expect(hit.header('content-length')).toBe(String(body.length))
          }
          expect(origin.requests.map((r) => r.method)).toEqual(order)
        })
      }
    })
  })
}

describe('the request-target undici sends is the key (interceptor dispatch options)', () => {
  let origin: Origin
  let cache: Cache
  let dispatcher: Dispatcher

  beforeEach(async () => {
    origin = await opened.origin()
    cache = createCache()
    dispatcher = opened.agent().compose(cacheInterceptor({ cache }))
  })

  async function dispatchGet (path: string, extra: Partial<Dispatcher.RequestOptions> = {}): Promise<{ body: string, cacheStatus: unknown }> {
    const response = await dispatcher.request({ origin: origin.url, path, method: 'GET', ...extra })
    return { body: await response.body.text(), cacheStatus: response.headers['cache-status'] }
  }

  // Dispatcher.request and dispatch() take the path as given; undici sends it as it is, where the
  // URL parser would resolve dot segments, turn backslashes into slashes, drop the fragment or
  // escape a quote. An origin that routes `/a/../b` elsewhere than `/b` must never have that
  // answer served for `/b`, nor `/b`'s for it.
  const rewritten = ['/a/../b', '/a/%2e%2E/b', '/a\\..\\b', '/b#fragment', '/b#', "/b?q='"]

  it.each(rewritten)('never stores or serves %s as another target', async (path) => {
    for (const route of [...rewritten, '/b']) origin.route(route.split('?')[0]!, forWhom({ 'cache-control': 'max-age=60' }))
    expect((await dispatchGet('/b')).body).toBe('for anyone at /b')
    const odd = await dispatchGet(path)
    expect(odd.body).toBe(`for anyone at ${path}`)
    expect(odd.cacheStatus).toBeUndefined()
    expect((await dispatchGet(path)).body).toBe(`for anyone at ${path}`)
    const plain = await dispatchGet('/b')
    expect(plain.body).toBe('for anyone at /b')
    expect(plain.cacheStatus).toMatch(HIT)
    expect(origin.requests.map((r) => r.path)).toEqual(['/b', path, path])
  })

  it('keys an empty fragment apart from nothing: fetch of "…/b#" is never served what the origin said to "/b#"', async () => {
    origin.route('/b#', forWhom({ 'cache-control': 'max-age=60' }))
    origin.route('/b', forWhom({ 'cache-control': 'max-age=60' }))
    await dispatchGet('/b#')
    const fetchClient = opened.add(adapters[0]!.connect(cache))
    expect((await fetchClient.send(`${origin.url}/b#`)).body).toBe('for anyone at /b')
  })

  it('keys the query option as undici serializes it; one it would send unescaped is not stored', async () => {
    origin.route('/q', forWhom({ 'cache-control': 'max-age=60' }))
    expect((await dispatchGet('/q', { query: { a: '"x"' } })).body).toBe('for anyone at /q?a=%22x%22')
    expect((await dispatchGet('/q?a=%22x%22')).cacheStatus).toMatch(HIT)
    await dispatchGet('/q', { query: { a: "it's" } })
    const again = await dispatchGet('/q', { query: { a: "it's" } })
    expect(again.body).toBe("for anyone at /q?a=it's")
    expect(origin.requests.map((r) => r.path)).toEqual(['/q?a=%22x%22', "/q?a=it's", "/q?a=it's"])
  })

  // What undici reads once, the key must not read first: else the origin answers a request without
  // the caller's fields, and the answer is stored under theirs.
  it('sends fields given as a one-shot iterator to the origin, and keys the answer by them', async () => {
    origin.route('/who', (req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'x-user' }).end(`x-user=${String(req.headers['x-user'])}`) })
    const fields = new Map([['x-user', 'alice']]).entries() as unknown as Iterable<[string, string]>
    expect((await dispatchGet('/who', { headers: fields })).body).toBe('x-user=alice')
    const hit = await dispatchGet('/who', { headers: { 'x-user': 'alice' } })
    expect([hit.body, hit.cacheStatus]).toEqual(['x-user=alice', expect.stringMatching(HIT)])
    expect(origin.seen('/who').map((r) => r.headers['x-user'])).toEqual(['alice'])
  })

  // RFC 9111 §4.1: a field absent from one request matches only its absence in the other.
  it('keys a field given as null as the empty field undici sends, never as an absent one', async () => {
    origin.route('/flag', (req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'x-flag' }).end(`x-flag=${JSON.stringify(req.headers['x-flag'])}`) })
    expect((await dispatchGet('/flag', { headers: { 'x-flag': null as unknown as string } })).body).toBe('x-flag=""')
    expect((await dispatchGet('/flag')).body).toBe('x-flag=undefined')
    expect((await dispatchGet('/flag', { headers: { 'x-flag': ['a', null] as unknown as string[] } })).body).toBe('x-flag="a, "')
    expect(origin.requests.map((r) => JSON.stringify(r.headers['x-flag']) ?? 'absent')).toEqual(['""', 'absent', '"a, "'])
  })

  it('keeps an unsafe method\'s invalidation to the Host it named: never the connection\'s own entries, always that Host\'s', async () => {
    let n = 0
    origin.route('/x', (req, res) => {
      if (req.method === 'POST') {
        res.writeHead(204).end()
        return
      }
      n += 1
      res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' }).end(`#${n} for ${String(req.headers.host)}`)
    })
    const get = async (host?: string): Promise<string> => (await dispatchGet('/x', host === undefined ? {} : { headers: { host } })).body
    const own = new URL(origin.url).host
    expect(await get()).toBe(`#1 for ${own}`)
    expect(await get('tenant-a.example')).toBe('#2 for tenant-a.example')

    const post = await dispatcher.request({ origin: origin.url, path: '/x', method: 'POST', body: 'x', headers: { host: 'tenant-a.example' } })
    await post.body.text()
    await cache.flush()

    expect(await get()).toBe(`#1 for ${own}`)
    expect(await get('tenant-a.example')).toBe('#3 for tenant-a.example')
  })

  it('keeps a Host naming another origin from invalidating that origin\'s entries', async () => {
    const other = await opened.origin({ '/x': forWhom({ 'cache-control': 'max-age=60' }) })
    origin.route('/x', (_req, res) => { res.writeHead(204).end() })
    const c1 = opened.add(adapters[1]!.connect(cache))
    await c1.send(`${other.url}/x`)
    const post = await dispatcher.request({
      origin: origin.url, path: '/x', method: 'POST', body: 'x', headers: { host: new URL(other.url).host, 'content-type': 'text/plain' }
    })
    await post.body.text()
    await cache.flush()
    expect((await c1.send(`${other.url}/x`)).header('cache-status')).toMatch(HIT)
    expect(other.hits('/x')).toBe(1)
  })
})

describe('cache.explain() on credentials', () => {
  it('says when a Cookie or Authorization alone keeps a response out of a shared cache, and stores it in a private one', () => {
    const request = (headers: Record<string, string>): { method: string, url: string, headers: Record<string, string> } => ({ method: 'GET', url: 'https://example.test/me', headers })
    const shared = createCache()
    const credentials: Record<string, string>[] = [{ cookie: 'session=alice' }, { authorization: 'Bearer alice' }]
    for (const headers of credentials) {
      const explanation = shared.explain(request(headers), 200, { 'cache-control': 'max-age=60' })
      expect(explanation.storable).toBe(false)
      expect(explanation.reasons).toEqual([expect.stringMatching(/Authorization or Cookie.*§3\.5/)])
      expect(createCache({ shared: false }).explain(request(headers), 200, { 'cache-control': 'max-age=60' }).storable).toBe(true)
    }
    expect(shared.explain(request({ cookie: 'session=alice' }), 200, { 'cache-control': 'max-age=60', vary: 'cookie' }).storable).toBe(true)
    expect(shared.explain(request({ cookie: 'session=alice' }), 200, { 'cache-control': 'no-store' }).reasons).toEqual([expect.stringMatching(/no-store/)])
  })
})
