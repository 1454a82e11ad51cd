/**
 * Bad input. Bad options are a TypeError at construction that names the option, from every
 * factory; garbage in response (and request) header fields never throws through either adapter:
 * the caller still gets the origin's answer.
 */
import { readFileSync } from 'node:fs'
import { afterEach, describe, expect, it } from 'vitest'
import { Keyv, type KeyvStoreAdapter } from 'keyv'
import { request, type Dispatcher } from 'undici'
import { createCache, createCachedFetch, cacheInterceptor, type CacheOptions } from '../src/index.js'
import type { Origin } from './helpers/origin.js'
import { teardown } from './helpers/teardown.js'

interface InvalidOptions {
  readonly name: string
  readonly options: Record<string, unknown>
  /** A pattern the error message must match: the option's path. */
  readonly names: string
}

interface GarbageCase {
  readonly name: string
  readonly headers: Record<string, string | string[]>
}

function fixture<T> (name: string): T {
  return JSON.parse(readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8')) as T
}

const invalidOptions = fixture<InvalidOptions[]>('invalid-options.json')
const garbage = fixture<{ response: GarbageCase[], request: GarbageCase[] }>('garbage-headers.json')

/** Every public factory that takes cache options. */
const factories: Record<string, (options: unknown) => unknown> = {
  createCache: (options) => createCache(options as CacheOptions),
  cacheInterceptor: (options) => cacheInterceptor(options as CacheOptions),
  createCachedFetch: (options) => createCachedFetch(options as CacheOptions)
}

const opened = teardown()

afterEach(() => opened.close())

function thrown (build: () => unknown): unknown {
  try {
    build()
  } catch (error) {
    return error
  }
  return undefined
}

describe('bad options are a TypeError naming the option', () => {
  for (const { name, options, names } of invalidOptions) {
    for (const [factory, build] of Object.entries(factories)) {
      it(`${name}, given to ${factory}`, () => {
        const error = thrown(() => build(options))
        expect(error).toBeInstanceOf(TypeError)
        expect((error as TypeError).message).toMatch(new RegExp(names))
      })
    }
  }

  const notJson: [string, Record<string, unknown>, RegExp][] = [
    ['a NaN maxSize', { maxSize: Number.NaN }, /options\.maxSize/],
    ['an infinite maxEntries', { maxEntries: Number.POSITIVE_INFINITY }, /options\.maxEntries/],
    ['a bigint maxEntrySize', { maxEntrySize: 1024n }, /options\.maxEntrySize/],
    ['a store that is a function', { store: () => undefined }, /options\.store/],
    ['a store that is a Set', { store: new Set() }, /options\.store/],
    ['a clock that is a Date', { now: new Date() }, /options\.now/],
    ['a namespace next to a Keyv instance, which has its own', { store: new Keyv(), namespace: 'mine' }, /options\.store is a Keyv instance.*namespace/],
    // A Map's entries are no keys: read as an object, it was no hosts, no retry options at all.
    ['hosts given as a Map', { hosts: new Map([['localhost', { enabled: false }]]) }, /options\.hosts .*Map/],
    ['a hosts entry given as a Map', { hosts: { localhost: new Map([['enabled', false]]) } }, /options\.hosts\["localhost"\].*Map/],
    ['retry given as a Map', { retry: new Map([['limit', 0]]) }, /options\.retry .*Map/],
    ['options given as a Map', new Map([['maxSize', 0]]) as unknown as Record<string, unknown>, /options .*Map/]
  ]
  for (const [name, options, names] of notJson) {
    for (const [factory, build] of Object.entries(factories)) {
      it(`${name}, given to ${factory}`, () => {
        const error = thrown(() => build(options))
        expect(error).toBeInstanceOf(TypeError)
        expect((error as TypeError).message).toMatch(names)
      })
    }
  }

  for (const value of [null, 'fast', 42]) {
    for (const [factory, build] of Object.entries(factories)) {
      it(`options that are ${JSON.stringify(value)}, given to ${factory}`, () => {
        const error = thrown(() => build(value))
        expect(error).toBeInstanceOf(TypeError)
        expect((error as TypeError).message).toMatch(/options/)
      })
    }
  }

  it('refuses cache options next to a ready cache, naming the one that would be ignored', () => {
    const cache = createCache()
    // @ts-expect-error -- the types refuse both together too
    expect(() => createCachedFetch({ cache, maxSize: 1 })).toThrow(TypeError)
    // @ts-expect-error -- the types refuse both together too
    expect(() => createCachedFetch({ cache, maxSize: 1 })).toThrow(/options\.maxSize/)
    // @ts-expect-error -- the types refuse both together too
    expect(() => cacheInterceptor({ cache, shared: false })).toThrow(/options\.shared/)
    // @ts-expect-error -- the types refuse both together too
    expect(() => createCachedFetch({ cache, store: new Keyv() })).toThrow(/options\.store/)
  })

  it('refuses a cache that is not one from createCache()', () => {
    expect(() => createCachedFetch({ cache: {} } as unknown as CacheOptions)).toThrow(/options\.cache/)
    expect(() => cacheInterceptor({ cache: 'memory' } as unknown as CacheOptions)).toThrow(/options\.cache/)
  })

  it('refuses a dispatcher that is not one, naming options.dispatcher', () => {
    const error = thrown(() => createCachedFetch({ dispatcher: {} as unknown as Dispatcher }))
    expect(error).toBeInstanceOf(TypeError)
    expect((error as TypeError).message).toMatch(/options\.dispatcher/)
    // compose() alone is not enough: the cache dispatches through it.
    expect(() => createCachedFetch({ dispatcher: { compose: () => ({}) } as unknown as Dispatcher })).toThrow(/options\.dispatcher/)
  })

  it('refuses an init.dispatcher that is not one, on a hit as on a miss, and reads null as none', async () => {
    const server = await opened.origin({
      '/kept': (_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' })
        res.end('kept')
      }
    })
    const cachedFetch = createCachedFetch({ dispatcher: opened.agent() })
    const bogus = { dispatcher: { compose: () => ({}) } } as unknown as RequestInit
    await expect(cachedFetch(`${server.url}/kept`, bogus)).rejects.toThrow(/init\.dispatcher/)
    expect(await (await cachedFetch(`${server.url}/kept`, { dispatcher: null } as unknown as RequestInit)).text()).toBe('kept')
    await expect(cachedFetch(`${server.url}/kept`, bogus)).rejects.toThrow(/init\.dispatcher/)
    expect(server.hits('/kept')).toBe(1)
  })

  it('accepts a Keyv instance and a bare Keyv store adapter (a Map) as store, and caches through them', async () => {
    const server = await opened.origin({
      '/kept': (_req, res) => {
        res.writeHead(200, { 'cache-control': 'max-age=60', 'content-type': 'text/plain' })
        res.end('kept')
      }
    })
    for (const store of [new Keyv(), new Map() as unknown as KeyvStoreAdapter]) {
      const cache = createCache({ store })
      const cachedFetch = createCachedFetch({ cache, dispatcher: opened.agent() })
      expect(await (await cachedFetch(`${server.url}/kept`)).text()).toBe('kept')
      for (let turn = 0; turn < 100 && cache.stats().stored === 0; turn++) await new Promise((resolve) => setImmediate(resolve))
      const hit = await cachedFetch(`${server.url}/kept`)
      expect(hit.headers.get('cache-status')).toMatch(/^cachedfetch; hit/)
      expect(await hit.text()).toBe('kept')
    }
    expect(server.hits('/kept')).toBe(2)
  })
})

describe('bad arguments to the invalidation methods are a TypeError naming them', () => {
  const cache = createCache()
  it.each([
    ['a relative prefix', () => cache.invalidatePrefix('/users/'), /prefix.*absolute URL/],
    ['an empty tag', () => cache.invalidateTag(''), /tag/],
    ['a tag that is a number', () => cache.invalidateTag(7 as unknown as string), /tag/]
  ])('%s', async (_name, call, message) => {
    await expect(call()).rejects.toThrow(message)
  })
})

describe('garbage header fields never throw through either adapter', () => {
  const body = 'the payload'

  async function twiceThroughBoth (server: Origin, path: string, headers: Record<string, string> = {}): Promise<void> {
    const cache = createCache()
    const cachedFetch = createCachedFetch({ cache, dispatcher: opened.agent() })
    const dispatcher = opened.agent().compose(cacheInterceptor({ cache: createCache() }))
    for (let i = 0; i < 2; i++) {
      const viaFetch = await cachedFetch(server.url + path, { headers })
      expect(viaFetch.status).toBe(200)
      expect(await viaFetch.text()).toBe(body)
      expect(viaFetch.headers.get('cache-status')).toMatch(/cachedfetch; /)
      expect(viaFetch.headers.get('cache-status')).not.toMatch(/NaN|Infinity|undefined/)

      const viaInterceptor = await request(server.url + path, { dispatcher, headers })
      expect(viaInterceptor.statusCode).toBe(200)
      expect(await viaInterceptor.body.text()).toBe(body)
      expect(String(viaInterceptor.headers['cache-status'])).toMatch(/cachedfetch; /)
      expect(String(viaInterceptor.headers['cache-status'])).not.toMatch(/NaN|Infinity|undefined/)
    }
  }

  for (const { name, headers } of garbage.response) {
    it(`in the response: ${name}`, async () => {
      const server = await opened.origin({
        '/garbage': (_req, res) => {
          res.writeHead(200, { 'content-type': 'text/plain', ...headers })
          res.end(body)
        }
      })
      await twiceThroughBoth(server, '/garbage')
    })
  }

  for (const { name, headers } of garbage.request) {
    it(`in the request: ${name}`, async () => {
      const server = await opened.origin({
        '/fine': (_req, res) => {
          res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', etag: '"e1"' })
          res.end(body)
        }
      })
      await twiceThroughBoth(server, '/fine', headers as Record<string, string>)
    })
  }

  it('in a 304 that answers a revalidation', async () => {
    let calls = 0
    const server = await opened.origin({
      '/revalidated': (_req, res) => {
        calls++
        if (calls === 1) {
          res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=0', etag: '"e1"' })
          res.end(body)
          return
        }
        res.writeHead(304, {
          'cache-control': 'max-age=, ,=,;;',
          date: 'not a date',
          expires: 'never',
          etag: '"e1"',
          'last-modified': 'who knows',
          age: 'ancient'
        })
        res.end()
      }
    })
    const cachedFetch = createCachedFetch({ cache: createCache(), dispatcher: opened.agent() })
    expect(await (await cachedFetch(`${server.url}/revalidated`)).text()).toBe(body)
    for (let i = 0; i < 2; i++) {
      const response = await cachedFetch(`${server.url}/revalidated`)
      expect(response.status).toBe(200)
      expect(await response.text()).toBe(body)
    }
    expect(server.seen('/revalidated')[1]?.headers['if-none-match']).toBe('"e1"')
  })
})
