/**
 * RFC 9111 §4.2: how long a stored response is fresh. Cases in fixtures/freshness.json are served
 * through cachedFetch and through the undici interceptor, with a manual clock: the origin's Date
 * (and Expires, Last-Modified) are derived from that clock, and time moves without sleeping.
 */
import { readFileSync } from 'node:fs'
import type { OutgoingHttpHeaders } from 'node:http'
import { Agent, request } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { cacheInterceptor, createCache, createCachedFetch, type Cache } from '../src/index.js'
import { manualClock, startOrigin, type Origin } from './helpers/origin.js'

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

interface Reply {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: string
}

interface Client {
  get (url: string): Promise<Reply>
  close (): Promise<void>
}

/** The two faces of one cache: what a user of either would see. */
const adapters: Record<string, (cache: Cache) => Client> = {
  cachedFetch (cache) {
    const agent = new Agent()
    const fetch = createCachedFetch({ cache, dispatcher: agent })
    return {
      async get (url) {
        const response = await fetch(url)
        return { status: response.status, headers: Object.fromEntries(response.headers), body: await response.text() }
      },
      close: () => agent.close()
    }
  },
  interceptor (cache) {
    const agent = new Agent()
    const dispatcher = agent.compose(cacheInterceptor({ cache }))
    return {
      async get (url) {
        const response = await request(url, { dispatcher })
        const flat: Record<string, string> = {}
        for (const [name, value] of Object.entries(response.headers)) {
          if (value !== undefined) flat[name] = Array.isArray(value) ? value.join(', ') : value
        }
        return { status: response.statusCode, headers: flat, body: await response.body.text() }
      },
      close: () => agent.close()
    }
  }
}

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
const clients: Client[] = []

beforeAll(async () => {
  origin = await startOrigin()
})

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()))
})

afterAll(async () => {
  await origin.close()
})

describe.each(Object.keys(adapters))('freshness through %s', (adapter) => {
  function setup (path: string, mode: 'shared' | 'private', headers: (now: number) => OutgoingHttpHeaders): { client: Client, clock: ReturnType<typeof manualClock> } {
    const clock = manualClock()
    origin.route(path, (_req, res) => {
      const sent = headers(clock.now())
      // Without a Date of ours, node would add one from the real clock.
      if (sent.date === undefined) res.sendDate = false
      res.writeHead(200, sent)
      res.end(`body of ${path}`)
    })
    const client = adapters[adapter]!(createCache({ shared: mode === 'shared', now: clock.now }))
    clients.push(client)
    return { client, clock }
  }

  it.each(cases.map((c, i) => ({ ...c, path: `/${adapter}/case-${i}` })))('$name', async (c) => {
    const { client, clock } = setup(c.path, c.mode ?? 'shared', (now) => responseHeaders(c, now))
    const url = origin.url + c.path

    const first = await client.get(url)
    expect(first.status).toBe(200)
    expect(first.body).toBe(`body of ${c.path}`)
    expect(origin.hits(c.path)).toBe(1)

    if (c.hitAt !== null) {
      clock.advance(c.hitAt)
      const hit = await client.get(url)
      expect(hit.headers['cache-status']).toMatch(/^cachedfetch; hit/)
      expect(hit.body).toBe(first.body)
      expect(Number(hit.headers.age)).toBe(c.hitAt + Number(c.headers?.age ?? 0))
      expect(origin.hits(c.path)).toBe(1)
      clock.advance(c.missAt - c.hitAt)
    } else {
      clock.advance(c.missAt)
    }

    const later = await client.get(url)
    expect(later.status).toBe(200)
    expect(later.headers['cache-status']).not.toMatch(/; hit/)
    expect(later.body).toBe(first.body)
    expect(origin.hits(c.path)).toBe(2)
  })

  it('serves hits with an age header that grows with the clock', async () => {
    const path = `/${adapter}/age-grows`
    const { client, clock } = setup(path, 'shared', (now) => ({ date: new Date(now).toUTCString(), 'cache-control': 'max-age=600' }))
    const url = origin.url + path

    await client.get(url)
    expect((await client.get(url)).headers.age).toBe('0')
    clock.advance(10)
    expect((await client.get(url)).headers.age).toBe('10')
    clock.advance(290)
    expect((await client.get(url)).headers.age).toBe('300')
    expect(origin.hits(path)).toBe(1)
  })

  it('adds the origin\'s Age to the time the response spent in the cache', async () => {
    const path = `/${adapter}/age-from-origin`
    const { client, clock } = setup(path, 'shared', (now) => ({ date: new Date(now).toUTCString(), 'cache-control': 'max-age=600', age: '100' }))
    const url = origin.url + path

    await client.get(url)
    expect((await client.get(url)).headers.age).toBe('100')
    clock.advance(20)
    const hit = await client.get(url)
    expect(hit.headers.age).toBe('120')
    expect(hit.headers['cache-status']).toBe('cachedfetch; hit; ttl=480')
    expect(origin.hits(path)).toBe(1)
  })
})
