/**
 * Retries of failed origin requests (src/retry.ts decides, undici's RetryHandler re-sends): which
 * failures and methods are retried, backoff with full jitter, Retry-After, the total deadline,
 * Idempotency-Key, resuming a broken body with Range + If-Match, the switches that turn retries
 * off, and an abort during the backoff wait (after a 5xx, a dropped or a refused connection) or
 * while the first connect fails. Every case runs through cachedFetch and through the undici
 * interceptor, against a real origin on 127.0.0.1 that counts what it saw; a raw undici handler
 * sees one request start however many attempts it took, an abort while a resume waits for a
 * connection end it at once, and nothing after the error when a resume is refused.
 */
import diagnostics from 'node:diagnostics_channel'
import { readFileSync } from 'node:fs'
import { createServer, type IncomingMessage } from 'node:http'
import { createServer as createRawServer, type AddressInfo, type Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { request, type Dispatcher } from 'undici'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { cacheInterceptor, createCache, type Cache, type CacheDispatchOptions, type CacheEvent, type CacheOptions } from '../src/index.js'
import { adapters, type Client } from './helpers/clients.js'
import { respond, startOrigin, type Origin, type Route } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, wholeSecondNow } from './helpers/time.js'
import { gate, waitFor, within } from './helpers/wait.js'

type RetryOptions = Exclude<CacheOptions['retry'], false | undefined>
type RequestPolicy = NonNullable<CacheDispatchOptions['cachePolicy']>

interface StatusCase {
  readonly status: number
  readonly retried: boolean
}

interface MethodCase {
  readonly name: string
  readonly method: string
  readonly headers?: Record<string, string>
  readonly body?: string
  readonly retry?: RetryOptions
  readonly hits: number
  /**
   * Through fetch, when it differs: fetch sends every body as a one-shot stream, which a retry
   * cannot send again, so such a request is sent once and its answer passed on.
   */
  readonly hitsViaFetch?: number
  /** A literal key, 'uuid' for one generated key, null for none. */
  readonly idempotencyKey: string | null
}

const table = JSON.parse(readFileSync(new URL('../fixtures/retry.json', import.meta.url), 'utf8')) as
  { statuses: StatusCase[], methods: MethodCase[] }

/** Backoff short enough that a test never notices it. */
const FAST: RetryOptions = { baseDelay: 1, maxDelay: 1 }
/** A generated key: a UUID as the draft's Structured Field string. */
const UUID = /^"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"$/

/** Answers the n-th request with the n-th step; the last step answers every later one. */
function sequence (...steps: Route[]): Route {
  let n = 0
  return (req, res, seen) => steps[Math.min(n++, steps.length - 1)]!(req, res, seen)
}

/** The first raw value of a request field (req.headers cannot hold `__proto__`). */
function rawField (req: IncomingMessage, name: string): string | undefined {
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.toLowerCase() === name) return req.rawHeaders[i + 1]
  return undefined
}

/** Closes the connection without an answer: a network error for the client. */
const hangUp: Route = (req) => {
  req.socket.destroy()
}

/** Sends the status line, headers and `part` of a 10-byte body, then breaks the connection. */
function breakOff (headers: Record<string, string>, part = 'hello'): Route {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '10', 'cache-control': 'no-store', ...headers })
    res.write(part, () => setTimeout(() => res.destroy(), 20))
  }
}

/** A request body, read in full. */
async function bodyOf (req: IncomingMessage): Promise<string> {
  let text = ''
  for await (const chunk of req) text += String(chunk)
  return text
}

/** Retry events for URLs under `base` (this origin's by default), collected while a test runs. */
function watchRetries (base = origin.url): { events: CacheEvent[], next: () => Promise<CacheEvent>, stop: () => void } {
  const events: CacheEvent[] = []
  let waiting: ((event: CacheEvent) => void)[] = []
  const listener = (message: unknown): void => {
    const event = message as CacheEvent
    if (event.url?.startsWith(base) !== true) return
    events.push(event)
    const resolve = waiting
    waiting = []
    for (const r of resolve) r(event)
  }
  diagnostics.subscribe('cachedfetch:retry', listener)
  return {
    events,
    next: () => new Promise((resolve) => waiting.push(resolve)),
    stop: () => diagnostics.unsubscribe('cachedfetch:retry', listener)
  }
}

let origin: Origin
let paths = 0
const opened = teardown()
const watchers: { stop: () => void }[] = []

beforeAll(async () => {
  origin = await startOrigin()
})

afterEach(async () => {
  vi.restoreAllMocks()
  for (const watcher of watchers.splice(0)) watcher.stop()
  await opened.close()
})

/** A port on 127.0.0.1 that nothing listens on (a server had it a moment ago): connecting is refused. */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** A server that starts listening on `port` now and counts what reaches it, closed after the test. */
async function listenLate (port: number): Promise<{ connections: () => number, requests: () => number }> {
  let connections = 0
  let requests = 0
  const server = createServer((_req, res) => {
    requests++
    res.writeHead(200, { 'content-type': 'text/plain' }).end('too late')
  })
  server.on('connection', () => { connections++ })
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  opened.add({
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  })
  return { connections: () => connections, requests: () => requests }
}

afterAll(async () => {
  await origin.close()
})

/** The code of a network error; fetch wraps it as the cause of a TypeError('fetch failed'). */
function codeOf (error: unknown): string | undefined {
  const { code, cause } = error as { code?: string, cause?: { code?: string } }
  return code ?? cause?.code
}

/**
 * Aborts `controller` with `reason` while undici fails its first connect to `port`: after the
 * connection was refused, before the refusal reaches the request (and the cache's retry decision).
 */
function abortOnConnectError (port: number, controller: AbortController, reason: Error): void {
  const listener = (message: unknown): void => {
    if (Number((message as { connectParams: { port: string | number } }).connectParams.port) !== port) return
    diagnostics.unsubscribe('undici:client:connectError', listener)
    controller.abort(reason)
  }
  diagnostics.subscribe('undici:client:connectError', listener)
  watchers.push({ stop: () => diagnostics.unsubscribe('undici:client:connectError', listener) })
}

/**
 * An interceptor for below the cache that holds every resume (a request with a Range header)
 * until `release()`, as a busy pool or a slow connect would; `resumes` counts them and `over`
 * settles once the first held one's exchange has ended, however it ended.
 */
function holdResumes (): { interceptor: Dispatcher.DispatcherComposeInterceptor, resumes: () => number, release: () => void, over: Promise<void> } {
  const held = gate()
  const ended = gate()
  let resumes = 0
  const interceptor: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (opts, handler) => {
    if ((opts.headers as Record<string, unknown> | undefined)?.range === undefined) return dispatch(opts, handler)
    resumes++
    void held.promise.then(() => dispatch(opts, {
      onRequestStart: (controller, context) => handler.onRequestStart?.(controller, context),
      onResponseStart: (controller, status, headers, message) => handler.onResponseStart?.(controller, status, headers, message),
      onResponseData: (controller, chunk) => handler.onResponseData?.(controller, chunk),
      onResponseEnd: (controller, trailers) => {
        handler.onResponseEnd?.(controller, trailers)
        ended.release()
      },
      onResponseError: (controller, error) => {
        handler.onResponseError?.(controller, error)
        ended.release()
      }
    }))
    return true
  }
  return { interceptor, resumes: () => resumes, release: held.release, over: ended.promise }
}

/**
 * A raw handler on undici's new API that records the callbacks it gets, in order (a run of
 * onResponseData as one entry); `settled` resolves at its first onResponseEnd or onResponseError.
 */
function recorder (): { handler: Dispatcher.DispatchHandler, calls: string[], body: () => string, errors: Error[], controller: () => Dispatcher.DispatchController, settled: Promise<void> } {
  const calls: string[] = []
  const errors: Error[] = []
  const settled = gate()
  let body = ''
  let controller: Dispatcher.DispatchController | undefined
  const handler: Dispatcher.DispatchHandler = {
    onRequestStart: (c) => {
      controller = c
      calls.push('onRequestStart')
    },
    onResponseStart: (_c, status) => { calls.push(`onResponseStart ${status}`) },
    onResponseData: (_c, chunk) => {
      body += String(chunk)
      if (calls.at(-1) !== 'onResponseData') calls.push('onResponseData')
    },
    onResponseEnd: () => {
      calls.push('onResponseEnd')
      settled.release()
    },
    onResponseError: (_c, error) => {
      errors.push(error)
      calls.push('onResponseError')
      settled.release()
    }
  }
  return { handler, calls, body: () => body, errors, controller: () => controller!, settled: settled.promise }
}

for (const adapter of adapters) {
  describe(`retries through ${adapter.name}`, () => {
    /** A client on a fresh cache with these options, closed after the test. */
    function connect (options: CacheOptions = {}): { client: Client, cache: Cache } {
      const cache = createCache(options)
      const client = opened.add(adapter.connect(cache))
      return { client, cache }
    }

    /** A fresh path on the origin routed to `route`, and its URL. */
    function serve (route: Route): { path: string, url: string } {
      const path = `/${adapter.name}/${++paths}`
      origin.route(path, route)
      return { path, url: origin.url + path }
    }

    function watch (base?: string): ReturnType<typeof watchRetries> {
      const watcher = watchRetries(base)
      watchers.push(watcher)
      return watcher
    }

    describe('failures and backoff', () => {
      it.each([
        { failure: 'a 503 then a dropped connection', second: hangUp, status: undefined },
        { failure: 'a 503 then a 500', second: respond(500, {}, 'broken'), status: 500 }
      ])('succeeds after $failure, announcing each retry with a jittered delay', async ({ second, status }) => {
        const { path, url } = serve(sequence(respond(503, {}, 'busy'), second, respond(200, { 'content-type': 'text/plain' }, 'ok')))
        const { client, cache } = connect({ retry: { baseDelay: 20, maxDelay: 50 } })
        const retries = watch()

        const reply = await client.open(url)

        expect(reply.status).toBe(200)
        expect(await reply.text()).toBe('ok')
        expect(origin.hits(path)).toBe(3)
        expect(retries.events.map((e) => e.attempt)).toEqual([1, 2])
        expect(retries.events.map((e) => [e.url, e.method])).toEqual([[url, 'GET'], [url, 'GET']])
        expect(retries.events[0]!.status).toBe(503)
        expect(retries.events[1]!.status).toBe(status)
        if (status === undefined) expect(retries.events[1]!.reason).toEqual(expect.any(String))
        // Full jitter: attempt n waits within [0, min(maxDelay, baseDelay × 2^(n-1))].
        expect(retries.events[0]!.delay).toBeGreaterThanOrEqual(0)
        expect(retries.events[0]!.delay).toBeLessThanOrEqual(20)
        expect(retries.events[1]!.delay).toBeGreaterThanOrEqual(0)
        expect(retries.events[1]!.delay).toBeLessThanOrEqual(40)
        expect(cache.stats().retries).toBe(2)
      })

      it('caps every backoff wait at maxDelay', async () => {
        const { url } = serve(respond(503, {}, 'busy'))
        // Uncapped, a wait would be up to 10 s, and above 30 ms almost surely.
        const { client } = connect({ retry: { baseDelay: 10_000, maxDelay: 30 } })
        const retries = watch()

        const reply = await client.open(url)
        await reply.text()

        expect(retries.events).toHaveLength(2)
        for (const event of retries.events) expect(event.delay).toBeLessThanOrEqual(30)
      })

      it('passes the last 5xx through once the default limit of 2 retries is spent', async () => {
        const { path, url } = serve(respond(503, { 'content-type': 'text/plain' }, 'still down'))
        const { client, cache } = connect({ retry: FAST })

        const reply = await client.open(url)

        expect(reply.status).toBe(503)
        expect(await reply.text()).toBe('still down')
        expect(reply.header('cache-status')).toContain('fwd-status=503')
        expect(origin.hits(path)).toBe(3)
        expect(cache.stats().retries).toBe(2)
      })

      it('surfaces the network error once the default limit of 2 retries is spent', async () => {
        const { path, url } = serve(hangUp)
        const { client, cache } = connect({ retry: FAST })

        await expect(client.open(url)).rejects.toThrow()

        expect(origin.hits(path)).toBe(3)
        expect(cache.stats().retries).toBe(2)
      })

      it.each([
        { limit: 1, hits: 2 },
        { limit: 4, hits: 5 }
      ])('sends a request limit + 1 times at most (limit $limit)', async ({ limit, hits }) => {
        const { path, url } = serve(respond(502, {}, 'bad gateway'))
        const { client, cache } = connect({ retry: { ...FAST, limit } })

        const reply = await client.open(url)
        await reply.text()

        expect(reply.status).toBe(502)
        expect(origin.hits(path)).toBe(hits)
        expect(cache.stats().retries).toBe(limit)
      })
    })

    describe('which statuses are retried', () => {
      it.each(table.statuses)('a $status is retried: $retried', async ({ status, retried }) => {
        const { path, url } = serve(respond(status, { 'content-type': 'text/plain' }, `status ${status}`))
        const { client } = connect({ retry: FAST })

        const reply = await client.open(url)

        expect(reply.status).toBe(status)
        expect(await reply.text()).toBe(`status ${status}`)
        expect(origin.hits(path)).toBe(retried ? 3 : 1)
      })

      it('retries the statuses retry.statusCodes lists, and only those', async () => {
        const notFound = serve(respond(404, {}, 'not yet'))
        const unavailable = serve(respond(503, {}, 'busy'))
        const { client } = connect({ retry: { ...FAST, statusCodes: [404] } })

        await (await client.open(notFound.url)).text()
        await (await client.open(unavailable.url)).text()

        expect(origin.hits(notFound.path)).toBe(3)
        expect(origin.hits(unavailable.path)).toBe(1)
      })
    })

    describe('which methods are retried', () => {
      it.each(table.methods)('$name', async (c) => {
        const bodies: string[] = []
        const { path, url } = serve(async (req, res) => {
          bodies.push(await bodyOf(req))
          res.writeHead(503, { 'content-type': 'text/plain' }).end('busy')
        })
        const { client } = connect({ retry: { ...FAST, ...c.retry } })

        const reply = await within(client.open(url, { method: c.method, headers: c.headers, body: c.body }), c.method, 1000)
        await within(reply.text(), `${c.method} body`, 1000)

        expect(reply.status).toBe(503)
        expect(origin.hits(path)).toBe(adapter.name === 'cachedFetch' ? c.hitsViaFetch ?? c.hits : c.hits)
        const seen = origin.seen(path)
        expect(seen.map((s) => s.method)).toEqual(seen.map(() => c.method))
        if (c.body !== undefined) expect(bodies).toEqual(bodies.map(() => c.body))
        const keys = seen.map((s) => s.headers['idempotency-key'])
        if (c.idempotencyKey === null) {
          expect(keys).toEqual(keys.map(() => undefined))
        } else if (c.idempotencyKey === 'uuid') {
          expect(keys[0]).toMatch(UUID)
          expect(keys).toEqual(keys.map(() => keys[0]))
        } else {
          expect(keys).toEqual(keys.map(() => c.idempotencyKey))
        }
      })

      it('never re-sends a streamed request body it no longer has', async () => {
        const bodies: string[] = []
        const { path, url } = serve(async (req, res) => {
          const body = await bodyOf(req)
          bodies.push(body)
          res.writeHead(bodies.length === 1 ? 503 : 200, { 'content-type': 'text/plain' }).end(`got ${body.length} bytes`)
        })
        const { client } = connect({ retry: FAST })

        const reply = await client.open(url, { method: 'PUT', stream: 'payload' })
        await reply.text()

        // Sent once with its 503 passed through, or retried with the whole body: never truncated.
        expect(origin.hits(path)).toBeGreaterThanOrEqual(1)
        expect(bodies).toEqual(bodies.map(() => 'payload'))
        expect(reply.status).toBe(bodies.length === 1 ? 503 : 200)
      })

      it('generates a different Idempotency-Key for each request', async () => {
        const { path, url } = serve(respond(201, {}, 'created'))
        const { client } = connect({ retry: { ...FAST, idempotencyKey: true } })

        await (await client.open(url, { method: 'POST', body: 'a' })).text()
        await (await client.open(url, { method: 'POST', body: 'b' })).text()

        const [first, second] = origin.seen(path).map((s) => s.headers['idempotency-key'])
        expect(first).toMatch(UUID)
        expect(second).toMatch(UUID)
        expect(second).not.toBe(first)
      })

      // undici.fetch sends no field named __proto__; undici.request does.
      it.runIf(adapter.name === 'interceptor')('keeps a field named __proto__ beside the key it adds, on every attempt', async () => {
        const sent: Array<string | undefined> = []
        const { path, url } = serve(sequence(
          (req, res) => { sent.push(rawField(req, '__proto__')); res.writeHead(503).end('busy') },
          (req, res) => { sent.push(rawField(req, '__proto__')); res.writeHead(201).end('created') }
        ))
        const { client } = connect({ retry: { ...FAST, idempotencyKey: true } })

        const reply = await client.open(url, { method: 'POST', headers: { ['__proto__']: 'x' }, body: 'a' })
        await reply.text()

        expect(reply.status).toBe(201)
        expect(sent).toEqual(['x', 'x'])
        const [first, second] = origin.seen(path).map((s) => s.headers['idempotency-key'])
        expect(first).toMatch(UUID)
        expect(second).toBe(first)
      })
    })

    describe('Retry-After', () => {
      it('waits as many seconds as Retry-After asks instead of backing off', async () => {
        const { path, url } = serve(sequence(respond(503, { 'retry-after': '1' }, 'later'), respond(200, {}, 'ok')))
        const { client } = connect({ retry: { baseDelay: 20, maxDelay: 50 } })
        const retries = watch()

        const reply = await client.open(url)

        expect(reply.status).toBe(200)
        expect(await reply.text()).toBe('ok')
        expect(origin.hits(path)).toBe(2)
        expect(retries.events.map((e) => [e.attempt, e.delay, e.status])).toEqual([[1, 1000, 503]])
      })

      it('waits until the HTTP-date Retry-After names', async () => {
        const second = wholeSecondNow()
        // The cache's clock reads 800 ms into the second, so the next second is 200 ms away.
        const retryAt = new Date(second + 1000).toUTCString()
        const { path, url } = serve(sequence(respond(429, { 'retry-after': retryAt }, 'slow down'), respond(200, {}, 'ok')))
        const { client } = connect({ now: manualClock(second + 800).now, retry: { baseDelay: 5000, maxDelay: 5000 } })
        const retries = watch()

        const reply = await client.open(url)

        expect(reply.status).toBe(200)
        expect(await reply.text()).toBe('ok')
        expect(origin.hits(path)).toBe(2)
        expect(retries.events.map((e) => [e.attempt, e.delay, e.status])).toEqual([[1, 200, 429]])
      })

      it.each([
        { name: 'delay-seconds', status: 429, retryAfter: () => '1', retry: { maxRetryAfter: 500 } },
        { name: 'an HTTP-date', status: 503, retryAfter: (now: number) => new Date(now + 60_000).toUTCString(), retry: {} }
      ])('returns the response when Retry-After ($name) asks for longer than maxRetryAfter', async ({ status, retryAfter, retry }) => {
        const second = wholeSecondNow()
        const { path, url } = serve(respond(status, { 'retry-after': retryAfter(second) }, 'come back later'))
        const { client, cache } = connect({ now: manualClock(second).now, retry: { ...FAST, ...retry } })
        const retries = watch()

        const reply = await client.open(url)

        expect(reply.status).toBe(status)
        expect(reply.header('retry-after')).toBe(retryAfter(second))
        expect(await reply.text()).toBe('come back later')
        expect(origin.hits(path)).toBe(1)
        expect(retries.events).toEqual([])
        expect(cache.stats().retries).toBe(0)
      })

      // Date.parse takes '0.5' and '-1' for days in 2000 and 2001 (no wait at all), and 'Jan 1 2030'
      // for a date years away (no retry): none is an HTTP-date (RFC 9110 §5.6.7).
      it.each(['soon', '0.5', '-1', 'Jan 1 2030'])('backs off as usual when Retry-After is neither seconds nor an HTTP-date: %s', async (retryAfter) => {
        const { path, url } = serve(sequence(respond(503, { 'retry-after': retryAfter }, 'later'), respond(200, {}, 'ok')))
        const { client } = connect({ retry: { baseDelay: 40, maxDelay: 50 } })
        const retries = watch()
        // Full jitter picks half the ceiling.
        vi.spyOn(Math, 'random').mockReturnValue(0.5)

        const reply = await client.open(url)

        expect(await reply.text()).toBe('ok')
        expect(origin.hits(path)).toBe(2)
        expect(retries.events.map((event) => event.delay)).toEqual([20])
      })

      it('counts the time the attempts took against the deadline', async () => {
        const { path, url } = serve(async (_req, res) => {
          await sleep(150)
          res.writeHead(503).end('slow and busy')
        })
        const { client } = connect({ retry: { ...FAST, deadline: 100 } })

        const reply = await client.open(url)

        expect(reply.status).toBe(503)
        expect(await reply.text()).toBe('slow and busy')
        expect(origin.hits(path)).toBe(1)
      })

      it('starts no retry that would end past the deadline', async () => {
        const { path, url } = serve(sequence(respond(503, { 'retry-after': '1' }, 'later'), respond(200, {}, 'ok')))
        const { client, cache } = connect({ retry: { ...FAST, deadline: 10 } })

        const reply = await client.open(url)

        expect(reply.status).toBe(503)
        expect(await reply.text()).toBe('later')
        expect(origin.hits(path)).toBe(1)
        expect(cache.stats().retries).toBe(0)
      })
    })

    describe('turning retries off', () => {
      it.each([
        { name: 'retry: false', options: { retry: false }, policy: undefined },
        { name: 'retry: { limit: 0 }', options: { retry: { limit: 0 } }, policy: undefined },
        { name: 'a request cachePolicy of { retry: false }', options: { retry: FAST }, policy: { retry: false } },
        { name: 'a request cachePolicy of { retry: { limit: 0 } }', options: { retry: FAST }, policy: { retry: { limit: 0 } } },
        // Off is a limit of 0: settings over it that name no limit tune retries that stay off.
        { name: 'retry: false, and a request cachePolicy that tunes delays', options: { retry: false }, policy: { retry: { baseDelay: 1, maxDelay: 1 } } },
        { name: 'retry: { limit: 0 }, and a request cachePolicy that tunes delays', options: { retry: { limit: 0 } }, policy: { retry: { baseDelay: 1 } } },
        { name: 'a host\'s retry: false, and a request cachePolicy that tunes delays', options: { retry: FAST, hosts: { '127.0.0.1': { retry: false } } }, policy: { retry: { baseDelay: 1 } } }
      ] as { name: string, options: CacheOptions, policy: RequestPolicy | undefined }[])('sends once with $name', async ({ options, policy }) => {
        const { path, url } = serve(respond(503, {}, 'busy'))
        const { client, cache } = connect(options)

        const reply = await client.open(url, { cachePolicy: policy })

        expect(reply.status).toBe(503)
        expect(await reply.text()).toBe('busy')
        expect(origin.hits(path)).toBe(1)
        expect(cache.stats().retries).toBe(0)
      })

      it('keeps the other settings of retries turned off with { limit: 0, … } for a host that turns them on with a limit', async () => {
        const { path, url } = serve(respond(500, {}, 'no'))
        const { client } = connect({ retry: { limit: 0, statusCodes: [503], baseDelay: 1 }, hosts: { '127.0.0.1': { retry: { limit: 2 } } } })

        const reply = await client.open(url)
        await reply.text()

        // Its statuses are the cache's: a 500 is not one of them.
        expect(origin.hits(path)).toBe(1)
      })

      it('retries a request whose cachePolicy turns retries on over a cache that has them off', async () => {
        const { path, url } = serve(respond(503, {}, 'busy'))
        const { client, cache } = connect({ retry: false })

        const reply = await client.open(url, { cachePolicy: { retry: { ...FAST, limit: 1 } } })
        await reply.text()

        expect(origin.hits(path)).toBe(2)
        expect(cache.stats().retries).toBe(1)
      })
    })

    describe('a body that breaks off', () => {
      it.each([
        { name: 'no ETag', headers: {} },
        { name: 'a weak ETag', headers: { etag: 'W/"v1"' } }
      ] as { name: string, headers: Record<string, string> }[])('fails the body read, without a retry, when bytes reached the caller and there is $name', async ({ headers }) => {
        const { path, url } = serve(sequence(breakOff(headers), respond(200, { 'content-type': 'text/plain' }, 'helloworld')))
        const { client, cache } = connect({ retry: FAST })

        const reply = await client.open(url)

        expect(reply.status).toBe(200)
        await expect(reply.text()).rejects.toThrow()
        expect(origin.hits(path)).toBe(1)
        expect(cache.stats().retries).toBe(0)
      })

      // undici's RetryHandler sends such a retry without a Range, then refuses its complete answer
      // for lacking a Content-Range: the origin asked twice, and the caller failed all the same.
      it.each([
        { name: 'no ETag', headers: {} },
        { name: 'a strong ETag', headers: { etag: '"v1"' } }
      ] as { name: string, headers: Record<string, string> }[])('fails, without a retry, when the answer broke off after its header and before its body, with $name', async ({ headers }) => {
        const { path, url } = serve(sequence(breakOff(headers, ''), respond(200, { 'content-type': 'text/plain' }, 'helloworld')))
        const { client, cache } = connect({ retry: FAST })

        await expect(client.open(url).then(async (reply) => await reply.text())).rejects.toThrow()
        expect(origin.hits(path)).toBe(1)
        expect(cache.stats().retries).toBe(0)
      })

      // RFC 9110 §14.2: Range is defined for GET alone; an origin runs any other method again whole.
      it.each([
        { method: 'DELETE' },
        { method: 'PUT', body: 'payload' },
        { method: 'POST', body: 'payload', headers: { 'idempotency-key': 'order-1' } }
      ])('never sends a $method again to resume its broken body: the origin would run it again, Range or not', async ({ method, body, headers }) => {
        const { path, url } = serve(sequence(breakOff({ etag: '"v1"' }), respond(200, { 'content-type': 'text/plain', 'content-length': '10', etag: '"v1"' }, 'helloworld')))
        const { client, cache } = connect({ retry: FAST })

        const reply = await client.open(url, { method, body, headers })

        expect(reply.status).toBe(200)
        await expect(reply.text()).rejects.toThrow()
        expect(origin.seen(path).map((seen) => [seen.method, seen.headers.range])).toEqual([[method, undefined]])
        expect(cache.stats().retries).toBe(0)
      })

      it('resumes a caller\'s Range whose If-Range did not match (a 200 in full) without that If-Range, which would have the origin ignore the resume\'s Range too', async () => {
        const full = Buffer.from('0123456789'.repeat(10))
        let attempts = 0
        const { path, url } = serve((req, res) => {
          attempts++
          const etag = '"s1"'
          const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
          // RFC 9110 §13.1.5: a Range under an If-Range that does not match is ignored.
          const honoured = range !== null && (req.headers['if-range'] === undefined || req.headers['if-range'] === etag)
          const start = honoured ? Number(range[1]) : 0
          const end = honoured && range[2] !== '' ? Number(range[2]) : full.length - 1
          const part = full.subarray(start, end + 1)
          res.writeHead(honoured ? 206 : 200, {
            etag, 'content-type': 'text/plain', 'content-length': String(part.length), ...(honoured ? { 'content-range': `bytes ${start}-${end}/${full.length}` } : {})
          })
          if (attempts === 1) res.write(part.subarray(0, 20), () => setTimeout(() => res.destroy(), 20))
          else res.end(part)
        })
        const { client } = connect({ retry: FAST })

        const reply = await client.send(url, { headers: { range: 'bytes=10-59', 'if-range': '"old"' } })

        expect(reply.status).toBe(200)
        expect(reply.body).toBe(full.toString())
        const resumed = origin.seen(path)[1]!.headers
        expect([resumed.range, resumed['if-match'], resumed['if-range']]).toEqual(['bytes=20-99', '"s1"', undefined])
      })

      it('resumes with Range and If-Match when a strong ETag and Content-Length allow it', async () => {
        const { path, url } = serve(sequence(
          breakOff({ etag: '"v1"' }),
          respond(206, { 'content-type': 'text/plain', 'content-range': 'bytes 5-9/10', 'content-length': '5', etag: '"v1"', 'cache-control': 'no-store' }, 'world')
        ))
        const { client, cache } = connect({ retry: FAST })

        const reply = await client.open(url)

        expect(reply.status).toBe(200)
        expect(await reply.text()).toBe('helloworld')
        expect(origin.hits(path)).toBe(2)
        const resumed = origin.seen(path)[1]!.headers
        expect(resumed.range).toBe('bytes=5-9')
        expect(resumed['if-match']).toBe('"v1"')
        expect(cache.stats().retries).toBe(1)
      })

      // undici's RetryHandler asks If-Match only of a 2xx's ETag, and would resume any other answer
      // it passed on with a bare Range: a 503 here, passed on for its long Retry-After.
      it('never resumes an error answer that broke off: a Range without If-Match could splice two versions', async () => {
        const { path, url } = serve(sequence(
          (_req, res) => {
            res.writeHead(503, { 'content-type': 'text/plain', 'content-length': '10', etag: '"v1"', 'retry-after': '3600' })
            res.write('hello', () => setTimeout(() => res.destroy(), 20))
          },
          respond(206, { 'content-type': 'text/plain', 'content-range': 'bytes 5-9/10', 'content-length': '5', etag: '"v2"' }, 'WORLD')
        ))
        const { client } = connect({ retry: FAST })

        const reply = await client.open(url)

        expect(reply.status).toBe(503)
        await expect(within(reply.text(), 'body', 2000)).rejects.toThrow()
        expect(origin.hits(path)).toBe(1)
      })

      it('counts each retry of an error answer that broke off once: one event, one wait, one request', async () => {
        const broken: Route = (_req, res) => {
          res.writeHead(503, { 'content-type': 'text/plain', 'content-length': '10' })
          res.write('busy', () => setTimeout(() => res.destroy(), 20))
        }
        const { path, url } = serve(sequence(broken, broken, respond(200, { 'content-type': 'text/plain' }, 'ok')))
        const { client, cache } = connect({ retry: FAST })
        const retries = watch(url)

        const reply = await client.send(url)

        expect([reply.status, reply.body]).toEqual([200, 'ok'])
        expect(origin.hits(path)).toBe(3)
        expect(retries.events.map((event) => event.attempt)).toEqual([1, 2])
        expect(cache.stats().retries).toBe(2)
      })

      // A 206 may enclose less than its range (RFC 9110 §15.3.7), or end cleanly part way; RetryHandler
      // checks the Content-Range, not the bytes (found by a hunt: the short body was served and stored).
      it.each([
        {
          name: 'a chunked 200, which is not resumed: it has no length to check a resume against',
          first: ((_req, res) => {
            res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=600', etag: '"v1"' })
            res.write('hello', () => setTimeout(() => res.destroy(), 20))
          }) satisfies Route,
          resumes: 0
        },
        {
          name: 'a 200 of 10 bytes, whose resume encloses fewer than its range and ends cleanly',
          first: breakOff({ etag: '"v1"', 'cache-control': 'max-age=600' }),
          resumes: 1
        }
      ])('fails a body that a resume would leave short, and stores nothing: $name', async ({ first, resumes }) => {
        const short: Route = (_req, res) => { res.writeHead(206, { 'content-type': 'text/plain', 'content-range': 'bytes 5-9/10', etag: '"v1"' }).end('wor') }
        const { path, url } = serve(sequence(first, short, respond(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=600' }, 'helloworld')))
        const { client } = connect({ retry: FAST })

        const reply = await client.open(url)
        await expect(within(reply.text(), 'body', 2000)).rejects.toThrow()
        expect(origin.hits(path)).toBe(1 + resumes)
        expect((await client.send(url)).body).toBe(resumes === 0 ? 'wor' : 'helloworld')
      })

      it.each([
        { name: 'ignores the Range and sends all of it again', resume: respond(200, { 'content-type': 'text/plain', 'content-length': '10', etag: '"v1"' }, 'helloworld') },
        { name: 'answers 412: the representation changed', resume: respond(412, { 'content-type': 'text/plain' }, 'changed') }
      ])('fails the body read rather than splice a resume the origin refused ($name)', async ({ resume }) => {
        const { path, url } = serve(sequence(breakOff({ etag: '"v1"' }), resume))
        const { client } = connect({ retry: FAST })

        const reply = await client.open(url)

        expect(reply.status).toBe(200)
        await expect(within(reply.text(), 'body', 2000)).rejects.toThrow()
        expect(origin.hits(path)).toBe(2)
      })
    })

    describe('an abort during the backoff wait', () => {
      it('rejects promptly when the caller aborts while a 2 s Retry-After runs', async () => {
        const second = wholeSecondNow()
        const { path, url } = serve(respond(503, { 'retry-after': new Date(second + 2000).toUTCString() }, 'later'))
        const { client } = connect({ now: manualClock(second).now, retry: FAST })
        const retries = watch()
        const controller = new AbortController()

        const waiting = retries.next()
        const sent = client.open(url, { signal: controller.signal }).then(async (reply) => await reply.text())
        sent.catch(() => {})
        expect((await waiting).delay).toBe(2000)
        controller.abort()
        // A loose bound: well before the 2 s wait would have ended.
        const patience = new AbortController()
        const outcome = await Promise.race([
          sent.then(() => 'resolved', () => 'rejected'),
          sleep(1500, 'still waiting', { signal: patience.signal })
        ])
        patience.abort()

        expect(outcome).toBe('rejected')
        expect(origin.hits(path)).toBe(1)
      })

      it.each([
        {
          failure: 'a dropped connection (a backoff of up to 300 ms)',
          route: () => sequence(hangUp, respond(200, {}, 'too late')),
          retry: { baseDelay: 300, maxDelay: 300 },
          clock: 0
        },
        {
          failure: 'a 503 with a Retry-After 300 ms away',
          route: (second: number) => sequence(respond(503, { 'retry-after': new Date(second + 1000).toUTCString() }, 'later'), respond(200, {}, 'too late')),
          retry: FAST,
          clock: 700
        }
      ])('sends no retry once the caller aborted the wait after $failure', async ({ route, retry, clock }) => {
        const second = wholeSecondNow()
        const { path, url } = serve(route(second))
        const { client, cache } = connect({ now: manualClock(second + clock).now, retry })
        const retries = watch()
        const controller = new AbortController()

        const waiting = retries.next()
        const sent = client.open(url, { signal: controller.signal }).then(async (reply) => await reply.text())
        sent.catch(() => {})
        // The event comes just before the wait starts; no timer can fire before this continuation.
        expect((await waiting).delay).toBeLessThanOrEqual(300)
        controller.abort()
        await expect(sent).rejects.toThrow()
        // Outwait the retry that must not come.
        await sleep(450)

        expect(origin.hits(path)).toBe(1)
        expect(cache.stats().retries).toBe(1)
      })

      it('rejects promptly with the abort reason when the caller aborts the wait after a refused connection', async () => {
        const port = await closedPort()
        const url = `http://127.0.0.1:${port}/refused`
        // The jitter at its top: the wait is the whole second.
        vi.spyOn(Math, 'random').mockReturnValue(1)
        const { client, cache } = connect({ retry: { limit: 1, baseDelay: 1000, maxDelay: 1000 } })
        const retries = watch(`http://127.0.0.1:${port}`)
        const controller = new AbortController()
        const reason = new Error('the caller gave up')

        const waiting = retries.next()
        const sent = client.open(url, { signal: controller.signal }).then(async (reply) => await reply.text())
        sent.catch(() => {})
        const event = await waiting
        expect([event.delay, event.reason]).toEqual([1000, 'ECONNREFUSED'])
        controller.abort(reason)
        // A loose bound: well before the 1 s wait would have ended.
        const patience = new AbortController()
        const outcome = await Promise.race([
          sent.then(() => 'resolved', (error: unknown) => error),
          sleep(700, 'still waiting', { signal: patience.signal })
        ])
        patience.abort()
        expect(outcome).toBe(reason)

        // An origin comes up on that port now: the retry that must not come would reach it.
        const late = await listenLate(port)
        await sleep(1300)
        expect(late.connections()).toBe(0)
        expect(late.requests()).toBe(0)
        expect(cache.stats().retries).toBe(1)
      })
    })

    describe('an abort while the first connect fails', () => {
      it('rejects a GET with the abort reason and ends its flight: the next identical GET gets the refusal', async () => {
        const port = await closedPort()
        const url = `http://127.0.0.1:${port}/refused`
        // The jitter at its bottom: the later request's retries (the default 2) do not wait.
        vi.spyOn(Math, 'random').mockReturnValue(0)
        const { client, cache } = connect()
        const controller = new AbortController()
        const reason = new Error('the caller gave up')
        abortOnConnectError(port, controller, reason)

        const aborted = client.open(url, { signal: controller.signal }).then(() => 'an answer', (error: unknown) => error)
        expect(await within(aborted, 'the aborted GET', 1000)).toBe(reason)
        await waitFor(() => cache.stats().inFlight === 0, 'the flight to end', 1000)

        const next = client.open(url).then(() => 'an answer', (error: unknown) => error)
        expect(codeOf(await within(next, 'the identical GET after it', 1500))).toBe('ECONNREFUSED')
        expect(cache.stats().inFlight).toBe(0)
      })

      it('rejects a PUT with the abort reason', async () => {
        const port = await closedPort()
        const url = `http://127.0.0.1:${port}/refused`
        const { client } = connect()
        const controller = new AbortController()
        const reason = new Error('the caller gave up')
        abortOnConnectError(port, controller, reason)

        const aborted = client.open(url, { method: 'PUT', body: 'x', signal: controller.signal }).then(() => 'an answer', (error: unknown) => error)
        expect(await within(aborted, 'the aborted PUT', 1000)).toBe(reason)
      })
    })
  })
}

describe('a resume through undici.request sends the caller\'s fields as the first attempt did', () => {
  // undici's RetryHandler spreads the fields into a record with its own range and if-match.
  const cases: Array<{ name: string, headers: () => unknown }> = [
    { name: 'a flat list', headers: () => ['x-token', 'secret', 'accept', 'text/plain'] },
    { name: 'an iterator', headers: () => new Map([['x-token', 'secret'], ['accept', 'text/plain']]).entries() },
    { name: 'a record with a Range of its own, capitalised', headers: () => ({ 'x-token': 'secret', Range: 'bytes=0-9' }) }
  ]
  it.each(cases)('given as $name', async ({ headers }) => {
    const path = `/resume-fields/${++paths}`
    origin.route(path, sequence(
      (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '10', etag: '"v1"', 'cache-control': 'no-store' })
        res.write('hello', () => setTimeout(() => res.destroy(), 20))
      },
      respond(206, { 'content-type': 'text/plain', 'content-range': 'bytes 5-9/10', 'content-length': '5', etag: '"v1"', 'cache-control': 'no-store' }, 'world')
    ))
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache: createCache({ retry: FAST }) }))

    const response = await request(origin.url + path, { dispatcher, headers: headers() as Record<string, string> })

    expect(await response.body.text()).toBe('helloworld')
    const [first, resumed] = origin.seen(path).map((seen) => seen.headers)
    expect(resumed!['x-token']).toBe('secret')
    expect(resumed!['x-token']).toBe(first!['x-token'])
    expect(resumed!.range).toBe('bytes=5-9')
    expect(resumed!['if-match']).toBe('"v1"')
    expect(Object.keys(resumed!).filter((name) => /^\d+$/.test(name))).toEqual([])
  })
})

describe('retries into a raw undici handler', () => {
  it('calls onRequestStart once however many attempts a request takes (503, 503, 200)', async () => {
    const path = '/raw/flaky'
    origin.route(path, sequence(respond(503, {}, 'busy'), respond(503, {}, 'busy'), respond(200, { 'content-type': 'text/plain' }, 'ok')))
    const cache = createCache({ retry: FAST })
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache }))
    const calls: string[] = []
    let body = ''

    await within(new Promise<void>((resolve) => {
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart: () => { calls.push('onRequestStart') },
        onResponseStart: (_controller, status) => { calls.push(`onResponseStart ${status}`) },
        onResponseData: (_controller, chunk) => { body += String(chunk) },
        onResponseEnd: () => {
          calls.push('onResponseEnd')
          resolve()
        },
        onResponseError: (_controller, error) => {
          calls.push(`onResponseError ${error.message}`)
          resolve()
        }
      }
      dispatcher.dispatch({ origin: origin.url, path, method: 'GET' }, handler)
    }), 'the request')

    expect(calls).toEqual(['onRequestStart', 'onResponseStart 200', 'onResponseEnd'])
    expect(body).toBe('ok')
    expect(origin.hits(path)).toBe(3)
    expect(cache.stats().retries).toBe(2)
  })

  it('ends a GET at once when the caller aborts while its resume waits for a connection, and never sends the resume', async () => {
    const path = '/raw/resume-then-abort'
    origin.route(path, sequence(
      breakOff({ etag: '"v1"' }),
      respond(206, { 'content-type': 'text/plain', 'content-range': 'bytes 5-9/10', 'content-length': '5', etag: '"v1"' }, 'world')
    ))
    const held = holdResumes()
    const cache = createCache({ retry: FAST })
    const dispatcher = opened.agent().compose(held.interceptor, cacheInterceptor({ cache }))
    const caller = recorder()
    const reason = new Error('the caller gave up')

    dispatcher.dispatch({ origin: origin.url, path, method: 'GET' }, caller.handler)
    await waitFor(() => held.resumes() === 1, 'the resume to be dispatched', 1000)
    caller.controller().abort(reason)
    // The resume is still held: the caller's error cannot wait for it.
    await within(caller.settled, 'the caller\'s error', 1000)

    expect(caller.calls).toEqual(['onRequestStart', 'onResponseStart 200', 'onResponseData', 'onResponseError'])
    expect(caller.errors).toEqual([reason])
    expect(caller.body()).toBe('hello')
    held.release()
    await within(held.over, 'the held resume to end', 1000)
    expect(origin.seen(path).map((s) => s.headers.range)).toEqual([undefined])
    expect(caller.calls.at(-1)).toBe('onResponseError')
    await waitFor(() => cache.stats().inFlight === 0, 'the flight to end', 1000)
  })

  it('ends a GET at the error when its resume is answered 412: nothing follows onResponseError', async () => {
    const path = '/raw/resume-412'
    origin.route(path, sequence(breakOff({ etag: '"v1"' }), respond(412, { 'content-type': 'text/plain' }, 'precondition failed')))
    const resumes = holdResumes()
    resumes.release()
    const cache = createCache({ retry: FAST })
    const dispatcher = opened.agent().compose(resumes.interceptor, cacheInterceptor({ cache }))
    const caller = recorder()

    dispatcher.dispatch({ origin: origin.url, path, method: 'GET' }, caller.handler)
    await within(caller.settled, 'the caller\'s last callback', 1000)
    // Everything the 412's exchange brings has reached the cache by now.
    await within(resumes.over, 'the resume\'s exchange', 1000)

    expect(caller.calls).toEqual(['onRequestStart', 'onResponseStart 200', 'onResponseData', 'onResponseError'])
    expect((caller.errors[0] as Error & { statusCode?: number }).statusCode).toBe(412)
    expect(caller.body()).toBe('hello')
    expect(origin.seen(path).map((s) => s.headers['if-match'])).toEqual([undefined, '"v1"'])
  })
})

describe('retries of a method as sent: undici.request\'s `get` is not GET (RFC 9110 §9.1)', () => {
  it('does not resume (nor re-send) a lower-case `get` whose body broke off: Range means nothing for an unknown method', async () => {
    const seen: string[] = []
    const sockets = new Set<Socket>()
    const server = createRawServer((socket) => {
      sockets.add(socket)
      let head = ''
      socket.on('data', (data) => {
        head += data.toString('latin1')
        if (!head.includes('\r\n\r\n')) return
        seen.push(head.split('\r\n\r\n')[0]!)
        head = ''
        if (seen.length === 1) {
          socket.write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\netag: "v1"\r\ncache-control: no-store\r\n\r\n01234')
          setTimeout(() => socket.destroy(), 50)
        } else {
          socket.write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\netag: "v1"\r\ncache-control: no-store\r\n\r\n0123456789')
        }
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    opened.add({ close: () => new Promise<void>((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()) }) })
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`
    const cache = createCache({ retry: { baseDelay: 1 } })
    opened.add({ close: () => cache.close() })
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache }))
    await request(url, { method: 'get', dispatcher }).then((r) => r.body.text()).catch(() => undefined)
    expect(seen.map((s) => s.split('\r\n')[0])).toEqual(['get /x HTTP/1.1'])
  })
})
