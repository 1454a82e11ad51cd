/**
 * The contenders: one async operation each that ends with the body read into an ArrayBuffer, as
 * a caller would. All but the floor request their own path on the same origin, so that the origin's
 * count per path shows whether a contender ever left its cache. `observe()` makes one more request
 * and returns what a user would see of it (status, headers, body size), for the hit checks.
 */
import { Agent, fetch, interceptors, request, Response, type Dispatcher } from 'undici'
import type * as cachedfetch from '../src/index.js'
import type { Cache } from '../src/index.js'

/** What the contenders use of cachedfetch: the sources by default, or a build (`--lib dist`). */
export type Library = Pick<typeof cachedfetch, 'cacheInterceptor' | 'createCache' | 'createCachedFetch'>

/** What decides how a contender's responses are checked. */
export type ContenderKind = 'floor' | 'cachedfetch' | 'undici-cache' | 'origin'

export type ContenderId =
  | 'floor'
  | 'cachedFetch'
  | 'cacheInterceptor'
  | 'undiciCacheRequest'
  | 'undiciCacheFetch'
  | 'plainRequest'

export interface Observed {
  readonly status: number
  readonly headers: Readonly<Record<string, string | undefined>>
  readonly bytes: number
}

export interface Contender {
  readonly id: ContenderId
  readonly label: string
  readonly kind: ContenderKind
  /** The origin path it requests; `undefined` for the floor, which makes no request. */
  readonly path: string | undefined
  /** The cachedfetch engine behind it, for its stats. */
  readonly cache: Cache | undefined
  /** One operation; resolves to the body's byte length. */
  op (): Promise<number>
  observe (): Promise<Observed>
}

export interface Field {
  readonly contenders: readonly Contender[]
  close (): Promise<void>
}

export function buildContenders (lib: Library, origin: string, body: Buffer): Field {
  const { cacheInterceptor, createCache, createCachedFetch } = lib
  const cachedFetchCache = createCache()
  const cachedFetchAgent = new Agent()
  const cachedFetch = createCachedFetch({ cache: cachedFetchCache, dispatcher: cachedFetchAgent })
  const interceptorCache = createCache()
  const interceptorAgent = new Agent().compose(cacheInterceptor({ cache: interceptorCache }))
  const undiciCacheAgent = new Agent().compose(interceptors.cache())
  const plainAgent = new Agent()
  const agents: Dispatcher[] = [cachedFetchAgent, interceptorAgent, undiciCacheAgent, plainAgent]

  const viaFetch = (id: ContenderId, label: string, kind: ContenderKind, path: string, cache: Cache | undefined,
    call: (url: string) => ReturnType<typeof fetch>): Contender => {
    const url = origin + path
    return {
      id, label, kind, path, cache,
      op: async () => (await (await call(url)).arrayBuffer()).byteLength,
      observe: async () => {
        const res = await call(url)
        const bytes = (await res.arrayBuffer()).byteLength
        return { status: res.status, headers: Object.fromEntries(res.headers), bytes }
      }
    }
  }
  const viaRequest = (id: ContenderId, label: string, kind: ContenderKind, path: string, cache: Cache | undefined,
    dispatcher: Dispatcher): Contender => {
    const url = origin + path
    return {
      id, label, kind, path, cache,
      op: async () => (await (await request(url, { dispatcher })).body.arrayBuffer()).byteLength,
      observe: async () => {
        const { statusCode, headers, body: stream } = await request(url, { dispatcher })
        const bytes = (await stream.arrayBuffer()).byteLength
        const flat: Record<string, string | undefined> = {}
        for (const name in headers) {
          const value = headers[name]
          flat[name] = Array.isArray(value) ? value.join(', ') : value
        }
        return { status: statusCode, headers: flat, bytes }
      }
    }
  }

  const contenders: Contender[] = [
    {
      id: 'floor',
      label: 'floor: new Response(buf).arrayBuffer()',
      kind: 'floor',
      path: undefined,
      cache: undefined,
      op: async () => (await new Response(body).arrayBuffer()).byteLength,
      observe: async () => ({ status: 200, headers: {}, bytes: (await new Response(body).arrayBuffer()).byteLength })
    },
    viaFetch('cachedFetch', 'cachedfetch: cachedFetch()', 'cachedfetch', '/cachedfetch/fetch', cachedFetchCache,
      (url) => cachedFetch(url)),
    viaRequest('cacheInterceptor', 'cachedfetch: request + cacheInterceptor', 'cachedfetch', '/cachedfetch/interceptor',
      interceptorCache, interceptorAgent),
    viaRequest('undiciCacheRequest', 'undici: request + interceptors.cache', 'undici-cache', '/undici-cache/request',
      undefined, undiciCacheAgent),
    viaFetch('undiciCacheFetch', 'undici: fetch + interceptors.cache', 'undici-cache', '/undici-cache/fetch', undefined,
      (url) => fetch(url, { dispatcher: undiciCacheAgent })),
    viaRequest('plainRequest', 'undici: request, no cache (origin)', 'origin', '/origin', undefined, plainAgent)
  ]

  return {
    contenders,
    close: async () => {
      await Promise.all(agents.map((agent) => agent.close()))
    }
  }
}
