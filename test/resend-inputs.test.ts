/**
 * What a cachedFetch request sent again without undici.fetch (src/adapters/sent.ts) is given:
 * each test makes a first call of a shape (undici.fetch, recorded) and a later one that is sent
 * again, and says what undici.fetch through the interceptor would have done for the later one.
 */
import { afterEach, describe, expect, it } from 'vitest'
import type { Dispatcher } from 'undici'
import { createCache, createCachedFetch } from '../src/index.js'
import type { Route } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'

const opened = teardown()
afterEach(() => opened.close())

const noStore: Route = (req, res) => { res.writeHead(200, { 'cache-control': 'no-store' }).end(String(req.headers['x-token'])) }

describe('a cachedFetch request sent again, through a dispatcher of the caller\'s', () => {
  it('gets dispatch options of its own: a dispatcher below that adds a field where there is none adds it to every request, as under fetch', async () => {
    const server = await opened.origin({ '/a': noStore, '/b': noStore })
    let issued = 0
    // A token for each request that has none: it writes into the options it is given, as undici's
    // own ProxyAgent writes Host into them.
    const withToken: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (opts, handler) => {
      const headers = opts.headers as Record<string, string>
      headers['x-token'] ??= `token ${++issued}`
      return dispatch(opts, handler)
    }
    const cachedFetch = createCachedFetch({ cache: createCache(), dispatcher: opened.agent().compose(withToken) })

    const tokens = []
    for (const path of ['/a', '/b', '/b']) tokens.push(await (await cachedFetch(`${server.url}${path}`)).text())

    expect(tokens).toEqual(['token 1', 'token 2', 'token 3'])
  })
})

describe('a cachedFetch request of a shape sent before, with a signal fetch refuses', () => {
  it('is refused as fetch refuses it (a TypeError, nothing sent), not sent again with a look-alike of a signal', async () => {
    const server = await opened.origin({ '/a': noStore, '/b': noStore })
    const cachedFetch = createCachedFetch({ cache: createCache(), dispatcher: opened.agent() })
    await (await cachedFetch(`${server.url}/a`)).text()
    // What an AbortController polyfill hands out: the methods, no AbortSignal (and no reason).
    const lookalike = { aborted: false, addEventListener () {}, removeEventListener () {} } as unknown as AbortSignal

    await expect(cachedFetch(`${server.url}/b`, { signal: lookalike })).rejects.toThrow(/AbortSignal/)
    expect(server.hits('/b')).toBe(0)
  })
})
