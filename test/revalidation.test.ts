/**
 * Conditional revalidation (RFC 9111 §4.3): the validators a stale entry sends, what a 304 does to
 * the stored entry (merged fields, renewed freshness), what a 200 does (replaces it), and
 * must-revalidate. Every case runs through cachedFetch and through the undici interceptor.
 */
import { readFileSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { cacheInterceptor, createCache, type Cache } from '../src/index.js'
import { adapters, type Client, type Reply } from './helpers/clients.js'
import { lateNotModified, type Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, wholeSecondNow, type ManualClock } from './helpers/time.js'
import { gate, waitFor } from './helpers/wait.js'

interface ValidatorCase {
  readonly name: string
  readonly validators: Record<string, string>
  readonly ifNoneMatch: string | null
  readonly ifModifiedSince: string | null
  readonly fwdStatus: number
}

const table = JSON.parse(readFileSync(new URL('../fixtures/revalidation.json', import.meta.url), 'utf8')) as { cases: ValidatorCase[] }

interface SelectionCase {
  readonly name: string
  readonly stored: Record<string, string>
  readonly notModified: Record<string, string>
  readonly selects: boolean
}

const selection = JSON.parse(readFileSync(new URL('../fixtures/not-modified-selection.json', import.meta.url), 'utf8')) as { cases: SelectionCase[] }

/** Whether a request's validators match the current representation (RFC 9110 §13.2.2 order). */
function notModified (req: IncomingMessage, validators: Record<string, string>): boolean {
  const inm = req.headers['if-none-match']
  if (inm !== undefined) return validators.etag !== undefined && inm.split(',').map((v) => v.trim()).includes(validators.etag)
  const ims = req.headers['if-modified-since']
  return ims !== undefined && ims === validators['last-modified']
}

describe.each(adapters)('revalidation through $name', ({ connect }) => {
  const opened = teardown()
  let clock: ManualClock
  let origin: Origin
  let cache: Cache
  let client: Client

  beforeEach(async () => {
    clock = manualClock(wholeSecondNow())
    origin = await opened.origin()
    cache = createCache({ now: clock.now })
    client = opened.add(connect(cache))
  })

  afterEach(() => opened.close())

  it('lets a late 304 put back no response over a newer one stored while it was on its way (RFC 9111 §4.3.4)', async () => {
    const held = gate()
    opened.add({ close: () => Promise.resolve(held.release()) })
    // Still v1 as the origin answers; the resource changes while the 304 is on its way.
    origin.route('/doc', lateNotModified(clock.date, held.promise))
    const url = `${origin.url}/doc`
    await client.send(url)
    clock.advance(200)
    const late = client.send(url)
    await waitFor(() => origin.hits('/doc') === 2, 'the revalidation to reach the origin')
    expect((await client.send(url, { cache: 'reload' })).body).toBe('v2')
    held.release()
    // Its caller gets what it revalidated; the store keeps the newer response.
    expect((await late).body).toBe('v1')
    await cache.flush()
    const after = await client.send(url)
    expect([after.body, after.header('cache-status')]).toEqual(['v2', 'cachedfetch; hit; ttl=100'])
  })

  it.each(['no-store', 'private, max-age=10'])('neither stores nor keeps a response a 304 whose Connection names Cache-Control revalidated (Cache-Control: %s, meant for this cache alone)', async (directives) => {
    origin.route('/doc', (req, res) => {
      if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, { etag: '"v1"', date: clock.date(), connection: 'cache-control', 'cache-control': directives }).end()
      else res.writeHead(200, { etag: '"v1"', date: clock.date(), 'cache-control': 'max-age=10', 'content-type': 'text/plain' }).end('v1')
    })
    const url = `${origin.url}/doc`
    await client.send(url)
    clock.advance(20)
    expect((await client.send(url)).body).toBe('v1')
    await cache.flush()
    // Not freshened, and gone: the next request goes to the origin, unconditional.
    const next = await client.send(url)
    expect(next.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    expect(origin.seen('/doc').map((seen) => seen.headers['if-none-match'])).toEqual([undefined, '"v1"', undefined])
  })

  it.each(table.cases)('sends only the validators the entry has: $name', async (c) => {
    origin.route('/doc', (req, res) => {
      const fields = { date: clock.date(), 'cache-control': 'max-age=30', ...c.validators }
      if (notModified(req, c.validators)) res.writeHead(304, fields).end()
      else res.writeHead(200, { ...fields, 'content-type': 'text/plain' }).end('document')
    })

    const first = await client.send(`${origin.url}/doc`)
    expect(first.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    clock.advance(60)
    const second = await client.send(`${origin.url}/doc`)

    expect(second.status).toBe(200)
    expect(second.body).toBe('document')
    expect(second.header('cache-status')).toMatch(new RegExp(`^cachedfetch; fwd=stale; fwd-status=${c.fwdStatus};`))
    const seen = origin.seen('/doc')
    expect(seen).toHaveLength(2)
    expect(seen[0]!.headers['if-none-match']).toBeUndefined()
    expect(seen[0]!.headers['if-modified-since']).toBeUndefined()
    expect(seen[1]!.headers['if-none-match'] ?? null).toBe(c.ifNoneMatch)
    expect(seen[1]!.headers['if-modified-since'] ?? null).toBe(c.ifModifiedSince)
  })

  it('sends the caller\'s Proxy-Authorization with the revalidation: the proxy it is for is the next hop of both', async () => {
    origin.route('/doc', (req, res) => {
      // A proxy that wants its credentials on every request, the conditional one included.
      if (req.headers['proxy-authorization'] !== 'Basic cHJveHk6cGFzcw==') {
        res.writeHead(407, { 'proxy-authenticate': 'Basic', 'cache-control': 'no-store' }).end()
        return
      }
      const fields = { date: clock.date(), 'cache-control': 'public, max-age=30', etag: '"v1"' }
      if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, fields).end()
      else res.writeHead(200, { ...fields, 'content-type': 'text/plain' }).end('document')
    })
    const init = { headers: { 'proxy-authorization': 'Basic cHJveHk6cGFzcw==' } }

    await client.send(`${origin.url}/doc`, init)
    clock.advance(60)
    const revalidated = await client.send(`${origin.url}/doc`, init)

    expect([revalidated.status, revalidated.body]).toEqual([200, 'document'])
    expect(revalidated.header('cache-status')).toMatch(/^cachedfetch; fwd=stale; fwd-status=304;/)
    expect(origin.seen('/doc').map((r) => `${String(r.headers['proxy-authorization'])} ${r.headers['if-none-match'] ?? 'unconditional'}`))
      .toEqual(['Basic cHJveHk6cGFzcw== unconditional', 'Basic cHJveHk6cGFzcw== "v1"'])
  })

  it.each(selection.cases)('takes a 304 into the entry only when it selects it: $name', async (c) => {
    origin.route('/select', (_req, res) => {
      if (origin.hits('/select') > 1) {
        res.writeHead(304, { date: clock.date(), 'cache-control': 'max-age=60', ...c.notModified }).end()
        return
      }
      res.writeHead(200, { date: clock.date(), 'cache-control': 'no-cache', 'content-type': 'text/plain', ...c.stored }).end('selected body')
    })

    await client.send(`${origin.url}/select`)
    const revalidated = await client.send(`${origin.url}/select`)
    expect(revalidated.header('cache-status')).toMatch(/^cachedfetch; fwd=stale; fwd-status=304;/)
    expect(revalidated.body).toBe('selected body')
    // The body goes with the fields of the response it came in, unless the 304 selected it (RFC 9111
    // §4.3.4): under the 304's validators, a caller would take it for another representation.
    const fields = c.selects ? { 'cache-control': 'max-age=60', ...c.stored, ...c.notModified } : { 'cache-control': 'no-cache', ...c.stored }
    expect(['cache-control', 'etag', 'last-modified'].map((name) => revalidated.header(name) ?? null))
      .toEqual(['cache-control', 'etag', 'last-modified'].map((name) => fields[name as keyof typeof fields] ?? null))
    const next = await client.send(`${origin.url}/select`)
    expect(next.body).toBe('selected body')
    if (c.selects) {
      expect(next.header('cache-status')).toBe('cachedfetch; hit; ttl=60')
      expect(origin.hits('/select')).toBe(2)
    } else {
      expect(next.header('cache-status')).toMatch(/^cachedfetch; fwd=stale; fwd-status=304;/)
      expect(origin.hits('/select')).toBe(3)
    }
  })

  it.each(['no-store', 'private'])('keeps nothing of an entry a 304 says may not be stored (%s): max-stale finds nothing to serve', async (directive) => {
    origin.route('/a', (req, res) => {
      if (req.headers['if-none-match'] === '"x"') res.writeHead(304, { date: clock.date(), etag: '"x"', 'cache-control': directive }).end()
      else res.writeHead(200, { date: clock.date(), etag: '"x"', 'cache-control': 'max-age=10' }).end('body')
    })
    await client.send(`${origin.url}/a`)
    clock.advance(20)
    expect((await client.send(`${origin.url}/a`)).header('cache-control')).toBe(directive)
    const later = await client.send(`${origin.url}/a`, { headers: { 'cache-control': 'max-stale' } })
    expect(later.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    expect(origin.hits('/a')).toBe(3)
  })

  it('keeps nothing of an entry a 304 gives Vary: *, which matches no request (RFC 9111 §4.1): max-stale finds nothing to serve', async () => {
    origin.route('/a', (req, res) => {
      if (req.headers['if-none-match'] === '"x"') res.writeHead(304, { date: clock.date(), etag: '"x"', vary: '*', 'cache-control': 'max-age=60' }).end()
      else res.writeHead(200, { date: clock.date(), etag: '"x"', 'cache-control': 'max-age=10' }).end('body')
    })
    await client.send(`${origin.url}/a`)
    clock.advance(20)
    expect((await client.send(`${origin.url}/a`)).header('cache-status')).toMatch(/^cachedfetch; fwd=stale; fwd-status=304;/)
    const later = await client.send(`${origin.url}/a`, { headers: { 'cache-control': 'max-stale' } })
    expect(later.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    expect(origin.hits('/a')).toBe(3)
  })

  it('selects an entry a 304 freshened by the Vary the 304 gives, not the old one (RFC 9111 §4.1)', async () => {
    origin.route('/g', (req, res) => {
      const fields = { date: clock.date(), etag: '"g"' }
      if (req.headers['if-none-match'] === '"g"') res.writeHead(304, { ...fields, 'cache-control': 'max-age=60', vary: 'x-b' }).end()
      else res.writeHead(200, { ...fields, 'cache-control': 'max-age=10', vary: 'x-a' }).end(`x-b=${String(req.headers['x-b'])}`)
    })
    const as = (b: string): { headers: Record<string, string> } => ({ headers: { 'x-a': '1', 'x-b': b } })
    await client.send(`${origin.url}/g`, as('1'))
    clock.advance(20)
    expect((await client.send(`${origin.url}/g`, as('1'))).header('vary')).toBe('x-b')
    expect((await client.send(`${origin.url}/g`, as('1'))).header('cache-status')).toBe('cachedfetch; hit; ttl=60')
    // x-b is what the response varies on now, and this one differs. The stored response was updated
    // in place (§4.3.4): no copy of it from before is left to select (until 6 December the old one
    // stayed beside it, and was chosen for every request the new Vary did not match).
    expect((await client.send(`${origin.url}/g`, as('2'))).header('cache-status')).toMatch(/^cachedfetch; fwd=vary-miss; fwd-status=200/)
    expect(origin.seen('/g')[2]!.headers['if-none-match']).toBeUndefined()
    expect(origin.hits('/g')).toBe(3)
  })

  it('revalidates a HEAD with its weak validators too (RFC 9110 §13.1.2, §13.1.3)', async () => {
    origin.route('/head', (_req, res) => {
      res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=30', etag: 'W/"h1"', 'last-modified': 'Wed, 31 Dec 2025 12:00:00 GMT', 'content-length': '4' }).end()
    })
    await client.send(`${origin.url}/head`, { method: 'HEAD' })
    clock.advance(60)
    await client.send(`${origin.url}/head`, { method: 'HEAD' })
    const seen = origin.seen('/head')
    expect(seen.map((r) => r.method)).toEqual(['HEAD', 'HEAD'])
    expect(seen[1]!.headers['if-none-match']).toBe('W/"h1"')
    expect(seen[1]!.headers['if-modified-since']).toBe('Wed, 31 Dec 2025 12:00:00 GMT')
  })

  it('merges the header fields a 304 carries into the stored entry', async () => {
    const body = 'hello world'
    origin.route('/merge', (req, res) => {
      if (req.headers['if-none-match'] === '"m1"') {
        // A 304 may carry fields the stored response lacks, and a Content-Length that is not the stored body's.
        res.writeHead(304, { date: clock.date(), 'cache-control': 'max-age=60', etag: '"m1"', 'x-new': 'from-304', 'content-length': '0' }).end()
        return
      }
      res.writeHead(200, {
        date: clock.date(), 'cache-control': 'max-age=30', etag: '"m1"', 'x-old': 'kept', 'content-type': 'text/plain', 'content-length': String(body.length)
      }).end(body)
    })

    const first = await client.send(`${origin.url}/merge`)
    expect(first.header('x-new')).toBeUndefined()
    clock.advance(60)

    const revalidated = await client.send(`${origin.url}/merge`)
    expect(revalidated.status).toBe(200)
    expect(revalidated.body).toBe(body)
    expect(revalidated.header('x-new')).toBe('from-304')
    expect(revalidated.header('x-old')).toBe('kept')
    expect(revalidated.header('content-length')).toBe(String(body.length))

    const later = await client.send(`${origin.url}/merge`)
    expect(later.header('cache-status')).toBe('cachedfetch; hit; ttl=60')
    expect(later.header('x-new')).toBe('from-304')
    expect(later.header('x-old')).toBe('kept')
    expect(later.header('cache-control')).toBe('max-age=60')
    expect(later.header('content-length')).toBe(String(body.length))
    expect(later.body).toBe(body)
    expect(origin.hits('/merge')).toBe(2)
  })

  it('serves a 304-revalidated entry as fresh again', async () => {
    origin.route('/fresh', (req, res) => {
      if (req.headers['if-none-match'] === '"f1"') {
        res.writeHead(304, { date: clock.date(), 'cache-control': 'max-age=60', etag: '"f1"' }).end()
        return
      }
      res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=30', etag: '"f1"' }).end('fresh body')
    })

    await client.send(`${origin.url}/fresh`)
    clock.advance(45)
    const revalidated = await client.send(`${origin.url}/fresh`)
    expect(revalidated.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=60')
    expect(revalidated.body).toBe('fresh body')
    expect(origin.hits('/fresh')).toBe(2)

    const right = await client.send(`${origin.url}/fresh`)
    expect(right.header('cache-status')).toBe('cachedfetch; hit; ttl=60')
    expect(right.body).toBe('fresh body')
    expect(origin.hits('/fresh')).toBe(2)

    // The 304's max-age=60 runs from the 304, not from the first response (45 s before it).
    clock.advance(50)
    const later = await client.send(`${origin.url}/fresh`)
    expect(later.header('cache-status')).toBe('cachedfetch; hit; ttl=10')
    expect(later.header('age')).toBe('50')
    expect(later.body).toBe('fresh body')
    expect(origin.hits('/fresh')).toBe(2)

    clock.advance(11)
    const stale = await client.send(`${origin.url}/fresh`)
    expect(stale.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=60')
    expect(origin.hits('/fresh')).toBe(3)
  })

  it('renews the stored lifetime on a 304 that carries no Cache-Control', async () => {
    origin.route('/renew', (req, res) => {
      if (req.headers['if-none-match'] === '"n1"') {
        res.writeHead(304, { date: clock.date(), etag: '"n1"' }).end()
        return
      }
      res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=30', etag: '"n1"' }).end('renewed')
    })

    await client.send(`${origin.url}/renew`)
    clock.advance(40)
    const revalidated = await client.send(`${origin.url}/renew`)
    expect(revalidated.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=30')

    clock.advance(20)
    const hit = await client.send(`${origin.url}/renew`)
    expect(hit.header('cache-status')).toBe('cachedfetch; hit; ttl=10')
    expect(hit.body).toBe('renewed')
    expect(origin.hits('/renew')).toBe(2)
  })

  it('does not age a 304-freshened entry by the Age the stored response came with', async () => {
    // An upstream cache held the 200 for 20 s; the 304 comes from the origin itself, with no Age.
    origin.route('/aged', (req, res) => {
      if (req.headers['if-none-match'] === '"a1"') {
        res.writeHead(304, { date: clock.date(), etag: '"a1"' }).end()
        return
      }
      res.writeHead(200, { date: clock.date(), age: '20', 'cache-control': 'max-age=30', etag: '"a1"' }).end('aged')
    })

    await client.send(`${origin.url}/aged`)
    clock.advance(5)
    const young = await client.send(`${origin.url}/aged`)
    expect(young.header('age')).toBe('25')
    clock.advance(10)
    const revalidated = await client.send(`${origin.url}/aged`)
    // RFC 9111 §4.3.4: the 304 is a new response, as old as its own Age says (none): 0 s, not 20.
    expect(revalidated.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=30')
    expect(revalidated.header('age')).toBe('0')

    clock.advance(25)
    const hit = await client.send(`${origin.url}/aged`)
    expect(hit.header('cache-status')).toBe('cachedfetch; hit; ttl=5')
    expect(hit.header('age')).toBe('25')
    expect(hit.body).toBe('aged')
    expect(origin.hits('/aged')).toBe(2)
  })
  it('replaces the entry when a revalidation gets a 200', async () => {
    let version = 1
    origin.route('/replace', (req, res) => {
      const etag = `"v${version}"`
      if (req.headers['if-none-match'] === etag) {
        res.writeHead(304, { date: clock.date(), 'cache-control': 'max-age=30', etag }).end()
        return
      }
      res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=30', etag }).end(`version ${version}`)
    })

    expect((await client.send(`${origin.url}/replace`)).body).toBe('version 1')
    version = 2
    clock.advance(60)

    const replaced = await client.send(`${origin.url}/replace`)
    expect(replaced.body).toBe('version 2')
    expect(replaced.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=200; stored')
    expect(origin.seen('/replace')[1]!.headers['if-none-match']).toBe('"v1"')

    const hit = await client.send(`${origin.url}/replace`)
    expect(hit.body).toBe('version 2')
    expect(hit.header('cache-status')).toBe('cachedfetch; hit; ttl=30')
    expect(origin.hits('/replace')).toBe(2)

    // The next revalidation carries the new entry's validator.
    clock.advance(60)
    const again = await client.send(`${origin.url}/replace`)
    expect(again.body).toBe('version 2')
    expect(again.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=30')
    expect(origin.seen('/replace')[2]!.headers['if-none-match']).toBe('"v2"')
  })

  it.each([500, 502, 503, 504])('keeps the entry when a %i with max-age=300 answers its revalidation, and revalidates it once the origin is back', async (status) => {
    // Retries off: the one failing answer is the one under test.
    const c = opened.add(connect(createCache({ now: clock.now, retry: false })))
    let down = false
    origin.route('/maintenance', (req, res) => {
      if (down) {
        res.writeHead(status, { date: clock.date(), 'cache-control': 'max-age=300', 'content-type': 'text/plain' }).end('down for maintenance')
        return
      }
      const fields = { date: clock.date(), 'cache-control': 'max-age=10', etag: '"v1"' }
      if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, fields).end()
      else res.writeHead(200, { ...fields, 'content-type': 'text/plain' }).end('version 1')
    })
    const url = `${origin.url}/maintenance`

    expect((await c.send(url)).header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    clock.advance(20)
    down = true

    // No stale-if-error: the error reaches the caller, and is not stored (RFC 9111 §4.3.3).
    const failed = await c.send(url)
    expect(failed.status).toBe(status)
    expect(failed.body).toBe('down for maintenance')
    expect(failed.header('cache-status')).toBe(`cachedfetch; fwd=stale; fwd-status=${status}`)

    down = false
    const back = await c.send(url)
    expect(back.status).toBe(200)
    expect(back.body).toBe('version 1')
    expect(back.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=10')
    expect(origin.seen('/maintenance').map((s) => s.headers['if-none-match'])).toEqual([undefined, '"v1"', '"v1"'])

    const hit = await c.send(url)
    expect(hit.status).toBe(200)
    expect(hit.body).toBe('version 1')
    expect(hit.header('cache-status')).toBe('cachedfetch; hit; ttl=10')
    expect(origin.hits('/maintenance')).toBe(3)
  })

  it('serves a fresh must-revalidate entry as a hit and revalidates it once stale, even with max-stale', async () => {
    origin.route('/strict', (req, res) => {
      const fields = { date: clock.date(), 'cache-control': 'max-age=30, must-revalidate', etag: '"s1"' }
      if (req.headers['if-none-match'] === '"s1"') res.writeHead(304, fields).end()
      else res.writeHead(200, fields).end('strict')
    })
    const maxStale = { headers: { 'cache-control': 'max-stale=3600' } }

    await client.send(`${origin.url}/strict`)
    clock.advance(10)
    const fresh = await client.send(`${origin.url}/strict`, maxStale)
    expect(fresh.header('cache-status')).toBe('cachedfetch; hit; ttl=20')
    expect(fresh.body).toBe('strict')
    expect(origin.hits('/strict')).toBe(1)

    clock.advance(30)
    const stale = await client.send(`${origin.url}/strict`, maxStale)
    expect(stale.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=30')
    expect(stale.body).toBe('strict')
    expect(origin.hits('/strict')).toBe(2)
    expect(origin.seen('/strict')[1]!.headers['if-none-match']).toBe('"s1"')
  })

  // cache.stats(): every lookup counts once in hitRatio, and the body a 304 lets the cache serve is served from it.
  it('a stale entry revalidated with a 200 counts as a lookup', async () => {
    let version = 0
    origin.route('/s', (_q, res) => { res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=10', etag: `"${++version}"` }).end('x') })
    await client.send(origin.url + '/s') // miss
    await client.send(origin.url + '/s') // hit
    clock.advance(20)
    const changed = await client.send(origin.url + '/s') // stale, revalidated, new 200
    expect(changed.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=200; stored')
    const stats = cache.stats()
    // Three lookups, one hit.
    expect(stats.hits + stats.misses + stats.revalidated).toBe(3)
    expect(stats.hitRatio).toBeCloseTo(1 / 3)
  })

  it('a fresh entry the request refused (no-cache) answered 200 counts as a lookup', async () => {
    let version = 0
    origin.route('/r', (_q, res) => { res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=60', etag: `"${++version}"` }).end('x') })
    await client.send(origin.url + '/r')
    const refused = await client.send(origin.url + '/r', { headers: { 'cache-control': 'no-cache' } })
    expect(refused.header('cache-status')).toBe('cachedfetch; fwd=request; fwd-status=200; stored')
    const stats = cache.stats()
    expect(stats.hits + stats.misses + stats.revalidated).toBe(2)
  })

  it('the stored body a 304 serves counts in bytesServed', async () => {
    origin.route('/b', (req, res) => {
      if (req.headers['if-none-match'] === '"b"') res.writeHead(304, { date: clock.date(), etag: '"b"', 'cache-control': 'max-age=10' }).end()
      else res.writeHead(200, { date: clock.date(), etag: '"b"', 'cache-control': 'max-age=10' }).end('0123456789')
    })
    await client.send(origin.url + '/b')
    clock.advance(20)
    const replayed = await client.send(origin.url + '/b')
    expect(replayed.body).toBe('0123456789')
    expect(cache.stats().bytesServed).toBe(10)
  })

  it.each([
    { answer: 304, counter: 'revalidated', status: 'cachedfetch; fwd=stale; fwd-status=304; ttl=10', policy: { retry: false } },
    { answer: 503, counter: 'staleServed', status: 'cachedfetch; fwd=stale; fwd-status=503; ttl=-10; detail=stale-if-error', policy: { retry: false } },
    // Without a policy of their own, cachedFetch()'s callers after the first follow its exchange (src/adapters/follower.ts).
    { answer: 304, counter: 'revalidated', status: 'cachedfetch; fwd=stale; fwd-status=304; ttl=10', policy: undefined }
  ] as const)('counts each of five callers sharing one revalidation answered $answer as its own lookup (cachePolicy $policy)', async ({ answer, counter, status, policy }) => {
    let release!: () => void
    const held = new Promise<void>((resolve) => { release = resolve })
    origin.route('/shared', async (req, res) => {
      const fields = { date: clock.date(), etag: '"s"', 'cache-control': 'max-age=10, stale-if-error=60' }
      if (req.headers['if-none-match'] === undefined) {
        res.writeHead(200, fields).end('0123456789')
        return
      }
      await held
      if (answer === 304) res.writeHead(304, fields).end()
      else res.writeHead(503, { 'content-type': 'text/plain' }).end('busy')
    })
    await client.send(origin.url + '/shared')
    clock.advance(20)
    const before = cache.stats()
    const send = async (): Promise<Reply> => await client.send(origin.url + '/shared', policy === undefined ? {} : { cachePolicy: policy })
    // The others come once the first one's revalidation is on its way.
    const first = send()
    await waitFor(() => origin.hits('/shared') === 2, 'the revalidation to reach the origin')
    const replies = Promise.all([first, ...Array.from({ length: 4 }, send)])
    await new Promise((resolve) => setTimeout(resolve, 50))
    release()
    const answered = await replies
    expect(answered.map((reply) => [reply.body, reply.header('cache-status')?.replace('; collapsed', '')])).toEqual(Array.from({ length: 5 }, () => ['0123456789', status]))
    expect(origin.hits('/shared')).toBe(2)
    const after = cache.stats()
    expect(after[counter] - before[counter]).toBe(5)
    expect(after.bytesServed - before.bytesServed).toBe(50)
  })
})

describe('revalidation of a request whose fields came as lists (undici.request)', () => {
  const opened = teardown()
  afterEach(() => opened.close())

  it('sends a Cookie given as several values joined by "; ", as the origin parses cookie pairs (RFC 6265 §5.4)', async () => {
    const clock = manualClock(wholeSecondNow())
    const origin = await opened.origin({
      '/doc': (req, res) => {
        const fields = { date: clock.date(), 'cache-control': 'public, max-age=30', etag: '"v1"', vary: 'cookie' }
        if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, fields).end()
        else res.writeHead(200, fields).end('document')
      }
    })
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache: createCache({ now: clock.now }) }))
    const send = async (): Promise<string> => await (await request(`${origin.url}/doc`, { dispatcher, headers: { cookie: ['a=1', 'b=2'] } })).body.text()

    await send()
    clock.advance(60)
    expect(await send()).toBe('document')
    expect(origin.seen('/doc').map((r) => `${String(r.headers.cookie)} ${r.headers['if-none-match'] ?? 'unconditional'}`))
      .toEqual(['a=1; b=2 unconditional', 'a=1; b=2 "v1"'])
  })
})

describe('a late 304 and a stored response removed while it was on its way (RFC 9111 §4.3.4: nothing stored is selected, nothing updated)', () => {
  const opened = teardown()
  afterEach(() => opened.close())

  it('does not put back, fresh, a response a newer no-store answer dropped while the 304 was on its way', async () => {
    const held = gate()
    opened.add({ close: () => Promise.resolve(held.release()) })
    let revalidations = 0
    const origin = await opened.origin({
      '/doc': async (req, res) => {
        if (req.headers['if-none-match'] === '"v1"') {
          revalidations++
          if (revalidations === 1) {
            await held.promise
            res.writeHead(304, { etag: '"v1"', 'cache-control': 'max-age=100' }).end()
            return
          }
          // The resource became personal: the origin now says no-store.
          res.writeHead(200, { 'cache-control': 'no-store', 'content-type': 'text/plain' }).end('v2 for you alone')
          return
        }
        res.writeHead(200, { etag: '"v1"', 'cache-control': revalidations === 0 ? 'max-age=0' : 'no-store', 'content-type': 'text/plain' }).end(revalidations === 0 ? 'v1' : 'v2 for you alone')
      }
    })
    const cache = createCache({ retry: false })
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache }))
    const url = `${origin.url}/doc`
    const get = async (cacheMode?: 'no-cache'): Promise<[string, string | undefined]> => {
      const r = await request(url, { dispatcher, cacheMode })
      return [await r.body.text(), r.headers['cache-status'] as string | undefined]
    }
    expect((await get())[0]).toBe('v1')
    const late = get()
    await waitFor(() => revalidations === 1, 'the revalidation to reach the origin')
    // Another request revalidates too (its own flight: cacheMode no-cache) and is told no-store: the entry is dropped.
    expect((await get('no-cache'))[0]).toBe('v2 for you alone')
    await cache.flush()
    held.release()
    expect((await late)[0]).toBe('v1')
    await cache.flush()
    // Nothing is stored now: the next request goes to the origin.
    const after = await get()
    expect(after[1]).not.toMatch(/; hit/)
    expect(after[0]).toBe('v2 for you alone')
  })
})
