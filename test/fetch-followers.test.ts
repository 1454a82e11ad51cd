/**
 * cachedFetch callers that follow an identical caller's request in flight (src/adapters/follower.ts):
 * they share its one origin exchange without a run of undici.fetch each, and get what fetch would
 * have given them — a Response that looks fetched for a plain answer, fetch's own handling (decoding,
 * redirects) for any other, fetch's errors for a failure or an abort.
 *
 * The origins hold their answer behind a gate until every caller has reached the cache
 * (`stats().misses`), so that "concurrent" never depends on the machine's speed.
 */
import { getEventListeners } from 'node:events'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { gzipSync } from 'node:zlib'
import { Agent, type Response } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { createCache, createCachedFetch, type Cache, type CacheOptions } from '../src/index.js'
import { bytes, type Origin, type Route } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { gate, settle, waitFor, within, type Gate } from './helpers/wait.js'

const opened = teardown()
afterEach(() => opened.close())

const FOLLOWERS = 50

/** A route that answers with `answer` once `open` is released. */
function gated (open: Gate, answer: Route): Route {
  return async (req, res, seen) => {
    await open.promise
    await answer(req, res, seen)
  }
}

async function setUp (routes: Record<string, Route>, options?: CacheOptions, agent: Agent = opened.agent()): Promise<{ server: Origin, cache: Cache, cachedFetch: ReturnType<typeof createCachedFetch> }> {
  const server = await opened.origin(routes)
  const cache = createCache(options)
  const cachedFetch = createCachedFetch({ cache, dispatcher: agent })
  return { server, cache, cachedFetch }
}

/** A route that sends the first KB of `body`, then the rest once `rest` is released. */
function firstKilobyteThen (rest: Gate, body: Buffer): Route {
  return async (_req, res) => {
    res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': String(body.byteLength) })
    res.write(body.subarray(0, 1024))
    await rest.promise
    res.end(body.subarray(1024))
  }
}

/** Starts `count` calls and waits until each has reached the cache (a miss apiece). */
async function reached<T> (cache: Cache, count: number, call: () => Promise<T>): Promise<Promise<T>[]> {
  const before = cache.stats().misses
  const calls = Array.from({ length: count }, call)
  await waitFor(() => cache.stats().misses - before >= count, `${count} calls to reach the cache`)
  return calls
}

/** Reads a body as a stream, zeroing each chunk it is handed once it has kept a copy: what it read. */
async function streamZeroing (response: Response): Promise<Buffer> {
  const streamed: Buffer[] = []
  for await (const chunk of response.body! as AsyncIterable<Uint8Array>) {
    streamed.push(Buffer.from(chunk))
    chunk.fill(0)
  }
  return Buffer.concat(streamed)
}

/**
 * A leader, then a follower that can abort (`quitter`), then `others` followers, all of one
 * exchange whose answer sends `body`'s first kilobyte and waits for `rest`: their Responses, in
 * that order.
 */
async function withQuitter (body: Buffer, others: number): Promise<{ server: Origin, quitter: AbortController, rest: Gate, responses: Response[] }> {
  const open = gate()
  const rest = gate()
  const { server, cache, cachedFetch } = await setUp({
    '/doc': gated(open, firstKilobyteThen(rest, body))
  })
  const quitter = new AbortController()
  const calls = [
    ...await reached(cache, 1, () => cachedFetch(`${server.url}/doc`)),
    ...await reached(cache, 1, () => cachedFetch(`${server.url}/doc`, { signal: quitter.signal })),
    ...await reached(cache, others, () => cachedFetch(`${server.url}/doc`))
  ]
  open.release()
  return { server, quitter, rest, responses: await Promise.all(calls) }
}

describe('cachedFetch callers that follow an identical request in flight', () => {
  it('get a Response that looks fetched: URL, type, immutable headers, Cache-Status collapsed, a body of their own', async () => {
    const open = gate()
    const body = bytes(3000, 4)
    const { server, cache, cachedFetch } = await setUp({
      '/doc': gated(open, (_req, res) => { res.writeHead(200, 'Fine', { 'cache-control': 'max-age=60', 'x-kind': 'doc' }).end(body) })
    })
    const calls = await reached(cache, FOLLOWERS, () => cachedFetch(`${server.url}/doc`))
    open.release()
    const responses = await Promise.all(calls)

    expect(server.hits('/doc')).toBe(1)
    const followers = responses.filter((r) => r.headers.get('cache-status')?.endsWith('; collapsed') === true)
    expect(followers).toHaveLength(FOLLOWERS - 1)
    for (const response of followers) {
      expect(response.url).toBe(`${server.url}/doc`)
      expect(response.type).toBe('basic')
      expect(response.redirected).toBe(false)
      expect([response.status, response.statusText]).toEqual([200, 'Fine'])
      expect(response.headers.get('x-kind')).toBe('doc')
      expect(() => response.headers.set('x-kind', 'changed')).toThrow(TypeError)
    }
    // Each caller owns its bytes: one that changes them changes nobody else's.
    const first = new Uint8Array(await followers[0]!.clone().arrayBuffer())
    first.fill(0)
    for (const response of followers) expect(Buffer.from(await response.arrayBuffer()).equals(body)).toBe(true)
  })

  it('share the exchange\'s chunks, yet a caller that changes those its body stream hands it changes no other caller\'s body, nor the stored one', async () => {
    const open = gate()
    const body = bytes(48 * 1024, 6)
    const { server, cache, cachedFetch } = await setUp({
      '/doc': gated(open, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end(body) })
    })
    const calls = await reached(cache, FOLLOWERS, () => cachedFetch(`${server.url}/doc`))
    open.release()
    const responses = await Promise.all(calls)
    expect(responses.filter((r) => r.headers.get('cache-status')?.endsWith('; collapsed') === true)).toHaveLength(FOLLOWERS - 1)
    // Every other caller streams its body and zeroes each chunk it is handed; one reads its own last.
    const [reader, ...scribblers] = responses
    for (const response of scribblers) expect((await streamZeroing(response)).equals(body)).toBe(true)
    expect.soft(Buffer.from(await reader!.arrayBuffer()).equals(body), 'the last caller\'s body is intact').toBe(true)
    const hit = await cachedFetch(`${server.url}/doc`)
    expect(hit.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect.soft(Buffer.from(await hit.arrayBuffer()).equals(body), 'the stored body is intact').toBe(true)
    expect(server.hits('/doc')).toBe(1)
  })

  it('a caller whose 304 is answered with the stored body, lent to its Response, that changes the chunks its stream hands it changes no later answer', async () => {
    // Over 16 KB, so stored as bytes, which a 304 lends to the caller's Response rather than copies.
    const body = bytes(48 * 1024, 8)
    const { server, cachedFetch } = await setUp({
      '/doc': (req, res) => {
        if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, { etag: '"v1"', 'cache-control': 'no-cache' }).end()
        else res.writeHead(200, { etag: '"v1"', 'cache-control': 'no-cache' }).end(body)
      }
    })
    await (await cachedFetch(`${server.url}/doc`)).arrayBuffer()
    for (let i = 0; i < 2; i++) {
      const revalidated = await cachedFetch(`${server.url}/doc`)
      expect(revalidated.headers.get('cache-status')).toMatch(/fwd-status=304/)
      expect((await streamZeroing(revalidated)).equals(body)).toBe(true)
    }
    const again = await cachedFetch(`${server.url}/doc`)
    expect(again.headers.get('cache-status')).toMatch(/fwd-status=304/)
    expect(Buffer.from(await again.arrayBuffer()).equals(body), 'the stored body is intact').toBe(true)
    expect(server.seen('/doc').map((seen) => seen.headers['if-none-match'])).toEqual([undefined, '"v1"', '"v1"', '"v1"'])
  })

  it('get no body for HEAD, as fetch gives none', async () => {
    const open = gate()
    const { server, cache, cachedFetch } = await setUp({
      '/doc': gated(open, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '5' }).end() })
    })
    const calls = await reached(cache, FOLLOWERS, () => cachedFetch(`${server.url}/doc`, { method: 'HEAD' }))
    open.release()
    const responses = await Promise.all(calls)
    expect(server.hits('/doc')).toBe(1)
    for (const response of responses) expect([response.status, response.body]).toEqual([200, null])
  })

  it('get a compressed answer decoded by fetch, from the one origin request', async () => {
    const open = gate()
    const text = 'a compressed document '.repeat(200)
    const { server, cache, cachedFetch } = await setUp({
      '/doc': gated(open, (_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-encoding': 'gzip', 'content-type': 'text/plain' }).end(gzipSync(text))
      })
    })
    const calls = await reached(cache, FOLLOWERS, () => cachedFetch(`${server.url}/doc`))
    open.release()
    const texts = await Promise.all(calls.map(async (call) => await (await call).text()))

    expect(server.hits('/doc')).toBe(1)
    expect(texts.filter((t) => t !== text)).toEqual([])
  })

  it('follow a redirect as fetch does, with one origin request for it', async () => {
    const open = gate()
    const target = gate()
    const { server, cache, cachedFetch } = await setUp({
      '/from': gated(open, (_req, res) => { res.writeHead(302, { location: '/to' }).end() }),
      '/to': gated(target, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('arrived') })
    })
    const calls = await reached(cache, FOLLOWERS, () => cachedFetch(`${server.url}/from`))
    open.release()
    // Every caller's fetch goes on to the target, where they collapse again.
    await waitFor(() => cache.stats().misses >= 2 * FOLLOWERS, 'every caller to follow the redirect')
    target.release()
    const responses = await Promise.all(calls)

    expect([server.hits('/from'), server.hits('/to')]).toEqual([1, 1])
    for (const response of responses) {
      expect([response.status, response.redirected, response.url]).toEqual([200, true, `${server.url}/to`])
      expect(await response.text()).toBe('arrived')
    }
  })

  it('fail as fetch fails when the origin drops the connection before answering', async () => {
    const open = gate()
    const { server, cache, cachedFetch } = await setUp({
      '/doc': gated(open, (req) => { req.socket.destroy() })
    }, { retry: false })
    const calls = await reached(cache, FOLLOWERS, async () => await cachedFetch(`${server.url}/doc`).then(() => undefined, (error: unknown) => error as TypeError & { cause?: { code?: string } }))
    open.release()
    const errors = await Promise.all(calls)

    expect(errors.map((e) => `${e?.name}: ${e?.message} (${e?.cause?.code})`)).toEqual(Array(FOLLOWERS).fill('TypeError: fetch failed (UND_ERR_SOCKET)'))
    expect(server.hits('/doc')).toBe(1)
  })

  it('a follower that aborts before the answer is rejected with its reason; the others get the whole body', async () => {
    const open = gate()
    const body = bytes(2048, 9)
    const { server, cache, cachedFetch } = await setUp({
      '/doc': gated(open, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end(body) })
    })
    const quitter = new AbortController()
    const leader = await reached(cache, 1, () => cachedFetch(`${server.url}/doc`))
    const [quitting] = await reached(cache, 1, () => cachedFetch(`${server.url}/doc`, { signal: quitter.signal }))
    const others = await reached(cache, 4, () => cachedFetch(`${server.url}/doc`))
    quitter.abort()
    await expect(within(quitting!, 'the aborted follower')).rejects.toMatchObject({ name: 'AbortError' })
    open.release()

    for (const call of [...leader, ...others]) expect(Buffer.from(await (await call).arrayBuffer()).equals(body)).toBe(true)
    expect(server.hits('/doc')).toBe(1)
  })

  it('a follower that aborts mid-body gets an AbortError from its body; the others get the whole body', async () => {
    const body = bytes(256 * 1024, 12)
    const { server, quitter, rest, responses } = await withQuitter(body, 2)
    expect(responses.map((r) => r.headers.get('cache-status')?.endsWith('; collapsed'))).toEqual([false, true, true, true])
    const readers: Array<ReadableStreamDefaultReader<Uint8Array>> = responses.map((r) => r.body!.getReader())
    expect((await readers[1]!.read()).value?.byteLength).toBeGreaterThan(0)
    quitter.abort()
    await expect(readers[1]!.read()).rejects.toMatchObject({ name: 'AbortError' })
    rest.release()

    const read = async (reader: ReadableStreamDefaultReader<Uint8Array>): Promise<Buffer> => {
      const chunks: Uint8Array[] = []
      for (let step = await reader.read(); step.done !== true; step = await reader.read()) chunks.push(step.value)
      return Buffer.concat(chunks)
    }
    for (const i of [0, 2, 3]) expect((await read(readers[i]!)).equals(body)).toBe(true)
    expect(server.hits('/doc')).toBe(1)
  })

  it('a follower that aborts while its arrayBuffer() waits for the rest of the body is rejected with an AbortError; the others read theirs whole, each way', async () => {
    const body = Buffer.from(JSON.stringify({ text: 'x'.repeat(200 * 1024) }))
    const { server, quitter, rest, responses: [first, quitter$, ...rest$] } = await withQuitter(body, 3)
    const reading = quitter$!.arrayBuffer()
    expect(quitter$!.bodyUsed).toBe(true)
    quitter.abort()
    await expect(within(reading, 'the aborted read')).rejects.toMatchObject({ name: 'AbortError' })
    rest.release()
    expect(Buffer.from(await first!.arrayBuffer()).equals(body)).toBe(true)
    const [a, b, c] = rest$
    expect(Buffer.from(await a!.bytes()).equals(body)).toBe(true)
    expect(await b!.json()).toEqual(JSON.parse(body.toString()))
    const chunks: Uint8Array[] = []
    for await (const chunk of c!.body! as AsyncIterable<Uint8Array>) chunks.push(chunk)
    expect(Buffer.concat(chunks).equals(body)).toBe(true)
    expect(server.hits('/doc')).toBe(1)
  })

  it('a follower reading text() of a body the origin cuts off gets the TypeError fetch gives', async () => {
    const open = gate()
    const { server, cache, cachedFetch } = await setUp({
      '/doc': gated(open, (_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-length': '100000' })
        res.write('only the start')
        setTimeout(() => res.destroy(), 20)
      })
    }, { retry: false })
    const calls = await reached(cache, 3, () => cachedFetch(`${server.url}/doc`))
    open.release()
    const failures = await Promise.all(calls.map(async (call) => await (await call).text().then(() => 'read', (error: Error) => `${error.name}: ${error.message}`)))
    expect(failures).toEqual(Array(3).fill('TypeError: terminated'))
    expect(server.hits('/doc')).toBe(1)
  })

  it('a follower that reads nothing yet holds its exchange back only as far as fetch would, and reads the whole body later', async () => {
    const open = gate()
    const body = bytes(1024 * 1024, 5)
    const { server, cache, cachedFetch } = await setUp({
      '/doc': gated(open, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end(body) })
    })
    const [leader, late] = await reached(cache, 2, () => cachedFetch(`${server.url}/doc`))
    open.release()
    const waiting = await late!
    expect(Buffer.from(await within((await leader!).arrayBuffer(), 'the leader\'s body')).equals(body)).toBe(true)
    expect(Buffer.from(await within(waiting.arrayBuffer(), 'the late reader\'s body')).equals(body)).toBe(true)
    expect(server.hits('/doc')).toBe(1)
  })

  it('a caller that comes after an invalidation of the URL does not follow a request sent before it', async () => {
    const open = gate()
    let version = 0
    const { server, cache, cachedFetch } = await setUp({
      '/doc': async (_req, res) => {
        const answer = `version ${++version}`
        await open.promise
        res.writeHead(200, { 'cache-control': 'max-age=60' }).end(answer)
      }
    })
    const [leader] = await reached(cache, 1, () => cachedFetch(`${server.url}/doc`))
    await waitFor(() => server.hits('/doc') === 1, 'the leader to reach the origin')
    await cache.invalidate(`${server.url}/doc`)
    const later = cachedFetch(`${server.url}/doc`)
    await waitFor(() => server.hits('/doc') === 2, 'the later caller to send a request of its own')
    open.release()

    expect(await (await leader!).text()).toBe('version 1')
    expect(await (await later).text()).toBe('version 2')
  })

  it('a follower of a request whose stored redirect leads to a flight gets the redirected response, as fetch gives it', async () => {
    const open = gate()
    const { server, cache, cachedFetch } = await setUp({
      '/from': (_req, res) => { res.writeHead(301, { location: '/to', 'cache-control': 'max-age=60' }).end() },
      '/to': gated(open, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('arrived') })
    })
    // The redirect is stored; /to is not yet.
    const first = cachedFetch(`${server.url}/from`)
    await waitFor(() => server.hits('/to') === 1, 'the first request to reach /to')
    open.release()
    expect(await (await first).text()).toBe('arrived')
    await cache.invalidate(`${server.url}/to`)
    const second = gate()
    server.route('/to', gated(second, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('arrived') }))

    const leader = cachedFetch(`${server.url}/from`)
    const follower = cachedFetch(`${server.url}/from`)
    await waitFor(() => server.hits('/to') === 2, 'the leader to reach /to')
    second.release()
    const responses = await Promise.all([leader, follower])
    for (const response of responses) {
      expect([response.status, response.redirected, response.url]).toEqual([200, true, `${server.url}/to`])
      expect(await response.text()).toBe('arrived')
    }
  })

  it('a follower whose signal aborts before the leader has reached the cache is rejected at once, as fetch rejects', async () => {
    const blocker = gate()
    const agent = opened.add(new Agent({ connections: 1 }))
    const { server, cachedFetch } = await setUp({
      '/slow': gated(blocker, (_req, res) => { res.writeHead(200).end('slow') }),
      '/doc': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('doc') }
    }, undefined, agent)
    // The one connection is busy: /doc waits in the pool's queue.
    const slow = cachedFetch(`${server.url}/slow`, { cache: 'no-store' })
    await waitFor(() => server.hits('/slow') === 1, 'the slow request to reach the origin')
    const leader = cachedFetch(`${server.url}/doc`)
    const quitter = new AbortController()
    const quitting = cachedFetch(`${server.url}/doc`, { signal: quitter.signal })
    quitting.catch(() => {})
    quitter.abort()
    try {
      await expect(within(quitting, 'the aborted follower')).rejects.toMatchObject({ name: 'AbortError' })
    } finally {
      blocker.release()
      await (await slow).text()
      await (await leader).text()
    }
  })

  it('a follower whose signal aborts once its whole body has come, but before it is read, gets an AbortError from its body, as fetch does', async () => {
    const open = gate()
    const { server, cache, cachedFetch } = await setUp({
      '/doc': gated(open, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('the body') })
    })
    const before = cache.stats().misses
    const leader = cachedFetch(`${server.url}/doc`)
    const quitter = new AbortController()
    const follower = cachedFetch(`${server.url}/doc`, { signal: quitter.signal })
    await waitFor(() => cache.stats().misses - before >= 2, 'both calls to reach the cache')
    open.release()
    const [, response] = await Promise.all([leader, follower])
    expect(response.headers.get('cache-status')?.endsWith('; collapsed')).toBe(true)
    await waitFor(() => cache.flights.size === 0, 'the exchange to end')
    quitter.abort()
    await expect(response.text()).rejects.toMatchObject({ name: 'AbortError' })
  })

  it('a caller that comes after an invalidation counts one miss, not two', async () => {
    const open = gate()
    const { server, cache, cachedFetch } = await setUp({
      '/doc': gated(open, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('doc') })
    })
    const leader = cachedFetch(`${server.url}/doc`)
    await waitFor(() => server.hits('/doc') === 1, 'the leader to reach the origin')
    await cache.invalidate(`${server.url}/doc`)
    const before = cache.stats().misses
    const later = cachedFetch(`${server.url}/doc`)
    await waitFor(() => server.hits('/doc') === 2, 'the later caller to send a request of its own')
    open.release()
    await (await leader).text()
    await (await later).text()
    expect(cache.stats().misses - before).toBe(1)
  })

  it('identical requests to a host the cache is off for go out at once, as before (no waiting on each other)', async () => {
    let arrived = 0
    const both = gate()
    const { server, cachedFetch } = await setUp({
      // Each answer waits until both requests have arrived.
      '/doc': async (_req, res) => {
        if (++arrived === 2) both.release()
        await both.promise
        res.writeHead(200).end('doc')
      }
    }, { hosts: { '127.0.0.1': { enabled: false } } })
    const calls = [cachedFetch(`${server.url}/doc`), cachedFetch(`${server.url}/doc`)]
    const responses = await within(Promise.all(calls), 'both requests', 3000)
    for (const response of responses) expect(await response.text()).toBe('doc')
  })

  it('followers of a request the cache bypasses (a caller conditional) count a bypass each, as each did through the interceptor', async () => {
    const open = gate()
    const { server, cache, cachedFetch } = await setUp({
      '/doc': gated(open, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60', etag: '"b"' }).end('doc') })
    })
    const headers = { 'if-none-match': '"a"' }
    const before = cache.stats().bypassed
    const leader = cachedFetch(`${server.url}/doc`, { headers })
    await waitFor(() => server.hits('/doc') === 1, 'the leader to reach the origin')
    const followers = Array.from({ length: 4 }, async () => await cachedFetch(`${server.url}/doc`, { headers }))
    await settle()
    open.release()
    for (const response of await Promise.all([leader, ...followers])) expect(await response.text()).toBe('doc')
    expect(server.hits('/doc')).toBe(1)
    expect(cache.stats().bypassed - before).toBe(5)
  })

  it('200 followers sharing a signal the leader does not carry print no MaxListenersExceededWarning, as undici.fetch prints none', async () => {
    const warnings: string[] = []
    const onWarning = (warning: Error): void => { warnings.push(warning.name) }
    process.on('warning', onWarning)
    opened.add({ close: () => Promise.resolve(void process.off('warning', onWarning)) })
    const open = gate()
    const { server, cache, cachedFetch } = await setUp({
      '/doc': gated(open, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('doc') })
    })
    const leader = cachedFetch(`${server.url}/doc`)
    await waitFor(() => server.hits('/doc') === 1, 'the leader to reach the origin')
    const shared = new AbortController().signal
    const calls = await reached(cache, 200, () => cachedFetch(`${server.url}/doc`, { signal: shared }))
    open.release()
    for (const response of await Promise.all([leader, ...calls])) expect(await response.text()).toBe('doc')
    await settle()
    expect(warnings).toEqual([])
    expect(server.hits('/doc')).toBe(1)
  })

  for (const read of [true, false]) {
    it(`followers sharing a long-lived signal leave no abort listener on it once their ${read ? 'bodies are read' : 'responses, bodies unread, are gone'}`, async () => {
      setFlagsFromString('--expose-gc')
      const gc = runInNewContext('gc') as () => void
      const open = gate()
      const { server, cache, cachedFetch } = await setUp({
        '/doc': gated(open, (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('doc') })
      })
      const app = new AbortController()
      const calls = await reached(cache, FOLLOWERS, () => cachedFetch(`${server.url}/doc`, { signal: app.signal }))
      open.release()
      // Read whole, or only the status looked at.
      const seen = await Promise.all(calls.map(async (call) => read ? await (await call).text() : (await call).status))
      expect(seen).toEqual(Array(FOLLOWERS).fill(read ? 'doc' : 200))
      expect(server.hits('/doc')).toBe(1)
      calls.length = 0
      await waitFor(() => cache.flights.size === 0, 'the exchange to end')
      // fetch's own listeners go with its requests (undici's FinalizationRegistry); a follower's must not outlive it either.
      for (let i = 0; i < 10 && getEventListeners(app.signal, 'abort').length > 2; i++) {
        gc()
        await settle()
      }
      expect(getEventListeners(app.signal, 'abort').length).toBeLessThanOrEqual(2)
    })
  }
})

