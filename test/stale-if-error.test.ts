/**
 * stale-if-error (RFC 5861 §4): when the origin cannot be reached, resets the connection, or
 * answers 500, 502, 503 or 504 after retries, a stale entry within its window stands in for the
 * failure. The window comes from the response's directive, the request's directive, the
 * `staleIfError` option or the request's `cachePolicy`. Outside it the failure reaches the caller;
 * answers that are not such failures (a 404, say) are never replaced; responses that forbid serving
 * stale (must-revalidate, no-cache) never stand in. Every case runs through cachedFetch and through
 * the undici interceptor, against a real loopback origin.
 */
import diagnostics from 'node:diagnostics_channel'
import { readFileSync } from 'node:fs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { cacheInterceptor, createCache, type Cache, type CacheOptions } from '../src/index.js'
import { adapters, type CachePolicy, type Client, type Send } from './helpers/clients.js'
import type { Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, wholeSecondNow, type ManualClock } from './helpers/time.js'
import { gate, settle, waitFor, within } from './helpers/wait.js'

interface WindowCase {
  readonly name: string
  readonly cacheControl: string
  readonly requestCacheControl?: string
  readonly options?: CacheOptions
  readonly cachePolicy?: CachePolicy
  readonly inside: number
  readonly outside: number
}

interface PassedThroughCase {
  readonly status: number
  readonly name: string
}

interface RefusedCase {
  readonly name: string
  readonly options: CacheOptions
  readonly method: string
  readonly body?: string
}

interface NeverStaleCase {
  readonly name: string
  readonly cacheControl: string
  readonly requestCacheControl?: string
  readonly options?: CacheOptions
}

const table = JSON.parse(readFileSync(new URL('../fixtures/stale-if-error.json', import.meta.url), 'utf8')) as {
  windows: WindowCase[]
  errorStatuses: number[]
  passedThrough: PassedThroughCase[]
  refused: RefusedCase[]
  neverStale: NeverStaleCase[]
}

/** Two retries after the first attempt, with waits of a few ms: three attempts in all. */
const RETRY = { limit: 2, baseDelay: 1, maxDelay: 5 }

/** The error codes along a rejection's cause chain (fetch wraps the network error in a TypeError). */
function codes (error: unknown): string[] {
  const found: string[] = []
  for (let e = error as { code?: unknown, cause?: unknown } | undefined; e !== undefined && e !== null; e = e.cause as typeof e) {
    if (typeof e.code === 'string') found.push(e.code)
  }
  return found
}

async function rejection (promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error('expected the request to fail')
}

const sieStatus = (ttl: number, status?: number): string =>
  `cachedfetch; fwd=stale;${status === undefined ? '' : ` fwd-status=${status};`} ttl=${ttl}; detail=stale-if-error`

describe.each(adapters)('stale-if-error through $name', ({ connect }) => {
  const opened = teardown()
  let clock: ManualClock
  let origin: Origin
  const retries: { url?: string, attempt?: number }[] = []
  const onRetry = (message: unknown): void => { retries.push(message as { url?: string, attempt?: number }) }
  // An exception thrown out of an undici callback is uncaught: outside a test runner it ends the process.
  const uncaught: unknown[] = []
  const onUncaught = (error: unknown): void => { uncaught.push(error) }

  beforeEach(async () => {
    clock = manualClock(wholeSecondNow())
    origin = await opened.origin()
    retries.length = 0
    uncaught.length = 0
    diagnostics.subscribe('cachedfetch:retry', onRetry)
    process.on('uncaughtException', onUncaught)
  })

  afterEach(async () => {
    process.off('uncaughtException', onUncaught)
    diagnostics.unsubscribe('cachedfetch:retry', onRetry)
    await opened.close()
  })

  function setup (options: CacheOptions = {}): { cache: Cache, client: Client } {
    const cache = createCache({ now: clock.now, retry: RETRY, ...options })
    const client = opened.add(connect(cache))
    return { cache, client }
  }

  /**
   * `/doc`: version 1 (ETag "v1") while `failing` is unset; then `failing` answers: a status with
   * body `unavailable`, or `reset` to destroy the connection.
   */
  function document (cacheControl: string): { fail: (how: number | 'reset' | undefined) => void } {
    let failing: number | 'reset' | undefined
    origin.route('/doc', (req, res) => {
      if (failing === 'reset') {
        req.socket.destroy()
        return
      }
      if (failing !== undefined) {
        res.writeHead(failing, { date: clock.date(), 'content-type': 'text/plain' }).end('unavailable')
        return
      }
      const fields = { date: clock.date(), 'cache-control': cacheControl, etag: '"v1"' }
      if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, fields).end()
      else res.writeHead(200, { ...fields, 'content-type': 'text/plain' }).end('version 1')
    })
    return { fail: (how) => { failing = how } }
  }

  const retriesOf = (path: string): number => retries.filter((r) => r.url?.endsWith(path) === true).length

  describe.each(table.windows)('within $name', (c) => {
    const send: Send = {
      headers: c.requestCacheControl === undefined ? {} : { 'cache-control': c.requestCacheControl },
      cachePolicy: c.cachePolicy
    }

    it('serves the stale entry for a 503 after retries, and passes the 503 through outside the window', async () => {
      const { client } = setup(c.options)
      const doc = document(c.cacheControl)
      const url = `${origin.url}/doc`

      expect((await client.send(url, send)).header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
      doc.fail(503)
      clock.advance(c.inside)

      const stale = await client.send(url, send)
      expect(stale.status).toBe(200)
      expect(stale.body).toBe('version 1')
      expect(stale.header('cache-status')).toBe(sieStatus(10 - c.inside, 503))
      expect(stale.header('age')).toBe(String(c.inside))
      expect(stale.header('etag')).toBe('"v1"')
      const attempts = origin.seen('/doc').slice(1)
      expect(attempts).toHaveLength(3)
      expect(attempts.map((a) => a.headers['if-none-match'])).toEqual(['"v1"', '"v1"', '"v1"'])
      expect(retriesOf('/doc')).toBe(2)

      clock.advance(c.outside - c.inside)
      const failed = await client.send(url, send)
      expect(failed.status).toBe(503)
      expect(failed.body).toBe('unavailable')
      expect(failed.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=503')
      expect(origin.hits('/doc')).toBe(7)
    })

    it('serves the stale entry when the origin is down, and surfaces the error outside the window', async () => {
      const { client } = setup(c.options)
      document(c.cacheControl)
      const url = `${origin.url}/doc`

      await client.send(url, send)
      await origin.close()
      clock.advance(c.inside)

      const stale = await client.send(url, send)
      expect(stale.status).toBe(200)
      expect(stale.body).toBe('version 1')
      expect(stale.header('cache-status')).toBe(sieStatus(10 - c.inside))
      expect(retriesOf('/doc')).toBe(2)

      clock.advance(c.outside - c.inside)
      const error = await rejection(client.send(url, send))
      expect(codes(error)).toContain('ECONNREFUSED')
      expect(retriesOf('/doc')).toBe(4)
    })
  })

  it.each(table.refused)('rejects $name with the connection error when the origin refuses it, and throws nothing out of band', async (c) => {
    const { client } = setup(c.options)
    const url = `${origin.url}/doc`
    await origin.close()

    const error = await rejection(within(client.send(url, { method: c.method, body: c.body }), c.name))
    expect(codes(error), String(error)).toContain('ECONNREFUSED')
    await settle()
    expect(uncaught).toEqual([])
  })

  it('serves the stale entry when the origin refuses the connection and retries are off', async () => {
    const { client } = setup({ retry: false })
    document('max-age=10, stale-if-error=60')
    const url = `${origin.url}/doc`

    await client.send(url)
    await origin.close()
    clock.advance(30)

    const stale = await within(client.send(url), 'the stale entry')
    expect(stale.status).toBe(200)
    expect(stale.body).toBe('version 1')
    expect(stale.header('cache-status')).toBe(sieStatus(-20))
    expect(retriesOf('/doc')).toBe(0)

    clock.advance(50)
    const error = await rejection(within(client.send(url), 'the request outside the window'))
    expect(codes(error), String(error)).toContain('ECONNREFUSED')
    await settle()
    expect(uncaught).toEqual([])
  })

  it.each(table.errorStatuses)('stands in for a %i once the retries are spent', async (status) => {
    const { cache, client } = setup()
    const doc = document('max-age=10, stale-if-error=60')
    const url = `${origin.url}/doc`

    await client.send(url)
    doc.fail(status)
    clock.advance(30)

    const stale = await client.send(url)
    expect(stale.status).toBe(200)
    expect(stale.body).toBe('version 1')
    expect(stale.header('cache-status')).toBe(sieStatus(-20, status))
    expect(origin.hits('/doc')).toBe(4)
    expect(retriesOf('/doc')).toBe(2)
    expect(cache.stats().retries).toBe(2)
  })

  it('stands in after a single attempt when retries are off', async () => {
    const { client } = setup({ retry: false })
    const doc = document('max-age=10, stale-if-error=60')
    const url = `${origin.url}/doc`

    await client.send(url)
    doc.fail(502)
    clock.advance(30)

    const stale = await client.send(url)
    expect(stale.body).toBe('version 1')
    expect(stale.header('cache-status')).toBe(sieStatus(-20, 502))
    expect(origin.hits('/doc')).toBe(2)
    expect(retriesOf('/doc')).toBe(0)
  })

  it('serves the stale entry when the origin resets the connection on every attempt', async () => {
    const { client } = setup()
    const doc = document('max-age=10, stale-if-error=60')
    const url = `${origin.url}/doc`

    await client.send(url)
    doc.fail('reset')
    clock.advance(30)

    const stale = await client.send(url)
    expect(stale.status).toBe(200)
    expect(stale.body).toBe('version 1')
    expect(stale.header('cache-status')).toBe(sieStatus(-20))
    expect(origin.hits('/doc')).toBe(4)

    clock.advance(50)
    const error = await rejection(client.send(url))
    expect(codes(error)).toContain('UND_ERR_SOCKET')
    expect(origin.hits('/doc')).toBe(7)
  })

  it('keeps the entry after standing in for a failure, and revalidates it once the origin is back', async () => {
    const { client } = setup()
    const doc = document('max-age=10, stale-if-error=60')
    const url = `${origin.url}/doc`

    await client.send(url)
    doc.fail(503)
    clock.advance(30)
    expect((await client.send(url)).header('cache-status')).toBe(sieStatus(-20, 503))

    doc.fail(undefined)
    clock.advance(5)
    const revalidated = await client.send(url)
    expect(revalidated.status).toBe(200)
    expect(revalidated.body).toBe('version 1')
    expect(revalidated.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=10')
    expect(origin.seen('/doc').at(-1)!.headers['if-none-match']).toBe('"v1"')

    const hit = await client.send(url)
    expect(hit.header('cache-status')).toBe('cachedfetch; hit; ttl=10')
    expect(origin.hits('/doc')).toBe(5)
  })

  it('keeps the entry for a later request whose stale-if-error covers it after a 503 reached another caller', async () => {
    const { client } = setup()
    const doc = document('max-age=10')
    const url = `${origin.url}/doc`

    await client.send(url)
    doc.fail(503)
    clock.advance(30)

    // No window for this request: the 503 reaches it (RFC 9111 §4.3.3 allows forwarding a 5xx) ...
    const failed = await client.send(url)
    expect(failed.status).toBe(503)
    expect(failed.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=503')

    // ... but a 5xx is no new representation: the stored one is still there for a request that takes it.
    const stale = await client.send(url, { headers: { 'cache-control': 'stale-if-error=600' } })
    expect(stale.status).toBe(200)
    expect(stale.body).toBe('version 1')
    expect(stale.header('cache-status')).toBe(sieStatus(-20, 503))
    expect(origin.hits('/doc')).toBe(7)
  })

  it.each<{ name: string, headers: Record<string, string>, cache?: 'no-cache', optedIn?: Record<string, string>, age: number }>([
    { name: 'no-cache', headers: { 'cache-control': 'no-cache' }, age: 2 },
    // fetch writes its no-cache mode as max-age=0; the interceptor is given the mode (cacheMode).
    { name: 'the no-cache mode', headers: {}, cache: 'no-cache', optedIn: { 'cache-control': 'stale-if-error=60' }, age: 2 },
    { name: 'max-age=0 (fetch\'s no-cache mode)', headers: { 'cache-control': 'max-age=0' }, age: 2 },
    // With Cache-Control, Pragma would count for nothing (§5.4): the request that opts in says no-cache there.
    { name: 'Pragma: no-cache', headers: { pragma: 'no-cache' }, optedIn: { 'cache-control': 'no-cache, stale-if-error=60' }, age: 2 },
    { name: 'a max-age the entry is past', headers: { 'cache-control': 'max-age=5' }, age: 7 },
    { name: 'a min-fresh the entry cannot give', headers: { 'cache-control': 'min-fresh=5' }, age: 7 }
  ])('gives a request that refused the stored response with $name the origin\'s failure, unless it sends a stale-if-error of its own', async ({ headers, cache, optedIn, age }) => {
    const { client } = setup({ staleIfError: 300 })
    const doc = document('max-age=10, stale-if-error=60')
    const url = `${origin.url}/doc`

    await client.send(url)
    doc.fail(503)
    clock.advance(age)

    // The request asked for the origin's answer (RFC 9111 §5.2.1): the response's window and the option do not overrule it.
    const failed = await client.send(url, { headers, cache })
    expect(failed.status).toBe(503)
    expect(failed.body).toBe('unavailable')
    expect(origin.hits('/doc')).toBe(4)

    const stale = await client.send(url, { headers: optedIn ?? { 'cache-control': `${headers['cache-control']!}, stale-if-error=60` }, cache })
    expect(stale.status).toBe(200)
    expect(stale.body).toBe('version 1')
    // Fresh, but refused by the request: forwarded for the request's sake (RFC 9211 §2.2), not as stale.
    expect(stale.header('cache-status')).toBe(`cachedfetch; fwd=request; fwd-status=503; ttl=${10 - age}; detail=stale-if-error`)
    expect(origin.hits('/doc')).toBe(7)
  })

  it('does not stand in with an entry invalidated while its revalidation was on its way (RFC 9111 §4.4)', async () => {
    const { client, cache } = setup({ staleIfError: 300 })
    const answered = gate()
    let failing = false
    origin.route('/doc', async (_req, res) => {
      if (!failing) {
        res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=10', etag: '"v1"' }).end('version 1')
        return
      }
      await answered.promise
      res.writeHead(503, { date: clock.date() }).end('unavailable')
    })
    const url = `${origin.url}/doc`
    await client.send(url)
    failing = true
    clock.advance(30)

    const pending = client.send(url, { headers: { 'cache-control': 'stale-if-error=60' } })
    await waitFor(() => origin.hits('/doc') === 2, 'the revalidation to reach the origin')
    await cache.invalidate(url)
    answered.release()
    const failed = await pending
    expect(failed.status).toBe(503)
    expect(failed.body).toBe('unavailable')
  })

  it.each(table.passedThrough)('passes a $name through even within the window', async ({ status }) => {
    const { client } = setup()
    const doc = document('max-age=10, stale-if-error=60')
    const url = `${origin.url}/doc`

    await client.send(url)
    doc.fail(status)
    clock.advance(30)

    const answer = await client.send(url)
    expect(answer.status).toBe(status)
    expect(answer.body).toBe('unavailable')
    expect(answer.header('cache-status')).toMatch(new RegExp(`^cachedfetch; fwd=stale; fwd-status=${status}(;|$)`))
    expect(origin.hits('/doc')).toBe(2)
  })

  it.each(table.neverStale)('never serves a $name entry for a failing origin', async (c) => {
    const { client } = setup(c.options)
    const doc = document(c.cacheControl)
    const url = `${origin.url}/doc`
    const send: Send = { headers: c.requestCacheControl === undefined ? {} : { 'cache-control': c.requestCacheControl } }

    expect((await client.send(url, send)).header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    clock.advance(30)

    doc.fail('reset')
    const error = await rejection(client.send(url, send))
    expect(codes(error)).toContain('UND_ERR_SOCKET')
    expect(origin.hits('/doc')).toBe(4)

    doc.fail(503)
    const failed = await client.send(url, send)
    expect(failed.status).toBe(503)
    expect(failed.body).toBe('unavailable')
    expect(failed.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=503')
    expect(origin.hits('/doc')).toBe(7)
  })
})

describe('an answer held back while stale-if-error could stand in for its failure (undici.request)', () => {
  const opened = teardown()
  afterEach(() => opened.close())

  it('reaches the caller with its trailer fields, once whole', async () => {
    const clock = manualClock(wholeSecondNow())
    let n = 0
    const origin = await opened.origin({
      '/t': (_req, res) => {
        n++
        res.writeHead(200, { 'cache-control': 'max-age=1, stale-if-error=600', date: clock.date(), trailer: 'x-checksum' })
        res.write(`body ${n}`)
        res.addTrailers({ 'x-checksum': `sum-${n}` })
        res.end()
      }
    })
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache: createCache({ now: clock.now }) }))
    const first = await request(`${origin.url}/t`, { dispatcher })
    expect([await first.body.text(), first.trailers]).toEqual(['body 1', { 'x-checksum': 'sum-1' }])
    clock.advance(5)
    const second = await request(`${origin.url}/t`, { dispatcher })
    expect([await second.body.text(), second.trailers]).toEqual(['body 2', { 'x-checksum': 'sum-2' }])
  })
})
