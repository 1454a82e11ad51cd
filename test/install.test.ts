/**
 * `install()` gives code that calls plain `fetch` or `undici.request` the cache, on one cache, and
 * `uninstall()` puts back exactly the fetch and the global dispatcher that were there. Checked on
 * the Node that runs the suite (20 here; README says which were checked), with Node's own bundled
 * fetch too.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { getGlobalDispatcher, MockAgent, request, setGlobalDispatcher } from 'undici'
import { install, uninstall } from '../src/index.js'
import { respond } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'

const opened = teardown()

afterEach(async () => {
  await uninstall()
  await opened.close()
})

type RequestResult = Awaited<ReturnType<typeof request>>

/** The Cache-Status of a fetch Response (Node's or undici's) or an undici.request() result, body read. */
async function status (response: { headers: Headers, arrayBuffer: () => Promise<ArrayBuffer> } | RequestResult): Promise<string> {
  if ('statusCode' in response) {
    await response.body.arrayBuffer()
    return String(response.headers['cache-status'] ?? 'none')
  }
  await response.arrayBuffer()
  return response.headers.get('cache-status') ?? 'none'
}

describe('install() and uninstall()', () => {
  it('caches plain fetch() and undici.request() on one cache, and uninstall() restores both exactly', async () => {
    const origin = await opened.origin({ '/data': respond(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' }, '{"n":1}') })
    const url = `${origin.url}/data`
    const nodeFetch = globalThis.fetch
    const dispatcher = getGlobalDispatcher()

    const cachedFetch = install()
    expect(globalThis.fetch).not.toBe(nodeFetch)
    expect(await status(await fetch(url))).toMatch(/^cachedfetch; fwd=uri-miss; fwd-status=200; stored$/)
    // The write lands after the body: give it a turn before the next request looks.
    for (let turn = 0; turn < 100 && cachedFetch.cache.stats().stored === 0; turn++) await new Promise((resolve) => setImmediate(resolve))
    expect(await status(await request(url))).toMatch(/^cachedfetch; hit; ttl=\d+$/)
    expect(await status(await fetch(url))).toMatch(/^cachedfetch; hit; ttl=\d+$/)
    // Node's own fetch, kept by code that took it before install(), uses the global dispatcher.
    expect(await status(await nodeFetch(url))).toMatch(/^cachedfetch; hit; ttl=\d+$/)
    expect(origin.hits('/data')).toBe(1)

    await uninstall()
    expect(globalThis.fetch).toBe(nodeFetch)
    expect(getGlobalDispatcher()).toBe(dispatcher)
    expect(await status(await fetch(url))).toBe('none')
    expect(await status(await request(url))).toBe('none')
    expect(origin.hits('/data')).toBe(3)
  })

  it('installed twice, still restores what was there before the first', async () => {
    const nodeFetch = globalThis.fetch
    const dispatcher = getGlobalDispatcher()
    const first = install()
    const second = install({ staleIfError: 60 })
    expect(second.cache).not.toBe(first.cache)
    expect(globalThis.fetch).toBe(second)
    await uninstall()
    expect(globalThis.fetch).toBe(nodeFetch)
    expect(getGlobalDispatcher()).toBe(dispatcher)
  })

  it('refuses bad options without touching the globals', () => {
    const nodeFetch = globalThis.fetch
    expect(() => install({ maxSize: -1 })).toThrow(/options\.maxSize/)
    expect(globalThis.fetch).toBe(nodeFetch)
  })
})

describe('install() and the application\'s global dispatcher (a proxy, a MockAgent)', () => {
  function mocked (): MockAgent {
    const mock = new MockAgent()
    mock.disableNetConnect()
    mock.get('http://api.invalid').intercept({ path: '/items' }).reply(200, 'from the mock', { headers: { 'cache-control': 'max-age=60' } }).persist()
    return mock
  }

  it('sends fetch() and undici.request() through the one set before install(), as plain fetch does', async () => {
    const original = getGlobalDispatcher()
    setGlobalDispatcher(mocked())
    try {
      install()
      expect(await (await globalThis.fetch('http://api.invalid/items')).text()).toBe('from the mock')
      expect(await (await request('http://api.invalid/items')).body.text()).toBe('from the mock')
      expect(await status(await globalThis.fetch('http://api.invalid/items'))).toMatch(/^cachedfetch; hit; ttl=/)
    } finally {
      await uninstall()
      setGlobalDispatcher(original)
    }
  })

  it('sends fetch() through one set after install(), as --import cachedfetch/register leaves the application to do', async () => {
    const original = getGlobalDispatcher()
    try {
      install()
      setGlobalDispatcher(mocked())
      expect(await (await globalThis.fetch('http://api.invalid/items')).text()).toBe('from the mock')
    } finally {
      await uninstall()
      setGlobalDispatcher(original)
    }
  })
})
