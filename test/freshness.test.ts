/**
 * RFC 9111 §4.2: how long a stored response is fresh. Cases in fixtures/freshness.json are served
 * through cachedFetch and through the undici interceptor, with a manual clock: the origin's Date
 * (and Expires, Last-Modified) are derived from that clock, and time moves without sleeping.
 */
import { readFileSync } from 'node:fs'
import type { OutgoingHttpHeaders } from 'node:http'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createCache } from '../src/index.js'
import { adapters, type Client } from './helpers/clients.js'
import { startOrigin, type Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, type ManualClock } from './helpers/time.js'
import { gate } from './helpers/wait.js'

/** Seconds from the clock (sent as an HTTP-date), a literal field value, or null for none. */
type TimeField = number | string | null

interface FreshnessCase {
  readonly name: string
  readonly mode?: 'shared' | 'private'
  readonly headers?: Record<string, string>
  readonly date?: TimeField
  readonly expires?: TimeField
  readonly lastModified?: TimeField
  /** Seconds after the response at which a request is a hit; null when it never is. */
  readonly hitAt: number | null
  /** Seconds after the response at which a request reaches the origin again. */
  readonly missAt: number
}

const { cases } = JSON.parse(readFileSync(new URL('../fixtures/freshness.json', import.meta.url), 'utf8')) as
  { cases: FreshnessCase[] }

function timeField (value: TimeField | undefined, now: number): string | undefined {
  if (value === undefined || value === null) return undefined
  return typeof value === 'number' ? new Date(now + value * 1000).toUTCString() : value
}

/** The headers a case's origin sends at clock time `now`. */
function responseHeaders (c: FreshnessCase, now: number): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { 'content-type': 'text/plain', ...c.headers }
  const fields = { date: c.date === undefined ? 0 : c.date, expires: c.expires, 'last-modified': c.lastModified }
  for (const [name, value] of Object.entries(fields)) {
    const text = timeField(value, now)
    if (text !== undefined) headers[name] = text
  }
  return headers
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
  describe(`freshness through ${adapter}`, () => {
    function setup (path: string, mode: 'shared' | 'private', headers: (now: number) => OutgoingHttpHeaders): { client: Client, clock: ManualClock } {
      const clock = manualClock()
      origin.route(path, (_req, res) => {
        const sent = headers(clock.now())
        // Without a Date of ours, node would add one from the real clock.
        if (sent.date === undefined) res.sendDate = false
        res.writeHead(200, sent)
        res.end(`body of ${path}`)
      })
      const client = opened.add(connect(createCache({ shared: mode === 'shared', now: clock.now })))
      return { client, clock }
    }

    it.each(cases.map((c, i) => ({ ...c, path: `/${adapter}/case-${i}` })))('$name', async (c) => {
      const { client, clock } = setup(c.path, c.mode ?? 'shared', (now) => responseHeaders(c, now))
      const url = origin.url + c.path

      const first = await client.send(url)
      expect(first.status).toBe(200)
      expect(first.body).toBe(`body of ${c.path}`)
      expect(origin.hits(c.path)).toBe(1)

      if (c.hitAt !== null) {
        clock.advance(c.hitAt)
        const hit = await client.send(url)
        expect(hit.header('cache-status')).toMatch(/^cachedfetch; hit/)
        expect(hit.body).toBe(first.body)
        expect(Number(hit.header('age'))).toBe(c.hitAt + Number(c.headers?.age ?? 0))
        expect(origin.hits(c.path)).toBe(1)
        clock.advance(c.missAt - c.hitAt)
      } else {
        clock.advance(c.missAt)
      }

      const later = await client.send(url)
      expect(later.status).toBe(200)
      expect(later.header('cache-status')).not.toMatch(/; hit/)
      expect(later.body).toBe(first.body)
      expect(origin.hits(c.path)).toBe(2)
    })

    it('dates a response that came without Date when it stores it (RFC 9110 §6.6.1): its caller and every hit are told when it was received', async () => {
      const path = `/${adapter}/undated`
      const { client, clock } = setup(path, 'shared', () => ({ 'cache-control': 'max-age=600' }))
      const received = new Date(clock.now()).toUTCString()

      const first = await client.send(origin.url + path)
      clock.advance(5)
      const hit = await client.send(origin.url + path)

      expect(first.header('date')).toBe(received)
      expect(hit.header('cache-status')).toMatch(/^cachedfetch; hit/)
      expect(hit.header('date')).toBe(received)
      expect(hit.header('age')).toBe('5')
    })

    it('serves hits with an age header that grows with the clock', async () => {
      const path = `/${adapter}/age-grows`
      const { client, clock } = setup(path, 'shared', (now) => ({ date: new Date(now).toUTCString(), 'cache-control': 'max-age=600' }))
      const url = origin.url + path

      await client.send(url)
      expect((await client.send(url)).header('age')).toBe('0')
      clock.advance(10)
      expect((await client.send(url)).header('age')).toBe('10')
      clock.advance(290)
      expect((await client.send(url)).header('age')).toBe('300')
      expect(origin.hits(path)).toBe(1)
    })

    // RFC 9111 §4.2.3: the time an answer took (response_delay) counts in its age, on top of its
    // Age, though its Date says it is new: it may have aged that much on its way.
    for (const age of [undefined, 5]) {
      it(`counts the time the origin took to answer in the response's age${age === undefined ? '' : ', on top of its Age'}`, async () => {
        const path = `/${adapter}/slow-answer-${age ?? 'no-age'}`
        const clock = manualClock()
        const reached = gate()
        const answer = gate()
        origin.route(path, async (_req, res) => {
          reached.release()
          await answer.promise
          // Dated when it answers: its apparent age is zero.
          res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=60', ...(age === undefined ? {} : { age: String(age) }) })
          res.end('slow')
        })
        const client = opened.add(connect(createCache({ now: clock.now })))
        const first = client.send(origin.url + path)
        await reached.promise
        clock.advance(10)
        answer.release()
        expect((await first).status).toBe(200)

        const hit = await client.send(origin.url + path)
        const expected = 10 + (age ?? 0)
        expect(hit.header('age')).toBe(String(expected))
        expect(hit.header('cache-status')).toBe(`cachedfetch; hit; ttl=${60 - expected}`)
        expect(origin.hits(path)).toBe(1)
      })
    }

    it('counts the time a revalidation took in the freshened response\'s age', async () => {
      const path = `/${adapter}/slow-304`
      const url = origin.url + path
      const clock = manualClock()
      let reached = gate()
      let answer = gate()
      answer.release()
      origin.route(path, async (req, res) => {
        reached.release()
        await answer.promise
        const headers = { date: clock.date(), 'cache-control': 'max-age=60', etag: '"v1"' }
        if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, headers).end()
        else res.writeHead(200, headers).end('slow')
      })
      const client = opened.add(connect(createCache({ now: clock.now })))
      await client.send(url)
      clock.advance(61)

      reached = gate()
      answer = gate()
      const revalidation = client.send(url)
      await reached.promise
      clock.advance(10)
      answer.release()
      expect((await revalidation).header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=50')
      const hit = await client.send(url)
      expect(hit.header('age')).toBe('10')
      expect(hit.header('cache-status')).toBe('cachedfetch; hit; ttl=50')
      expect(origin.hits(path)).toBe(2)
    })

    it('revalidates a no-cache response at every use, defaultTtl or not (RFC 9111 §5.2.2.4)', async () => {
      const clock = manualClock()
      const path = `/${adapter}/no-cache-default-ttl`
      let version = 1
      origin.route(path, (req, res) => {
        const fields = { date: clock.date(), 'cache-control': 'no-cache', etag: `"v${version}"` }
        if (req.headers['if-none-match'] === fields.etag) res.writeHead(304, fields).end()
        else res.writeHead(200, { ...fields, 'content-type': 'text/plain' }).end(`version ${version}`)
      })
      const client = opened.add(connect(createCache({ defaultTtl: 60, now: clock.now })))
      const url = origin.url + path

      expect((await client.send(url)).body).toBe('version 1')
      clock.advance(5)
      const unchanged = await client.send(url)
      expect(unchanged.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=0')
      version = 2
      clock.advance(5)
      const changed = await client.send(url)
      expect([changed.body, changed.header('cache-status')]).toEqual(['version 2', 'cachedfetch; fwd=stale; fwd-status=200; stored'])
      expect(origin.seen(path).map((r) => r.headers['if-none-match'] ?? 'unconditional')).toEqual(['unconditional', '"v1"', '"v1"'])
    })

    it('adds the origin\'s Age to the time the response spent in the cache', async () => {
      const path = `/${adapter}/age-from-origin`
      const { client, clock } = setup(path, 'shared', (now) => ({ date: new Date(now).toUTCString(), 'cache-control': 'max-age=600', age: '100' }))
      const url = origin.url + path

      await client.send(url)
      expect((await client.send(url)).header('age')).toBe('100')
      clock.advance(20)
      const hit = await client.send(url)
      expect(hit.header('age')).toBe('120')
      expect(hit.header('cache-status')).toBe('cachedfetch; hit; ttl=480')
      expect(origin.hits(path)).toBe(1)
    })

    it('serves an Age past 2^31 seconds as 2147483648 (RFC 9111 §1.2.2)', async () => {
      const path = `/${adapter}/age-overflow`
      const { client, clock } = setup(path, 'shared', (now) => ({ date: new Date(now).toUTCString(), 'cache-control': 'max-age=60', age: '2147483640', etag: '"v1"' }))
      const url = origin.url + path

      await client.send(url)
      clock.advance(30)
      // Stale by then (its Age is past its max-age), served as it is where the request allows it.
      const served = await client.send(url, { headers: { 'cache-control': 'max-stale' } })
      expect(served.header('age')).toBe('2147483648')
      expect(origin.hits(path)).toBe(1)
    })
  })
}
