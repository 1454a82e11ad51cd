/**
 * The engine's face in undici: `cacheInterceptor(options)` for `new Agent().compose(…)`,
 * `setGlobalDispatcher`, `undici.request`, `stream` and `fetch`. A hit is played from memory (and,
 * stale within stale-while-revalidate, refreshed in the background); anything else goes on to the
 * origin through single-flight and retries, with a CacheHandler letting the engine see the answer.
 */
import { stringify } from 'node:querystring'
import type { Dispatcher } from 'undici'
import type { Cache, FetchCacheMode, Forwarded, Hit, Lookup } from '../cache.js'
import { isFailure } from '../answers.js'
import { FETCH_CACHE_MODES } from '../decision.js'
import { describe } from '../validate.js'
import { cacheFrom, type CacheOrOptions } from './cache-from.js'
import { flightKey } from '../flight.js'
import { lowerCaseName } from '../entry.js'
import { normalizeHeaders, normalizeUrl, storeKey, type CacheRequest } from '../key.js'
import { memoize } from '../memo.js'
import { extend } from '../objects.js'
import type { RequestPolicy } from '../options.js'
import { Broadcast } from './broadcast.js'
import { CacheHandler } from './cache-handler.js'
import { hasNoContent } from './content.js'
import { hasOwnIterator, refusedFields } from './refused-fields.js'
import { ReplayController } from './replay.js'
import { dispatchWithRetry } from './retry.js'
import { EarlyStart } from './early-start.js'
import { withoutInterim } from './interim.js'

type Dispatch = (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) => boolean

/**
 * A dispatch option of cachedFetch's own (src/adapters/fetch.ts): called with the flight its
 * request leads or joins, and its key in `cache.flights`, so that identical fetch callers can follow
 * it without a fetch of their own; with none when the request makes no flight (a hit, a host the
 * cache is off for, …), so that they do not wait for its answer.
 * @internal Not for applications.
 */
export const ON_FLIGHT = Symbol('cachedfetch.onFlight')

/** Dispatch options the interceptor reads besides undici's own. */
export interface CacheDispatchOptions {
  /** @internal cachedFetch's own, to its requests (ON_FLIGHT). */
  [ON_FLIGHT]?: (flight: Broadcast | undefined, key?: string) => void
  /**
   * A Fetch request cache mode for this request (what `init.cache` is to fetch).
   * @default 'default'
   */
  cacheMode?: FetchCacheMode
  /** This request's own stale windows and retries, over the cache's. */
  cachePolicy?: RequestPolicy
}

export type CacheInterceptorOptions = CacheOrOptions

/**
 * undici's dispatch options, as its request(), stream() and the options a dispatcher is given take
 * them, with the interceptor's own: so `request(url, { dispatcher, cacheMode: 'no-cache' })` type-checks.
 */
declare module 'undici' {
  // eslint-disable-next-line @typescript-eslint/no-namespace -- undici declares Dispatcher's types in a namespace
  namespace Dispatcher {
    interface DispatchOptions {
      /** See CacheDispatchOptions. */
      cacheMode?: FetchCacheMode
      /** See CacheDispatchOptions. */
      cachePolicy?: RequestPolicy
    }
  }
}

/** Tells cachedFetch's leader (ON_FLIGHT) that its request makes no flight, so that nobody waits to follow it. */
function noFlight (opts: CacheDispatchOptions): void {
  opts[ON_FLIGHT]?.(undefined)
}

/** What `cacheMode` may be: a misspelt one would be read as the default, and its answer stored. */
const CACHE_MODES: ReadonlySet<string> = new Set(FETCH_CACHE_MODES)

/** Methods whose identical concurrent requests share one exchange: safe, and without a body. */
const FLIGHT_METHODS = new Set(['GET', 'HEAD'])

/** A number for each dispatcher the interceptor is composed onto (its flights are its own). */
let compositions = 0

export function cacheInterceptor (options?: CacheInterceptorOptions): Dispatcher.DispatcherComposeInterceptor {
  const cache = cacheFrom(options)
  return (dispatch) => {
    // What goes to the origin for the cache's own handlers: they see only final responses.
    const network = withoutInterim(dispatch)
    // Callers share an exchange only on the same way out: another dispatcher below may reach the
    // origin otherwise (its own proxy, credentials, client certificate), or not at all.
    const chain = ++compositions
    return function cachedDispatch (given: Dispatcher.DispatchOptions & CacheDispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
      // Bad per-request options are the caller's error, thrown here as undici throws its own.
      if (given.cacheMode !== undefined && !CACHE_MODES.has(given.cacheMode)) {
        throw new TypeError(`expected the cacheMode dispatch option to be one of ${FETCH_CACHE_MODES.join(', ')}, got ${describe(given.cacheMode)}`)
      }
      // undici.request() makes each request's options with a spread that adds properties: on Node 20
      // each comes with a hidden class of its own (src/objects.ts), which every read of it misses.
      // A copy has one class for all: 4–7% fewer instructions a memory hit (callgrind, two pairs).
      const opts = Object.assign({}, given)
      // Fields given as an iterator (map.entries(), a generator) can be read once: read here for
      // the key, they would reach the origin empty, and the answer be stored for fields it never
      // saw. Read once, into the flat list undici takes as well; so are pairs in an array
      // (Object.entries()), which undici's Request refuses but its interceptors that re-dispatch
      // (dns) turn into a flat list too. Entries undici refuses are
      // handed to it as they came, an iterator, for it to refuse: the cache passes that by, not
      // reading it again.
      if (isPairs(opts.headers)) {
        if (!refusedFields(opts.headers.values())) opts.headers = flatFields(opts.headers)
      } else if (isIterator(opts.headers)) {
        const entries = Array.from(opts.headers)
        opts.headers = refusedFields(entries.values()) ? entries.values() : flatFields(entries)
      }
      const request = opts.upgrade == null && !isIterator(opts.headers) ? toCacheRequest(opts) : undefined
      if (request === undefined) {
        noFlight(opts)
        return dispatch(opts, handler)
      }
      // Likewise a bad cachePolicy.
      const settings = cache.settings(request.url, opts.cachePolicy)
      let lookup
      try {
        lookup = cache.lookup(request, opts.cacheMode, settings)
      } catch {
        // The cache fails open: whatever went wrong in it, the request still reaches the origin.
        noFlight(opts)
        return dispatch(opts, handler)
      }
      if (!(lookup instanceof Promise)) return route(lookup, handler, true)
      // The caller may abort while the store answers: it is told at once (src/adapters/early-start.ts).
      const early = new EarlyStart(handler)
      lookup.then((found) => {
        if (!early.aborted) {
          route(found, early, false)
          return
        }
        noFlight(opts)
        // Its caller left before it could go out: a lookup that found a stored response counts now.
        if (found.kind === 'forward') cache.answers.noAnswer(request, found)
        // A stale hit's refresh is nobody's request: it goes on, as after a caller that aborts later.
        if (found.kind === 'hit' && found.refresh !== undefined) revalidateInBackground(cache, network, opts, request, found.refresh)
      }, () => {
        noFlight(opts)
        return dispatch(opts, early)
      }).catch((error: unknown) => {
        // dispatch() threw after the lookup: nobody up the stack can catch it now but the handler.
        early.onResponseError(detached, error as Error)
      })
      return true

      /**
       * `synchronous`: the lookup answered inside dispatch(), from memory. Such an answer is played
       * at once, unless answers from memory have held the event loop long enough: then on its next
       * turn (src/adapters/turns.ts says why).
       */
      function route (found: Lookup, to: Dispatcher.DispatchHandler, synchronous: boolean): boolean {
        if (found.kind !== 'forward') noFlight(opts)
        if (found.kind === 'hit') {
          replay(request!, found, to, synchronous)
          if (found.refresh !== undefined) revalidateInBackground(cache, network, opts, request!, found.refresh)
          return true
        }
        if (found.kind === 'unsatisfiable') {
          new ReplayController(to, { status: 504, statusText: 'Gateway Timeout', headers: found.headers, body: undefined }).start(false, synchronous)
          return true
        }
        return forward(cache, network, chain, opts, request!, found, to)
      }
    }
  }
}

/**
 * Sends a request on. Identical requests in flight share one exchange (src/adapters/broadcast.ts);
 * below that, retries; below that, the origin.
 */
function forward (cache: Cache, dispatch: Dispatch, chain: number, opts: Dispatcher.DispatchOptions & CacheDispatchOptions, request: CacheRequest, lookup: Forwarded, handler: Dispatcher.DispatchHandler): boolean {
  const outgoing = lookup.headers === undefined ? opts : extend(opts, { headers: lookup.headers })
  // A host the cache is turned off for gets no single-flight either; its retries are its `retry` setting's.
  if (!FLIGHT_METHODS.has(request.method) || request.content === true || !lookup.settings.enabled) {
    noFlight(opts)
    return dispatchWithRetry(dispatch, outgoing, new CacheHandler(cache, request, lookup, handler), lookup.settings.retry, cache)
  }
  // The same request, the same way out (the dispatcher below, and the caller's own timeouts, which
  // would otherwise decide another caller's answer), the same mode and policy (RFC 9111 §4: a
  // collapsed response must suit each request it answers).
  const way = `${chain} ${opts.headersTimeout ?? ''} ${opts.bodyTimeout ?? ''} ${opts.cacheMode ?? 'default'}`
  const key = flightKey(request, opts.cachePolicy === undefined ? way : `${way} ${JSON.stringify(opts.cachePolicy)}`)
  const current = cache.flights.get(key) as Broadcast | undefined
  // One that found a stored response counts as the exchange's outcome (revalidated, or stood in
  // for); one that found none counted as a miss when it looked.
  if (current?.join(handler, true, lookup.entry !== undefined) === true) {
    opts[ON_FLIGHT]?.(current, key)
    return true
  }
  const broadcast: Broadcast = new Broadcast({
    request: { method: request.method, url: request.url },
    limit: lookup.settings.maxEntrySize,
    shareable: (headers) => !lookup.settings.shared || isForAnyone(headers),
    alone: (follower, countable) => {
      // Counted as its own lookup would be: one that found a stored response by this request's
      // outcome, as the first caller's lookup is (a miss, where that found none); one that found
      // none counted its miss as it looked, and this request counts nothing.
      if (countable && lookup.entry === undefined) cache.report('miss', { method: request.method, url: request.url })
      const own = countable && lookup.entry !== undefined ? lookup : extend(lookup, { counted: true as const })
      try {
        dispatchWithRetry(dispatch, outgoing, new CacheHandler(cache, request, own, follower), lookup.settings.retry, cache)
      } catch (error) {
        follower.onResponseError?.(detached, error as Error)
      }
    },
    onEnd: () => cache.flights.end(key, broadcast),
    report: (name, event) => cache.report(name, event)
  })
  // Callers that come after an invalidation of its entry began do not join it (src/flight.ts). A
  // request the cache passes by (a conditional one, say) had no key worked out by its lookup.
  cache.flights.start(key, broadcast, lookup.key ?? storeKey(request.method, request.url, request.headers.host, lookup.settings))
  // A lookup that found nothing stored counted as it looked; to a caller that joins with a stored
  // response of its own, what the exchange brings is a miss too. (One that found one tells the
  // exchange its outcome when the answer comes: Answers.forwarded, src/answers.ts.)
  if (lookup.entry === undefined) broadcast.counted('miss', { method: request.method, url: request.url })
  broadcast.join(handler, false)
  opts[ON_FLIGHT]?.(broadcast, key)
  const send = (claimed: Forwarded): boolean => {
    try {
      return dispatchWithRetry(dispatch, outgoing, new CacheHandler(cache, request, claimed, broadcast), claimed.settings.retry, cache)
    } catch (error) {
      // A dispatcher below that throws (bad options) ends the flight here, or later callers would wait on it.
      cache.flights.end(key, broadcast)
      claimed.release?.(false)
      throw error
    }
  }
  const coordinated = cache.coordinate(request, lookup, opts.cacheMode)
  if (!(coordinated instanceof Promise)) return send(lookup)
  // Another process may be fetching it already (src/store/coordinator.ts): its entry serves everyone here.
  coordinated.then((found) => {
    if (found.kind === 'hit') replay(request, found, broadcast)
    else send(found as Forwarded)
  }, () => send(lookup)).catch((error: unknown) => broadcast.onResponseError(detached, error as Error))
  return true
}

function replay (request: CacheRequest, hit: Hit, handler: Dispatcher.DispatchHandler, fromMemory = false): void {
  const { entry, headers } = hit
  const body = hasNoContent(request.method, entry.status) ? undefined : entry.body
  new ReplayController(handler, { status: entry.status, statusText: entry.statusText, headers, body }).start(false, fromMemory)
}

/**
 * RFC 5861 §3: the caller already has the stale entry; this revalidates it with nobody waiting.
 * Its outcome lands in the store; its failure is an event, and the entry stays as it was.
 */
function revalidateInBackground (cache: Cache, dispatch: Dispatch, opts: Dispatcher.DispatchOptions, request: CacheRequest, refresh: Forwarded): void {
  // The caller's options, as a revalidation in the foreground has them: its timeouts bound its
  // refresh too (one the origin never answers would hold the entry's refresh, and every later stale
  // hit would start none, for undici's default 300 s), and an interceptor below reads its own
  // (`maxRedirections`: a refresh not redirected as the caller would be stored the 301 for every
  // caller). Not its signal: a refresh is nobody's request.
  const outgoing = extend(opts, { headers: refresh.headers, signal: undefined })
  let status = 0
  const done: Dispatcher.DispatchHandler = {
    onRequestStart: (controller) => cache.refreshStarted(refresh, controller),
    onResponseStart: (_controller, statusCode) => { status = statusCode },
    onResponseEnd: () => cache.refreshed(request, refresh, isFailure(status) ? new Error(`origin answered ${status}`) : undefined),
    onResponseError: (_controller, error) => cache.refreshed(request, refresh, error)
  }
  try {
    dispatchWithRetry(dispatch, outgoing, new CacheHandler(cache, request, refresh, done), refresh.settings.retry, cache)
  } catch (error) {
    cache.refreshed(request, refresh, error)
  }
}

/** The private directive in a Cache-Control value. A constant: a literal makes a new RegExp each time it is reached. */
const PRIVATE = /(^|,)\s*private\b/i

/**
 * Whether a response may be shared by identical requests in a shared cache: not when it is meant
 * for one user (RFC 9111 §5.2.2.7 private; a Set-Cookie hands out that user's session).
 */
function isForAnyone (headers: Record<string, string | string[] | undefined>): boolean {
  // Field names are case-insensitive (RFC 9110 §5.1); a dispatcher below may hand them over in any case.
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined) continue
    const lower = lowerCaseName(name)
    if (lower === 'set-cookie') return false
    if (lower === 'cache-control' && PRIVATE.test(Array.isArray(value) ? value.join(',') : value)) return false
  }
  return true
}

/** The controller a handler gets with an error raised before any exchange began. */
const detached: Dispatcher.DispatchController = { aborted: false, paused: false, reason: null, abort () {}, pause () {}, resume () {} }

/** The engine's view of a dispatch; `undefined` for what the cache does not handle. */
function toCacheRequest (opts: Dispatcher.DispatchOptions): CacheRequest | undefined {
  const { origin, path, query } = opts
  // A path not starting with "/" (CONNECT targets, "*") would make origin + path another URL.
  if (origin === undefined || typeof path !== 'string' || path[0] !== '/') return undefined
  try {
    const base = typeof origin === 'string' ? originOf(origin) : servedOrigin(origin)
    if (base === undefined) return undefined
    // undici refuses `query` beside a path that has a query or fragment (below the interceptors),
    // and fields it cannot send: left to say so, on a hit as on a miss.
    if ((query != null && /[?#]/.test(path)) || refusedFields(opts.headers)) return undefined
    const headers = normalizeHeaders(opts.headers)
    // RFC 9110 §9.1: the method token is case-sensitive; undici sends it as given, so `get` is no GET.
    const { method } = opts
    if (typeof method !== 'string') return undefined
    // undici appends `query` to the path below the interceptors (nothing for an empty one); the key must see it here.
    const search = query == null ? '' : stringify(query as Record<string, string>)
    // The request-target as undici sends it (RFC 9112 §3.2), on the connection's origin (userinfo is never sent).
    const sent = base + (search === '' ? path : `${path}?${search}`)
    const url = normalizeUrl(sent)
    // RFC 9111 §4: the key is the target URI, and the origin answered the target it was sent. One the
    // URL parser rewrites (dot segments, backslashes, a fragment, characters it escapes) may be routed
    // elsewhere by the origin: `/a/../b` stored as `/b` would serve that answer to every caller of
    // `/b`. Such a GET or HEAD passes the cache by; an unsafe method still invalidates what it names.
    if (url !== sent && (method === 'GET' || method === 'HEAD')) return undefined
    // The URL is the connection's; a Host header of another name is keyed too (src/cache.ts).
    // An empty body is none (undici.request's body: ''); a stream's may be (pipeline()'s, always
    // given), which cannot be told before it is read: such a request passes the cache by.
    return opts.body == null || isEmpty(opts.body) ? { method, url, headers } : { method, url, headers, content: true }
  } catch {
    return undefined
  }
}

/**
 * Whether dispatch headers are an iterable other than an array, which may be readable only once:
 * one undici iterates rather than reads as a record (hasOwnIterator, as refusedFields() asks).
 */
function isIterator (headers: unknown): headers is Iterable<readonly [string, unknown]> {
  return headers != null && typeof headers === 'object' && !Array.isArray(headers) && hasOwnIterator(headers)
}

/** Whether dispatch headers are pairs in an array, `[[name, value], …]`, rather than a flat list. */
function isPairs (headers: unknown): headers is Array<readonly [string, unknown]> {
  return Array.isArray(headers) && Array.isArray(headers[0])
}

function flatFields (headers: Iterable<readonly [string, unknown]>): string[] {
  const flat: string[] = []
  for (const [name, value] of headers) flat.push(name, value as string)
  return flat
}

/** The origin a dispatch goes to, serialized; `undefined` for one with a path, which undici refuses (it is left to say so). */
function servedOrigin (origin: URL): string | undefined {
  return origin.pathname === '/' && origin.search === '' && origin.hash === '' ? origin.origin : undefined
}

/**
 * servedOrigin of an origin given as a string, parsed once: a dispatcher serves a few origins, each
 * again and again, and parsing one was 3–4% of the instructions of an interceptor's memory hit
 * (callgrind, two pairs of runs of 20 000 hits).
 */
const originOf = memoize(256, (origin: string): string | undefined => servedOrigin(new URL(origin)))

/** A body given as nothing: an empty string or byte array. */
function isEmpty (body: unknown): boolean {
  return body === '' || (body instanceof Uint8Array && body.byteLength === 0)
}
