/**
 * A plain cachedFetch request sent again without undici.fetch (src/adapters/sent.ts) must behave as
 * undici.fetch through the interceptor would have: the same request on the wire for the same call,
 * and the same outcome for answers fetch itself acts on (Fetch §4.5: a 407 is a network error, a
 * 421 is retried once on a new connection).
 *
 * Each test makes a first call (undici.fetch, recorded) and a second one that, since the recording,
 * is sent again: it says what fetch would have sent or returned for the second call.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { afterEach, describe, expect, it } from 'vitest'
import { createCache, createCachedFetch } from '../src/index.js'
import type { Origin, Route } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'

const opened = teardown()
afterEach(() => opened.close())

async function setUp (routes: Record<string, Route>): Promise<{ server: Origin, cachedFetch: ReturnType<typeof createCachedFetch> }> {
  const server = await opened.origin(routes)
  return { server, cachedFetch: createCachedFetch({ cache: createCache(), dispatcher: opened.agent() }) }
}

/** The origin's n-th answer (from 1) by `answers`, the last one for every request after. */
function inTurn (...answers: Array<(res: ServerResponse) => void>): Route {
  let n = 0
  return (_req: IncomingMessage, res: ServerResponse) => { answers[Math.min(n++, answers.length - 1)]!(res) }
}

const ok = (body: string) => (res: ServerResponse): void => { res.writeHead(200, { 'cache-control': 'no-store' }).end(body) }

describe('a cachedFetch request sent again, for answers fetch acts on itself', () => {
  it('fails on a 407 as fetch does (a network error), rather than resolving with the 407', async () => {
    const { server, cachedFetch } = await setUp({
      '/doc': inTurn(ok('version 1'), (res) => { res.writeHead(407, { 'proxy-authenticate': 'Basic', 'cache-control': 'no-store' }).end('who are you') })
    })
    expect(await (await cachedFetch(`${server.url}/doc`)).text()).toBe('version 1')

    await expect(cachedFetch(`${server.url}/doc`)).rejects.toThrow(TypeError)
    expect(server.hits('/doc')).toBe(2)
  })

  it('retries a 421 once, as fetch does, and serves the retry\'s answer', async () => {
    const { server, cachedFetch } = await setUp({
      '/doc': inTurn(ok('version 1'), (res) => { res.writeHead(421, { 'cache-control': 'no-store' }).end('misdirected') }, ok('version 2'))
    })
    expect(await (await cachedFetch(`${server.url}/doc`)).text()).toBe('version 1')

    const again = await cachedFetch(`${server.url}/doc`)

    expect(again.status).toBe(200)
    expect(await again.text()).toBe('version 2')
    expect(server.hits('/doc')).toBe(3)
  })
})

describe('a cachedFetch request sent again carries its own caller\'s fields, as fetch would send them', () => {
  const noStore: Route = (_req, res) => { res.writeHead(200, { 'cache-control': 'no-store' }).end('ok') }

  it('does not send a field another caller gave as undefined (which fetch sends as "undefined") to a caller without it', async () => {
    const { server, cachedFetch } = await setUp({ '/doc': noStore })
    await (await cachedFetch(`${server.url}/doc`, { headers: { 'x-trace': undefined as unknown as string } })).text()
    await (await cachedFetch(`${server.url}/doc`)).text()

    expect(server.seen('/doc').map((r) => r.headers['x-trace'])).toEqual(['undefined', undefined])
  })

  it('sends a caller\'s Cookie as fetch does, not as another caller\'s two Cookie fields that fetch joined with "; "', async () => {
    const { server, cachedFetch } = await setUp({ '/doc': noStore })
    await (await cachedFetch(`${server.url}/doc`, { headers: [['cookie', 'a=1'], ['cookie', 'b=2']] })).text()
    await (await cachedFetch(`${server.url}/doc`, { headers: { cookie: 'a=1, b=2' } })).text()

    expect(server.seen('/doc').map((r) => r.headers.cookie)).toEqual(['a=1; b=2', 'a=1, b=2'])
  })

  it('refuses a field value fetch refuses (a line feed), even one that reads like the fields of a request sent before', async () => {
    const { server, cachedFetch } = await setUp({ '/doc': noStore })
    await (await cachedFetch(`${server.url}/doc`, { headers: { 'x-a': '1', 'x-b': '2' } })).text()

    await expect(cachedFetch(`${server.url}/doc`, { headers: { 'x-a': '1\nx-b: 2' } })).rejects.toThrow(TypeError)
    await (await cachedFetch(`${server.url}/doc`)).text()
    // fetch refuses `headers: null`, which the cache reads as no fields: it reads like the call above.
    await expect(cachedFetch(`${server.url}/doc`, { headers: null as unknown as Record<string, string> })).rejects.toThrow(TypeError)
    expect(server.hits('/doc')).toBe(2)
  })
})
