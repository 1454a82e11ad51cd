/**
 * stale-while-revalidate (RFC 5861 §3): a stale entry within its window is served at once while
 * one background revalidation per entry refreshes it, however many hits arrive meanwhile. The
 * window comes from the response's directive, the `staleWhileRevalidate` option or the request's
 * `cachePolicy`; a failed refresh leaves the entry as it was; outside the window, and for
 * responses that forbid serving stale, the caller waits for an ordinary revalidation. Every case
 * runs through cachedFetch and through the undici interceptor, against a real loopback origin.
 */
import diagnostics from 'node:diagnostics_channel'
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Agent, Client as UndiciClient, interceptors, request } from 'undici'
import { cacheInterceptor, createCache, createCachedFetch, type Cache, type CacheOptions } from '../src/index.js'
import { adapters, type CachePolicy, type Client } from './helpers/clients.js'
import type { Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, wholeSecondNow, type ManualClock } from './helpers/time.js'
import { slowStore } from './helpers/slow-store.js'
import { waitFor, within } from './helpers/wait.js'

interface WindowCase {
  readonly name: string
  readonly cacheControl: string
  readonly options?: CacheOptions
  readonly cachePolicy?: CachePolicy
  readonly inside: number
  readonly outside: number
}

interface NeverStaleCase {
  readonly name: string
  readonly cacheControl: string
  readonly options?: CacheOptions
}

const table = JSON.parse(readFileSync(new URL('../fixtures/stale-while-revalidate.json', import.meta.url), 'utf8')) as {
  windows: WindowCase[]
  neverStale: NeverStaleCase[]
}

/**
 * Holds origin answers until the test opens it. It opens by itself after a while, so that a cache
 * that wrongly waits for the origin fails an assertion instead of hanging the test.
 */
interface Gate {
  readonly opened: Promise<void>
  readonly isOpen: boolean
  open (): void
}

function gate (): Gate {
  let open!: () => void
  let isOpen = false
  const opened = new Promise<void>((resolve) => {
    open = () => {
      isOpen = true
      resolve()
    }
  })
  setTimeout(open, 5000).unref()
  return { opened, get isOpen () { return isOpen }, open }
}

/** Lets pending promise rejections be reported before the test looks for them. */
async function settle (): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
}

const swrStatus = (ttl: number): string => `cachedfetch; hit; ttl=${ttl}; detail=stale-while-revalidate`

describe.each(adapters)('stale-while-revalidate through $name', ({ connect }) => {
  const opened = teardown()
  let clock: ManualClock
  let origin: Origin
  let gates: Gate[]
  const rejections: unknown[] = []
  const onRejection = (reason: unknown): void => { rejections.push(reason) }
  // An exception thrown out of an undici callback is uncaught: outside a test runner it ends the process.
  const uncaught: unknown[] = []
  const onUncaught = (error: unknown): void => { uncaught.push(error) }

  beforeEach(async () => {
    clock = manualClock(wholeSecondNow())
    origin = await opened.origin()
    gates = []
    rejections.length = 0
    uncaught.length = 0
    process.on('unhandledRejection', onRejection)
    process.on('uncaughtException', onUncaught)
  })

  afterEach(async () => {
    for (const g of gates) g.open()
    await opened.close()
    process.off('unhandledRejection', onRejection)
    process.off('uncaughtException', onUncaught)
  })

  function setup (options: CacheOptions = {}): { cache: Cache, client: Client } {
    const cache = createCache({ now: clock.now, ...options })
    const client = opened.add(connect(cache))
    return { cache, client }
  }

  function held (): Gate {
    const g = gate()
    gates.push(g)
    return g
  }

  /**
   * `/doc`: the first request gets version 1 with ETag "v1"; a later one waits for `refresh` to
   * open, then gets `answer` (a 304 or a new version).
   */
  function document (cacheControl: string, refresh: Gate, answer: (req: IncomingMessage, res: ServerResponse) => void): void {
    origin.route('/doc', async (req, res) => {
      if (origin.hits('/doc') === 1) {
        res.writeHead(200, { date: clock.date(), 'cache-control': cacheControl, etag: '"v1"', 'content-type': 'text/plain' }).end('version 1')
        return
      }
      await refresh.opened
      answer(req, res)
    })
  }

  /** `/doc`, fresh for 10 s and usable stale for 60; a refresh gets a 304 once `refresh` opens. */
  function unchangedDocument (): { refresh: Gate, url: string } {
    const refresh = held()
    document('max-age=10, stale-while-revalidate=60', refresh, (_req, res) => {
      res.writeHead(304, { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60', etag: '"v1"' }).end()
    })
    return { refresh, url: `${origin.url}/doc` }
  }

  it.each(table.windows)('serves the stale entry at once and merges the background 304 into it: $name', async (c) => {
    const { cache, client } = setup(c.options)
    const refresh = held()
    document(c.cacheControl, refresh, (_req, res) => {
      res.writeHead(304, { date: clock.date(), 'cache-control': c.cacheControl, etag: '"v1"', 'x-refreshed': 'yes' }).end()
    })
    const url = `${origin.url}/doc`
    const send = { cachePolicy: c.cachePolicy }

    const first = await client.send(url, send)
    expect(first.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    clock.advance(c.inside)

    const stale = await client.send(url, send)
    // The caller has its answer while the origin still holds the refresh.
    expect(refresh.isOpen).toBe(false)
    expect(stale.status).toBe(200)
    expect(stale.body).toBe('version 1')
    expect(stale.header('cache-status')).toBe(swrStatus(10 - c.inside))
    expect(stale.header('age')).toBe(String(c.inside))
    expect(stale.header('x-refreshed')).toBeUndefined()

    await waitFor(() => origin.hits('/doc') === 2, 'the refresh to reach the origin')
    expect(cache.stats().refreshing).toBe(1)
    expect(origin.seen('/doc')[1]!.headers['if-none-match']).toBe('"v1"')
    refresh.open()
    await waitFor(() => cache.stats().refreshing === 0, 'the refresh to end')

    const refreshed = await client.send(url, send)
    expect(refreshed.status).toBe(200)
    expect(refreshed.header('cache-status')).toBe('cachedfetch; hit; ttl=10')
    expect(refreshed.header('age')).toBe('0')
    expect(refreshed.header('x-refreshed')).toBe('yes')
    expect(refreshed.body).toBe('version 1')
    expect(origin.hits('/doc')).toBe(2)
  })

  it.each(table.windows)('revalidates with the caller waiting once the window has passed: $name', async (c) => {
    const { cache, client } = setup(c.options)
    origin.route('/doc', (req, res) => {
      const fields = { date: clock.date(), 'cache-control': c.cacheControl, 'content-type': 'text/plain' }
      if (req.headers['if-none-match'] === '"v1"') res.writeHead(200, { ...fields, etag: '"v2"' }).end('version 2')
      else res.writeHead(200, { ...fields, etag: '"v1"' }).end('version 1')
    })
    const url = `${origin.url}/doc`
    const send = { cachePolicy: c.cachePolicy }

    await client.send(url, send)
    clock.advance(c.outside)

    const revalidated = await client.send(url, send)
    expect(revalidated.status).toBe(200)
    expect(revalidated.body).toBe('version 2')
    expect(revalidated.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=200; stored')
    expect(origin.seen('/doc')[1]!.headers['if-none-match']).toBe('"v1"')
    expect(cache.stats().refreshing).toBe(0)

    const hit = await client.send(url, send)
    expect(hit.header('cache-status')).toBe('cachedfetch; hit; ttl=10')
    expect(hit.body).toBe('version 2')
    expect(origin.hits('/doc')).toBe(2)
  })

  /**
   * `/doc` stored as version 1, fresh for 10 s and usable stale for 60, and now 30 s old; a refresh
   * gets version 2, fresh for 20 s, once `refresh` opens.
   */
  async function staleBeforeVersion2 (options?: CacheOptions): Promise<{ cache: Cache, client: Client, refresh: Gate, url: string }> {
    const { cache, client } = setup(options)
    const refresh = held()
    document('max-age=10, stale-while-revalidate=60', refresh, (_req, res) => {
      res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=20', etag: '"v2"', 'content-type': 'text/plain' }).end('version 2')
    })
    const url = `${origin.url}/doc`
    await client.send(url)
    clock.advance(30)
    return { cache, client, refresh, url }
  }

  it('replaces the entry with the 200 a background refresh gets', async () => {
    const { cache, client, refresh, url } = await staleBeforeVersion2()
    const stale = await client.send(url)
    expect(refresh.isOpen).toBe(false)
    expect(stale.body).toBe('version 1')
    expect(stale.header('cache-status')).toBe(swrStatus(-20))

    await waitFor(() => origin.hits('/doc') === 2, 'the refresh to reach the origin')
    refresh.open()
    await waitFor(() => cache.stats().refreshing === 0, 'the refresh to end')

    const refreshed = await client.send(url)
    expect(refreshed.body).toBe('version 2')
    expect(refreshed.header('etag')).toBe('"v2"')
    expect(refreshed.header('cache-status')).toBe('cachedfetch; hit; ttl=20')
    expect(origin.hits('/doc')).toBe(2)

    // The refreshed entry's own validator is what the next revalidation sends.
    clock.advance(30)
    const again = await client.send(url)
    expect(again.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=200; stored')
    expect(origin.seen('/doc')[2]!.headers['if-none-match']).toBe('"v2"')
  })

  it('counts the stale hit as the lookup answered from the cache, and its background 304 as no lookup (cache.stats())', async () => {
    const { cache, client } = setup()
    const { refresh, url } = unchangedDocument()
    await client.send(url)
    clock.advance(30)
    expect((await client.send(url)).header('cache-status')).toBe(swrStatus(-20))
    refresh.open()
    await waitFor(() => cache.stats().refreshing === 0, 'the refresh to end')
    expect((await client.send(url)).header('cache-status')).toBe('cachedfetch; hit; ttl=10')
    const { hits, staleServed, misses, revalidated, hitRatio, bytesServed } = cache.stats()
    expect({ hits, staleServed, misses, revalidated, bytesServed }).toEqual({ hits: 1, staleServed: 1, misses: 1, revalidated: 0, bytesServed: 2 * 'version 1'.length })
    expect(hitRatio).toBeCloseTo(2 / 3)
  })

  it('keeps a later refresh\'s claim when an earlier one, whose claim lapsed, ends: one refresh at a time still', async () => {
    const { cache, client } = setup()
    // Each refresh answers when the test opens its own gate.
    const answers: Gate[] = []
    origin.route('/doc', async (_req, res) => {
      const fields = { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=600', etag: '"v1"', 'content-type': 'text/plain' }
      if (origin.hits('/doc') === 1) {
        res.writeHead(200, fields).end('version 1')
        return
      }
      const answer = held()
      answers.push(answer)
      await answer.opened
      res.writeHead(304, fields).end()
    })
    const url = `${origin.url}/doc`
    await client.send(url)
    clock.advance(30)
    expect((await client.send(url)).body).toBe('version 1')
    await waitFor(() => answers.length === 1, 'the first refresh to reach the origin')
    // Past the retry deadline (60 s) the first refresh's claim lapses: a stale hit starts a second.
    clock.advance(61)
    expect((await client.send(url)).body).toBe('version 1')
    await waitFor(() => answers.length === 2, 'the second refresh to reach the origin')
    let refreshed = 0
    const onRevalidated = (): void => { refreshed++ }
    diagnostics.subscribe('cachedfetch:revalidated', onRevalidated)
    answers[0]!.open()
    await waitFor(() => refreshed === 1, 'the first refresh to end').finally(() => diagnostics.unsubscribe('cachedfetch:revalidated', onRevalidated))
    await settle()

    // The second is still under way: this stale hit starts none.
    expect((await client.send(url)).header('cache-status')).toMatch(/detail=stale-while-revalidate$/)
    await settle()
    expect(origin.hits('/doc')).toBe(3)
    answers[1]!.open()
    await waitFor(() => cache.stats().refreshing === 0, 'the second refresh to end')
  })

  it('flush() waits for a background refresh under way, and for what it stores', async () => {
    const { cache, client, refresh, url } = await staleBeforeVersion2()
    expect((await client.send(url)).body).toBe('version 1')
    await waitFor(() => origin.hits('/doc') === 2, 'the refresh to reach the origin')

    let flushed = false
    const flushing = cache.flush().then(() => { flushed = true })
    await settle()
    expect(flushed).toBe(false)
    refresh.open()
    await flushing
    expect(cache.stats().refreshing).toBe(0)
    const refreshed = await client.send(url)
    expect([refreshed.body, refreshed.header('cache-status')]).toEqual(['version 2', 'cachedfetch; hit; ttl=20'])
  })

  it('flush() right after a stale-while-revalidate hit waits for the refresh it started, which has not reached the origin yet', async () => {
    const { cache, client } = setup()
    let version = 1
    origin.route('/now', (_req, res) => {
      res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60', 'content-type': 'text/plain' }).end(`version ${version}`)
    })
    const url = `${origin.url}/now`
    expect((await client.send(url)).body).toBe('version 1')
    clock.advance(30)
    version = 2
    expect((await client.send(url)).body).toBe('version 1')
    await cache.flush()
    expect([origin.hits('/now'), cache.stats().refreshing]).toEqual([2, 0])
    expect((await client.send(url)).body).toBe('version 2')
  })

  it.each([
    { name: 'retries off', retry: false },
    { name: 'retries on', retry: { limit: 1, baseDelay: 1, maxDelay: 1 } }
  ] as const)('close() aborts a background refresh under way, which then stores nothing and reports why ($name)', async ({ retry }) => {
    const { cache, client, refresh, url } = await staleBeforeVersion2({ retry })
    const failed: Array<{ error?: unknown }> = []
    const stored: unknown[] = []
    const onFailed = (message: unknown): void => { failed.push(message as { error?: unknown }) }
    const onStored = (message: unknown): void => { stored.push(message) }
    diagnostics.subscribe('cachedfetch:refresh-failed', onFailed)
    diagnostics.subscribe('cachedfetch:stored', onStored)
    try {
      expect((await client.send(url)).body).toBe('version 1')
      await waitFor(() => origin.hits('/doc') === 2, 'the refresh to reach the origin')

      // Ends while the origin still holds the refresh's answer.
      await cache.close()
      expect(refresh.isOpen).toBe(false)
      expect(cache.stats().refreshing).toBe(0)
      expect(failed.map((event) => (event.error as Error).message)).toEqual(['the cache was closed'])
      refresh.open()
      await settle()
      expect(stored).toEqual([])
      // A closed cache still answers, from what it holds, and starts no refresh.
      clock.advance(1)
      expect((await client.send(url)).body).toBe('version 1')
      await settle()
      expect(origin.hits('/doc')).toBe(2)
    } finally {
      diagnostics.unsubscribe('cachedfetch:refresh-failed', onFailed)
      diagnostics.unsubscribe('cachedfetch:stored', onStored)
    }
  })

  it('flush() and close() do not wait past a moment for a refresh still queued for a connection, which is aborted when it starts', async () => {
    const { cache } = setup()
    // One connection to the origin, held by a response that has not ended.
    const client = opened.add(connect(cache, new UndiciClient(origin.url)))
    let endStream!: () => void
    origin.route('/stream', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' })
      res.write('first part')
      endStream = () => res.end()
    })
    origin.route('/doc', (_req, res) => {
      res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60', etag: '"v1"', 'content-type': 'text/plain' }).end('version 1')
    })
    const url = `${origin.url}/doc`
    await client.send(url)
    clock.advance(30)
    const stream = await client.open(`${origin.url}/stream`)
    await waitFor(() => origin.hits('/stream') === 1, 'the long response to start')

    const stale = await client.send(url)
    expect([stale.body, stale.header('cache-status')]).toEqual(['version 1', swrStatus(-20)])
    // Its refresh is claimed, and waits for the connection.
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect([origin.hits('/doc'), cache.stats().refreshing]).toEqual([1, 1])
    await within(cache.flush(), 'flush() with the refresh queued')
    await within(cache.close(), 'close() with the refresh queued')
    endStream()
    expect(await stream.text()).toBe('first part')
    await settle()
    expect(origin.hits('/doc')).toBe(1)
  })

  it.each([
    ['no-store', 'its answer could not be stored (RFC 9111 §5.2.1.5)'],
    ['only-if-cached', 'it may not reach the origin (RFC 9111 §5.2.1.7)']
  ])('starts no background refresh for a request that says %s: %s', async (directive) => {
    const { cache, client, refresh, url } = await staleBeforeVersion2()
    // Neither keeps a stored response from being used. no-store keeps the cache from storing any
    // response to this request, which is what a refresh it started would be; only-if-cached keeps
    // it from the origin.
    const stale = await client.send(url, { headers: { 'cache-control': directive } })
    expect(stale.body).toBe('version 1')
    expect(stale.header('cache-status')).toBe(swrStatus(-20))
    await settle()
    expect(origin.hits('/doc')).toBe(1)
    expect(cache.stats().refreshing).toBe(0)

    // The next request that may store starts the refresh.
    refresh.open()
    const next = await client.send(url)
    expect(next.body).toBe('version 1')
    await waitFor(() => cache.stats().refreshing === 0 && origin.hits('/doc') === 2, 'the refresh to end')
    const refreshed = await client.send(url)
    expect(refreshed.body).toBe('version 2')
    expect(origin.hits('/doc')).toBe(2)
  })

  it('answers 1000 concurrent hits on a stale entry from the cache with one background revalidation', async () => {
    const { cache, client } = setup()
    const { refresh, url } = unchangedDocument()

    await client.send(url)
    clock.advance(30)
    const replies = await Promise.all(Array.from({ length: 1000 }, () => client.send(url)))

    expect(refresh.isOpen).toBe(false)
    expect(replies.filter((r) => r.status === 200 && r.body === 'version 1')).toHaveLength(1000)
    expect(new Set(replies.map((r) => r.header('cache-status')))).toEqual(new Set([swrStatus(-20)]))
    await waitFor(() => origin.hits('/doc') === 2, 'the refresh to reach the origin')
    expect(cache.stats().refreshing).toBe(1)

    refresh.open()
    await waitFor(() => cache.stats().refreshing === 0, 'the refresh to end')
    const seen = origin.seen('/doc')
    expect(seen).toHaveLength(2)
    expect(seen[1]!.headers['if-none-match']).toBe('"v1"')

    const fresh = await client.send(url)
    expect(fresh.header('cache-status')).toBe('cachedfetch; hit; ttl=10')
    expect(fresh.body).toBe('version 1')
    expect(origin.hits('/doc')).toBe(2)
  })

  it('sends If-Modified-Since on the background revalidation of an entry without an ETag', async () => {
    const lastModified = new Date(clock.now() - 3600_000).toUTCString()
    const { cache, client } = setup()
    origin.route('/doc', (req, res) => {
      const fields = { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60', 'last-modified': lastModified }
      if (req.headers['if-modified-since'] === lastModified) res.writeHead(304, fields).end()
      else res.writeHead(200, fields).end('dated')
    })
    const url = `${origin.url}/doc`

    await client.send(url)
    clock.advance(30)
    expect((await client.send(url)).header('cache-status')).toBe(swrStatus(-20))
    await waitFor(() => origin.hits('/doc') === 2 && cache.stats().refreshing === 0, 'the refresh to end')

    const seen = origin.seen('/doc')[1]!
    expect(seen.headers['if-modified-since']).toBe(lastModified)
    expect(seen.headers['if-none-match']).toBeUndefined()
    const fresh = await client.send(url)
    expect(fresh.header('cache-status')).toBe('cachedfetch; hit; ttl=10')
    expect(fresh.body).toBe('dated')
  })

  const failures: { name: string, cacheControl: string, fail: (req: IncomingMessage, res: ServerResponse) => void }[] = [
    {
      name: 'the origin resets the connection',
      cacheControl: 'max-age=10, stale-while-revalidate=60',
      fail: (req) => { req.socket.destroy() }
    },
    {
      name: 'the origin answers 500',
      cacheControl: 'max-age=10, stale-while-revalidate=60',
      fail: (_req, res) => { res.writeHead(500, { date: clock.date(), 'content-type': 'text/plain' }).end('broken') }
    },
    {
      // The stale-if-error stand-in keeps the entry, but the refresh still failed.
      name: 'the origin resets the connection, with stale-if-error too',
      cacheControl: 'max-age=10, stale-while-revalidate=60, stale-if-error=60',
      fail: (req) => { req.socket.destroy() }
    },
    {
      name: 'the origin answers 500, with stale-if-error too',
      cacheControl: 'max-age=10, stale-while-revalidate=60, stale-if-error=60',
      fail: (_req, res) => { res.writeHead(500, { date: clock.date(), 'content-type': 'text/plain' }).end('broken') }
    }
  ]

  it.each(failures)('keeps the entry as it was when the background refresh fails: $name', async ({ cacheControl, fail }) => {
    const { cache, client } = setup({ retry: false })
    const events: { url?: string }[] = []
    const onFailed = (message: unknown): void => { events.push(message as { url?: string }) }
    diagnostics.subscribe('cachedfetch:refresh-failed', onFailed)
    try {
      origin.route('/doc', (req, res) => {
        if (origin.hits('/doc') === 1) {
          res.writeHead(200, { date: clock.date(), 'cache-control': cacheControl, etag: '"v1"' }).end('version 1')
          return
        }
        fail(req, res)
      })
      const url = `${origin.url}/doc`

      await client.send(url)
      clock.advance(30)
      const stale = await client.send(url)
      expect(stale.body).toBe('version 1')
      expect(stale.header('cache-status')).toBe(swrStatus(-20))
      await waitFor(() => origin.hits('/doc') === 2 && cache.stats().refreshing === 0, 'the refresh to end')
      expect(events.map((e) => e.url)).toEqual([url])

      // Still stale within the window: served stale again, and one new refresh goes out.
      clock.advance(10)
      const again = await client.send(url)
      expect(again.status).toBe(200)
      expect(again.body).toBe('version 1')
      expect(again.header('cache-status')).toBe(swrStatus(-30))
      await waitFor(() => origin.hits('/doc') === 3 && cache.stats().refreshing === 0, 'the second refresh to end')
      expect(origin.seen('/doc')[2]!.headers['if-none-match']).toBe('"v1"')
      expect(events.map((e) => e.url)).toEqual([url, url])
      expect(origin.hits('/doc')).toBe(3)

      await settle()
      expect(rejections).toEqual([])
    } finally {
      diagnostics.unsubscribe('cachedfetch:refresh-failed', onFailed)
    }
  })

  it.each([
    { name: 'retries off', retry: false },
    { name: 'retries on', retry: { limit: 1, baseDelay: 1, maxDelay: 1 } }
  ] as const)('serves the stale entry and reports the failed refresh when the origin refuses the connection ($name)', async ({ retry }) => {
    const { cache, client } = setup({ retry })
    const events: { url?: string }[] = []
    const onFailed = (message: unknown): void => { events.push(message as { url?: string }) }
    diagnostics.subscribe('cachedfetch:refresh-failed', onFailed)
    try {
      origin.route('/doc', (_req, res) => {
        res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60', etag: '"v1"' }).end('version 1')
      })
      const url = `${origin.url}/doc`

      await client.send(url)
      await origin.close()
      clock.advance(30)

      const stale = await client.send(url)
      expect(stale.status).toBe(200)
      expect(stale.body).toBe('version 1')
      expect(stale.header('cache-status')).toBe(swrStatus(-20))
      await waitFor(() => uncaught.length > 0 || (events.length === 1 && cache.stats().refreshing === 0), 'the refresh to fail')
      expect(uncaught).toEqual([])
      expect(events.map((e) => e.url)).toEqual([url])

      // The entry is as it was: still served stale within the window.
      clock.advance(10)
      const again = await client.send(url)
      expect(again.body).toBe('version 1')
      expect(again.header('cache-status')).toBe(swrStatus(-30))
      await waitFor(() => events.length === 2 && cache.stats().refreshing === 0, 'the second refresh to fail')

      await settle()
      expect(uncaught).toEqual([])
      expect(rejections).toEqual([])
    } finally {
      diagnostics.unsubscribe('cachedfetch:refresh-failed', onFailed)
    }
  })

  it.each(table.neverStale)('never serves a $name response stale', async (c) => {
    const { cache, client } = setup(c.options)
    origin.route('/doc', (req, res) => {
      const fields = { date: clock.date(), 'cache-control': c.cacheControl, etag: '"v1"' }
      if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, fields).end()
      else res.writeHead(200, { ...fields, 'content-type': 'text/plain' }).end('strict')
    })
    const url = `${origin.url}/doc`

    expect((await client.send(url)).header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    clock.advance(30)

    const revalidated = await client.send(url)
    expect(revalidated.status).toBe(200)
    expect(revalidated.body).toBe('strict')
    expect(revalidated.header('cache-status')).toMatch(/^cachedfetch; fwd=stale; fwd-status=304; ttl=-?\d+$/)
    expect(origin.hits('/doc')).toBe(2)
    expect(origin.seen('/doc')[1]!.headers['if-none-match']).toBe('"v1"')
    expect(cache.stats().refreshing).toBe(0)
  })
})

describe('a background refresh under undici.request', () => {
  const opened = teardown()
  afterEach(() => opened.close())

  it('keeps its caller\'s headersTimeout: a refresh the origin never answers ends by it, and the next stale hit starts another', async () => {
    const clock = manualClock(wholeSecondNow())
    const origin = await opened.origin({
      '/doc': (_req, res) => {
        // The first request is answered; every refresh waits for an answer that never comes.
        if (origin.hits('/doc') === 1) res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=1, stale-while-revalidate=600', 'content-type': 'text/plain' }).end('v1')
      }
    })
    const cache = createCache({ now: clock.now, retry: false })
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache }))
    const get = async (): Promise<string> => await (await request(`${origin.url}/doc`, { dispatcher, headersTimeout: 200 })).body.text()
    expect(await get()).toBe('v1')
    clock.advance(10)
    expect(await get()).toBe('v1')
    await waitFor(() => origin.hits('/doc') === 2, 'the refresh to reach the origin')
    await waitFor(() => cache.stats().refreshing === 0, 'the refresh to time out', 3000)
    expect(await get()).toBe('v1')
    await waitFor(() => origin.hits('/doc') === 3, 'another refresh to reach the origin')
  })
})

// Each hop or attempt below the cache starts the refresh's exchange again: it still ends once.
/** undici's redirect interceptor reads it per request, though undici 7's types no longer name it. */
const FOLLOW = { maxRedirections: 3 }

describe('a background refresh redirected below the cache', () => {
  const opened = teardown()
  afterEach(() => opened.close())

  it.each(['interceptor', 'cachedFetch'] as const)('flush() and close() end once it has (%s, retry: false)', async (face) => {
    const clock = manualClock(wholeSecondNow())
    const origin = await opened.origin()
    origin.route('/d', (_req, res) => {
      if (origin.hits('/d') === 1) res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60', etag: '"v1"' }).end('v1')
      else res.writeHead(302, { location: '/moved' }).end()
    })
    origin.route('/moved', (_req, res) => { res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=10' }).end('moved') })
    const cache = createCache({ now: clock.now, retry: false })
    const agent = opened.add(new Agent())
    // Redirected whatever the request asks: fetch asks for none (maxRedirections: 0), as it follows them itself.
    const below = agent.compose(interceptors.redirect(), (dispatch) => (opts, handler) => dispatch({ ...opts, ...FOLLOW }, handler))
    const get = face === 'interceptor'
      ? async (url: string) => await (await request(url, { dispatcher: below.compose(cacheInterceptor({ cache })) })).body.text()
      : async (url: string) => await (await createCachedFetch({ cache, dispatcher: below })(url)).text()
    const url = `${origin.url}/d`
    expect(await get(url)).toBe('v1')
    clock.advance(30)
    expect(await get(url)).toBe('v1')
    await waitFor(() => origin.hits('/moved') === 1, 'the refresh to follow the redirect')
    await waitFor(() => cache.stats().refreshing === 0, 'the refresh to end')
    await within(cache.flush(), 'flush() after the redirected refresh ended')
    await within(cache.close(), 'close() after the redirected refresh ended')
  })
})

describe('a background refresh retried by undici\'s retry interceptor below the cache', () => {
  const opened = teardown()
  afterEach(() => opened.close())

  it('flush() and close() end once it has (interceptor, retry: false)', async () => {
    const clock = manualClock(wholeSecondNow())
    const origin = await opened.origin()
    origin.route('/d', (_req, res) => {
      const n = origin.hits('/d')
      if (n === 1) res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60', etag: '"v1"' }).end('v1')
      else if (n === 2) res.writeHead(503, { 'retry-after': '0' }).end('busy')
      else res.writeHead(304, { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60', etag: '"v1"' }).end()
    })
    const cache = createCache({ now: clock.now, retry: false })
    const below = opened.add(new Agent()).compose(interceptors.retry({ maxRetries: 2, minTimeout: 1, maxTimeout: 1 }))
    const dispatcher = below.compose(cacheInterceptor({ cache }))
    const get = async (url: string) => await (await request(url, { dispatcher })).body.text()
    const url = `${origin.url}/d`
    expect(await get(url)).toBe('v1')
    clock.advance(30)
    expect(await get(url)).toBe('v1')
    await waitFor(() => origin.hits('/d') === 3, 'the retried refresh')
    await waitFor(() => cache.stats().refreshing === 0, 'the refresh to end')
    await within(cache.flush(), 'flush() after the retried refresh ended')
  })
})

// RFC 9111 §4.3.4: the stored response a refresh selected is updated or replaced, not kept beside the new one.
describe.each(adapters)('a refresh whose answer varies where the entry did not, through $name', ({ connect }) => {
  const opened = teardown()
  afterEach(() => opened.close())

  it.each([304, 200])('after a %i with Vary: Accept-Language, another language is not served the entry the refresh replaced', async (status) => {
    const clock = manualClock(wholeSecondNow())
    const origin = await opened.origin()
    const cache = createCache({ now: clock.now })
    opened.add({ close: () => cache.close() })
    const client = opened.add(connect(cache))
    origin.route('/d', (req, res) => {
      const n = origin.hits('/d')
      const cc = 'max-age=10, stale-while-revalidate=60'
      if (n === 1) { res.writeHead(200, { date: clock.date(), 'cache-control': cc, etag: '"v1"' }).end('no vary'); return }
      const lang = String(req.headers['accept-language'])
      if (status === 304 && n === 2) { res.writeHead(304, { date: clock.date(), 'cache-control': cc, etag: '"v1"', vary: 'accept-language' }).end(); return }
      res.writeHead(200, { date: clock.date(), 'cache-control': cc, etag: `"${lang}"`, vary: 'accept-language' }).end(`in ${lang}`)
    })
    const url = `${origin.url}/d`
    await client.send(url, { headers: { 'accept-language': 'en' } })
    clock.advance(30)
    await client.send(url, { headers: { 'accept-language': 'en' } })
    await waitFor(() => origin.hits('/d') === 2 && cache.stats().refreshing === 0, 'refresh')
    await cache.flush()
    const fr = await client.send(url, { headers: { 'accept-language': 'fr' } })
    expect(fr.header('cache-status')).toMatch(/fwd=vary-miss/)
  })
})

// A stale hit may serve the entry a write is still storing (Writes.landing): what its refresh drops goes once that write has landed.
const configs: Array<{ name: string, options: () => CacheOptions }> = [
  { name: 'memory + a slow store', options: () => ({ store: slowStore(250), storeTimeouts: { read: 1000, write: 1000 } }) },
  { name: 'a slow store alone', options: () => ({ store: slowStore(250), maxSize: 0, storeTimeouts: { read: 1000, write: 1000 } }) }
]

describe.each(adapters)('a refresh of an entry still landing, through $name', ({ connect }) => {
  describe.each(configs)('$name', ({ options }) => {
    const opened = teardown()
    afterEach(() => opened.close())

    it('a no-store answer to the refresh drops the entry: the landing write does not put it back', async () => {
      const clock = manualClock(wholeSecondNow())
      const origin = await opened.origin()
      const cache = createCache({ now: clock.now, ...options() })
      opened.add({ close: () => cache.close() })
      const client = opened.add(connect(cache))
      origin.route('/d', (_req, res) => {
        const n = origin.hits('/d')
        if (n === 1) res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60', etag: '"v1"' }).end('v1')
        else res.writeHead(200, { date: clock.date(), 'cache-control': 'no-store' }).end(`answer ${n}`)
      })
      const url = `${origin.url}/d`
      expect((await client.send(url)).body).toBe('v1')
      // Its write is still reading the store: the stale hit takes the entry it is storing.
      clock.advance(30)
      const stale = await client.send(url)
      expect([stale.body, stale.header('cache-status')]).toEqual(['v1', 'cachedfetch; hit; ttl=-20; detail=stale-while-revalidate'])
      await waitFor(() => origin.hits('/d') === 2 && cache.stats().refreshing === 0, 'the refresh to end')
      await cache.flush()
      // The origin said no-store: nothing of /d may be served from the cache now.
      const next = await client.send(url)
      expect([next.body, next.header('cache-status')]).toEqual(['answer 3', 'cachedfetch; fwd=uri-miss; fwd-status=200'])
    })
  })
})

describe.each(adapters)('a refresh answered with a status that says the exchange failed, through $name', ({ connect }) => {
  const opened = teardown()
  afterEach(() => opened.close())

  it.each([
    { status: 429, headers: { 'retry-after': '3600' } },
    { status: 408, headers: { connection: 'close' } }
  ])('keeps the entry when the origin answers $status, and reports the refresh failed', async ({ status, headers }) => {
    const clock = manualClock(wholeSecondNow())
    const origin = await opened.origin()
    const cache = createCache({ now: clock.now, retry: { limit: 1, baseDelay: 1, maxDelay: 1 } })
    const client = opened.add(connect(cache))
    const failed: unknown[] = []
    const listen = (event: unknown): void => { failed.push(event) }
    diagnostics.subscribe('cachedfetch:refresh-failed', listen)
    opened.add({ close: () => Promise.resolve(void diagnostics.unsubscribe('cachedfetch:refresh-failed', listen)) })
    origin.route('/d', (_req, res) => {
      if (origin.hits('/d') === 1) res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60', etag: '"v1"' }).end('v1')
      else res.writeHead(status, { date: clock.date(), ...headers }).end('slow down')
    })
    const url = `${origin.url}/d`
    await client.send(url)
    clock.advance(30)
    expect((await client.send(url)).body).toBe('v1')
    await waitFor(() => origin.hits('/d') >= 2 && cache.stats().refreshing === 0, 'the refresh to end')
    await cache.flush()
    // Only this test's origin: a refresh another test left may end (destroyed) while this one runs.
    expect(failed.filter((event) => (event as { url?: string }).url === url)).toHaveLength(1)
    clock.advance(1)
    const next = await client.send(url)
    expect([next.status, next.body]).toEqual([200, 'v1'])
  })
})
