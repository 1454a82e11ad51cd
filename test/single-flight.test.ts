/**
 * Single-flight: identical concurrent GETs share one origin exchange, through cachedFetch and
 * through the undici interceptor. Every caller gets its own complete body, callers that arrive
 * mid-body are caught up (while the body sent so far is within maxEntrySize), a caller that leaves
 * does not take the others with it, a caller more than maxEntrySize behind holds the exchange back
 * until it catches up and fails if it has stopped reading, a failure reaches every caller from one origin request, a
 * response meant for one user (private, Set-Cookie) is not shared in a shared cache, and no
 * per-key state outlives the exchange, even when a dispatcher below throws.
 *
 * The origins hold their answer behind a gate until the test has seen every request reach the
 * cache (`stats().misses`), so "concurrent" never depends on how fast the machine is.
 */
import { readFileSync } from 'node:fs'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { afterEach, describe, expect, it } from 'vitest'
import { Keyv } from 'keyv'
import { Agent, request, type Dispatcher } from 'undici'
import { cacheInterceptor, createCache, createCachedFetch, type Cache } from '../src/index.js'
import { ON_FLIGHT } from '../src/adapters/interceptor.js'
import { bytes, respond, type Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { gate, settle, waitFor, within, type Gate } from './helpers/wait.js'

interface PrivacyCase {
  readonly name: string
  readonly mode: 'shared' | 'private'
  readonly cacheControl: string
  readonly setCookie: boolean
  readonly oneExchange: boolean
}

const privacy = JSON.parse(readFileSync(new URL('../fixtures/single-flight-privacy.json', import.meta.url), 'utf8')) as { cases: PrivacyCase[] }

const opened = teardown()

afterEach(() => opened.close())

/** Destroyed, not closed, after each test: a test that failed may leave a request hanging. */
function agent (): Agent {
  const made = new Agent()
  opened.add({ close: () => made.destroy() })
  return made
}

interface Reply {
  readonly status: number
  readonly cacheStatus: string | undefined
  /** Set-Cookie, several fields joined with ", ". */
  readonly setCookie: string | undefined
  /** Any field, several joined with ", ". */
  field (name: string): string | undefined
  /** The body, chunk by chunk, as this adapter hands it over. */
  readonly body: AsyncIterator<Buffer>
}

interface Client {
  get (url: string, init?: { headers?: Record<string, string>, signal?: AbortSignal }): Promise<Reply>
}

/** `below`, when given, is an interceptor between the cache and the agent. */
const adapters: { name: string, connect: (cache: Cache, below?: Dispatcher.DispatcherComposeInterceptor) => Client }[] = [
  {
    name: 'cachedFetch',
    connect (cache, below) {
      const cachedFetch = createCachedFetch({ cache, dispatcher: below === undefined ? agent() : agent().compose(below) })
      return {
        async get (url, init) {
          const response = await cachedFetch(url, init)
          const reader: ReadableStreamDefaultReader<Uint8Array> = response.body!.getReader()
          return {
            status: response.status,
            cacheStatus: response.headers.get('cache-status') ?? undefined,
            setCookie: response.headers.get('set-cookie') ?? undefined,
            field: (name) => response.headers.get(name) ?? undefined,
            body: {
              async next () {
                const { done, value } = await reader.read()
                return done ? { done: true, value: undefined } : { done: false, value: Buffer.from(value) }
              }
            }
          }
        }
      }
    }
  },
  {
    name: 'interceptor',
    connect (cache, below) {
      const dispatcher = agent().compose(...(below === undefined ? [] : [below]), cacheInterceptor({ cache }))
      return {
        async get (url, init) {
          const response = await request(url, { dispatcher, headers: init?.headers, signal: init?.signal })
          const joined = (name: string): string | undefined => {
            const value = response.headers[name]
            return Array.isArray(value) ? value.join(', ') : value
          }
          return {
            status: response.statusCode,
            cacheStatus: joined('cache-status'),
            setCookie: joined('set-cookie'),
            field: joined,
            body: (response.body as AsyncIterable<Buffer>)[Symbol.asyncIterator]()
          }
        }
      }
    }
  }
]

/** Reads a body to its end; `received` (when given) counts bytes as they arrive. */
async function readBody (body: AsyncIterator<Buffer>, received?: { bytes: number }): Promise<Buffer> {
  const chunks: Buffer[] = []
  for (;;) {
    const step = await body.next()
    if (step.done === true) return Buffer.concat(chunks)
    chunks.push(step.value)
    if (received !== undefined) received.bytes += step.value.byteLength
  }
}

type Outcome = { ok: true, body: Buffer } | { ok: false, error: unknown }

/** A caller's whole request: headers, then the body read to its end, or what failed. */
async function attempt (client: Client, url: string, init?: { headers?: Record<string, string>, signal?: AbortSignal }): Promise<{ reply?: Reply, outcome: Outcome }> {
  let reply: Reply | undefined
  try {
    reply = await client.get(url, init)
    return { reply, outcome: { ok: true, body: await readBody(reply.body) } }
  } catch (error) {
    return { reply, outcome: { ok: false, error } }
  }
}

/** 'the whole body', or what the caller got instead (a readable failure, and no slow deep compare of bytes). */
function got (outcome: Outcome, body: Buffer): string {
  if (!outcome.ok) return `an error: ${String(outcome.error)}`
  return outcome.body.equals(body) ? 'the whole body' : `a wrong body of ${outcome.body.byteLength} bytes`
}

/** The messages along a failed caller's error and its causes (fetch wraps errors in a TypeError). */
function messages (outcome: Outcome): string[] {
  const found: string[] = []
  if (outcome.ok) return found
  for (let e = outcome.error as { message?: unknown, cause?: unknown } | undefined; e !== undefined && e !== null; e = e.cause as typeof e) {
    if (typeof e.message === 'string') found.push(e.message)
  }
  return found
}

/** The code of a failed caller's error; fetch wraps it as the cause of a TypeError('fetch failed'). */
function errorCode (outcome: Outcome): string | undefined {
  if (outcome.ok) return undefined
  const error = outcome.error as { code?: string, cause?: { code?: string } }
  return error.code ?? error.cause?.code
}

const MISS_STORED = 'cachedfetch; fwd=uri-miss; fwd-status=200; stored'
const MISS_NOT_STORED = 'cachedfetch; fwd=uri-miss; fwd-status=200'

for (const adapter of adapters) {
  describe(`single-flight through ${adapter.name}`, () => {
    /** An origin that answers `body` with `headers`, once the test opens the gate. */
    async function gatedOrigin (body: Buffer, headers: Record<string, string>): Promise<{ server: Origin, answer: Gate }> {
      const answer = gate()
      const server = await opened.origin({
        '/doc': async (_req, res) => {
          await answer.promise
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.byteLength), ...headers })
          res.end(body)
        }
      })
      return { server, answer }
    }

    /** Sends `count` identical GETs and waits until every one has reached the cache and the leader the origin. */
    async function concurrently (client: Client, cache: Cache, server: Origin, count: number): Promise<Promise<{ reply?: Reply, outcome: Outcome }>[]> {
      const before = cache.stats().misses
      const calls = Array.from({ length: count }, () => attempt(client, `${server.url}/doc`))
      await waitFor(() => cache.stats().misses - before === count && server.hits('/doc') >= 1, `${count} requests to reach the cache`)
      return calls
    }

    function expectAllWhole (results: { outcome: Outcome }[], body: Buffer): void {
      expect(results.map((r) => got(r.outcome, body)).filter((g) => g !== 'the whole body')).toEqual([])
    }

    it('shares one exchange among identical callers while an invalidation that may pick other entries is under way', async () => {
      const { server, answer } = await gatedOrigin(Buffer.from('doc'), { 'cache-control': 'max-age=60' })
      server.route('/other', respond(200, { 'cache-control': 'max-age=60' }, 'other'))
      // A store write on its way, which a tag invalidation waits for (src/writes.ts): it is under way meanwhile.
      const held = gate()
      const map = new Map<string, unknown>()
      const store = Object.assign(new Map(), {
        get: (key: string) => map.get(key),
        set: async (key: string, value: unknown) => { await held.promise; map.set(key, value); return true },
        delete: (key: string) => map.delete(key)
      })
      const cache = createCache({ store: store as never })
      const client = adapter.connect(cache)
      await readBody((await client.get(`${server.url}/other`)).body)
      const invalidation = cache.invalidateTag('no-response-has-it')

      const calls = await concurrently(client, cache, server, 20)
      answer.release()
      const results = await Promise.all(calls)
      expectAllWhole(results, Buffer.from('doc'))
      expect(server.hits('/doc')).toBe(1)
      held.release()
      await invalidation
    })

    it('sends 1000 identical concurrent GETs on a cold cache to the origin once; every caller gets the whole body', async () => {
      const body = bytes(10 * 1024)
      const { server, answer } = await gatedOrigin(body, { 'cache-control': 'max-age=60' })
      const cache = createCache()
      const client = adapter.connect(cache)

      const calls = await concurrently(client, cache, server, 1000)
      expect(server.hits('/doc')).toBe(1)
      expect(cache.stats().inFlight).toBe(1)
      answer.release()
      const results = await Promise.all(calls)

      expect(server.hits('/doc')).toBe(1)
      expectAllWhole(results, body)
      expect(results.every((r) => r.reply?.status === 200)).toBe(true)
      const statuses = results.map((r) => r.reply?.cacheStatus)
      expect(statuses.filter((s) => s === MISS_STORED)).toHaveLength(1)
      expect(statuses.filter((s) => s === `${MISS_STORED}; collapsed`)).toHaveLength(999)
      expect(cache.stats().inFlight).toBe(0)

      // The shared answer was stored once: the next caller gets a hit.
      const after = await attempt(client, `${server.url}/doc`)
      expect(after.reply?.cacheStatus).toMatch(/^cachedfetch; hit/)
      expectAllWhole([after], body)
      expect(server.hits('/doc')).toBe(1)
    })

    it('shares one exchange for a response it may not store, and the next request goes to the origin again', async () => {
      const body = bytes(10 * 1024, 3)
      const { server, answer } = await gatedOrigin(body, { 'cache-control': 'no-store' })
      const cache = createCache()
      const client = adapter.connect(cache)

      const calls = await concurrently(client, cache, server, 1000)
      answer.release()
      const results = await Promise.all(calls)

      expect(server.hits('/doc')).toBe(1)
      expectAllWhole(results, body)
      const statuses = results.map((r) => r.reply?.cacheStatus)
      expect(statuses.filter((s) => s === MISS_NOT_STORED)).toHaveLength(1)
      expect(statuses.filter((s) => s === `${MISS_NOT_STORED}; collapsed`)).toHaveLength(999)
      expect(cache.stats().inFlight).toBe(0)

      const later = await attempt(client, `${server.url}/doc`)
      expect(later.reply?.cacheStatus).toBe(MISS_NOT_STORED)
      expectAllWhole([later], body)
      expect(server.hits('/doc')).toBe(2)
    })

    it('catches up callers that arrive while the body is half sent, with one origin request', async () => {
      const body = bytes(64 * 1024, 11)
      const half = body.byteLength / 2
      const rest = gate()
      const server = await opened.origin({
        '/doc': async (_req, res) => {
          res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': String(body.byteLength) })
          res.write(body.subarray(0, half))
          await rest.promise
          res.end(body.subarray(half))
        }
      })
      const cache = createCache()
      const client = adapter.connect(cache)

      const leader = await client.get(`${server.url}/doc`)
      const received = { bytes: 0 }
      const leaderBody = readBody(leader.body, received)
      await waitFor(() => received.bytes >= half, 'the leader to receive the first half')

      const followers = Array.from({ length: 10 }, () => attempt(client, `${server.url}/doc`))
      await waitFor(() => cache.stats().misses === 11, 'the followers to reach the cache')
      // Joined, not sent on: still one exchange, still one origin request.
      expect(cache.stats().inFlight).toBe(1)
      expect(server.hits('/doc')).toBe(1)

      rest.release()
      expect((await leaderBody).equals(body)).toBe(true)
      const results = await Promise.all(followers)
      expectAllWhole(results, body)
      for (const r of results) expect(r.reply?.cacheStatus).toBe(`${MISS_STORED}; collapsed`)
      expect(server.hits('/doc')).toBe(1)
      expect(cache.stats().inFlight).toBe(0)
    })

    describe('callers that abort', () => {
      const body = bytes(64 * 1024, 5)
      const half = body.byteLength / 2

      /** An origin that sends half the body, then waits; `closedEarly` is set when the client hung up first. */
      async function halfwayOrigin (): Promise<{ server: Origin, rest: Gate, state: { closedEarly: boolean, finished: boolean } }> {
        const rest = gate()
        const state = { closedEarly: false, finished: false }
        const server = await opened.origin({
          '/doc': async (_req, res) => {
            res.on('close', () => { if (!res.writableFinished) state.closedEarly = true })
            res.on('finish', () => { state.finished = true })
            res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': String(body.byteLength) })
            res.write(body.subarray(0, half))
            await rest.promise
            if (!res.destroyed) res.end(body.subarray(half))
          }
        })
        return { server, rest, state }
      }

      /** Five callers, the first of them the leader, all with their first half of the body. */
      async function fiveCallers (client: Client, cache: Cache, server: Origin): Promise<{ controllers: AbortController[], reads: Promise<Outcome>[] }> {
        const controllers = Array.from({ length: 5 }, () => new AbortController())
        const received = controllers.map(() => ({ bytes: 0 }))
        const reads: Promise<Outcome>[] = []
        const read = async (i: number): Promise<Outcome> => {
          try {
            const reply = await client.get(`${server.url}/doc`, { signal: controllers[i]!.signal })
            return { ok: true, body: await readBody(reply.body, received[i]) }
          } catch (error) {
            return { ok: false, error }
          }
        }
        reads.push(read(0))
        await waitFor(() => cache.stats().inFlight === 1, 'the leader to start the exchange')
        for (let i = 1; i < 5; i++) reads.push(read(i))
        await waitFor(() => received.every((r) => r.bytes >= half), 'every caller to receive the first half')
        return { controllers, reads }
      }

      it('a follower that aborts leaves; the others get the whole body from the same exchange', async () => {
        const { server, rest, state } = await halfwayOrigin()
        const cache = createCache()
        const client = adapter.connect(cache)
        const { controllers, reads } = await fiveCallers(client, cache, server)

        controllers[2]!.abort()
        expect((await reads[2]!).ok).toBe(false)
        rest.release()
        const outcomes = await Promise.all(reads)

        for (const i of [0, 1, 3, 4]) expect(got(outcomes[i]!, body)).toBe('the whole body')
        expect(server.hits('/doc')).toBe(1)
        expect(state.finished).toBe(true)
        expect(state.closedEarly).toBe(false)
        expect(cache.stats().inFlight).toBe(0)
      })

      it('when the leader\'s consumer aborts, the exchange goes on for the followers', async () => {
        const { server, rest, state } = await halfwayOrigin()
        const cache = createCache()
        const client = adapter.connect(cache)
        const { controllers, reads } = await fiveCallers(client, cache, server)

        controllers[0]!.abort()
        expect((await reads[0]!).ok).toBe(false)
        rest.release()
        const outcomes = await Promise.all(reads)

        for (const i of [1, 2, 3, 4]) expect(got(outcomes[i]!, body)).toBe('the whole body')
        expect(server.hits('/doc')).toBe(1)
        expect(state.closedEarly).toBe(false)
        // The completed exchange was stored, though the caller that started it left.
        const hit = await attempt(client, `${server.url}/doc`)
        expect(hit.reply?.cacheStatus).toMatch(/^cachedfetch; hit/)
        expect(got(hit.outcome, body)).toBe('the whole body')
      })

      it('when every caller aborts mid-body, the origin connection is closed', async () => {
        const { server, rest, state } = await halfwayOrigin()
        const cache = createCache()
        const client = adapter.connect(cache)
        const { controllers, reads } = await fiveCallers(client, cache, server)

        for (const controller of controllers) controller.abort()
        const outcomes = await Promise.all(reads)
        expect(outcomes.every((o) => !o.ok)).toBe(true)
        await waitFor(() => state.closedEarly, 'the origin to see its client hang up')
        rest.release()
        await waitFor(() => cache.stats().inFlight === 0, 'the flight to end')
        expect(server.hits('/doc')).toBe(1)
        expect(state.finished).toBe(false)
      })

      it('when every caller aborts before the response starts, the origin connection is closed', async () => {
        const answer = gate()
        const state = { closedEarly: false }
        const server = await opened.origin({
          '/doc': async (_req, res) => {
            res.on('close', () => { if (!res.writableFinished) state.closedEarly = true })
            await answer.promise
            if (!res.destroyed) res.writeHead(200, { 'cache-control': 'max-age=60' }).end('late')
          }
        })
        const cache = createCache()
        const client = adapter.connect(cache)
        const controllers = Array.from({ length: 5 }, () => new AbortController())
        const calls = controllers.map((controller) => attempt(client, `${server.url}/doc`, { signal: controller.signal }))
        await waitFor(() => cache.stats().misses === 5 && server.hits('/doc') === 1, 'every caller to reach the cache')

        for (const controller of controllers) controller.abort()
        const results = await Promise.all(calls)
        expect(results.every((r) => !r.outcome.ok)).toBe(true)
        await waitFor(() => state.closedEarly, 'the origin to see its client hang up')
        answer.release()
        await waitFor(() => cache.stats().inFlight === 0, 'the flight to end')
        expect(server.hits('/doc')).toBe(1)
      })
    })

    describe('a failed exchange', () => {
      const cases = [
        { when: 'before the response', retry: false, originRequests: 1 },
        { when: 'half way through the body', retry: false, originRequests: 1 },
        // With retries the flight retries once for all its callers: 1 + 2 attempts, not 3 per caller.
        { when: 'before the response', retry: { limit: 2, baseDelay: 1, maxDelay: 1 }, originRequests: 3 }
      ] as const
      for (const { when, retry, originRequests } of cases) {
        const how = retry === false ? 'retry: false' : `retry limit ${retry.limit}`
        it(`fails every caller alike, with ${originRequests} origin request(s), when the origin drops the connection ${when} (${how})`, async () => {
          const body = bytes(32 * 1024, 9)
          const fail = gate()
          let served = 0
          const server = await opened.origin({
            '/doc': async (req, res) => {
              if (served++ >= originRequests) {
                res.writeHead(200, { 'cache-control': 'no-store', 'content-length': String(body.byteLength) }).end(body)
                return
              }
              if (when === 'half way through the body') {
                res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': String(body.byteLength) })
                res.write(body.subarray(0, body.byteLength / 2))
              }
              await fail.promise
              req.socket.destroy()
            }
          })
          const cache = createCache({ retry })
          const client = adapter.connect(cache)

          const calls = Array.from({ length: 20 }, () => attempt(client, `${server.url}/doc`))
          await waitFor(() => cache.stats().misses === 20 && server.hits('/doc') === 1, 'every caller to reach the cache')
          fail.release()
          const results = await Promise.all(calls)

          // Every caller fails, with the same error: the one exchange's.
          expect(results.filter((r) => r.outcome.ok)).toHaveLength(0)
          const codes = new Set(results.map((r) => errorCode(r.outcome)))
          expect([...codes]).toEqual(['UND_ERR_SOCKET'])
          expect(server.hits('/doc')).toBe(originRequests)
          expect(cache.stats().inFlight).toBe(0)

          // The failure was not remembered: the next caller asks the origin again.
          const next = await attempt(client, `${server.url}/doc`)
          expect(got(next.outcome, body)).toBe('the whole body')
          expect(server.hits('/doc')).toBe(originRequests + 1)
        })
      }
    })

    describe('requests that differ in a header', () => {
      const cases: { field: string, values: [string, string] }[] = [
        { field: 'authorization', values: ['Bearer alice', 'Bearer bob'] },
        { field: 'accept-language', values: ['en', 'fr'] },
        { field: 'x-tenant', values: ['one', 'two'] }
      ]
      for (const { field, values } of cases) {
        it(`are not collapsed when ${field} differs: each gets the origin's answer to its own request`, async () => {
          const answer = gate()
          const server = await opened.origin({
            '/doc': async (req, res) => {
              await answer.promise
              res.writeHead(200, { 'cache-control': 'public, max-age=60', 'content-type': 'text/plain' })
              res.end(`for ${String(req.headers[field])}`)
            }
          })
          const cache = createCache()
          const client = adapter.connect(cache)

          const calls = values.map((value) => attempt(client, `${server.url}/doc`, { headers: { [field]: value } }))
          await waitFor(() => cache.stats().misses === 2, 'both requests to reach the cache')
          await waitFor(() => server.hits('/doc') === 2, 'each request to reach the origin on its own')
          answer.release()
          const results = await Promise.all(calls)

          expect(results.map((r) => r.outcome.ok ? r.outcome.body.toString() : r.outcome.error)).toEqual(values.map((v) => `for ${v}`))
          for (const r of results) expect(r.reply?.cacheStatus).not.toMatch(/collapsed/)
          expect(server.seen('/doc').map((s) => s.headers[field]).sort()).toEqual([...values].sort())
        })
      }

      it('are collapsed when the same fields come in another order', async () => {
        const answer = gate()
        const server = await opened.origin({
          '/doc': async (_req, res) => {
            await answer.promise
            res.writeHead(200, { 'cache-control': 'public, max-age=60', 'content-type': 'text/plain' })
            res.end('shared')
          }
        })
        const cache = createCache()
        const client = adapter.connect(cache)
        const fields: [string, string][] = [['x-one', '1'], ['x-two', '2'], ['accept', 'text/plain'], ['x-three', '3'], ['x-four', '4']]

        const calls = [fields, [...fields].reverse()].map((order) => attempt(client, `${server.url}/doc`, { headers: Object.fromEntries(order) }))
        await waitFor(() => cache.stats().misses === 2, 'both requests to reach the cache')
        answer.release()
        const results = await Promise.all(calls)

        expect(results.map((r) => r.outcome.ok ? r.outcome.body.toString() : r.outcome.error)).toEqual(['shared', 'shared'])
        expect(results.filter((r) => r.reply?.cacheStatus?.includes('collapsed') === true)).toHaveLength(1)
        expect(server.hits('/doc')).toBe(1)
      })
    })

    describe('the catch-up bound, maxEntrySize', () => {
      const body = bytes(64 * 1024, 13)
      const cases = [
        { sentBeforeJoin: 512, originRequests: 1, collapsed: true },
        { sentBeforeJoin: 8 * 1024, originRequests: 2, collapsed: false }
      ]
      for (const { sentBeforeJoin, originRequests, collapsed } of cases) {
        it(`a caller arriving after ${sentBeforeJoin} bytes of a body went out (maxEntrySize 1024) ${collapsed ? 'joins' : 'makes its own request'} and gets the whole body`, async () => {
          const rest = gate()
          const server = await opened.origin({
            '/doc': async (_req, res) => {
              res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'application/octet-stream' })
              res.write(body.subarray(0, sentBeforeJoin))
              await rest.promise
              // The rest trickles out in slices.
              for (let offset = sentBeforeJoin; offset < body.byteLength; offset += 8 * 1024) {
                res.write(body.subarray(offset, Math.min(offset + 8 * 1024, body.byteLength)))
                await new Promise((resolve) => setImmediate(resolve))
              }
              res.end()
            }
          })
          const cache = createCache({ maxEntrySize: 1024 })
          const client = adapter.connect(cache)

          const leader = await client.get(`${server.url}/doc`)
          const received = { bytes: 0 }
          const leaderBody = readBody(leader.body, received)
          await waitFor(() => received.bytes >= sentBeforeJoin, 'the leader to receive the first bytes')

          const late = attempt(client, `${server.url}/doc`)
          await waitFor(() => cache.stats().misses === 2 && server.hits('/doc') === originRequests, 'the late caller to reach the cache')
          rest.release()

          expect((await leaderBody).equals(body)).toBe(true)
          const result = await late
          expect(got(result.outcome, body)).toBe('the whole body')
          expect(result.reply?.cacheStatus?.endsWith('; collapsed')).toBe(collapsed)
          expect(server.hits('/doc')).toBe(originRequests)
          await waitFor(() => cache.stats().inFlight === 0, 'the flights to end')
        })
      }
    })

    it('hands a caller that joined the answer without the fields of the first caller\'s connection (RFC 9110 §7.6.1)', async () => {
      const body = bytes(1024)
      const { server, answer } = await gatedOrigin(body, {
        'cache-control': 'max-age=60', connection: 'keep-alive, x-hop', 'keep-alive': 'timeout=5', 'x-hop': 'this connection', 'x-end': 'end to end'
      })
      const cache = createCache()
      const client = adapter.connect(cache)

      const [first, second] = await concurrently(client, cache, server, 2)
      answer.release()
      const [leader, follower] = [(await first!).reply!, (await second!).reply!]
      // Not stored: a response whose Connection names a field is not (src/cache.ts).
      expect([leader.cacheStatus, follower.cacheStatus]).toEqual([MISS_NOT_STORED, `${MISS_NOT_STORED}; collapsed`])
      const fields = (reply: Reply): Array<string | undefined> => ['connection', 'keep-alive', 'x-hop', 'x-end'].map((name) => reply.field(name))
      expect(fields(follower)).toEqual([undefined, undefined, undefined, 'end to end'])
      // The first caller's answer came on its own connection: all of it, as the origin sent it.
      expect(fields(leader)).toEqual(['keep-alive, x-hop', 'timeout=5', 'this connection', 'end to end'])
      expect(server.hits('/doc')).toBe(1)
    })

    it('does not stall a caller while another identical caller has not read its body yet', async () => {
      // Bigger than the buffers of fetch's and undici.request's bodies, well within maxEntrySize.
      const body = bytes(1024 * 1024, 17)
      const { server, answer } = await gatedOrigin(body, { 'cache-control': 'max-age=60' })
      const cache = createCache()
      const client = adapter.connect(cache)

      const first = client.get(`${server.url}/doc`)
      await waitFor(() => cache.stats().misses === 1, 'the first request to reach the cache')
      const second = client.get(`${server.url}/doc`)
      await waitFor(() => cache.stats().misses === 2, 'the second request to reach the cache')
      answer.release()
      const [a, b] = await Promise.all([first, second])
      expect(b.cacheStatus).toBe(`${MISS_STORED}; collapsed`)

      // One body after the other, as `const x = await a.text(); const y = await b.text()` does.
      expect((await within(readBody(a.body), 'the first body')).equals(body)).toBe(true)
      expect((await within(readBody(b.body), 'the second body')).equals(body)).toBe(true)
      expect(server.hits('/doc')).toBe(1)
    })

    for (const idle of ['leader', 'follower'] as const) {
      it(`fails a ${idle} that stops reading more than maxEntrySize behind, and the other caller reads the whole body`, async () => {
        // Sixteen times maxEntrySize: far more than the idle caller's own buffers and its queue together.
        const body = bytes(1024 * 1024, 31)
        const { server, answer } = await gatedOrigin(body, { 'cache-control': 'max-age=60' })
        const cache = createCache({ maxEntrySize: 64 * 1024 })
        const client = adapter.connect(cache)

        const first = client.get(`${server.url}/doc`)
        await waitFor(() => cache.stats().misses === 1, 'the first request to reach the cache')
        const second = client.get(`${server.url}/doc`)
        await waitFor(() => cache.stats().misses === 2, 'the second request to reach the cache')
        answer.release()
        const [leader, follower] = await Promise.all([first, second])
        expect(follower.cacheStatus).toBe(`${MISS_NOT_STORED}; collapsed`)
        const [idler, reader] = idle === 'leader' ? [leader, follower] : [follower, leader]

        // The reader waits for the idle caller until it counts as stopped (a second), then reads on.
        expect((await within(readBody(reader.body), 'the reading caller\'s body', 5000)).equals(body)).toBe(true)
        const idled: Outcome = await readBody(idler.body).then((read) => ({ ok: true, body: read }), (error: unknown) => ({ ok: false, error }))
        expect(errorCode(idled)).toBe('ERR_SHARED_BODY_OVERRUN')
        expect(server.hits('/doc')).toBe(1)
        await waitFor(() => cache.stats().inFlight === 0, 'the flight to end')
      })
    }

    describe('responses meant for one user', () => {
      /**
       * `/doc` answers every request with its own body and, with `setCookie`, its own session; the
       * first answer waits for the gate, so that all callers have reached the cache before it.
       */
      async function perRequestOrigin (c: PrivacyCase): Promise<{ server: Origin, answer: Gate }> {
        const answer = gate()
        let served = 0
        const server = await opened.origin({
          '/doc': async (_req, res) => {
            const n = ++served
            if (n === 1) await answer.promise
            const headers: Record<string, string> = { 'content-type': 'text/plain', 'cache-control': c.cacheControl }
            if (c.setCookie) headers['set-cookie'] = `session=user-${n}; HttpOnly`
            res.writeHead(200, headers).end(`for request ${n}`)
          }
        })
        return { server, answer }
      }

      for (const c of privacy.cases) {
        it(`${c.oneExchange ? 'shares' : 'does not share'} ${c.name}`, async () => {
          const { server, answer } = await perRequestOrigin(c)
          const cache = createCache({ shared: c.mode === 'shared' })
          const client = adapter.connect(cache)

          const calls = await concurrently(client, cache, server, 5)
          answer.release()
          const results = await Promise.all(calls)

          const bodies = results.map((r) => r.outcome.ok ? r.outcome.body.toString() : `an error: ${String(r.outcome.error)}`)
          const cookies = results.map((r) => r.reply?.setCookie)
          if (c.oneExchange) {
            expect(server.hits('/doc')).toBe(1)
            expect(bodies).toEqual(results.map(() => 'for request 1'))
            if (c.setCookie) expect(cookies).toEqual(results.map(() => 'session=user-1; HttpOnly'))
          } else {
            // Each caller has the answer to a request of its own: no body, and no session, twice.
            expect(server.hits('/doc')).toBe(5)
            expect([...bodies].sort()).toEqual([1, 2, 3, 4, 5].map((n) => `for request ${n}`))
            if (c.setCookie) {
              expect(cookies).toEqual(bodies.map((b) => `session=user-${b.slice('for request '.length)}; HttpOnly`))
            } else {
              expect(cookies).toEqual(results.map(() => undefined))
            }
          }
          expect(results.every((r) => r.reply?.status === 200)).toBe(true)
          await waitFor(() => cache.stats().inFlight === 0, 'the flights to end')
        })
      }

      it('does not report a caller that went to the origin on its own as collapsed', async () => {
        const { server, answer } = await perRequestOrigin(privacy.cases.find((c) => c.mode === 'shared' && c.setCookie && !c.oneExchange)!)
        const cache = createCache()
        const client = adapter.connect(cache)

        const calls = await concurrently(client, cache, server, 5)
        answer.release()
        const results = await Promise.all(calls)

        expect(server.hits('/doc')).toBe(5)
        expect(results.map((r) => r.reply?.cacheStatus)).toEqual(results.map(() => MISS_NOT_STORED))
      })

      it('closes the exchange of a leader that left before its private answer came; the others are answered on their own', async () => {
        const answer = gate()
        const first = { closedEarly: false }
        let served = 0
        const server = await opened.origin({
          '/doc': async (_req, res) => {
            const n = ++served
            const headers = { 'content-type': 'text/plain', 'cache-control': 'private, max-age=60' }
            if (n > 1) {
              res.writeHead(200, headers).end(`for request ${n}`)
              return
            }
            res.on('close', () => { if (!res.writableFinished) first.closedEarly = true })
            await answer.promise
            // A body that goes on until somebody hangs up: nobody is left to read it.
            res.writeHead(200, headers).write('for request 1, and more to come')
          }
        })
        const cache = createCache({ shared: true })
        const client = adapter.connect(cache)
        const leaving = new AbortController()

        const leader = attempt(client, `${server.url}/doc`, { signal: leaving.signal })
        await waitFor(() => server.hits('/doc') === 1, 'the leader to reach the origin')
        const followers = [attempt(client, `${server.url}/doc`), attempt(client, `${server.url}/doc`)]
        await waitFor(() => cache.stats().misses === 3, 'the followers to reach the cache')
        leaving.abort()
        expect((await leader).outcome.ok).toBe(false)
        answer.release()
        const results = await within(Promise.all(followers), 'the followers')

        const bodies = results.map((r) => r.outcome.ok ? r.outcome.body.toString() : `an error: ${String(r.outcome.error)}`)
        expect([...bodies].sort()).toEqual(['for request 2', 'for request 3'])
        expect(results.map((r) => r.reply?.cacheStatus)).toEqual([MISS_NOT_STORED, MISS_NOT_STORED])
        expect(server.hits('/doc')).toBe(3)
        await waitFor(() => first.closedEarly, 'the origin to see the abandoned exchange closed', 1000)
        await waitFor(() => cache.stats().inFlight === 0, 'the flight to end', 1000)
      })
    })

    for (const store of ['memory', 'Keyv'] as const) {
      it(`ends the flight when a dispatcher below throws, so that the next identical request completes (${store} store)`, async () => {
        const server = await opened.origin({ '/doc': respond(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' }, 'ok') })
        // It throws for the next request, as undici's own interceptors do for options they refuse. (Not
        // for a marker header: a header would make the requests differ, so they would never share a flight.)
        let throwNext = true
        const strict: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (opts, handler) => {
          if (throwNext) {
            throwNext = false
            throw new TypeError('refused dispatch options')
          }
          return dispatch(opts, handler)
        }
        const cache = createCache(store === 'Keyv' ? { store: new Keyv() } : {})
        const client = adapter.connect(cache, strict)

        const first = await within(attempt(client, `${server.url}/doc`), 'the first request')
        expect(first.outcome.ok).toBe(false)
        expect(messages(first.outcome)).toContain('refused dispatch options')
        expect(server.hits('/doc')).toBe(0)

        const second = await within(attempt(client, `${server.url}/doc`), 'the identical request after it')
        expect(got(second.outcome, Buffer.from('ok'))).toBe('the whole body')
        expect(server.hits('/doc')).toBe(1)
        expect(cache.stats().inFlight).toBe(0)
      })
    }
  })
}

describe('single-flight shares an exchange only among callers on the same way out', () => {
  /** An interceptor below the cache that sends its own user's credentials, as a per-tenant Agent would. */
  const asUser = (user: string): Dispatcher.DispatcherComposeInterceptor => (dispatch) => (opts, handler) =>
    dispatch({ ...opts, headers: { ...(opts.headers as Record<string, string> | undefined), authorization: `Bearer ${user}` } }, handler)

  it('gives callers on two dispatchers over one cache their own answers: one user\'s no-store answer is not another\'s', async () => {
    const open = gate()
    const origin = await opened.origin({
      '/me': async (req, res) => {
        await open.promise
        res.writeHead(200, { 'cache-control': 'no-store' }).end(`hello ${String(req.headers.authorization)}`)
      }
    })
    const cache = createCache()
    const alice = opened.agent().compose(asUser('alice'), cacheInterceptor({ cache }))
    const bob = opened.agent().compose(asUser('bob'), cacheInterceptor({ cache }))
    const read = async (dispatcher: Dispatcher): Promise<string> => await (await request(`${origin.url}/me`, { dispatcher })).body.text()
    const answers = [read(alice), read(bob), read(alice)]
    await waitFor(() => origin.hits('/me') === 2, 'one exchange for each way out')
    open.release()
    expect(await Promise.all(answers)).toEqual(['hello Bearer alice', 'hello Bearer bob', 'hello Bearer alice'])
    expect(origin.hits('/me')).toBe(2)
  })

  it('gives a caller with timeouts of its own an exchange of its own: another caller\'s headersTimeout decides nothing of its answer', async () => {
    const open = gate()
    const origin = await opened.origin({
      '/slow': async (_req, res) => {
        await open.promise
        res.writeHead(200, { 'cache-control': 'max-age=60' }).end('slow')
      }
    })
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache: createCache({ retry: false }) }))
    const impatient = request(`${origin.url}/slow`, { dispatcher, headersTimeout: 200 }).then(async (r) => await r.body.text(), (error: Error) => error.name)
    const patient = request(`${origin.url}/slow`, { dispatcher }).then(async (r) => await r.body.text())
    await waitFor(() => origin.hits('/slow') === 2, 'one exchange for each caller')
    expect(await impatient).toBe('HeadersTimeoutError')
    open.release()
    expect(await patient).toBe('slow')
  })
})

describe('single-flight keeps no state beyond the exchange', () => {
  it('leaves no flight or refresh behind after 10 000 distinct URLs, through both adapters on one cache', async () => {
    const server = await opened.origin({
      '/item': (req, res) => {
        const n = Number(new URL(req.url!, 'http://origin.test').searchParams.get('n'))
        res.writeHead(200, { 'cache-control': n % 4 < 2 ? 'max-age=60' : 'no-store', 'content-type': 'text/plain' })
        res.end(`item ${n}`)
      }
    })
    const cache = createCache({ maxEntries: 20_000 })
    const clients = adapters.map((adapter) => adapter.connect(cache))

    const wrong: number[] = []
    for (let batch = 0; batch < 100; batch++) {
      const calls: Promise<void>[] = []
      for (let n = batch * 100; n < batch * 100 + 100; n++) {
        // Every twentieth URL through cachedFetch, the others through the interceptor (the cheaper
        // client; both use the cache's one flight table); every tenth asked for twice at once.
        const client = clients[n % 20 === 0 ? 0 : 1]!
        const copies = n % 10 === 0 ? 2 : 1
        for (let copy = 0; copy < copies; copy++) {
          calls.push(attempt(client, `${server.url}/item?n=${n}`).then(({ outcome }) => {
            if (!outcome.ok || outcome.body.toString() !== `item ${n}`) wrong.push(n)
          }))
        }
      }
      await Promise.all(calls)
    }

    expect(wrong).toEqual([])
    expect(server.requests.length).toBe(10_000)
    expect(cache.stats().inFlight).toBe(0)
    expect(cache.stats().refreshing).toBe(0)
  }, 90_000) // 10 000 real round trips: 7 to 16 s on an idle two-core machine, twice that when it is busy.
})

/** A raw handler on undici's new API that records everything it is told. */
class RecordingHandler implements Dispatcher.DispatchHandler {
  controller: Dispatcher.DispatchController | undefined
  headers: Record<string, string | string[] | undefined> = {}
  readonly chunks: Buffer[] = []
  ended = false
  error: Error | undefined
  readonly finished: Promise<void>
  #finish!: () => void
  whenData: ((controller: Dispatcher.DispatchController, chunk: Buffer) => void) | undefined

  constructor () {
    this.finished = new Promise<void>((resolve) => { this.#finish = resolve })
  }

  get received (): number {
    return this.chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0)
  }

  /** What the handler was given, as one buffer (copied: a chunk it was given may change later). */
  get body (): Buffer {
    return Buffer.concat(this.chunks)
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.controller = controller
  }

  onResponseStart (_controller: Dispatcher.DispatchController, _status: number, headers: Record<string, string | string[] | undefined>): void {
    this.headers = headers
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.chunks.push(Buffer.from(chunk))
    this.whenData?.(controller, chunk)
  }

  onResponseEnd (): void {
    this.ended = true
    this.#finish()
  }

  onResponseError (_controller: Dispatcher.DispatchController, error: Error): void {
    this.error = error
    this.#finish()
  }
}

/** A caller with bugs: its onResponseData throws, and so does the onResponseError that follows. */
class ThrowingHandler extends RecordingHandler {
  override onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    super.onResponseData(controller, chunk)
    throw new Error('a bug in this caller\'s onResponseData')
  }

  override onResponseError (controller: Dispatcher.DispatchController, error: Error): void {
    super.onResponseError(controller, error)
    throw new Error('a bug in this caller\'s onResponseError')
  }
}

describe('single-flight into raw undici handlers', () => {
  function get (dispatcher: Dispatcher, server: Origin, handler: Dispatcher.DispatchHandler): void {
    dispatcher.dispatch({ origin: server.url, path: '/doc', method: 'GET', headers: {} }, handler)
  }

  for (const pauser of ['leader', 'follower'] as const) {
    it(`a ${pauser} that pauses gets nothing more until it resumes; both callers then get the whole body`, async () => {
      const body = bytes(64 * 1024, 19)
      const first = 4 * 1024
      const rest = gate()
      let originDone = false
      const server = await opened.origin({
        '/doc': async (_req, res) => {
          res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': String(body.byteLength) })
          res.write(body.subarray(0, first))
          await rest.promise
          res.end(body.subarray(first), () => { originDone = true })
        }
      })
      const cache = createCache()
      const dispatcher = agent().compose(cacheInterceptor({ cache }))
      const leader = new RecordingHandler()
      const follower = new RecordingHandler()
      const paused = pauser === 'leader' ? leader : follower
      paused.whenData = (controller) => { if (paused.chunks.length === 1) controller.pause() }

      get(dispatcher, server, leader)
      await waitFor(() => leader.chunks.length > 0, 'the leader\'s first chunk')
      get(dispatcher, server, follower)
      await waitFor(() => follower.chunks.length > 0, 'the follower to be caught up')
      expect(follower.headers['cache-status']).toBe(`${MISS_STORED}; collapsed`)

      rest.release()
      await waitFor(() => originDone, 'the origin to send the rest')
      await settle()
      expect(paused.chunks).toHaveLength(1)
      expect(paused.ended).toBe(false)

      paused.controller!.resume()
      await within(Promise.all([leader.finished, follower.finished]), 'both bodies')
      expect(leader.error).toBeUndefined()
      expect(follower.error).toBeUndefined()
      expect(leader.body.equals(body)).toBe(true)
      expect(follower.body.equals(body)).toBe(true)
      expect(server.hits('/doc')).toBe(1)
      expect(cache.stats().inFlight).toBe(0)
    })
  }

  it('a caller that pauses at every chunk and resumes a turn later gets the whole body beside one that never pauses, however far past maxEntrySize', async () => {
    // What fetch does under load: its body's buffer is small, so it pauses at nearly every chunk and resumes as it is read.
    const body = bytes(1024 * 1024, 37)
    const answer = gate()
    const server = await opened.origin({
      '/doc': async (_req, res) => {
        await answer.promise
        res.writeHead(200, { 'cache-control': 'no-store', 'content-length': String(body.byteLength) })
        res.end(body)
      }
    })
    const cache = createCache({ maxEntrySize: 16 * 1024 })
    const dispatcher = agent().compose(cacheInterceptor({ cache }))
    const reader = new RecordingHandler()
    const pauser = new RecordingHandler()
    pauser.whenData = (controller) => {
      controller.pause()
      setImmediate(() => controller.resume())
    }
    get(dispatcher, server, reader)
    await waitFor(() => cache.stats().misses === 1, 'the first caller to reach the cache')
    get(dispatcher, server, pauser)
    await waitFor(() => cache.stats().misses === 2, 'the second caller to reach the cache')
    answer.release()

    await within(Promise.all([reader.finished, pauser.finished]), 'both bodies')
    expect(pauser.error).toBeUndefined()
    expect(pauser.body.equals(body)).toBe(true)
    expect(reader.body.equals(body)).toBe(true)
    expect(server.hits('/doc')).toBe(1)
  })

  it('a caller that joins from inside another caller\'s callback, just before the response ends, gets the whole body', async () => {
    const body = bytes(2 * 1024, 23)
    // One write: headers, body and end reach undici in one piece and are handed on in one go.
    const server = await opened.origin({
      '/doc': (_req, res) => {
        res.writeHead(200, { 'cache-control': 'no-store', 'content-length': String(body.byteLength) })
        res.end(body)
      }
    })
    const cache = createCache()
    const dispatcher = agent().compose(cacheInterceptor({ cache }))
    const leader = new RecordingHandler()
    const joiner = new RecordingHandler()
    leader.whenData = () => { if (leader.chunks.length === 1) get(dispatcher, server, joiner) }

    get(dispatcher, server, leader)
    await within(Promise.all([leader.finished, joiner.finished]), 'both bodies')

    expect(leader.body.equals(body)).toBe(true)
    expect(joiner.error).toBeUndefined()
    expect(joiner.ended).toBe(true)
    expect(joiner.received).toBe(body.byteLength)
    expect(joiner.body.equals(body)).toBe(true)
  })

  /** `/doc` answers once both callers have reached the cache: `body` in 4 KiB writes. */
  async function twoCallers (body: Buffer, maxEntrySize: number): Promise<{ server: Origin, cache: Cache, leader: RecordingHandler, follower: RecordingHandler, start: () => Promise<void> }> {
    const answer = gate()
    const server = await opened.origin({
      '/doc': async (_req, res) => {
        await answer.promise
        res.writeHead(200, { 'cache-control': 'no-store', 'content-length': String(body.byteLength) })
        for (let at = 0; at < body.byteLength; at += 4096) res.write(body.subarray(at, at + 4096))
        res.end()
      }
    })
    const cache = createCache({ maxEntrySize })
    const dispatcher = agent().compose(cacheInterceptor({ cache }))
    const leader = new RecordingHandler()
    const follower = new RecordingHandler()
    const start = async (): Promise<void> => {
      get(dispatcher, server, leader)
      await waitFor(() => cache.stats().misses === 1, 'the leader to reach the cache')
      get(dispatcher, server, follower)
      await waitFor(() => cache.stats().misses === 2, 'the follower to reach the cache')
      answer.release()
    }
    return { server, cache, leader, follower, start }
  }

  it('a caller that pauses after it aborted (as a legacy handler whose onData aborts and returns false does) does not hold back the caller left', async () => {
    const body = bytes(256 * 1024, 41)
    const { server, leader, follower, start } = await twoCallers(body, 16 * 1024)
    leader.whenData = (controller) => {
      if (leader.chunks.length > 1) return
      controller.abort(new Error('the leader is done'))
      // undici's controllers take pause() and resume() after abort() as no-ops.
      controller.pause()
    }
    await start()

    await within(follower.finished, 'the follower\'s body')
    expect(follower.error).toBeUndefined()
    expect(follower.body.equals(body)).toBe(true)
    expect(leader.error?.message).toBe('the leader is done')
    expect(server.hits('/doc')).toBe(1)
  })

  it('a caller that resumes after it aborted while paused does not keep the origin flowing past the caller left, which pauses', async () => {
    const body = bytes(256 * 1024, 43)
    const { server, leader, follower, start } = await twoCallers(body, 16 * 1024)
    leader.whenData = (controller) => {
      if (leader.chunks.length > 1) return
      controller.pause()
      setImmediate(() => {
        controller.abort(new Error('the leader is done'))
        controller.resume()
      })
    }
    follower.whenData = (controller) => { if (follower.chunks.length === 1) controller.pause() }
    await start()
    await waitFor(() => leader.error !== undefined, 'the leader to abort')

    // The follower is the only caller and it is paused: the origin waits for it, as its own
    // connection would, however long it takes (past the second after which a caller holding
    // others back fails with ERR_SHARED_BODY_OVERRUN).
    await new Promise((resolve) => setTimeout(resolve, 1500))
    expect(follower.error).toBeUndefined()
    follower.controller!.resume()
    await within(follower.finished, 'the follower\'s body')
    expect(follower.error).toBeUndefined()
    expect(follower.body.equals(body)).toBe(true)
    expect(server.hits('/doc')).toBe(1)
  })

  it('a caller that keeps its controller after its response ended does not keep the exchange in memory', async () => {
    // undici's own handlers keep their controller as long as the response body they made lives.
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const body = bytes(64 * 1024, 47)
    const server = await opened.origin({ '/doc': respond(200, { 'cache-control': 'no-store', 'content-length': String(body.byteLength) }, body) })
    const dispatcher = agent().compose(cacheInterceptor({ cache: createCache() }))
    const caller = new RecordingHandler()
    let made = false
    let collected = false
    // Not a WeakRef: V8 keeps a WeakRef's target alive until the job that made it is over, which
    // under vitest outlasted this test's collections.
    const watch = new FinalizationRegistry(() => { collected = true })
    const onFlight = (flight: object | undefined): void => {
      if (flight === undefined) return
      made = true
      watch.register(flight, undefined)
    }
    dispatcher.dispatch({ origin: server.url, path: '/doc', method: 'GET', headers: {}, [ON_FLIGHT]: onFlight } as Dispatcher.DispatchOptions, caller)
    await within(caller.finished, 'the body')
    expect(caller.body.equals(body)).toBe(true)
    expect(made).toBe(true)

    for (let i = 0; i < 10 && !collected; i++) {
      gc()
      await settle()
    }
    expect(caller.controller).toBeDefined()
    expect(collected).toBe(true)
    // Once let go, what the caller may still call on its controller changes nothing and throws nothing.
    caller.controller!.pause()
    caller.controller!.resume()
    caller.controller!.abort(new Error('too late'))
    await settle()
    expect(caller.error).toBeUndefined()
    expect(caller.ended).toBe(true)
  })

  it('a caller that overwrites the chunks it is given does not change what another caller receives', async () => {
    const body = bytes(32 * 1024, 29)
    const answer = gate()
    const server = await opened.origin({
      '/doc': async (_req, res) => {
        await answer.promise
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': String(body.byteLength) })
        res.end(body)
      }
    })
    const cache = createCache()
    const dispatcher = agent().compose(cacheInterceptor({ cache }))
    // A handler owns the chunks it is given (it may decode in place): this one zeroes them once read.
    const scribbler = new RecordingHandler()
    scribbler.whenData = (_controller, chunk) => { chunk.fill(0) }
    get(dispatcher, server, scribbler)
    await waitFor(() => cache.stats().misses === 1, 'the first caller to reach the cache')
    const other = request(`${server.url}/doc`, { dispatcher })
    await waitFor(() => cache.stats().misses === 2, 'the second caller to reach the cache')
    answer.release()

    const response = await other
    expect(response.headers['cache-status']).toBe(`${MISS_STORED}; collapsed`)
    const otherBody = Buffer.from(await response.body.arrayBuffer())
    await scribbler.finished
    expect(scribbler.body.equals(body)).toBe(true)
    expect.soft(otherBody.equals(body), 'the other caller\'s body is intact').toBe(true)
    // …nor what was stored for later callers.
    const hit = await request(`${server.url}/doc`, { dispatcher })
    expect(hit.headers['cache-status']).toMatch(/^cachedfetch; hit/)
    expect.soft(Buffer.from(await hit.body.arrayBuffer()).equals(body), 'the stored body is intact').toBe(true)
  })

  it('a caller that overwrites the chunks of a stored body a 304 freshened does not change the stored body', async () => {
    // Stored as bytes (over 16 KB), and replayed to a flight that keeps no history for late callers
    // (this request's maxEntrySize is below the body's size): its one caller is lent nothing.
    const body = bytes(48 * 1024, 37)
    const server = await opened.origin({
      '/doc': (req, res) => {
        if (req.headers['if-none-match'] === '"v1"') {
          res.writeHead(304, { etag: '"v1"', 'cache-control': 'no-cache' })
          res.end()
          return
        }
        res.writeHead(200, { etag: '"v1"', 'cache-control': 'no-cache', 'content-length': String(body.byteLength) })
        res.end(body)
      }
    })
    const dispatcher = agent().compose(cacheInterceptor({ cache: createCache() }))
    await (await request(`${server.url}/doc`, { dispatcher })).body.arrayBuffer()
    const scribbler = new RecordingHandler()
    scribbler.whenData = (_controller, chunk) => { chunk.fill(0) }
    dispatcher.dispatch({ origin: server.url, path: '/doc', method: 'GET', headers: {}, cachePolicy: { maxEntrySize: 1024 } }, scribbler)
    await within(scribbler.finished, 'the scribbler\'s body')
    expect(scribbler.headers['cache-status']).toMatch(/fwd-status=304/)
    expect(scribbler.body.equals(body)).toBe(true)

    const again = await request(`${server.url}/doc`, { dispatcher })
    expect(again.headers['cache-status']).toMatch(/fwd-status=304/)
    expect(Buffer.from(await again.body.arrayBuffer()).equals(body), 'the stored body is intact').toBe(true)
    expect(server.seen('/doc').map((seen) => seen.headers['if-none-match'])).toEqual([undefined, '"v1"', '"v1"'])
  })

  it('a follower whose data and error callbacks throw does not fail the leader: it gets the whole body', async () => {
    const body = bytes(20_000, 31)
    const half = body.byteLength / 2
    const answer = gate()
    const rest = gate()
    const server = await opened.origin({
      '/doc': async (_req, res) => {
        await answer.promise
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': String(body.byteLength) })
        res.write(body.subarray(0, half))
        await rest.promise
        res.end(body.subarray(half))
      }
    })
    const cache = createCache({ retry: false })
    const dispatcher = agent().compose(cacheInterceptor({ cache }))
    const leader = new RecordingHandler()
    const faulty = new ThrowingHandler()

    get(dispatcher, server, leader)
    await waitFor(() => cache.stats().misses === 1, 'the leader to reach the cache')
    get(dispatcher, server, faulty)
    await waitFor(() => cache.stats().misses === 2, 'the follower to reach the cache')
    answer.release()
    await within(faulty.finished, 'the follower\'s error')
    expect(faulty.error?.message).toBe('a bug in this caller\'s onResponseData')
    rest.release()
    await within(leader.finished, 'the leader\'s body')

    expect(leader.error).toBeUndefined()
    expect(leader.ended).toBe(true)
    expect(leader.body.equals(body)).toBe(true)
    expect(server.hits('/doc')).toBe(1)
    await waitFor(() => cache.stats().inFlight === 0, 'the flight to end', 1000)
  })
})
