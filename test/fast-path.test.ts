/**
 * The fetch fast path builds a hit's Response straight from the entry. It must give what
 * undici.fetch through the interceptor (the slow path) gives for the same entry; entries it cannot
 * serve as they are (encoded bodies, redirects, Vary on fields fetch sets itself) take the slow
 * path and are still served right.
 */
import { getEventListeners } from 'node:events'
import { readFileSync } from 'node:fs'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { gzipSync } from 'node:zlib'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { fetch, request, setGlobalOrigin, type Response } from 'undici'
import { createCache, createCachedFetch, cacheInterceptor, type Cache } from '../src/index.js'
import type { Origin, Route } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'
import { manualClock, wholeSecondNow, type ManualClock } from './helpers/time.js'
import { gate, waitFor, within, type Gate } from './helpers/wait.js'

interface Scenario {
  readonly name: string
  readonly path: string
  readonly method?: 'GET' | 'HEAD'
  readonly status?: number
  readonly statusText?: string
  readonly shared?: boolean
  readonly requestHeaders?: Record<string, string>
  /** Response header fields in order; a name may repeat. */
  readonly headers: [string, string][]
  readonly body?: string
  readonly bodyBase64?: string
  /** 'slow path' for an entry the fast path must hand to undici.fetch. */
  readonly servedBy?: 'slow path'
}

const scenarios = JSON.parse(readFileSync(new URL('../fixtures/fast-path-scenarios.json', import.meta.url), 'utf8')) as Scenario[]

const opened = teardown()

afterEach(async () => {
  vi.restoreAllMocks()
  await opened.close()
})

/** Both paths over one cache, with a clock the origin's Date follows, so ttl and age agree. */
function setup (shared = true): { cache: Cache, clock: ManualClock, cachedFetch: ReturnType<typeof createCachedFetch>, slowFetch: typeof fetch } {
  const clock = manualClock(wholeSecondNow())
  const cache = createCache({ shared, now: clock.now })
  const cachedFetch = createCachedFetch({ cache, dispatcher: opened.agent() })
  const dispatcher = opened.agent().compose(cacheInterceptor({ cache }))
  const slowFetch: typeof fetch = (input, init) => fetch(input, { ...init, dispatcher })
  return { cache, clock, cachedFetch, slowFetch }
}

/** Whether the next cachedFetch call goes through the interceptor (the slow path) or not. */
function watchSlowPath (cache: Cache): () => number {
  const lookup = vi.spyOn(cache, 'lookup')
  return () => lookup.mock.calls.length
}

interface Seen {
  readonly status: number
  readonly statusText: string
  readonly headers: [string, string][]
  readonly setCookies: string[]
  readonly url: string
  readonly type: string
  readonly redirected: boolean
  readonly bodyIsNull: boolean
  readonly body: Buffer
}

/** What a caller can see of a response, the age and date fields left out. */
async function seen (response: Response | globalThis.Response): Promise<Seen> {
  return {
    status: response.status,
    statusText: response.statusText,
    headers: [...response.headers].filter(([name]) => name !== 'age' && name !== 'date'),
    setCookies: response.headers.getSetCookie(),
    url: response.url,
    type: response.type,
    redirected: response.redirected,
    bodyIsNull: response.body === null,
    body: Buffer.from(await response.arrayBuffer())
  }
}

function scenarioRoute (scenario: Scenario, clock: ManualClock): Route {
  return (_req, res) => {
    const headers = [...scenario.headers, ['date', clock.date()]].flat()
    res.writeHead(scenario.status ?? 200, scenario.statusText ?? 'OK', headers)
    const body = scenario.bodyBase64 !== undefined ? Buffer.from(scenario.bodyBase64, 'base64') : scenario.body
    res.end(body)
  }
}

describe('the fast path serves what undici.fetch through the interceptor serves', () => {
  for (const scenario of scenarios) {
    it(`for ${scenario.name}`, async () => {
      const { cache, clock, cachedFetch, slowFetch } = setup(scenario.shared)
      const server = await opened.origin({ [scenario.path]: scenarioRoute(scenario, clock) })
      const url = server.url + scenario.path
      const init = { method: scenario.method ?? 'GET', headers: scenario.requestHeaders ?? {} }

      const miss = await seen(await cachedFetch(url, init))
      const slowCalls = watchSlowPath(cache)
      const fast = await seen(await cachedFetch(url, init))
      const viaSlowPath = scenario.servedBy === 'slow path' ? 1 : 0
      expect(slowCalls()).toBe(viaSlowPath)
      const slow = await seen(await slowFetch(url, init))
      expect(slowCalls()).toBe(viaSlowPath + 1)

      expect(fast.headers.find(([name]) => name === 'cache-status')?.[1]).toMatch(/^cachedfetch; hit/)
      expect(fast).toEqual(slow)
      expect(server.hits(scenario.path)).toBe(1)
      // And the hit is the response the origin gave, as the miss showed it.
      expect(fast.status).toBe(miss.status)
      expect(fast.statusText).toBe(miss.statusText)
      expect(fast.body.equals(miss.body)).toBe(true)
      expect(fast.setCookies).toEqual(miss.setCookies)
    })
  }
})

describe('a fast-path hit behaves as a fetched Response', () => {
  async function hits (): Promise<{ fast: Response, slow: Response }> {
    const { cache, clock, cachedFetch, slowFetch } = setup()
    const server = await opened.origin({ '/page': scenarioRoute(scenarios[0]!, clock) })
    await (await cachedFetch(`${server.url}/page`)).arrayBuffer()
    const slowCalls = watchSlowPath(cache)
    const fast = await cachedFetch(`${server.url}/page`)
    expect(slowCalls()).toBe(0)
    const slow = await slowFetch(`${server.url}/page`)
    return { fast, slow }
  }

  it('keeps its url and type when cloned', async () => {
    const { fast, slow } = await hits()
    const fastClone = fast.clone()
    const slowClone = slow.clone()
    expect(fastClone.url).toBe(slowClone.url)
    expect(fastClone.type).toBe(slowClone.type)
    expect(fastClone.url).toBe(fast.url)
    expect(await fastClone.text()).toBe(await slowClone.text())
  })

  it('keeps its url, type and immutable headers through a clone of a clone', async () => {
    const { fast, slow } = await hits()
    const fastTwice = fast.clone().clone()
    const slowTwice = slow.clone().clone()
    expect(fastTwice.url).toBe(slowTwice.url)
    expect(fastTwice.url).toBe(fast.url)
    expect(fastTwice.type).toBe(slowTwice.type)
    expect(() => fastTwice.headers.set('x-added', '1')).toThrow(TypeError)
    expect(fastTwice.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(await fastTwice.text()).toBe(await slowTwice.text())
    // And the response cloned from is still whole.
    expect(await fast.text()).toBe(await slow.text())
  })

  it('has immutable headers, as a fetched response has', async () => {
    const { fast, slow } = await hits()
    expect(() => slow.headers.set('x-added', '1')).toThrow(TypeError)
    expect(() => fast.headers.set('x-added', '1')).toThrow(TypeError)
    expect(fast.headers.get('x-added')).toBeNull()
  })
})

/** The whole body, read by a BYOB reader into views of the caller's own. */
async function readByob (response: Response): Promise<string> {
  const reader = response.body!.getReader({ mode: 'byob' })
  const chunks: Buffer[] = []
  for (;;) {
    const { done, value } = await reader.read(new Uint8Array(64 * 1024))
    if (done) return Buffer.concat(chunks).toString('hex')
    chunks.push(Buffer.from(value))
  }
}

describe("a fast-path hit's body reads as a fetched body does", () => {
  // The fast path reads the stored body directly for arrayBuffer(), bytes(), text() and json(),
  // and makes a stream only when asked for one: every way of reading, in any order, must end as
  // it does for the same entry through undici.fetch (values, errors, bodyUsed).
  type Step = (response: Response) => unknown
  const read = {
    arrayBuffer: (r: Response) => r.arrayBuffer().then((b) => ['ArrayBuffer', Buffer.from(b).toString('hex')]),
    bytes: (r: Response) => r.bytes().then((b) => [b.constructor.name, Buffer.from(b).toString('hex')]),
    text: (r: Response) => r.text(),
    json: (r: Response) => r.json(),
    blob: (r: Response) => r.blob().then(async (b) => [b.type, await b.text()]),
    formData: (r: Response) => r.formData().then((f) => [...f]),
    stream: async (r: Response) => {
      const chunks: Buffer[] = []
      for await (const chunk of r.body! as AsyncIterable<Uint8Array>) chunks.push(Buffer.from(chunk))
      return Buffer.concat(chunks).toString('hex')
    },
    // A byte stream, as fetch's body is: read into the caller's own buffer (BYOB), here or in a clone.
    byob: async (r: Response) => await readByob(r),
    cloneByob: async (r: Response) => await readByob(r.clone()),
    // Plain Uint8Arrays, as fetch hands out: a Buffer would read as text in `${chunk}`.
    chunkType: async (r: Response) => ((await r.body!.getReader().read()).value as Uint8Array | undefined)?.constructor.name,
    bodyIsStream: (r: Response) => r.body instanceof ReadableStream,
    bodyUsed: (r: Response) => r.bodyUsed,
    locked: (r: Response) => r.body?.locked,
    lock: (r: Response) => { r.body!.getReader() },
    cloneText: (r: Response) => r.clone().text()
  } satisfies Record<string, Step>
  type Name = keyof typeof read
  const sequences: Name[][] = [
    ['arrayBuffer', 'bodyUsed', 'arrayBuffer', 'text', 'bodyUsed', 'cloneText', 'stream'],
    ['bytes', 'bodyUsed', 'bytes', 'bodyIsStream', 'locked', 'bodyUsed'],
    ['text', 'json', 'blob', 'formData', 'bodyUsed'],
    ['json', 'bodyIsStream', 'stream', 'bodyUsed'],
    ['blob', 'bodyUsed', 'text'],
    ['formData', 'bodyUsed', 'text'],
    ['bodyIsStream', 'bodyUsed', 'text', 'bodyUsed', 'text'],
    ['stream', 'bodyUsed', 'arrayBuffer', 'cloneText'],
    ['lock', 'locked', 'bodyUsed', 'text', 'cloneText'],
    ['cloneText', 'cloneText', 'bodyUsed', 'json', 'cloneText'],
    ['bodyIsStream', 'cloneText', 'stream', 'bodyUsed'],
    ['byob', 'bodyUsed', 'text'],
    ['cloneByob', 'chunkType', 'bodyUsed']
  ]
  const bodies = {
    // A BOM and a UTF-8 character, as JSON; stored as text (small).
    json: { type: 'application/json; charset=utf-8', body: Buffer.from('\uFEFF{"word":"caf\u00e9"}') },
    // Not UTF-8 at all: text() replaces what it cannot decode.
    binary: { type: 'application/octet-stream', body: Buffer.from([0xff, 0xfe, 0x00, 0x41, 0xc3]) },
    // A form, which formData() parses; large enough to be stored as a Buffer, not as text.
    form: { type: 'application/x-www-form-urlencoded', body: Buffer.from(`a=1&b=${'x'.repeat(20_000)}`) }
  }

  async function outcome (response: Response, steps: readonly Name[]): Promise<unknown[]> {
    const outcomes: unknown[] = []
    for (const step of steps) {
      try {
        outcomes.push([step, await read[step](response)])
      } catch (error) {
        outcomes.push([step, 'threw', (error as Error).constructor.name])
      }
    }
    return outcomes
  }

  for (const [name, { type, body }] of Object.entries(bodies)) {
    it(`for a ${name} body, read in every order`, async () => {
      const { cache, cachedFetch, slowFetch } = setup()
      const server = await opened.origin({
        '/body': (_req, res) => { res.writeHead(200, { 'content-type': type, 'cache-control': 'max-age=60' }).end(body) }
      })
      const url = `${server.url}/body`
      await (await cachedFetch(url)).arrayBuffer()
      const slowCalls = watchSlowPath(cache)
      for (const steps of sequences) {
        const before = slowCalls()
        const fast = await outcome(await cachedFetch(url), steps)
        expect(slowCalls()).toBe(before)
        const slow = await outcome(await slowFetch(url), steps)
        expect(fast).toEqual(slow)
      }
      expect(server.hits('/body')).toBe(1)
    })
  }

  // Revalidations and misses of a shape fetch has sent before are answered by a follower
  // (src/adapters/follower.ts), whose body arrives from the exchange: read the same ways.
  for (const [name, { type, body }] of Object.entries(bodies)) {
    for (const answer of ['revalidated with a 304', 'missed'] as const) {
      it(`for a ${name} body ${answer}, read in every order`, async () => {
        const { cachedFetch, slowFetch } = setup()
        const server = await opened.origin({
          '/body': (req, res) => {
            if (answer === 'missed') res.writeHead(200, { 'content-type': type }).end(body)
            else if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, { etag: '"v1"', 'cache-control': 'no-cache' }).end()
            else res.writeHead(200, { 'content-type': type, etag: '"v1"', 'cache-control': 'no-cache' }).end(body)
          }
        })
        const url = `${server.url}/body`
        await (await cachedFetch(url)).arrayBuffer()
        for (const steps of sequences) {
          const fast = await outcome(await cachedFetch(url), steps)
          const slow = await outcome(await slowFetch(url), steps)
          expect(fast).toEqual(slow)
        }
      })
    }
  }

  it('fails a body its caller aborted before reading, with the signal\'s reason, as undici.fetch does (Fetch §4.1, abort fetch)', async () => {
    const { cachedFetch, slowFetch } = setup()
    const server = await opened.origin({ '/doc': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'application/json' }).end('{"a":1}') } })
    const url = `${server.url}/doc`
    await (await cachedFetch(url)).arrayBuffer()
    const aborted = async (get: typeof slowFetch, step: (r: Response) => unknown): Promise<unknown> => {
      const controller = new AbortController()
      const response = await get(url, { signal: controller.signal })
      controller.abort()
      return await Promise.resolve(step(response)).then((value) => ({ value }), (error: Error) => ({ rejected: error.name }))
    }
    for (const name of ['arrayBuffer', 'bytes', 'text', 'json', 'blob', 'stream'] as const) {
      const fast = await aborted(cachedFetch, read[name])
      expect({ name, fast }).toEqual({ name, fast: { rejected: 'AbortError' } })
      expect(fast).toEqual(await aborted(slowFetch, read[name]))
    }
    expect(server.hits('/doc')).toBe(1)
  })

  it('rejects a hit whose caller aborts right after the call, with the signal\'s reason, as undici.fetch rejects (Fetch §4.1, abort fetch)', async () => {
    const { cachedFetch, slowFetch } = setup()
    const server = await opened.origin({ '/doc': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('doc') } })
    const url = `${server.url}/doc`
    await (await cachedFetch(url)).arrayBuffer()
    const abortedAtOnce = async (get: typeof slowFetch): Promise<unknown> => {
      const controller = new AbortController()
      const pending = get(url, { signal: controller.signal })
      controller.abort(new Error('left'))
      return await pending.then((response) => ({ status: response.status }), (error: Error) => ({ rejected: error.message }))
    }
    const fast = await abortedAtOnce(cachedFetch)
    expect(fast).toEqual({ rejected: 'left' })
    expect(fast).toEqual(await abortedAtOnce(slowFetch))
    expect(server.hits('/doc')).toBe(1)
  })

  it('keeps a clone readable after an abort once either copy was read whole, as undici.fetch does (its abort errors the tee\'s drained source)', async () => {
    const { cachedFetch, slowFetch } = setup()
    const server = await opened.origin({ '/doc': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('doc') } })
    const url = `${server.url}/doc`
    await (await cachedFetch(url)).arrayBuffer()
    const settle = (reading: Promise<string>): Promise<unknown> => reading.then((text) => ({ text }), (error: Error) => ({ rejected: error.name }))
    const outcome = async (get: typeof slowFetch, cloneFirst: boolean, streamed: boolean): Promise<unknown> => {
      const controller = new AbortController()
      const response = await get(url, { signal: controller.signal })
      const copy = response.clone()
      const [first, second] = cloneFirst ? [copy, response] : [response, copy]
      const read = await settle(streamed ? new globalThis.Response(first.body).text() : first.text())
      controller.abort()
      return [read, await settle(second.text())]
    }
    for (const cloneFirst of [false, true]) {
      for (const streamed of [false, true]) {
        const fast = await outcome(cachedFetch, cloneFirst, streamed)
        expect({ cloneFirst, streamed, fast }).toEqual({ cloneFirst, streamed, fast: [{ text: 'doc' }, { text: 'doc' }] })
        expect(fast).toEqual(await outcome(slowFetch, cloneFirst, streamed))
      }
    }
    expect(server.hits('/doc')).toBe(1)
  })

  it('fails a body stream taken before its caller aborted, read after, with the signal\'s reason, as undici.fetch does', async () => {
    const { cachedFetch, slowFetch } = setup()
    const server = await opened.origin({ '/doc': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' }).end('doc') } })
    const url = `${server.url}/doc`
    await (await cachedFetch(url)).arrayBuffer()
    const taken = async (get: typeof slowFetch, reader: boolean): Promise<unknown> => {
      const controller = new AbortController()
      const response = await get(url, { signal: controller.signal })
      const stream = response.body!
      const early = reader ? stream.getReader() : undefined
      controller.abort()
      await new Promise((resolve) => setTimeout(resolve, 10))
      return await (early ?? stream.getReader()).read().then(({ done }) => ({ done }), (error: Error) => ({ rejected: error.name }))
    }
    for (const reader of [false, true]) {
      const fast = await taken(cachedFetch, reader)
      expect({ reader, fast }).toEqual({ reader, fast: { rejected: 'AbortError' } })
      expect(fast).toEqual(await taken(slowFetch, reader))
    }
    expect(server.hits('/doc')).toBe(1)
  })

  it('hands a large hit\'s body stream over a slice at a time, as fetch hands a body over, and fails it part way with its caller\'s abort', async () => {
    const body = Buffer.alloc(1024 * 1024, 'z')
    const cache = createCache({ maxEntrySize: 8 * 1024 * 1024 })
    const cachedFetch = createCachedFetch({ cache, dispatcher: opened.agent() })
    const server = await opened.origin({ '/big': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'application/octet-stream' }).end(body) } })
    const url = `${server.url}/big`
    await (await cachedFetch(url)).arrayBuffer()
    for (const signal of [undefined, new AbortController().signal]) {
      const sizes: number[] = []
      for await (const chunk of (await cachedFetch(url, { signal })).body! as unknown as AsyncIterable<Uint8Array>) sizes.push(chunk.byteLength)
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(body.byteLength)
      expect(Math.max(...sizes)).toBeLessThanOrEqual(64 * 1024)
    }
    const controller = new AbortController()
    const reader = (await cachedFetch(url, { signal: controller.signal })).body!.getReader()
    expect((await reader.read()).done).toBe(false)
    const reason = new Error('stop')
    controller.abort(reason)
    const rest = await (async () => { for (;;) if ((await reader.read()).done) return 'read to its end' })().catch((error: unknown) => error)
    expect(rest).toBe(reason)
    expect(server.hits('/big')).toBe(1)
  })

  it('answers a BYOB read of an empty hit\'s body, with a signal or without', async () => {
    const { cachedFetch } = setup()
    const server = await opened.origin({ '/empty': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end() } })
    const url = `${server.url}/empty`
    await (await cachedFetch(url)).arrayBuffer()
    for (const signal of [undefined, new AbortController().signal]) {
      const reader = (await cachedFetch(url, { signal })).body!.getReader({ mode: 'byob' })
      const read = await within(reader.read(new Uint8Array(16)), 'the BYOB read')
      expect(read.done).toBe(true)
    }
    expect(server.hits('/empty')).toBe(1)
  })

  it('leaves no abort listener on a long-lived signal for hits whose body stream was taken, then dropped unread', async () => {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const { cachedFetch } = setup()
    const server = await opened.origin({ '/doc': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' }).end('doc') } })
    const url = `${server.url}/doc`
    await (await cachedFetch(url)).arrayBuffer()
    const app = new AbortController()
    for (let i = 0; i < 200; i++) {
      const hit = await cachedFetch(url, { signal: app.signal })
      expect(hit.body).not.toBeNull()
    }
    for (let i = 0; i < 10 && getEventListeners(app.signal, 'abort').length > 2; i++) {
      gc()
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    expect(getEventListeners(app.signal, 'abort').length).toBeLessThanOrEqual(2)
    expect(server.hits('/doc')).toBe(1)
  })

  it('hands every caller bytes of its own: changing them changes no later hit', async () => {
    const { cachedFetch } = setup()
    const small = Buffer.from('{"small":true}')
    const large = Buffer.alloc(64 * 1024, 'y')
    const server = await opened.origin({
      '/small': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end(small) },
      '/large': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end(large) }
    })
    for (const [path, body] of [['/small', small], ['/large', large]] as const) {
      await (await cachedFetch(server.url + path)).arrayBuffer()
      new Uint8Array(await (await cachedFetch(server.url + path)).arrayBuffer()).fill(0)
      ;(await (await cachedFetch(server.url + path)).bytes()).fill(0)
      const stream = (await cachedFetch(server.url + path)).body! as AsyncIterable<Uint8Array>
      for await (const chunk of stream) chunk.fill(0)
      expect(Buffer.from(await (await cachedFetch(server.url + path)).arrayBuffer()).equals(body)).toBe(true)
      expect(server.hits(path)).toBe(1)
    }
  })

  it('hands a stale-while-revalidate hit the interceptor serves bytes of its own too: changing those its stream hands it changes no later answer', async () => {
    const { clock, cachedFetch } = setup()
    // Over 16 KB, so stored as bytes, which the interceptor lends to the caller's Response.
    const body = Buffer.alloc(48 * 1024, 'z')
    const server = await opened.origin({
      '/doc': (req, res) => {
        const fields = { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60', etag: '"v1"' }
        // A 304 keeps the stored body: a change to it would show in every later answer.
        if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, fields).end()
        else res.writeHead(200, fields).end(body)
      }
    })
    await (await cachedFetch(`${server.url}/doc`)).arrayBuffer()
    clock.advance(20)
    const stale = await cachedFetch(`${server.url}/doc`)
    expect(stale.headers.get('cache-status')).toMatch(/detail=stale-while-revalidate$/)
    for await (const chunk of stale.body! as AsyncIterable<Uint8Array>) chunk.fill(0)
    await waitFor(() => server.hits('/doc') === 2, 'the background revalidation')
    expect(Buffer.from(await (await cachedFetch(`${server.url}/doc`)).arrayBuffer()).equals(body)).toBe(true)
  })
})

describe('entries the fast path does not serve as they are', () => {
  it('decodes a gzip-encoded entry on a hit, as fetch does', async () => {
    const text = 'compressed '.repeat(200)
    const gzipped = gzipSync(text)
    const { cache, cachedFetch, slowFetch } = setup()
    const server = await opened.origin({
      '/gz': (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-encoding': 'gzip', 'content-length': String(gzipped.byteLength), 'cache-control': 'max-age=60' })
        res.end(gzipped)
      }
    })

    expect(await (await cachedFetch(`${server.url}/gz`)).text()).toBe(text)
    const slowCalls = watchSlowPath(cache)
    const hit = await cachedFetch(`${server.url}/gz`)
    expect(slowCalls()).toBe(1)
    expect(hit.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(hit.headers.get('content-encoding')).toBe('gzip')
    expect(await hit.text()).toBe(text)
    const slow = await slowFetch(`${server.url}/gz`)
    expect(await slow.text()).toBe(text)
    expect(server.hits('/gz')).toBe(1)
  })

  it('follows a stored 301 to a stored target, reporting the redirect', async () => {
    const { cache, cachedFetch, slowFetch } = setup()
    const server = await opened.origin({
      '/old': (_req, res) => {
        res.writeHead(301, { location: '/new', 'cache-control': 'max-age=60' })
        res.end()
      },
      '/new': (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60' })
        res.end('moved here')
      }
    })

    const first = await cachedFetch(`${server.url}/old`)
    expect(await first.text()).toBe('moved here')
    const slowCalls = watchSlowPath(cache)
    const hit = await cachedFetch(`${server.url}/old`)
    expect(slowCalls()).toBeGreaterThan(0)
    const slow = await slowFetch(`${server.url}/old`)
    for (const response of [hit, slow]) {
      expect(response.status).toBe(200)
      expect(response.redirected).toBe(true)
      expect(response.url).toBe(`${server.url}/new`)
      expect(response.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
      expect(await response.text()).toBe('moved here')
    }
    expect(server.hits('/old')).toBe(1)
    expect(server.hits('/new')).toBe(1)
  })

  it('serves an entry that varies on Accept-Encoding, which fetch sets itself', async () => {
    const { cache, cachedFetch, slowFetch } = setup()
    const server = await opened.origin({
      '/negotiated': (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', vary: 'Accept-Encoding' })
        res.end('negotiated')
      }
    })

    expect(await (await cachedFetch(`${server.url}/negotiated`)).text()).toBe('negotiated')
    const slowCalls = watchSlowPath(cache)
    const hit = await cachedFetch(`${server.url}/negotiated`)
    expect(slowCalls()).toBe(1)
    expect(hit.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(await hit.text()).toBe('negotiated')
    const slow = await slowFetch(`${server.url}/negotiated`)
    expect(slow.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(server.hits('/negotiated')).toBe(1)
  })
})

describe('fields the fast path must read as fetch sends them', () => {
  it('serves an entry that varies on Referer as the Referer fetch adds with a global origin set, not as the absent one', async () => {
    const { cache, cachedFetch } = setup()
    const server = await opened.origin({
      '/referred': (req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', vary: 'Referer' })
        res.end(`referer ${req.headers.referer ?? 'none'}`)
      }
    })
    // Stored for a request without a Referer, as undici.request sends it.
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache }))
    await (await request(`${server.url}/referred`, { dispatcher })).body.text()
    setGlobalOrigin('http://app.example')
    try {
      // fetch sends Referer: http://app.example/ now: the variant stored without one is not its.
      expect(await (await cachedFetch(`${server.url}/referred`)).text()).toBe('referer http://app.example/')
      expect(await (await cachedFetch(`${server.url}/referred`)).text()).toBe('referer http://app.example/')
    } finally {
      setGlobalOrigin(undefined)
    }
    expect(server.hits('/referred')).toBe(2)
  })

  it('takes a field given as undefined or null for the text fetch sends, not for an absent one', async () => {
    const { cachedFetch } = setup()
    const server = await opened.origin({
      '/v': (req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'x-user' }).end(`x-user ${JSON.stringify(req.headers['x-user']) ?? 'absent'}`)
      }
    })
    const url = `${server.url}/v`
    expect(await (await cachedFetch(url)).text()).toBe('x-user absent')
    // `{ authorization: token }` with no token: fetch sends "undefined".
    for (const value of [undefined, null]) {
      const bodies = []
      for (let i = 0; i < 2; i++) bodies.push(await (await cachedFetch(url, { headers: { 'x-user': value as unknown as string } })).text())
      expect(bodies).toEqual([`x-user "${String(value)}"`, `x-user "${String(value)}"`])
    }
    expect(server.hits('/v')).toBe(3)
  })

  it('takes a field given as an array or a Buffer for the text fetch sends: not another request\'s variant (found by a hunt)', async () => {
    const { cachedFetch } = setup()
    const server = await opened.origin({
      '/c': (req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60', vary: 'cookie, x-a' }).end(`${req.headers.cookie} ${String(req.headers['x-a'])}`) }
    })
    const url = `${server.url}/c`
    // The variants a request of two cookies, and one of the text "Ã©", stored.
    expect(await (await cachedFetch(url, { headers: { cookie: 'a=1; b=2', 'x-a': 'Ã©' } })).text()).toBe('a=1; b=2 Ã©')
    // fetch sends String(array), one cookie a of the value "1,b=2", and a Buffer's text in UTF-8.
    const given = { cookie: ['a=1', 'b=2'], 'x-a': Buffer.from('é') } as unknown as Record<string, string>
    expect(await (await cachedFetch(url, { headers: given })).text()).toBe('a=1,b=2 é')
    expect(server.hits('/c')).toBe(2)
  })

  it('keys a request by its URL alone though it gives a Host, which fetch never sends', async () => {
    const { cache, cachedFetch } = setup()
    const server = await opened.origin({ '/a': (req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end(`host=${String(req.headers.host)}`) } })
    const viaRequest = opened.agent().compose(cacheInterceptor({ cache }))
    // Stored by undici.request for the virtual host other.test.
    expect(await (await request(`${server.url}/a`, { dispatcher: viaRequest, headers: { host: 'other.test' } })).body.text()).toBe('host=other.test')
    expect(await (await cachedFetch(`${server.url}/a`, { headers: { host: 'other.test' } })).text()).toBe(`host=${new URL(server.url).host}`)
  })
})

describe('init options fetch checks or acts on', () => {
  // The fast path answers a hit without fetch's Request: what fetch would refuse, or act on
  // (integrity above all), must reach fetch on a hit as on a miss.
  const WRONG = 'sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='
  it.each<[string, Record<string, unknown>]>([
    ['an integrity the body does not match', { integrity: WRONG }],
    ['a field value with LF', { headers: { 'x-a': 'a\nb' } }],
    ['a field name with a space', { headers: { 'x a': 'b' } }],
    ['a pair of three', { headers: [['x-a', 'b', 'c']] }],
    ['mode navigate', { mode: 'navigate' }],
    ['a window', { window: {} }],
    ['a referrer that is no URL', { referrer: 'http://[bad' }],
    ['credentials fetch does not know', { credentials: 'bogus' }],
    ['a method of null', { method: null }]
  ])('rejects %s on a hit as undici.fetch does on every call', async (_name, init) => {
    const { cachedFetch } = setup()
    const server = await opened.origin({ '/c': (_req, res) => { res.writeHead(200, { 'cache-control': 'max-age=60' }).end('hello') } })
    const url = `${server.url}/c`
    const plain = await fetch(url, { ...init as object, dispatcher: opened.agent() }).then(async (r) => `${r.status} ${await r.text()}`, (error: Error) => error.name)
    expect(await (await cachedFetch(url)).text()).toBe('hello')
    const ours = await cachedFetch(url, init as never).then(async (r) => `${r.status} ${await r.text()}`, (error: Error) => error.name)
    // A TypeError, but for the method null, which fetch sends as the method "null" (a 400 here).
    expect([ours, plain]).toEqual(init.method === null ? [plain, expect.stringMatching(/^400 /)] : ['TypeError', 'TypeError'])
  })
})

describe('response.url', () => {
  it('is the requested URL with its query and without its fragment, on a miss and on both hits', async () => {
    const { cache, clock, cachedFetch, slowFetch } = setup()
    const server = await opened.origin({ '/search': scenarioRoute(scenarios[0]!, clock) })
    const requested = `${server.url}/search?q=a%20b&page=2#results`
    const expected = `${server.url}/search?q=a%20b&page=2`

    const miss = await cachedFetch(requested)
    const slowCalls = watchSlowPath(cache)
    const fast = await cachedFetch(requested)
    expect(slowCalls()).toBe(0)
    const slow = await slowFetch(requested)
    expect(miss.url).toBe(expected)
    expect(fast.url).toBe(expected)
    expect(slow.url).toBe(expected)
    expect(fast.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
    expect(server.seen('/search?q=a%20b&page=2')).toHaveLength(1)
    expect(server.requests.map((r) => r.path)).toEqual(['/search?q=a%20b&page=2'])
  })
})

describe('a stale-while-revalidate hit on the fast path', () => {
  /** Fields undici.fetch adds to every request that does not set them. */
  const FETCH_ADDS = ['accept', 'accept-language', 'accept-encoding', 'user-agent', 'sec-fetch-mode']

  /**
   * `/doc`, fresh for 10 s and then within stale-while-revalidate for 60, on a cache of its own; its
   * revalidations wait for `refresh`.
   */
  async function staleWhileRevalidate (): Promise<ReturnType<typeof setup> & { server: Origin, refresh: Gate, url: string }> {
    const made = setup()
    const { clock } = made
    const refresh = gate()
    const server = await opened.origin({
      '/doc': async (req, res) => {
        const fields = { date: clock.date(), 'cache-control': 'max-age=10, stale-while-revalidate=60', etag: '"v1"' }
        if (server.hits('/doc') > 1) await refresh.promise
        // As GitHub's API does: a request without User-Agent is refused.
        if (req.headers['user-agent'] === undefined) res.writeHead(403, { date: clock.date() }).end('no user agent')
        else if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, fields).end()
        else res.writeHead(200, fields).end('version 1')
      }
    })
    return { ...made, server, refresh, url: `${server.url}/doc` }
  }

  it('is revalidated in the background with the request fetch sends, as through the interceptor; hits meanwhile take the fast path', async () => {
    const { cache, clock, cachedFetch, server, refresh, url } = await staleWhileRevalidate()

    expect(await (await cachedFetch(url)).text()).toBe('version 1')
    clock.advance(20)
    const slowCalls = watchSlowPath(cache)
    const stale = await cachedFetch(url)
    expect(stale.headers.get('cache-status')).toBe('cachedfetch; hit; ttl=-10; detail=stale-while-revalidate')
    expect(await stale.text()).toBe('version 1')
    await waitFor(() => server.hits('/doc') === 2, 'the background revalidation to reach the origin')
    const meanwhile = await cachedFetch(url)
    expect(meanwhile.headers.get('cache-status')).toBe('cachedfetch; hit; ttl=-10; detail=stale-while-revalidate')
    expect(await meanwhile.text()).toBe('version 1')
    // The hit that started the revalidation went to the interceptor; the one meanwhile did not.
    expect(slowCalls()).toBe(1)
    refresh.release()
    await waitFor(() => cache.stats().refreshing === 0, 'the background revalidation to end')

    const [first, revalidation] = server.seen('/doc')
    expect(revalidation!.headers['if-none-match']).toBe('"v1"')
    for (const field of FETCH_ADDS) expect(revalidation!.headers[field], field).toBe(first!.headers[field])
    const fresh = await cachedFetch(url)
    expect(fresh.headers.get('cache-status')).toBe('cachedfetch; hit; ttl=10')
    expect(await fresh.text()).toBe('version 1')
    expect(server.hits('/doc')).toBe(2)
  })

  it('takes the fast path for a burst of hits on a stale entry: one goes to the interceptor and starts the revalidation, the others are served at once', async () => {
    const { cache, clock, cachedFetch, server, refresh, url } = await staleWhileRevalidate()
    expect(await (await cachedFetch(url)).text()).toBe('version 1')
    clock.advance(20)

    const slowCalls = watchSlowPath(cache)
    const burst = await Promise.all(Array.from({ length: 100 }, async () => {
      const response = await cachedFetch(url)
      return `${response.headers.get('cache-status')} ${await response.text()}`
    }))
    expect(new Set(burst)).toEqual(new Set(['cachedfetch; hit; ttl=-10; detail=stale-while-revalidate version 1']))
    expect(slowCalls()).toBe(1)
    await waitFor(() => server.hits('/doc') === 2, 'the background revalidation to reach the origin')
    refresh.release()
    await waitFor(() => cache.stats().refreshing === 0, 'the background revalidation to end')
    expect(server.hits('/doc')).toBe(2)
  })
})
