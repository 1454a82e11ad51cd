/**
 * RFC 9111 §4.1: one URL, several stored responses, picked by the request fields the response's
 * Vary names. Run through cachedFetch and through the undici interceptor against a real origin
 * whose answer depends on those fields.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createCache } from '../src/index.js'
import { adapters, type Client } from './helpers/clients.js'
import { startOrigin, type Origin, type Route } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock } from './helpers/time.js'

/**
 * An origin route whose body names the values of `fields` it saw, e.g. `accept-language=fr`,
 * and whose answer varies on them.
 */
function varying (fields: readonly string[], vary = fields.join(', ')): Route {
  return (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', vary })
    res.end(fields.map((field) => `${field}=${String(req.headers[field] ?? '-')}`).join(' '))
  }
}

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
  describe(`Vary through ${adapter}`, () => {
    function client (cache = createCache()): Client {
      return opened.add(connect(cache))
    }

    it('keeps a digest of the Cookie or Authorization a response varies on, never the value, and still tells users apart by it', async () => {
      const path = `/${adapter}/per-user`
      origin.route(path, (req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'public, max-age=60', vary: 'cookie, authorization' })
        // The body names the user without the secrets, which must not be anywhere in the store.
        res.end(`for ${String(req.headers.cookie).slice('session='.length, -'-cookie'.length)}`)
      })
      const store = new Map<string, unknown>()
      const c = client(createCache({ store }))
      const url = origin.url + path
      const as = (user: string): Promise<string> =>
        c.send(url, { headers: { cookie: `session=${user}-cookie`, authorization: `Bearer ${user}-token` } }).then((r) => r.body)

      expect([await as('ann'), await as('bob'), await as('ann'), await as('bob')]).toEqual(['for ann', 'for bob', 'for ann', 'for bob'])
      expect(origin.hits(path)).toBe(2)

      const stored = JSON.stringify([...store.values()])
      expect(stored).toContain('sha256:')
      for (const secret of ['ann-cookie', 'bob-cookie', 'ann-token', 'bob-token']) expect(stored).not.toContain(secret)
    })

    it('keeps an English and a French variant of one URL side by side', async () => {
      const path = `/${adapter}/languages`
      origin.route(path, varying(['accept-language']))
      const c = client()
      const url = origin.url + path

      const en = await c.send(url, { headers: { 'accept-language': 'en' } })
      const fr = await c.send(url, { headers: { 'accept-language': 'fr' } })
      expect(en.body).toBe('accept-language=en')
      expect(fr.body).toBe('accept-language=fr')
      expect(origin.hits(path)).toBe(2)

      for (let round = 0; round < 2; round++) {
        const enAgain = await c.send(url, { headers: { 'accept-language': 'en' } })
        const frAgain = await c.send(url, { headers: { 'accept-language': 'fr' } })
        expect(enAgain.body).toBe('accept-language=en')
        expect(frAgain.body).toBe('accept-language=fr')
        expect(enAgain.header('cache-status')).toMatch(/^cachedfetch; hit/)
        expect(frAgain.header('cache-status')).toMatch(/^cachedfetch; hit/)
      }
      expect(origin.hits(path)).toBe(2)
      expect(origin.seen(path).map((seen) => seen.headers['accept-language'])).toEqual(['en', 'fr'])
    })

    it('reports a new variant of a stored URL as fwd=vary-miss', async () => {
      const path = `/${adapter}/vary-miss`
      origin.route(path, varying(['accept-language']))
      const c = client()
      const url = origin.url + path

      const en = await c.send(url, { headers: { 'accept-language': 'en' } })
      const fr = await c.send(url, { headers: { 'accept-language': 'fr' } })
      expect(en.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
      expect(fr.header('cache-status')).toBe('cachedfetch; fwd=vary-miss; fwd-status=200; stored')
    })

    it('picks the variant by every field Vary names', async () => {
      const path = `/${adapter}/two-fields`
      origin.route(path, varying(['accept-language', 'x-tenant']))
      const c = client()
      const url = origin.url + path
      const combinations = [
        { 'accept-language': 'en', 'x-tenant': 'a' },
        { 'accept-language': 'en', 'x-tenant': 'b' },
        { 'accept-language': 'fr', 'x-tenant': 'a' }
      ]

      for (const headers of combinations) await c.send(url, { headers })
      expect(origin.hits(path)).toBe(3)

      for (const headers of combinations) {
        const reply = await c.send(url, { headers })
        expect(reply.body).toBe(`accept-language=${headers['accept-language']} x-tenant=${headers['x-tenant']}`)
        expect(reply.header('cache-status')).toMatch(/^cachedfetch; hit/)
      }
      expect(origin.hits(path)).toBe(3)

      const fourth = await c.send(url, { headers: { 'accept-language': 'fr', 'x-tenant': 'b' } })
      expect(fourth.body).toBe('accept-language=fr x-tenant=b')
      expect(fourth.header('cache-status')).toBe('cachedfetch; fwd=vary-miss; fwd-status=200; stored')
      expect(origin.hits(path)).toBe(4)
    })

    it('treats a request without the varied field as a variant of its own', async () => {
      const path = `/${adapter}/absent`
      origin.route(path, varying(['x-tenant']))
      const c = client()
      const url = origin.url + path

      const withTenant = await c.send(url, { headers: { 'x-tenant': 'a' } })
      const without = await c.send(url)
      expect(withTenant.body).toBe('x-tenant=a')
      expect(without.body).toBe('x-tenant=-')
      expect(without.header('cache-status')).toBe('cachedfetch; fwd=vary-miss; fwd-status=200; stored')
      expect(origin.hits(path)).toBe(2)

      const withoutAgain = await c.send(url)
      const withTenantAgain = await c.send(url, { headers: { 'x-tenant': 'a' } })
      expect(withoutAgain.body).toBe('x-tenant=-')
      expect(withoutAgain.header('cache-status')).toMatch(/^cachedfetch; hit/)
      expect(withTenantAgain.body).toBe('x-tenant=a')
      expect(withTenantAgain.header('cache-status')).toMatch(/^cachedfetch; hit/)
      expect(origin.hits(path)).toBe(2)
    })

    it('matches field values that differ only in white space around commas', async () => {
      const path = `/${adapter}/whitespace`
      origin.route(path, varying(['accept-language']))
      const c = client()
      const url = origin.url + path

      await c.send(url, { headers: { 'accept-language': 'en,fr' } })
      const spaced = await c.send(url, { headers: { 'accept-language': 'en ,  fr' } })
      expect(spaced.body).toBe('accept-language=en,fr')
      expect(spaced.header('cache-status')).toMatch(/^cachedfetch; hit/)
      expect(origin.hits(path)).toBe(1)
    })

    it('keeps apart values that differ by a no-break space, which is no white space in HTTP (RFC 9110 §5.6.3; found by a hunt)', async () => {
      const path = `/${adapter}/no-break`
      origin.route(path, varying(['x-token']))
      const c = client()
      const url = origin.url + path
      const sent = ['v', 'v\u00A0', '\u00A0v', 'a, b', 'a,\u00A0b']
      for (const value of sent) expect((await c.send(url, { headers: { 'x-token': value } })).body).toBe(`x-token=${value}`)
      expect(origin.hits(path)).toBe(sent.length)
    })

    it('keeps apart values that differ in white space inside a quoted string or a comment, which is data there', async () => {
      const path = `/${adapter}/quoted`
      origin.route(path, varying(['x-filter', 'user-agent']))
      const c = client()
      const url = origin.url + path
      const sent = [
        { 'x-filter': 'name="Smith,John"', 'user-agent': 'Bot/1.0 (x,y)' },
        { 'x-filter': 'name="Smith, John"', 'user-agent': 'Bot/1.0 (x,y)' },
        { 'x-filter': 'name="Smith,John"', 'user-agent': 'Bot/1.0 (x, y)' },
        // A quoted-pair in a comment: the comment goes on past it.
        { 'x-filter': 'name="Smith,John"', 'user-agent': 'Bot/1.0 (a\\), b)' },
        { 'x-filter': 'name="Smith,John"', 'user-agent': 'Bot/1.0 (a\\),b)' }
      ]
      for (const headers of sent) {
        const reply = await c.send(url, { headers })
        expect(reply.body).toBe(`x-filter=${headers['x-filter']} user-agent=${headers['user-agent']}`)
      }
      expect(origin.hits(path)).toBe(sent.length)
    })

    it('revalidates each stale variant with its own validator, leaving the others stored', async () => {
      const path = `/${adapter}/revalidate`
      const clock = manualClock()
      origin.route(path, (req, res) => {
        const language = String(req.headers['accept-language'])
        const etag = `"${language}"`
        const headers = { date: clock.date(), 'cache-control': 'max-age=60', vary: 'Accept-Language', etag }
        if (req.headers['if-none-match'] === etag) {
          res.writeHead(304, headers).end()
          return
        }
        res.writeHead(200, { ...headers, 'content-type': 'text/plain' }).end(`accept-language=${language}`)
      })
      const c = client(createCache({ now: clock.now }))
      const url = origin.url + path

      await c.send(url, { headers: { 'accept-language': 'en' } })
      await c.send(url, { headers: { 'accept-language': 'fr' } })
      clock.advance(61)

      const en = await c.send(url, { headers: { 'accept-language': 'en' } })
      const fr = await c.send(url, { headers: { 'accept-language': 'fr' } })
      expect(en.body).toBe('accept-language=en')
      expect(fr.body).toBe('accept-language=fr')
      expect(en.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=60')
      expect(fr.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=60')
      expect(origin.seen(path).map((seen) => seen.headers['if-none-match'])).toEqual([undefined, undefined, '"en"', '"fr"'])

      const enAgain = await c.send(url, { headers: { 'accept-language': 'en' } })
      const frAgain = await c.send(url, { headers: { 'accept-language': 'fr' } })
      expect(enAgain.body).toBe('accept-language=en')
      expect(frAgain.body).toBe('accept-language=fr')
      expect(enAgain.header('cache-status')).toMatch(/^cachedfetch; hit/)
      expect(frAgain.header('cache-status')).toMatch(/^cachedfetch; hit/)
      expect(origin.hits(path)).toBe(4)
    })

    it('never serves a response with Vary: * from the cache', async () => {
      const path = `/${adapter}/star`
      origin.route(path, varying(['accept-language'], '*'))
      const c = client()
      const url = origin.url + path

      for (let i = 0; i < 3; i++) {
        const reply = await c.send(url, { headers: { 'accept-language': 'en' } })
        expect(reply.body).toBe('accept-language=en')
        expect(reply.header('cache-status')).toMatch(/^cachedfetch; fwd=(uri|vary)-miss; fwd-status=200$/)
      }
      expect(origin.hits(path)).toBe(3)
    })
  })
}
