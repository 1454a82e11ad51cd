/**
 * The field: every JavaScript HTTP cache the benchmark measures, each configured as its docs
 * recommend for an in-memory cache (make-fetch-happen has only its on-disk cache), plus two
 * references that cache nothing — the floor every fetch-shaped hit pays, and a plain undici.request
 * to the origin. A contender makes clients; each client has a cache of its own, and reads bodies
 * as a caller would (whole, or chunk by chunk without keeping them). `observe()` returns what a
 * user would look at to believe a response came from the cache — the client's own word on it —
 * while the benchmark's proof is the origin's request count.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import axios from 'axios'
import { buildMemoryStorage, setupCache } from 'axios-cache-interceptor'
import got from 'got'
import { Keyv } from 'keyv'
import { Agent, cacheStores, fetch, interceptors, request, Response, type Dispatcher } from 'undici'
import type { Cache } from '../src/index.js'
import type { Library } from './library.js'
import { jsonBody, SIZES, type Size } from './origin.js'

export type ScenarioId = 'hit' | 'revalidate' | 'miss' | 'collapse' | 'stale' | 'redis' | 'memory' | 'big-body'

/** What decides how a contender's answers are checked and compared. */
export type ContenderKind = 'floor' | 'cachedfetch' | 'peer' | 'origin'

export type ContenderId =
  | 'floor'
  | 'cachedFetch'
  | 'cachedFetchStreamed'
  | 'cacheInterceptor'
  | 'undiciCacheRequest'
  | 'undiciCacheFetch'
  | 'makeFetchHappen'
  | 'axiosCache'
  | 'got'
  | 'plainRequest'

/** A response as a user sees it. */
export interface Reply {
  readonly status: number
  readonly bytes: number
  /** The client's own word on where the response came from, as it reports it. */
  readonly signal: string
  /** What that word means: served from the cache without asking the origin. */
  readonly fromCache: boolean
}

export interface Client {
  /** GET, reading the whole body as a caller would; resolves to its byte length. */
  get (url: string): Promise<number>
  observe (url: string): Promise<Reply>
  /** GET, reading the body chunk by chunk and keeping none of it; resolves to the byte count. */
  stream (url: string, onChunk?: (bytes: number) => void): Promise<number>
  /** The cachedfetch engine behind it, for its stats. */
  readonly cache: Cache | undefined
  /**
   * Between batches and rounds, outside the timing: lets go of what the client leaked that no
   * request needs (got's error listeners). In the shared process a leak makes every contender's
   * full collections slower, not only its own: in a run of the hit scenario with got's kept, a full
   * collection left a median of 147 MB of heap and paused the process for 68 ms (median); with them
   * removed, 34 MB and 3.8 ms.
   */
  settle? (): void
  close (): Promise<void>
}

export interface Contender {
  readonly id: ContenderId
  readonly label: string
  readonly kind: ContenderKind
  /** What it is and how it is configured. */
  readonly setup: string
  /** Scenarios it cannot take part in, and why. */
  readonly cannot: Partial<Record<ScenarioId, string>>
  create (): Client
}

/** make-fetch-happen ships no types; this is the part of its API the benchmark uses. */
interface MakeFetchHappen {
  defaults (options: { cachePath: string }): (url: string) => Promise<MinipassResponse>
}
interface MinipassResponse {
  readonly status: number
  readonly headers: { get (name: string): string | null }
  readonly body: AsyncIterable<Buffer>
  arrayBuffer (): Promise<ArrayBuffer>
}
const makeFetchHappen = createRequire(import.meta.url)('make-fetch-happen') as MakeFetchHappen

const NO_REQUEST = 'makes no request'
const NO_SWR = 'no stale-while-revalidate: a stale entry is revalidated before it is served'
const NO_MEMORY_TIER = 'caches on disk only (cacache): it has no memory tier to measure'
const SAME_STORE = (other: string): string => `stores entries exactly as ${other} does: measured there`
export const SCENARIOS: readonly ScenarioId[] = ['hit', 'revalidate', 'miss', 'collapse', 'stale', 'redis', 'memory', 'big-body']
const HIT_ONLY = 'a variant for hits only: elsewhere the body is read as `cachedFetch()` reads it'
/** As many entries as cachedfetch holds by default: the peers' own defaults (1024) are too few for the memory scenario. */
const MAX_ENTRIES = 50_000

export function buildField (lib: Library): readonly Contender[] {
  return [
    {
      id: 'floor',
      label: 'floor: new Response(buf).arrayBuffer()',
      kind: 'floor',
      setup: 'no cache and no request: a Response around a Buffer, its body read, which is what a hit through a fetch that builds its Response from the stored bytes costs',
      cannot: { revalidate: NO_REQUEST, miss: NO_REQUEST, collapse: NO_REQUEST, stale: NO_REQUEST, redis: NO_REQUEST, memory: NO_REQUEST, 'big-body': NO_REQUEST },
      create: floorClient
    },
    {
      id: 'cachedFetch',
      label: 'cachedfetch: cachedFetch()',
      kind: 'cachedfetch',
      setup: '`createCachedFetch({ cache: createCache(), dispatcher: new Agent() })`: the defaults (64 MiB memory tier)',
      cannot: { memory: SAME_STORE('cachedfetch: request + cacheInterceptor') },
      create: () => {
        const cache = lib.createCache()
        const agent = new Agent()
        const call = lib.createCachedFetch({ cache, dispatcher: agent })
        return fetchClient((url) => call(url), cache, () => agent.close(), cacheStatusSignal)
      }
    },
    {
      // A hit's body is read straight from the entry by arrayBuffer() (src/adapters/fetched-response.ts);
      // a caller that reads `body` gets a web stream made for it, and this row shows what that costs.
      id: 'cachedFetchStreamed',
      label: 'cachedfetch: cachedFetch(), body as a stream',
      kind: 'cachedfetch',
      setup: 'as `cachedFetch()` above, its body read chunk by chunk from `response.body` rather than by `arrayBuffer()`',
      cannot: Object.fromEntries(SCENARIOS.filter((s) => s !== 'hit').map((s) => [s, HIT_ONLY])),
      create: () => {
        const cache = lib.createCache()
        const agent = new Agent()
        const call = lib.createCachedFetch({ cache, dispatcher: agent })
        const client = fetchClient((url) => call(url), cache, () => agent.close(), cacheStatusSignal)
        return { ...client, get: (url) => client.stream(url) }
      }
    },
    {
      id: 'cacheInterceptor',
      label: 'cachedfetch: request + cacheInterceptor',
      kind: 'cachedfetch',
      setup: '`undici.request` through `new Agent().compose(cacheInterceptor({ cache: createCache() }))`',
      cannot: {},
      create: () => {
        const cache = lib.createCache()
        const agent = new Agent().compose(lib.cacheInterceptor({ cache }))
        return requestClient(agent, cache, cacheStatusSignal)
      }
    },
    {
      id: 'undiciCacheRequest',
      label: 'undici: request + interceptors.cache',
      kind: 'peer',
      setup: '`undici.request` through `new Agent().compose(interceptors.cache({ store }))`, a `MemoryCacheStore` ' +
        'with `maxCount: 50000` (cachedfetch\'s default; undici\'s own, 1024 entries, is too few for the memory scenario)',
      cannot: { redis: 'no Redis store (undici ships a memory and a SQLite store)' },
      create: () => requestClient(undiciCacheAgent(), undefined, ageSignal)
    },
    {
      id: 'undiciCacheFetch',
      label: 'undici: fetch + interceptors.cache',
      kind: 'peer',
      setup: '`undici.fetch` with the same kind of dispatcher as above',
      cannot: { redis: 'no Redis store (undici ships a memory and a SQLite store)', memory: SAME_STORE('undici: request + interceptors.cache') },
      create: () => {
        const agent = undiciCacheAgent()
        return fetchClient((url) => fetch(url, { dispatcher: agent }), undefined, () => agent.close(), ageSignal)
      }
    },
    {
      id: 'makeFetchHappen',
      label: 'make-fetch-happen',
      kind: 'peer',
      setup: '`makeFetchHappen.defaults({ cachePath })` with a fresh temporary directory: its only cache is on disk ' +
        '(cacache), so its hits read files',
      cannot: { stale: NO_SWR, redis: NO_MEMORY_TIER, memory: NO_MEMORY_TIER },
      create: () => {
        const cachePath = mkdtempSync(join(tmpdir(), 'bench-make-fetch-happen-'))
        const call = makeFetchHappen.defaults({ cachePath })
        return fetchClient(call, undefined, () => rmSync(cachePath, { recursive: true, force: true }), (headers) => {
          const status = headers.get('x-local-cache-status') ?? 'absent'
          return { signal: `x-local-cache-status: ${status}`, fromCache: status === 'hit' }
        })
      }
    },
    {
      id: 'axiosCache',
      label: 'axios + axios-cache-interceptor',
      kind: 'peer',
      setup: '`setupCache(axios.create(), { storage: buildMemoryStorage(false, 300000, 50000) })`: its memory storage with ' +
        'its defaults but `maxEntries` (1024 by default, too few for the memory scenario), its header interpretation; bodies as ' +
        '`responseType: \'arraybuffer\'` (`\'stream\'` for the 200 MB body)',
      cannot: {
        revalidate: 'does not store a `no-cache` response (its header interpreter reads it as "do not cache"), so it never revalidates one',
        stale: NO_SWR,
        redis: 'no Redis storage of its own (its docs show one to write by hand with `buildStorage`)'
      },
      create: axiosClient
    },
    {
      id: 'got',
      label: 'got (cacheable-request)',
      kind: 'peer',
      setup: '`got.extend({ cache })` with an in-memory `new Keyv()` (got\'s docs: a Map or any Keyv; a Map is wrapped in ' +
        'one). got caches through cacheable-request, which adds an error listener to the Keyv on every request and never ' +
        'removes it (Keyv\'s `once()` wraps the listener, so `removeListener()` misses it): its memory grows per request, ' +
        'hits included, and Keyv warns past 100 listeners, so the limit is lifted. Between batches and rounds (outside ' +
        'the timing) the benchmark removes the listeners it leaked, so that the heap they hold does not slow every other ' +
        'contender\'s collections; the memory scenario keeps them',
      cannot: { stale: NO_SWR },
      create: () => gotClient(new Keyv())
    },
    {
      id: 'plainRequest',
      label: 'undici: request, no cache (origin)',
      kind: 'origin',
      setup: '`undici.request` through a plain `new Agent()`: a round trip to the loopback origin, for reference',
      cannot: { redis: 'no cache', memory: 'no cache' },
      create: () => requestClient(new Agent(), undefined, () => ({ signal: 'no cache', fromCache: false }))
    }
  ]
}

function undiciCacheAgent (): Dispatcher {
  return new Agent().compose(interceptors.cache({ store: new cacheStores.MemoryCacheStore({ maxCount: MAX_ENTRIES }) }))
}

type Signal = (headers: { get (name: string): string | null }) => { signal: string, fromCache: boolean }

const cacheStatusSignal: Signal = (headers) => {
  const status = headers.get('cache-status') ?? 'absent'
  // A stale hit inside stale-while-revalidate counts too: it did not wait for the origin.
  return { signal: `cache-status: ${status}`, fromCache: /(^|,\s*)cachedfetch; hit(;|$)/.test(status) }
}

const ageSignal: Signal = (headers) => {
  const age = headers.get('age')
  return { signal: `age: ${age ?? 'absent'}`, fromCache: age !== null }
}

function floorClient (): Client {
  const bodies = new Map<string, Buffer>()
  const bodyOf = (url: string): Buffer => {
    let body = bodies.get(url)
    if (body === undefined) bodies.set(url, body = jsonBody(SIZES[url.split('/').at(-2) as Size]))
    return body
  }
  return {
    get: async (url) => (await new Response(bodyOf(url)).arrayBuffer()).byteLength,
    observe: async (url) => ({ status: 200, bytes: (await new Response(bodyOf(url)).arrayBuffer()).byteLength, signal: 'no request', fromCache: false }),
    stream: () => Promise.reject(new Error('the floor makes no request')),
    cache: undefined,
    close: async () => {}
  }
}

interface FetchLike {
  readonly status: number
  readonly headers: { get (name: string): string | null }
  readonly body: AsyncIterable<Uint8Array> | null
  arrayBuffer (): Promise<ArrayBuffer>
}

function fetchClient (call: (url: string) => Promise<FetchLike>, cache: Cache | undefined, close: () => unknown, signal: Signal): Client {
  return {
    get: async (url) => (await (await call(url)).arrayBuffer()).byteLength,
    observe: async (url) => {
      const res = await call(url)
      return { status: res.status, bytes: (await res.arrayBuffer()).byteLength, ...signal(res.headers) }
    },
    stream: async (url, onChunk) => {
      const res = await call(url)
      let bytes = 0
      for await (const chunk of res.body ?? []) {
        bytes += chunk.byteLength
        onChunk?.(chunk.byteLength)
      }
      return bytes
    },
    cache,
    close: async () => { await close() }
  }
}

function requestClient (dispatcher: Dispatcher, cache: Cache | undefined, signal: Signal): Client {
  return {
    get: async (url) => (await (await request(url, { dispatcher })).body.arrayBuffer()).byteLength,
    observe: async (url) => {
      const { statusCode, headers, body } = await request(url, { dispatcher })
      const bytes = (await body.arrayBuffer()).byteLength
      const get = (name: string): string | null => {
        const value = headers[name]
        return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value
      }
      return { status: statusCode, bytes, ...signal({ get }) }
    },
    stream: async (url, onChunk) => {
      const { body } = await request(url, { dispatcher })
      let bytes = 0
      for await (const chunk of body) {
        bytes += (chunk as Buffer).byteLength
        onChunk?.((chunk as Buffer).byteLength)
      }
      return bytes
    },
    cache,
    close: () => dispatcher.close()
  }
}

function axiosClient (): Client {
  const storage = buildMemoryStorage(false, 300_000, MAX_ENTRIES)
  const client = setupCache(axios.create(), { storage })
  return {
    get: async (url) => (await client.get<ArrayBuffer>(url, { responseType: 'arraybuffer' })).data.byteLength,
    observe: async (url) => {
      const res = await client.get<ArrayBuffer>(url, { responseType: 'arraybuffer' })
      return { status: res.status, bytes: res.data.byteLength, signal: `cached: ${res.cached}`, fromCache: res.cached }
    },
    stream: async (url, onChunk) => {
      const res = await client.get<AsyncIterable<Buffer>>(url, { responseType: 'stream' })
      let bytes = 0
      for await (const chunk of res.data) {
        bytes += chunk.byteLength
        onChunk?.(chunk.byteLength)
      }
      return bytes
    },
    cache: undefined,
    // Its cleanup timer (unref'd, but alive) would keep the storage, and every body in it, for the
    // rest of the run: a client dropped per batch of misses held 200 MB after 20 batches.
    close: async () => {
      clearInterval(storage.cleaner)
      storage.data.clear()
      await Promise.resolve()
    }
  }
}

/** got over a Keyv: an in-memory one by default, or one over Redis (bench/storage.ts). */
export function gotClient (keyv: Keyv): Client {
  keyv.setMaxListeners(Infinity)
  const client = got.extend({ cache: keyv })
  const own = [...keyv.listeners('error')]
  return {
    get: async (url) => (await client(url, { responseType: 'buffer' })).body.byteLength,
    observe: async (url) => {
      const res = await client(url, { responseType: 'buffer' })
      return { status: res.statusCode, bytes: res.body.byteLength, signal: `isFromCache: ${res.isFromCache}`, fromCache: res.isFromCache }
    },
    stream: async (url, onChunk) => {
      let bytes = 0
      for await (const chunk of client.stream(url)) {
        bytes += (chunk as Buffer).byteLength
        onChunk?.((chunk as Buffer).byteLength)
      }
      return bytes
    },
    cache: undefined,
    // What cacheable-request added and never removed: Keyv's once() wrappers, each holding its request.
    settle: () => {
      for (const listener of [...keyv.listeners('error')]) if (!own.includes(listener)) keyv.off('error', listener)
    },
    close: async () => { await keyv.disconnect() }
  }
}
