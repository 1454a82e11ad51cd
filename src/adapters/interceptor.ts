/**
 * The engine's face in undici: `cacheInterceptor(options)` for `new Agent().compose(…)`,
 * `setGlobalDispatcher`, `undici.request`, `stream` and `fetch`. A hit is played from memory; a
 * miss or revalidation is dispatched on with a CacheHandler that lets the engine see the answer.
 */
import type { Dispatcher } from 'undici'
import { cacheFrom, type CacheOrOptions, type FetchCacheMode, type Lookup } from '../cache.js'
import { normalizeHeaders, normalizeUrl, type CacheRequest } from '../key.js'
import { CacheHandler } from './cache-handler.js'
import { hasNoContent } from './content.js'
import { ReplayController } from './replay.js'

/** Dispatch options the interceptor reads besides undici's own. */
export interface CacheDispatchOptions {
  /**
   * A Fetch request cache mode for this request (what `init.cache` is to fetch).
   * @default 'default'
   */
  cacheMode?: FetchCacheMode
}

export type CacheInterceptorOptions = CacheOrOptions

export function cacheInterceptor (options?: CacheInterceptorOptions): Dispatcher.DispatcherComposeInterceptor {
  const cache = cacheFrom(options)
  return (dispatch) => function cachedDispatch (opts: Dispatcher.DispatchOptions & CacheDispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const request = opts.upgrade == null ? toCacheRequest(opts) : undefined
    if (request === undefined) return dispatch(opts, handler)
    let lookup
    try {
      lookup = cache.lookup(request, opts.cacheMode)
    } catch {
      // The cache fails open: whatever went wrong in it, the request still reaches the origin.
      return dispatch(opts, handler)
    }
    if (!(lookup instanceof Promise)) return route(lookup)
    lookup.then(route, () => dispatch(opts, handler))
    return true

    function route (found: Lookup): boolean {
      if (found.kind === 'hit') {
        const { entry, headers } = found
        const body = hasNoContent(request!.method, entry.status) ? undefined : entry.body
        new ReplayController(handler, { status: entry.status, statusText: entry.statusText, headers, body }).start(false)
        return true
      }
      if (found.kind === 'unsatisfiable') {
        new ReplayController(handler, { status: 504, statusText: 'Gateway Timeout', headers: found.headers, body: undefined }).start(false)
        return true
      }
      const forwarded = found.headers === undefined ? opts : { ...opts, headers: found.headers }
      return dispatch(forwarded, new CacheHandler(cache, request!, found, handler))
    }
  }
}

/** The engine's view of a dispatch; `undefined` for what the cache does not handle. */
function toCacheRequest (opts: Dispatcher.DispatchOptions): CacheRequest | undefined {
  const { origin, path } = opts
  // A path not starting with "/" (CONNECT targets, "*") would make origin + path another URL.
  if (origin === undefined || typeof path !== 'string' || path[0] !== '/') return undefined
  const base = typeof origin === 'string' ? origin.replace(/\/$/, '') : origin.origin
  try {
    return { method: opts.method.toUpperCase(), url: normalizeUrl(base + path), headers: normalizeHeaders(opts.headers) }
  } catch {
    return undefined
  }
}
