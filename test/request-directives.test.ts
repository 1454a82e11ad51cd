/**
 * Request Cache-Control directives (RFC 9111 §5.2.1) and Pragma: no-cache (§5.4), as a caller sends
 * them in request headers. The cases are data (fixtures/request-directives.json); each runs through
 * cachedFetch and through the undici interceptor, with a manual clock.
 */
import { readFileSync } from 'node:fs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createCache } from '../src/index.js'
import { adapters, type Client } from './helpers/clients.js'
import type { Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, wholeSecondNow, type ManualClock } from './helpers/time.js'

interface DirectiveCase {
  readonly name: string
  /** Cache-Control of the response stored first; absent when nothing is stored. */
  readonly stored?: string
  readonly advance: number
  readonly request: Record<string, string>
  readonly expect: {
    readonly origin: 'none' | 'conditional' | 'unconditional'
    readonly status: number
    readonly body: string
    readonly cacheStatus: string
    readonly age?: string
    readonly storedAfter?: boolean
  }
}

const table = JSON.parse(readFileSync(new URL('../fixtures/request-directives.json', import.meta.url), 'utf8')) as { cases: DirectiveCase[] }

describe.each(adapters)('request directives through $name', ({ connect }) => {
  const opened = teardown()
  let clock: ManualClock
  let origin: Origin
  let client: Client

  beforeEach(async () => {
    clock = manualClock(wholeSecondNow())
    origin = await opened.origin()
    client = opened.add(connect(createCache({ now: clock.now })))
  })

  afterEach(() => opened.close())

  it.each(table.cases)('$name', async (c) => {
    origin.route('/d', (req, res) => {
      const fields = { date: clock.date(), 'cache-control': c.stored ?? 'max-age=60', etag: '"d1"' }
      if (req.headers['if-none-match'] === '"d1"') res.writeHead(304, fields).end()
      else res.writeHead(200, { ...fields, 'content-type': 'text/plain' }).end('d1')
    })
    const url = `${origin.url}/d`
    if (c.stored !== undefined) {
      const primed = await client.send(url)
      expect(primed.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    }
    clock.advance(c.advance)
    const before = origin.hits('/d')

    const reply = await client.send(url, { headers: c.request })

    expect(reply.status).toBe(c.expect.status)
    expect(reply.body).toBe(c.expect.body)
    expect(reply.header('cache-status')).toBe(c.expect.cacheStatus)
    if (c.expect.age !== undefined) expect(reply.header('age')).toBe(c.expect.age)
    const seen = origin.seen('/d').slice(before)
    if (c.expect.origin === 'none') {
      expect(seen).toHaveLength(0)
    } else {
      expect(seen).toHaveLength(1)
      expect(seen[0]!.headers['if-none-match']).toBe(c.expect.origin === 'conditional' ? '"d1"' : undefined)
    }

    if (c.expect.storedAfter !== undefined) {
      const hits = origin.hits('/d')
      const after = await client.send(url)
      expect(after.body).toBe('d1')
      if (c.expect.storedAfter) {
        expect(after.header('cache-status')).toMatch(/^cachedfetch; hit;/)
        expect(origin.hits('/d')).toBe(hits)
      } else {
        expect(after.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
        expect(origin.hits('/d')).toBe(hits + 1)
      }
    }
  })

  // An empty argument is the directive, as in a response (found by a hunt: the 304 was stored).
  it.each(['no-store', 'no-store=""', 'no-store=', 'no-store="'])('stores no 304 that answers a request with %s: the entry stays stale (RFC 9111 §5.2.1.5)', async (directive) => {
    origin.route('/n', (req, res) => {
      const fields = { date: clock.date(), 'cache-control': 'max-age=10', etag: '"n1"' }
      if (req.headers['if-none-match'] === '"n1"') res.writeHead(304, fields).end()
      else res.writeHead(200, fields).end('n1')
    })
    const url = `${origin.url}/n`
    await client.send(url)
    clock.advance(20)
    const refused = await client.send(url, { headers: { 'cache-control': directive } })
    expect(refused.header('cache-status')).toMatch(/^cachedfetch; fwd=stale; fwd-status=304; /)
    clock.advance(1)
    const next = await client.send(url)
    expect(next.header('cache-status')).toMatch(/^cachedfetch; fwd=stale; fwd-status=304; /)
    expect(origin.hits('/n')).toBe(3)
  })

  it('answers only-if-cached with a 504 in the reload mode, which takes nothing stored, without asking the origin (RFC 9111 §5.2.1.7)', async () => {
    origin.route('/d', (_req, res) => { res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=60', 'content-type': 'text/plain' }).end('d1') })
    const url = `${origin.url}/d`
    await client.send(url)
    const reply = await client.send(url, { cache: 'reload', headers: { 'cache-control': 'only-if-cached' } })
    expect([reply.status, reply.header('cache-status')]).toEqual([504, 'cachedfetch; detail=only-if-cached'])
    expect(origin.hits('/d')).toBe(1)
  })
})
