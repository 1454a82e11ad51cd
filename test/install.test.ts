/**
 * `install()` gives code that calls plain `fetch` or `undici.request` the cache, on one cache, and
 * `uninstall()` puts back exactly the fetch and the global dispatcher that were there. Checked on
 * the Node that runs the suite (20 here; README says which were checked), with Node's own bundled
 * fetch too.
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { getGlobalDispatcher, interceptors, MockAgent, request, setGlobalDispatcher } from 'undici'
import { createCache, createCachedFetch, install, uninstall } from '../src/index.js'
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

describe('install() again, and what it was given', () => {
  it('keeps the dispatcher the application set since the first install: fetch and undici.request go out through it', async () => {
    const original = getGlobalDispatcher()
    const mock = new MockAgent()
    mock.disableNetConnect()
    mock.get('http://api.invalid').intercept({ path: '/items' }).reply(200, 'from the mock', { headers: { 'cache-control': 'max-age=60' } }).persist()
    try {
      install()
      setGlobalDispatcher(mock)
      install()
      expect(getGlobalDispatcher()).not.toBe(mock)
      expect(await (await globalThis.fetch('http://api.invalid/items')).text()).toBe('from the mock')
      expect(await (await request('http://api.invalid/items')).body.text()).toBe('from the mock')
    } finally {
      await uninstall()
      setGlobalDispatcher(original)
    }
  })

  it('never closes a cache it was given: installed twice, and after uninstall(), its store still serves', async () => {
    const origin = await opened.origin({ '/data': respond(200, { 'cache-control': 'max-age=60' }, 'data') })
    const cache = createCache({ store: new Map(), maxSize: 0 })
    install({ cache })
    await status(await globalThis.fetch(`${origin.url}/data`))
    await cache.flush()
    install({ cache })
    expect(await status(await globalThis.fetch(`${origin.url}/data`))).toMatch(/^cachedfetch; hit/)
    await uninstall()
    const cachedFetch = createCachedFetch({ cache, dispatcher: opened.agent() })
    expect(await status(await cachedFetch(`${origin.url}/data`))).toMatch(/^cachedfetch; hit/)
    expect(origin.hits('/data')).toBe(1)
    await cache.close()
  })

  it('still closes the cache it made when given it back: install({ cache: installed.cache }), then uninstall()', async () => {
    const made = install()
    const close = vi.spyOn(made.cache, 'close')
    install({ cache: made.cache })
    expect(close).not.toHaveBeenCalled()
    await uninstall()
    expect(close).toHaveBeenCalledOnce()
  })

  it.each([
    ['options given as a Map', new Map([['namespace', 'BAD NS']]), /expected options to be an object, got a Map/],
    ['options that are a number', 5, /expected options to be an object, got number 5/],
    ['a dispatcher of its own, which would send fetch one way and undici.request another', { dispatcher: new MockAgent() }, /options\.dispatcher/]
  ])('refuses %s', (_what, options, message) => {
    const nodeFetch = globalThis.fetch
    expect(() => install(options as never)).toThrow(message)
    expect(globalThis.fetch).toBe(nodeFetch)
  })
})

describe("install() after Node's own fetch has run, before this undici was loaded", () => {
  it('still gives fetch and undici.request the cache (on Node 20, Node\'s undici 6 dispatcher took no handler of the cache)', async () => {
    const origin = await opened.origin({ '/data': respond(200, { 'cache-control': 'max-age=60' }, 'data') })
    const index = fileURLToPath(new URL('../src/index.ts', import.meta.url))
    const script = `
      await (await fetch(process.argv[1])).text()
      const { install } = await import(${JSON.stringify(index)})
      install()
      const { request } = await import('undici')
      const statuses = []
      for (let i = 0; i < 2; i++) {
        const fetched = await fetch(process.argv[1])
        await fetched.text()
        const requested = await request(process.argv[1])
        await requested.body.text()
        statuses.push(fetched.headers.get('cache-status'), requested.headers['cache-status'])
      }
      console.log(JSON.stringify(statuses))`
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, `${origin.url}/data`])
    const statuses = JSON.parse(stdout) as string[]
    expect(statuses[0]).toMatch(/^cachedfetch; fwd=uri-miss/)
    expect(statuses.slice(1).every((status) => status.startsWith('cachedfetch; hit'))).toBe(true)
    expect(origin.hits('/data')).toBe(2)
  })
})

describe('install() under an interceptor the application composes over the installed dispatcher', () => {
  // setGlobalDispatcher(getGlobalDispatcher().compose(…)): the usual way to add one to whatever is
  // global, after --import cachedfetch/register too. Each face goes through one cache layer.
  it('sends fetch() and undici.request() through the cache once: one Cache-Status member, one miss counted', async () => {
    const before = getGlobalDispatcher()
    opened.add({ close: () => Promise.resolve(setGlobalDispatcher(before)) })
    const origin = await opened.origin({ '/data': respond(200, { 'cache-control': 'max-age=60' }, 'data') })
    const installed = install()
    setGlobalDispatcher(getGlobalDispatcher().compose(interceptors.retry()))

    expect(await status(await fetch(`${origin.url}/data`))).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    await installed.cache.flush()
    expect(await status(await fetch(`${origin.url}/data`))).toMatch(/^cachedfetch; hit; ttl=\d+$/)
    expect(await status(await request(`${origin.url}/data`))).toMatch(/^cachedfetch; hit; ttl=\d+$/)
    expect(installed.cache.stats()).toMatchObject({ misses: 1, stored: 1, hits: 2 })
  })

  it('installed again with the same cache over a dispatcher composed on the first install, fetch() goes through the cache once', async () => {
    const before = getGlobalDispatcher()
    opened.add({ close: () => Promise.resolve(setGlobalDispatcher(before)) })
    const origin = await opened.origin({ '/data': respond(200, { 'cache-control': 'max-age=60' }, 'data') })
    const cache = createCache()
    opened.add({ close: () => cache.close() })
    install({ cache })
    setGlobalDispatcher(getGlobalDispatcher().compose(interceptors.retry()))
    install({ cache })

    const response = await globalThis.fetch(`${origin.url}/data`)
    await response.arrayBuffer()
    expect(response.headers.get('cache-status')).toBe('cachedfetch; fwd=uri-miss; fwd-status=200; stored')
    expect(cache.stats()).toMatchObject({ misses: 1 })
    const requested = await request(`${origin.url}/data`)
    await requested.body.arrayBuffer()
    expect(String(requested.headers['cache-status'])).toMatch(/^cachedfetch; hit; ttl=\d+$/)
  })

  it('leaves no layer of a cache installed before in the way once installed again', async () => {
    const before = getGlobalDispatcher()
    opened.add({ close: () => Promise.resolve(setGlobalDispatcher(before)) })
    const origin = await opened.origin({ '/data': respond(200, { 'cache-control': 'max-age=60' }, 'data') })
    install()
    setGlobalDispatcher(getGlobalDispatcher().compose(interceptors.retry()))
    await status(await fetch(`${origin.url}/data`))
    const again = install({ hosts: { '127.0.0.1': { enabled: false } } })
    await again.cache.flush()

    expect(await status(await fetch(`${origin.url}/data`))).toBe('cachedfetch; fwd=bypass; fwd-status=200')
    expect(await status(await request(`${origin.url}/data`))).toBe('cachedfetch; fwd=bypass; fwd-status=200')
    expect(origin.hits('/data')).toBe(3)
  })
})

describe('install(), then a global dispatcher of an undici older than 7', () => {
  it('answers fetch() through it as Node\'s own fetch does, as undici 6\'s setGlobalDispatcher() leaves it (an Agent: one of this undici in its place)', async () => {
    const origin = await opened.origin({ '/data': respond(200, { 'cache-control': 'max-age=60' }, 'data') })
    const index = fileURLToPath(new URL('../src/index.ts', import.meta.url))
    // Node 20's own undici 6 Agent, which its fetch makes global when it runs before undici 7 is loaded.
    const script = `
      await (await fetch(process.argv[1])).text()
      const legacy = globalThis[Symbol.for('undici.globalDispatcher.1')]
      const { install } = await import(${JSON.stringify(index)})
      install()
      globalThis[Symbol.for('undici.globalDispatcher.1')] = legacy
      const statuses = []
      for (let i = 0; i < 2; i++) {
        const fetched = await fetch(process.argv[1])
        await fetched.text()
        statuses.push(fetched.status + ' ' + fetched.headers.get('cache-status'))
      }
      console.log(JSON.stringify(statuses))`
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, `${origin.url}/data`])
    const statuses = JSON.parse(stdout) as string[]
    expect(statuses[0]).toMatch(/^200 cachedfetch; fwd=uri-miss/)
    expect(statuses[1]).toMatch(/^200 cachedfetch; hit/)
  })
})
