/**
 * Faults: what a caller sees when the origin or the store breaks in the middle of an exchange. An
 * origin that resets the connection half way through a body, on a miss and on a revalidation (with
 * and without stale-if-error); an origin that never answers, or stops mid-body, against an
 * AbortSignal and against undici's headersTimeout and bodyTimeout; a SQLite file that can no longer
 * be written; an origin whose clock is off (RFC 9111 §4.2.3); and a Redis that never answered,
 * which must not keep cache.close() from resolving. Each through cachedFetch and
 * through undici.request with the interceptor, against real loopback origins. What was already
 * covered elsewhere is not repeated here: a store slower than its timeouts (tiers.test.ts), corrupt
 * and truncated entries (sqlite-store.test.ts, redis-store.test.ts), Redis stopped under load
 * (redis-fleet.test.ts), resets before the response (stale-if-error.test.ts, single-flight.test.ts).
 */
import { execFile } from 'node:child_process'
import diagnostics from 'node:diagnostics_channel'
import { chmodSync, mkdtempSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import KeyvRedis, { createClient } from '@keyv/redis'
import KeyvSqlite from '@keyv/sqlite'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { cacheInterceptor, createCache, type Cache, type CacheOptions } from '../src/index.js'
import { adapters, type Client } from './helpers/clients.js'
import { bytes, respond, type Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, wholeSecondNow, type ManualClock } from './helpers/time.js'
import { gate, waitFor, within } from './helpers/wait.js'
import type { Job, JobReport } from './processes/sqlite-client.js'

/** Retries as by default, with waits of a few ms. */
const RETRY = { limit: 2, baseDelay: 1, maxDelay: 5 }

/** The codes and names along an error's cause chain (fetch wraps a network error in a TypeError). */
function codes (error: unknown): string[] {
  const found: string[] = []
  for (let e = error as { code?: unknown, name?: unknown, cause?: unknown } | undefined; e !== undefined && e !== null; e = e.cause as typeof e) {
    if (typeof e.code === 'string') found.push(e.code)
    if (typeof e.name === 'string') found.push(e.name)
  }
  return found
}

/** What `promise` rejected with; a failure of the test when it resolved. */
async function rejection (promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error('expected the request to fail')
}

const sieStatus = (ttl: number): string => `cachedfetch; fwd=stale; ttl=${ttl}; detail=stale-if-error`

describe.each(adapters)('an origin that resets the connection half way through a body, through $name', ({ connect }) => {
  const opened = teardown()
  let clock: ManualClock
  let origin: Origin
  afterEach(() => opened.close())
  beforeEach(async () => {
    clock = manualClock(wholeSecondNow())
    origin = await opened.origin()
  })

  /** The new version's body, 8000 bytes: the origin sends 1000 of them, then destroys the socket. */
  const v2 = bytes(8000, 2)

  /**
   * `/doc`: version 1 (ETag "v1", `cacheControl`), answering a revalidation with 304, until
   * `cut()`: then its next answer is a 200 of version 2 (a weak ETag, which no retry can resume
   * with Range) that breaks off after 1000 bytes; after that, version 1 again.
   */
  function document (cacheControl: string): { cut: () => void } {
    let cutting = false
    origin.route('/doc', (req, res) => {
      if (cutting) {
        cutting = false
        res.writeHead(200, { date: clock.date(), 'cache-control': cacheControl, etag: 'W/"v2"', 'content-length': String(v2.byteLength) })
        res.write(v2.subarray(0, 1000), () => res.socket?.destroy())
        return
      }
      const fields = { date: clock.date(), 'cache-control': cacheControl, etag: '"v1"' }
      if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, fields).end()
      else res.writeHead(200, { ...fields, 'content-type': 'text/plain' }).end('version 1')
    })
    return { cut: () => { cutting = true } }
  }

  function setup (options: CacheOptions = {}): { cache: Cache, client: Client } {
    const cache = createCache({ now: clock.now, retry: RETRY, ...options })
    return { cache, client: opened.add(connect(cache)) }
  }

  it('on a miss: the read fails naming the broken socket, nothing is stored, and the next request goes to the origin', async () => {
    const { cache, client } = setup()
    const doc = document('max-age=10')
    const url = `${origin.url}/doc`
    doc.cut()

    const broken = await client.open(url)
    expect(broken.status).toBe(200)
    expect(codes(await rejection(broken.text()))).toContain('UND_ERR_SOCKET')
    await cache.flush()
    expect(cache.stats().stored).toBe(0)
    expect(cache.stats().inFlight).toBe(0)

    const next = await client.send(url)
    expect(next.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    expect(next.body).toBe('version 1')
    expect(origin.hits('/doc')).toBe(2)
  })

  it('on a revalidation that stale-if-error covers: the stale entry is served, and kept', async () => {
    const { cache, client } = setup()
    const doc = document('max-age=10, stale-if-error=60')
    const url = `${origin.url}/doc`
    await client.send(url)
    clock.advance(30)
    doc.cut()

    const stale = await within(client.send(url), 'the stale entry')
    expect(stale.status).toBe(200)
    expect(stale.body).toBe('version 1')
    expect(stale.header('cache-status')).toBe(sieStatus(-20))
    // One lookup, served stale: not also a miss for the answer that broke off.
    expect([cache.stats().staleServed, cache.stats().misses]).toEqual([1, 1])

    // Neither replaced by the broken version 2 nor dropped: the next request revalidates version 1.
    const revalidated = await client.send(url)
    expect(revalidated.body).toBe('version 1')
    expect(revalidated.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=10')
    expect(origin.seen('/doc').at(-1)!.headers['if-none-match']).toBe('"v1"')
    expect(origin.hits('/doc')).toBe(3)
  })

  it('on a revalidation without stale-if-error: the read fails, and the stale entry is kept for the next revalidation', async () => {
    const { cache, client } = setup()
    const doc = document('max-age=10')
    const url = `${origin.url}/doc`
    await client.send(url)
    clock.advance(30)
    doc.cut()

    const broken = await client.open(url)
    expect(broken.status).toBe(200)
    expect(broken.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=200; stored')
    expect(codes(await rejection(broken.text()))).toContain('UND_ERR_SOCKET')
    await cache.flush()
    expect(cache.stats().stored).toBe(1)

    const revalidated = await client.send(url)
    expect(revalidated.body).toBe('version 1')
    expect(revalidated.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=10')
    expect(origin.seen('/doc').at(-1)!.headers['if-none-match']).toBe('"v1"')
  })

  it('on a revalidation past maxEntrySize: the body streams, so its failure reaches the caller even with stale-if-error', async () => {
    const { client } = setup({ maxEntrySize: 512 })
    const doc = document('max-age=10, stale-if-error=60')
    const url = `${origin.url}/doc`
    await client.send(url)
    clock.advance(30)
    doc.cut()

    const broken = await client.open(url)
    expect(broken.status).toBe(200)
    expect(codes(await rejection(broken.text()))).toContain('UND_ERR_SOCKET')
  })
})

describe.each(adapters)('an origin that hangs, through $name', ({ connect }) => {
  const opened = teardown()
  let clock: ManualClock
  let origin: Origin
  /** Released after each test, so that the hanging handlers end. */
  let hang = gate()
  afterEach(async () => {
    hang.release()
    await opened.close()
  })
  beforeEach(async () => {
    clock = manualClock(wholeSecondNow())
    origin = await opened.origin()
    hang = gate()
  })

  const body = bytes(8000, 3)

  /**
   * `/doc`: version 1 (`cacheControl`, ETag "v1", 304 to a revalidation) until `fail()`; then
   * `silent` answers nothing at all, and `mid-body` sends the headers of a new version and 1000 bytes
   * of its body, then nothing more; both until the test ends.
   */
  function document (cacheControl: string): { fail: (how: 'silent' | 'mid-body') => void } {
    let failing: 'silent' | 'mid-body' | undefined
    origin.route('/doc', async (req, res) => {
      if (failing === 'mid-body') {
        res.writeHead(200, { date: clock.date(), 'cache-control': cacheControl, etag: 'W/"v2"', 'content-length': String(body.byteLength) })
        res.write(body.subarray(0, 1000))
      }
      if (failing !== undefined) {
        await hang.promise
        res.destroy()
        return
      }
      const fields = { date: clock.date(), 'cache-control': cacheControl, etag: '"v1"' }
      if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, fields).end()
      else res.writeHead(200, { ...fields, 'content-type': 'text/plain' }).end('version 1')
    })
    return { fail: (how) => { failing = how } }
  }

  function setup (options: CacheOptions = {}, agent: { headersTimeout?: number, bodyTimeout?: number } = {}): { cache: Cache, client: Client } {
    const cache = createCache({ now: clock.now, retry: RETRY, ...options })
    return { cache, client: opened.add(connect(cache, agent)) }
  }

  /** Five identical requests at once; each settles to its body or to what it failed with. */
  async function five (client: Client, url: string, signal?: () => AbortSignal): Promise<Array<{ body: string } | { error: unknown }>> {
    return await Promise.all(Array.from({ length: 5 }, async () => {
      try {
        return { body: await client.send(url, { signal: signal?.() }).then((reply) => reply.body) }
      } catch (error) {
        return { error }
      }
    }))
  }

  const failedWith = (results: Array<{ body: string } | { error: unknown }>): string[][] =>
    results.map((r) => 'error' in r ? codes(r.error) : [`a body: ${r.body.slice(0, 20)}`])

  it.each([
    ['silent', 'of each caller ends each of them; the shared exchange is closed'],
    ['mid-body', 'mid-body ends the read']
  ] as const)('an AbortSignal.timeout (origin %s) %s; nothing is stored', async (failure, _what) => {
    const { cache, client } = setup()
    const doc = document('max-age=10')
    doc.fail(failure)

    const results = await within(five(client, `${origin.url}/doc`, () => AbortSignal.timeout(100)), 'the timeouts', 10_000)
    for (const failure of failedWith(results)) expect(failure).toContain('TimeoutError')
    expect(origin.hits('/doc')).toBe(1)
    await waitFor(() => cache.stats().inFlight === 0, 'the flight to end')
    await cache.flush()
    expect(cache.stats().stored).toBe(0)
  })

  it('headersTimeout fails every caller of the shared exchange alike, after its retries; nothing is stored', async () => {
    const { cache, client } = setup({ retry: { ...RETRY, limit: 1 } }, { headersTimeout: 100 })
    const doc = document('max-age=10')
    doc.fail('silent')

    const results = await within(five(client, `${origin.url}/doc`), 'the timeouts', 10_000)
    for (const failure of failedWith(results)) expect(failure).toContain('UND_ERR_HEADERS_TIMEOUT')
    // One exchange for the five, retried once.
    expect(origin.hits('/doc')).toBe(2)
    expect(cache.stats().inFlight).toBe(0)
    await cache.flush()
    expect(cache.stats().stored).toBe(0)
  })

  it('bodyTimeout fails the read of every caller of the shared exchange; nothing is stored', async () => {
    const { cache, client } = setup({}, { bodyTimeout: 100 })
    const doc = document('max-age=10')
    doc.fail('mid-body')

    const results = await within(five(client, `${origin.url}/doc`), 'the timeouts', 10_000)
    for (const failure of failedWith(results)) expect(failure).toContain('UND_ERR_BODY_TIMEOUT')
    expect(origin.hits('/doc')).toBe(1)
    expect(cache.stats().inFlight).toBe(0)
    await cache.flush()
    expect(cache.stats().stored).toBe(0)
  })

  for (const how of ['silent', 'mid-body'] as const) {
    const timeout = how === 'silent' ? { headersTimeout: 100 } : { bodyTimeout: 100 }
    it(`${Object.keys(timeout)[0]!} on a revalidation that stale-if-error covers: every caller gets the stale entry`, async () => {
      const { cache, client } = setup({ retry: false }, timeout)
      const doc = document('max-age=10, stale-if-error=60')
      const url = `${origin.url}/doc`
      await client.send(url)
      clock.advance(30)
      doc.fail(how)

      const results = await within(five(client, url), 'the stale entries', 10_000)
      expect(results).toEqual(Array.from({ length: 5 }, () => ({ body: 'version 1' })))
      expect(origin.hits('/doc')).toBe(2)
      expect(cache.stats().inFlight).toBe(0)
      // Five lookups answered stale, though they shared one exchange: every lookup counts once.
      expect(cache.stats().staleServed).toBe(5)
    })
  }
})

describe.each(adapters)('a SQLite file that can no longer be written, through $name', ({ connect }) => {
  const opened = teardown()
  afterEach(() => opened.close())

  type StoreError = { key?: string, reason?: string, error?: unknown }

  /** The store-error events published from now until the end of the test. */
  function storeErrors (): StoreError[] {
    const events: StoreError[] = []
    const listen = (event: unknown): void => { events.push(event as StoreError) }
    diagnostics.subscribe('cachedfetch:store-error', listen)
    opened.add({ close: () => Promise.resolve(void diagnostics.unsubscribe('cachedfetch:store-error', listen)) })
    return events
  }

  it('deleted under an open store: each write fails as SQLITE_READONLY and is reported with its key; every request is answered', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cachedfetch-faults-'))
    opened.add({ close: () => rm(dir, { recursive: true, force: true }) })
    const file = join(dir, 'cache.db')
    const origin = await opened.origin()
    for (const path of ['/a', '/b']) {
      origin.route(path, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end(`${path} #${origin.hits(path)}`) })
    }
    const adapter = new KeyvSqlite({ uri: `sqlite://${file}`, busyTimeout: 5000 })
    opened.add({ close: () => adapter.disconnect().catch(() => {}) })
    // No memory tier: every request reads the file.
    const cache = createCache({ store: adapter, namespace: 'x', maxSize: 0 })
    opened.add({ close: () => cache.close() })
    const client = opened.add(connect(cache))
    await client.send(`${origin.url}/a`)
    await cache.flush()
    expect(cache.stats().stored).toBe(1)

    await rm(file)
    const errors = storeErrors()
    // SQLite still reads the file it has open; it refuses to write to one that is gone.
    const a = await client.send(`${origin.url}/a`)
    expect(a.header('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(a.body).toBe('/a #1')
    for (const n of [1, 2]) {
      const b = await client.send(`${origin.url}/b`)
      expect(b.status).toBe(200)
      expect(b.body).toBe(`/b #${n}`)
      expect(b.header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
      await cache.flush()
    }
    expect(origin.hits('/b')).toBe(2)
    expect(cache.stats().stored).toBe(1)
    expect(errors.map((e) => `${e.reason} ${e.key}: ${String(e.error)}`)).toEqual([
      `set GET ${origin.url}/b: Error: SQLITE_READONLY: attempt to write a readonly database`,
      `set GET ${origin.url}/b: Error: SQLITE_READONLY: attempt to write a readonly database`
    ])
  })
})

describe('a SQLite file made read-only', () => {
  const opened = teardown()
  afterEach(() => opened.close())
  const CLIENT = fileURLToPath(new URL('./processes/sqlite-client.ts', import.meta.url))

  it('(chmod 0444, its directory 0555): hits are read from it, each write fails and is reported, no request fails', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cachedfetch-faults-'))
    opened.add({ close: () => rm(dir, { recursive: true, force: true }) })
    const file = join(dir, 'cache.db')
    const origin = await opened.origin()
    for (const path of ['/a', '/b']) {
      origin.route(path, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end(`${path} #${origin.hits(path)}`) })
    }
    // /a is written while the file is writable.
    const adapter = new KeyvSqlite({ uri: `sqlite://${file}`, busyTimeout: 5000 })
    const cache = createCache({ store: adapter, namespace: 'x' })
    const client = adapters[0]!.connect(cache)
    await client.send(`${origin.url}/a`)
    await cache.close()
    await client.close()
    await adapter.disconnect()

    chmodSync(file, 0o444)
    chmodSync(dir, 0o555)
    // Permissions do not stop root: then the cache runs in a process of the user nobody, which they do stop.
    const user = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {}
    // Each write ends, failed, before the next request: that one then finds nothing stored.
    const job: Job = { file, urls: [`${origin.url}/a`, `${origin.url}/b`], requests: 4, concurrency: 1, maxSize: 0, settle: true }
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', CLIENT, JSON.stringify(job)], { timeout: 30_000, ...user })
    const report = JSON.parse(stdout) as JobReport

    expect(report.failures).toEqual([])
    expect(report.statuses.map((status) => status.replace(/ttl=\d+/, 'ttl=N'))).toEqual([
      'cachedfetch; hit; ttl=N', 'cachedfetch; fwd=uri-miss; fwd-status=200; stored',
      'cachedfetch; hit; ttl=N', 'cachedfetch; fwd=uri-miss; fwd-status=200; stored'
    ])
    expect(origin.hits('/a')).toBe(1)
    expect(origin.hits('/b')).toBe(2)
    expect(report.storeErrorEvents).toEqual([
      `set GET ${origin.url}/b: Error: SQLITE_READONLY: attempt to write a readonly database`,
      `set GET ${origin.url}/b: Error: SQLITE_READONLY: attempt to write a readonly database`
    ])
  })
})

/**
 * RFC 9111 §4.2.3: a response's age on arrival is the larger of its Age and its apparent age,
 * max(0, response_time − date_value). An origin clock behind ours makes a response look older (it
 * may arrive stale); one ahead of ours cannot make it younger than its Age, or fresher than its
 * max-age. Expires counts from the origin's own Date (fixtures/freshness.json). The cache's clock is
 * the injectable `now`, moved by the test; the origin's Date is that clock plus its skew.
 */
describe.each(adapters)('an origin whose clock is off, through $name', ({ connect }) => {
  const opened = teardown()
  let clock: ManualClock
  let origin: Origin
  afterEach(() => opened.close())
  beforeEach(async () => {
    clock = manualClock(wholeSecondNow())
    origin = await opened.origin()
  })

  /**
   * `/doc` with `cacheControl` and Date `skew` seconds off the cache's clock (none at all when
   * `null`), ETag "v1", and a 304 to a revalidation (with a Date as skewed, or none when
   * `dateOn304` is false).
   */
  function setup (skew: number | null, cacheControl: string, extra: Record<string, string> = {}, dateOn304 = true): Client {
    origin.route('/doc', (req, res) => {
      const revalidation = req.headers['if-none-match'] === '"v1"'
      const fields: Record<string, string> = { 'cache-control': cacheControl, etag: '"v1"', ...extra }
      if (skew !== null && (dateOn304 || !revalidation)) fields.date = new Date(clock.now() + skew * 1000).toUTCString()
      else res.sendDate = false
      if (revalidation) res.writeHead(304, fields).end()
      else res.writeHead(200, { ...fields, 'content-type': 'text/plain' }).end('version 1')
    })
    return opened.add(connect(createCache({ now: clock.now, retry: false })))
  }

  const url = (): string => `${origin.url}/doc`

  it('Date an hour ahead: fresh for max-age from its arrival, Age counted from then, not from the Date', async () => {
    const client = setup(3600, 'max-age=60')
    expect((await client.send(url())).header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    const hit = await client.send(url())
    expect(hit.header('age')).toBe('0')
    expect(hit.header('cache-status')).toBe('cachedfetch; hit; ttl=60')
    clock.advance(59)
    expect((await client.send(url())).header('cache-status')).toBe('cachedfetch; hit; ttl=1')
    clock.advance(2)
    expect((await client.send(url())).header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=60')
    expect(origin.hits('/doc')).toBe(2)
  })

  it('Date an hour ahead with an Age of 30: the Age counts, the Date does not take it back', async () => {
    const client = setup(3600, 'max-age=60', { age: '30' })
    await client.send(url())
    const hit = await client.send(url())
    expect(hit.header('age')).toBe('30')
    expect(hit.header('cache-status')).toBe('cachedfetch; hit; ttl=30')
    clock.advance(31)
    expect((await client.send(url())).header('cache-status')).toMatch(/^cachedfetch; fwd=stale; fwd-status=304/)
  })

  it('Date an hour behind, max-age of two hours: an hour old on arrival, fresh for the hour left', async () => {
    const client = setup(-3600, 'max-age=7200')
    await client.send(url())
    const hit = await client.send(url())
    expect(hit.header('age')).toBe('3600')
    expect(hit.header('cache-status')).toBe('cachedfetch; hit; ttl=3600')
    clock.advance(3599)
    expect((await client.send(url())).header('cache-status')).toBe('cachedfetch; hit; ttl=1')
    clock.advance(2)
    expect((await client.send(url())).header('cache-status')).toMatch(/^cachedfetch; fwd=stale; fwd-status=304/)
  })

  it('Date 100 s behind with an Age of 30: the apparent age, the larger, counts', async () => {
    const client = setup(-100, 'max-age=600', { age: '30' })
    await client.send(url())
    const hit = await client.send(url())
    expect(hit.header('age')).toBe('100')
    expect(hit.header('cache-status')).toBe('cachedfetch; hit; ttl=500')
  })

  it('Date an hour behind, max-age of a minute: stale on arrival, so every request revalidates it', async () => {
    const client = setup(-3600, 'max-age=60')
    // Kept (it has a validator), but never fresh: each request is a conditional one.
    expect((await client.send(url())).header('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    const again = await client.send(url())
    expect(again.body).toBe('version 1')
    expect(again.header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=-3540')
    expect(origin.seen('/doc').at(-1)!.headers['if-none-match']).toBe('"v1"')
    expect(origin.hits('/doc')).toBe(2)
  })

  it('a 304 without Date freshens the entry from the time it arrived (RFC 9110 §6.6.1), not from the stored Date', async () => {
    const client = setup(0, 'max-age=10', {}, false)
    await client.send(url())
    clock.advance(30)
    expect((await client.send(url())).header('cache-status')).toBe('cachedfetch; fwd=stale; fwd-status=304; ttl=10')
    const hit = await client.send(url())
    expect(hit.header('cache-status')).toBe('cachedfetch; hit; ttl=10')
    expect(hit.header('age')).toBe('0')
    expect(origin.hits('/doc')).toBe(2)
  })
})

describe('a Redis that never answered', () => {
  it('lets cache.close() resolve though its pub/sub connection never opened', async () => {
    // Nothing listens on port 1, and this client does not try again: node-redis throws from
    // destroy() on a client that is not open.
    const client = createClient({ url: 'redis://127.0.0.1:1', disableOfflineQueue: true, socket: { reconnectStrategy: false } })
    client.on('error', () => {})
    const cache = createCache({ store: new KeyvRedis(client, { throwOnErrors: true }), namespace: 'faults-closed' })
    // The subscriber's connect is refused at once; give it the time to be.
    await sleep(200)
    await expect(cache.close()).resolves.toBeUndefined()
    if (client.isOpen) client.destroy()
  })
})

describe.each(adapters)('a store that never answers a read, through $name', ({ connect }) => {
  const opened = teardown()
  afterEach(() => opened.close())

  it('lets a caller that aborts while its lookup waits go at once, and sends nothing to the origin', async () => {
    const origin = await opened.origin({ '/a': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('a') } })
    // A Keyv store adapter whose reads never settle: only the read timeout would end them.
    const silent = { get: async () => await new Promise(() => {}), set: async () => await Promise.resolve(true), delete: async () => await Promise.resolve(true), clear: async () => {}, on () { return this } }
    const cache = createCache({ store: silent as never, storeTimeouts: { read: 5000, write: 5000 } })
    const client = opened.add(connect(cache))
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 100)
    const started = performance.now()
    const outcome = await client.send(`${origin.url}/a`, { signal: controller.signal }).then(() => 'answered', (error: Error) => error.name)
    expect(outcome).toBe('AbortError')
    expect(performance.now() - started).toBeLessThan(2000)
    expect(origin.hits('/a')).toBe(0)
  })
})

describe.each(adapters)('a store that stops answering, through $name', ({ connect }) => {
  const opened = teardown()
  afterEach(() => opened.close())

  /** A Map-backed store adapter whose calls hang while `stuck`, and whose reads of a key wait `delay(key)` ms (Infinity: for ever). */
  function store (delay: (key: string) => number = () => 0): { adapter: object, map: Map<string, unknown>, calls: string[], stick: (stuck: boolean) => void } {
    let stuck = false
    const hung: Array<() => void> = []
    const map = new Map<string, unknown>()
    const calls: string[] = []
    const answer = async <T>(call: string, value: () => T, ms = 0): Promise<T> => {
      calls.push(call)
      if (stuck || ms === Infinity) await new Promise<void>((resolve) => hung.push(resolve))
      else if (ms > 0) await sleep(ms)
      return value()
    }
    const adapter = {
      get: async (key: string) => await answer(`get ${key}`, () => map.get(key), delay(key)),
      set: async (key: string, value: unknown) => await answer(`set ${key}`, () => { map.set(key, value); return true }),
      delete: async (key: string) => await answer(`delete ${key}`, () => map.delete(key)),
      clear: async () => { await answer('clear', () => { map.clear() }) },
      on () { return this }
    }
    const stick = (now: boolean): void => {
      stuck = now
      if (!now) for (const release of hung.splice(0)) release()
    }
    return { adapter, map, calls, stick }
  }

  it('is sent no more calls, but one now and then, once calls given up have stayed unsettled past the write timeout, and is used again once it answers', async () => {
    const origin = await opened.origin()
    origin.route('/', respond(200, { 'cache-control': 'max-age=60' }, 'page'))
    const { adapter, calls, stick } = store()
    const cache = createCache({ store: adapter as never, maxSize: 0, storeTimeouts: { read: 20, write: 100 } })
    const client = opened.add(connect(cache))
    await cache.flush()
    stick(true)
    for (let i = 0; i < 3; i++) await client.send(`${origin.url}/?page=${i}`)
    // Past the write timeout, the calls given up have stalled.
    await sleep(150)
    const before = calls.length
    for (let i = 3; i < 23; i++) expect((await client.send(`${origin.url}/?page=${i}`)).body).toBe('page')
    // Refused at once, each a store error, every request answered by the origin; one call let through now and then.
    expect(calls.length - before).toBeLessThanOrEqual(4)
    expect(origin.requests).toHaveLength(23)

    stick(false)
    await cache.flush()
    await client.send(`${origin.url}/?page=again`)
    await cache.flush()
    expect((await client.send(`${origin.url}/?page=again`)).header('cache-status')).toMatch(/^cachedfetch; hit/)
  })

  it('serves the store\'s other keys again soon while calls for one key never settle (a lost callback): it is not shut for good', async () => {
    const origin = await opened.origin({
      '/doc': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=600' }).end('doc') },
      '/hang': (_req, res) => { res.writeHead(200, { 'cache-control': 'no-store' }).end('hang') }
    })
    const { adapter } = store((key) => key.includes('/hang') ? Infinity : 0)
    // No memory tier: every hit comes from the store.
    const cache = createCache({ store: adapter as never, maxSize: 0, storeTimeouts: { read: 20, write: 100 } })
    const client = opened.add(connect(cache))
    await client.send(`${origin.url}/doc`)
    await cache.flush()
    await client.send(`${origin.url}/hang?1`)
    await client.send(`${origin.url}/hang?2`)
    await sleep(250)
    expect((await client.send(`${origin.url}/doc`)).header('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(origin.hits('/doc')).toBe(1)
  })

  it('keeps writing to a store that answers every read late, within the write timeout: a slow store is no stalled one', async () => {
    const origin = await opened.origin({ '/p': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=600' }).end('p') } })
    const { adapter, map } = store(() => 150)
    const cache = createCache({ store: adapter as never, storeTimeouts: { read: 100, write: 1000 } })
    const client = opened.add(connect(cache))
    await Promise.all(Array.from({ length: 6 }, async (_, i) => await client.send(`${origin.url}/p?${i}`)))
    await cache.flush()
    expect([...map.keys()].filter((key) => key.includes('/p?'))).toHaveLength(6)
  })

  it('still sends an invalidation\'s deletes while calls have stalled: what it drops must not come back', async () => {
    let version = 0
    const origin = await opened.origin({
      '/doc': (req, res) => {
        if (req.method === 'POST') res.writeHead(204).end()
        else res.writeHead(200, { 'cache-control': 'max-age=600' }).end(`v${++version}`)
      },
      '/slow': (_req, res) => { res.writeHead(200, { 'cache-control': 'no-store' }).end('slow') }
    })
    const { adapter, calls } = store((key) => key.includes('/slow') ? 300 : 0)
    const cache = createCache({ store: adapter as never, storeTimeouts: { read: 20, write: 100 } })
    const client = opened.add(connect(cache))
    expect((await client.send(`${origin.url}/doc`)).body).toBe('v1')
    await cache.flush()
    await Promise.all([client.send(`${origin.url}/slow?a`), client.send(`${origin.url}/slow?b`)])
    await sleep(150)
    await client.send(`${origin.url}/doc`, { method: 'POST', body: 'x' })
    await cache.flush()
    expect(calls.filter((call) => call.startsWith('delete ') && call.includes('/doc')).length).toBeGreaterThan(0)
    await sleep(200)
    expect((await client.send(`${origin.url}/doc`)).body).toBe('v2')
  })
})

// Through the interceptor: cachedFetch()'s fast path lets a caller that leaves go before any lookup
// claims a refresh, and the next request starts one.
describe.each(adapters.filter((adapter) => adapter.name === 'interceptor'))('a slow store and a caller that leaves while its lookup waits on a stale-while-revalidate entry, through $name', ({ connect }) => {
  const opened = teardown()
  afterEach(() => opened.close())

  it('still refreshes the entry in the background: the hit claimed the refresh, which is nobody\'s request', async () => {
    const clock = manualClock(wholeSecondNow())
    let version = 1
    const origin = await opened.origin({
      '/swr': (_req, res) => { res.writeHead(200, { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60' }).end(`v${version}`) }
    })
    const map = new Map<string, unknown>()
    const store = {
      // Every read takes 200 ms: a lookup waits for it.
      get: async (key: string) => { await sleep(200); return map.get(key) },
      set: async (key: string, value: unknown) => { map.set(key, value); return await Promise.resolve(true) },
      delete: async (key: string) => await Promise.resolve(map.delete(key)),
      clear: async () => { map.clear(); await Promise.resolve() },
      on () { return this }
    }
    const cache = createCache({ store: store as never, maxSize: 0, now: clock.now, storeTimeouts: { read: 1000, write: 1000 } })
    const client = opened.add(connect(cache))
    expect((await client.send(`${origin.url}/swr`)).body).toBe('v1')
    await cache.flush()
    clock.advance(20)
    version = 2
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 50)
    await expect(client.send(`${origin.url}/swr`, { signal: controller.signal })).rejects.toThrow()
    await waitFor(() => origin.hits('/swr') === 2, 'the refresh to reach the origin')
    await cache.flush()
    expect(cache.stats().refreshing).toBe(0)
  })
})

describe.each(adapters)('a store whose first read never answers, then answers every call, through $name', ({ connect }) => {
  const opened = teardown()
  afterEach(() => opened.close())

  it('is used once that read is given up: a lookup given up while it waited is never made, a write still waiting is', async () => {
    const origin = await opened.origin({ '/a': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('a') } })
    const map = new Map<string, unknown>()
    let gets = 0
    const store = {
      // The first read (the cache's own, as it opens the store) hangs, as on a half-open connection.
      get: async (key: string) => ++gets === 1 ? await new Promise(() => {}) : map.get(key),
      set: async (key: string, value: unknown) => { map.set(key, value); return await Promise.resolve(true) },
      delete: async (key: string) => await Promise.resolve(map.delete(key)),
      clear: async () => { map.clear(); await Promise.resolve() },
      on () { return this }
    }
    const cache = createCache({ store: store as never, maxSize: 0, storeTimeouts: { read: 50, write: 300 } })
    const client = opened.add(connect(cache))
    // Its lookup gives up after 50 ms, while the first read still holds every call back; its
    // write waits too, and goes out once that read is given up (300 ms), within its own timeout.
    expect((await client.send(`${origin.url}/a`)).body).toBe('a')
    await sleep(400)
    expect(gets).toBe(1)
    expect(map.size).toBe(1)
    const again = await client.send(`${origin.url}/a`)
    expect(again.header('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(gets).toBe(2)
    expect(origin.hits('/a')).toBe(1)
  })
})

describe('a Keyv of another copy of the package, whose get() throws at once', () => {
  it('fails the store\'s first read, reported, not createCache()', async () => {
    const errors: unknown[] = []
    const listen = (event: unknown): void => { errors.push(event) }
    diagnostics.subscribe('cachedfetch:store-error', listen)
    try {
      // What passes for a Keyv instance (not Keyv's own class: another copy's).
      const keyvLike = {
        hooks: {},
        opts: { store: {} },
        on () { return this },
        off () { return this },
        get () { throw new Error('at once') },
        set: async () => await Promise.resolve(true),
        delete: async () => await Promise.resolve(true),
        clear: async () => {}
      }
      const cache = createCache({ store: keyvLike as never })
      await cache.close()
      await waitFor(() => errors.length > 0, 'the failed first read to be reported')
      expect(errors[0]).toMatchObject({ reason: 'open' })
    } finally {
      diagnostics.unsubscribe('cachedfetch:store-error', listen)
    }
  })
})

describe('a handler whose onRequestStart throws, while its lookup waits for the store', () => {
  const opened = teardown()
  afterEach(() => opened.close())

  it('is told through onResponseError, as undici tells one, with nothing thrown out of the cache', async () => {
    const origin = await opened.origin({ '/t': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('t') } })
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache: createCache({ store: new Map() }) }))
    const uncaught: unknown[] = []
    const onUncaught = (error: unknown): void => { uncaught.push(error) }
    process.on('uncaughtException', onUncaught)
    try {
      const outcome = await new Promise<string>((resolve) => {
        dispatcher.dispatch({ origin: origin.url, path: '/t', method: 'GET' }, {
          onRequestStart () { throw new Error('handler bug') },
          onResponseEnd () { resolve('onResponseEnd') },
          onResponseError (_controller, error) { resolve(`onResponseError: ${error.message}`) }
        })
      })
      expect(outcome).toBe('onResponseError: handler bug')
      await sleep(50)
      expect(uncaught).toEqual([])
    } finally {
      process.off('uncaughtException', onUncaught)
    }
  })
})
