/**
 * `cachedFetch`: a drop-in `fetch` with the cache in front. undici's own `fetch`, with the cache
 * interceptor as dispatcher, is the reference: redirects, decoding and streaming are undici's.
 * A plain GET/HEAD (src/adapters/plain-request.ts) avoids running it where the answer can be built
 * exactly as fetch would build it, because `undici.fetch` costs about three cache hits by itself:
 * a fresh hit's `Response` is built straight from the entry (the fast path); a request identical
 * to one waiting for its answer follows that one's exchange (src/adapters/follower.ts); and one
 * that must reach the origin (a miss, a revalidation) is sent as fetch sent the last request of
 * its shape (src/adapters/sent.ts). Anything fetch would answer otherwise is left to fetch.
 */
import { Agent, fetch as undiciFetch, FormData, getGlobalOrigin, Headers, Request, type Dispatcher, type RequestInit, type Response } from 'undici'
import type { Cache, FetchCacheMode, Hit, Unanswered } from '../cache.js'
import { FETCH_CACHE_MODES } from '../decision.js'
import { cacheFrom, type CacheOrOptions } from './cache-from.js'
import type { CacheEntry } from '../entry.js'
import { CachedFetchError } from '../errors.js'
import { memoizeWeakly } from '../memo.js'
import { extend } from '../objects.js'
import type { RequestPolicy } from '../options.js'
import { describe, isOptionsObject } from '../validate.js'
import { hasNoContent } from './content.js'
import { cacheInterceptor, ON_FLIGHT, type CacheDispatchOptions } from './interceptor.js'
import { FetchedResponse, ownHeaders, servableAsIs, toHeaders } from './fetched-response.js'
import { Follower, Leaders, type Handoff } from './follower.js'
import { joinKey, plainRequest, shapeKey, type PlainRequest } from './plain-request.js'
import { SentRequests, targetOf } from './sent.js'
import { readInit, toUndiciInput, type FetchInit, type FetchInput } from './fetch-arguments.js'
import { NodeFormData, NodeResponse } from './node-web.js'
import { turnDue } from './turns.js'
import { onAbort as listenForAbort } from './abort-listeners.js'

export type CachedFetchOptions = CacheOrOptions & {
  /**
   * The dispatcher requests go out through; the cache is composed on top of it.
   * @default new Agent()
   */
  dispatcher?: Dispatcher
}

/** What a request can be given as: undici's classes or the global ones (Node's own bundled undici). */
export type { FetchInit, FetchInput } from './fetch-arguments.js'

export type CachedFetch = ((input: FetchInput, init?: FetchInit) => Promise<Response>) & {
  /** The engine behind this fetch, for stats, invalidation and sharing with an interceptor. */
  readonly cache: Cache
}

/**
 * Request fields `fetch` sets itself when the caller did not (Referer once a global origin is set).
 * A stored response that varies on one of them is served through the full path, which sees the
 * values fetch really sends.
 */
const FETCH_SETS = new Set(['accept', 'accept-encoding', 'accept-language', 'user-agent', 'sec-fetch-mode', 'referer'])

export function createCachedFetch (options: CachedFetchOptions = {}): CachedFetch {
  if (!isOptionsObject(options)) {
    throw new TypeError(`expected options to be an object, got ${describe(options)}`)
  }
  const { dispatcher: base = new Agent(), ...rest } = options
  if (!isDispatcher(base)) {
    throw new TypeError(`expected options.dispatcher to be an undici Dispatcher (an Agent, Pool, …), got ${describe(base)}`)
  }
  const cache = cacheFrom(rest)
  const interceptor = cacheInterceptor({ cache })
  // One dispatcher per cache mode, made once: each tells the interceptor the mode of its requests.
  const byMode = modeDispatchers(base.compose(interceptor))
  // A caller's own init.dispatcher gets the cache composed on top, once per dispatcher.
  const theirs = new WeakMap<Dispatcher, Map<FetchCacheMode, Dispatcher>>()
  const dispatcherFor = (mode: FetchCacheMode, own: Dispatcher | undefined): Dispatcher => {
    let modes = own === undefined ? byMode : theirs.get(own)
    if (modes === undefined) theirs.set(own!, modes = modeDispatchers(own!.compose(interceptor)))
    return modes.get(mode)!
  }

  // Plain requests on their way to the origin, for identical ones to follow.
  const leaders = new Leaders()
  // What fetch sent for plain requests, for later ones of the same shape (src/adapters/sent.ts).
  const sentRequests = new SentRequests()

  const cachedFetch = async (anyInput: FetchInput, anyInit?: FetchInit): Promise<Response> => {
    // Read now, before anything is awaited (src/adapters/fetch-arguments.ts).
    const init = readInit(anyInit) as RequestInit & { cachePolicy?: RequestPolicy }
    const { cachePolicy } = init
    const converted = toUndiciInput(anyInput, init)
    const input = converted instanceof Promise ? await converted : converted
    if (isForeignForm(init.body)) await encodeForm(init, init.body)
    // Validated before anything else, so a bad one fails the same way on every path, a hit's too.
    if (cachePolicy !== undefined) cache.settings(undefined, cachePolicy)
    // null is no dispatcher, as undici's Request reads it.
    if (init.dispatcher === null) delete init.dispatcher
    else if (init.dispatcher !== undefined && !isDispatcher(init.dispatcher)) {
      throw new TypeError(`expected init.dispatcher to be an undici Dispatcher (an Agent, Pool, …), got ${describe(init.dispatcher)}`)
    }
    // A request with a policy of its own takes the full path, where the engine applies it.
    const plain = cachePolicy === undefined ? plainRequest(input, init) : undefined
    // Keyed only when it matters (a leader to follow, or a miss to lead): a hit pays nothing for it.
    const followKey = leaders.size > 0 ? joinKey(plain, init) : undefined
    const following = followKey !== undefined && leaders.has(followKey)
    // What the fast path's lookup found, when no hit: counted here for a caller whose request the
    // full path will not look up (one that follows another's, or that left while it looked).
    let unanswered: Unanswered | undefined
    const signal = init.signal ?? undefined
    if (plain !== undefined) {
      // Made only for a caller that may need it: a hit, mostly, does not.
      const record = following || signal !== undefined ? (why: Unanswered) => { unanswered = why } : undefined
      const fast = fastPath(cache, plain, signal, record)
      // A lookup that waits for the store lets go of a caller who aborts, as fetch does at once.
      const hit = !(fast instanceof Promise)
        ? fast
        : await (signal === undefined ? fast : untilAborted(fast, signal, () => { countUnanswered(cache, plain, unanswered, false) }))
      if (hit !== undefined) {
        // One from memory awaited nothing: past a while of such answers, it waits for the event loop to turn (src/adapters/turns.ts).
        const turn = fast instanceof Promise ? undefined : turnDue()
        if (turn !== undefined) await turn
        // fetch's promise settles after the call returns, so a caller may still abort it then: one
        // microtask lets an abort made right after the call reach the check below.
        else if (signal !== undefined) await Promise.resolve()
        // Aborted while it waited (for the store, the turn or the call's return): rejected with the signal's reason, as fetch rejects a request aborted before its answer.
        signal?.throwIfAborted()
        return hit
      }
    }

    const mode = cacheMode(input, init)
    // undici's Request refuses only-if-cached outside same-origin mode; the mode travels by dispatcher.
    const dispatcher = dispatcherFor(mode, init.dispatcher)
    const forwarded: RequestInit = extend(init, {
      dispatcher: cachePolicy === undefined ? dispatcher : withOptions(dispatcher, { cacheMode: mode, cachePolicy })
    })
    if (mode === 'only-if-cached') delete forwarded.cache
    const handoff: Handoff = (attach) => undiciFetch(input, { ...forwarded, dispatcher: handingOver(dispatcher, attach) })
    if (following) {
      const { method, url } = plain!
      // One that found a stored response counts what the exchange's lookup counted (src/adapters/broadcast.ts).
      const request = {
        method,
        url,
        signal,
        countable: unanswered !== undefined && 'stored' in unanswered && unanswered.stored,
        joined: () => { countUnanswered(cache, plain!, unanswered, true) }
      }
      const followed = await leaders.follow(followKey, cache.flights, request, handoff)
      if (followed !== undefined) return followed
    }
    const key = followKey ?? joinKey(plain, init)
    // What fetch sent for a call of the same shape (src/adapters/sent.ts) is sent again, to this
    // URL, without fetch; else fetch sends it, and what it sends is recorded. A shape is one global
    // origin's: fetch reads the URL against it and makes a Referer from it.
    const globalOrigin = key === undefined ? undefined : getGlobalOrigin()
    const target = key === undefined ? undefined : targetOf(input as string, globalOrigin)
    const shape = target === undefined ? undefined : shapeKey(plain!, init, target.origin, globalOrigin)
    const sent = shape === undefined ? undefined : sentRequests.get(shape, target!)
    const send = (via: Dispatcher): Promise<Response> => sent !== undefined
      ? Follower.send(via, sent, { method: plain!.method, url: plain!.url, signal: init.signal ?? undefined }, handoff)
      : undiciFetch(input, { ...forwarded, dispatcher: shape === undefined ? via : sentRequests.recording(shape, target!, via) })
    // This caller leads, unless another does already: identical callers that come while it waits for its answer follow it.
    const response = key === undefined
      ? await undiciFetch(input, forwarded)
      : leaders.has(key) ? await send(dispatcher) : await leaders.lead(key, (onFlight) => send(withOptions(dispatcher, { [ON_FLIGHT]: onFlight })))
    if (mode === 'only-if-cached' && response.status === 504 && response.headers.get('cache-status')?.includes('detail=only-if-cached') === true) {
      // Fetch §4.6: only-if-cached with nothing stored is a network error, as in browsers.
      throw new TypeError('fetch failed', {
        cause: new CachedFetchError('ERR_ONLY_IF_CACHED', 'nothing usable is stored and the request allows only stored responses', {
          method: sentMethod(input, init), url: response.url
        })
      })
    }
    return response
  }
  return Object.assign(cachedFetch, { cache })
}

/** Fetch §2.2.1 (normalize a method): these six in any case are sent upper-cased; any other as given. */
const NORMALIZED_METHODS = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT'])

/** The method fetch sends: the init's, else the input Request's, else GET. */
function sentMethod (input: string | Request, init: RequestInit): string {
  const method = init.method ?? (typeof input === 'string' ? 'GET' : input.method)
  const upper = method.toUpperCase()
  return NORMALIZED_METHODS.has(upper) ? upper : method
}

/** Node's global FormData (an older undici's), which undici.fetch would send as the text "[object FormData]". */
function isForeignForm (body: unknown): body is globalThis.FormData {
  return body instanceof NodeFormData && !(body instanceof FormData)
}

/** Encodes such a form as Node's fetch does: multipart/form-data, with its boundary in the Content-Type unless the caller set one. */
async function encodeForm (init: RequestInit, form: globalThis.FormData): Promise<void> {
  const encoded = new NodeResponse(form)
  init.body = await encoded.arrayBuffer()
  const headers = new Headers(init.headers)
  if (!headers.has('content-type')) headers.set('content-type', encoded.headers.get('content-type')!)
  init.headers = headers
}

/** What the cache is composed onto and dispatches through: an object with undici's compose() and dispatch(). */
function isDispatcher (value: unknown): value is Dispatcher {
  const { compose, dispatch } = (value ?? {}) as Partial<Dispatcher>
  return typeof compose === 'function' && typeof dispatch === 'function'
}

function modeDispatchers (dispatcher: Dispatcher): Map<FetchCacheMode, Dispatcher> {
  return new Map(FETCH_CACHE_MODES.map((mode) => [mode, mode === 'default' ? dispatcher : withOptions(dispatcher, { cacheMode: mode })]))
}

/** fetch only calls dispatch(); a thin wrapper adds the cache's options to the dispatch options. */
function withOptions (dispatcher: Dispatcher, extra: CacheDispatchOptions): Dispatcher {
  return Object.assign(Object.create(dispatcher) as Dispatcher, {
    dispatch: (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) =>
      dispatcher.dispatch(extend(opts, extra), handler)
  })
}

function cacheMode (input: string | Request, init: RequestInit | undefined): FetchCacheMode {
  return (init?.cache ?? (input instanceof Request ? input.cache : 'default'))
}

/**
 * A Response for a hit, without undici.fetch; `undefined` when the interceptor must answer. A hit
 * on a stale entry inside stale-while-revalidate is served here while its revalidation is under
 * way; the hit that starts one goes to the interceptor with the request fetch sends (or sent:
 * src/adapters/sent.ts), so that the revalidation carries the header fields fetch adds (User-Agent,
 * Accept, …), which the origin sees on every other request (Cache.probe).
 * `signal`: the caller's, which fails a body not read yet once aborted (FetchedResponse).
 * `unanswered`: the caller follows a flight when there is no hit, so it counts its lookup itself (Cache.probe).
 */
function fastPath (cache: Cache, request: PlainRequest, signal: AbortSignal | undefined, unanswered: ((why: Unanswered) => void) | undefined): Response | undefined | Promise<Response | undefined> {
  let hit
  try {
    hit = cache.probe(request, request.mode, servableEntry, unanswered)
  } catch {
    return undefined // the full path has the cache's fail-open handling
  }
  const respond = (found: Awaited<typeof hit>): Response | undefined =>
    found === undefined ? undefined : toResponse(found, request.method, request.url, signal)
  return hit instanceof Promise ? hit.then(respond, () => undefined) : respond(hit)
}

/**
 * A lookup the fast path found no hit for, whose caller the full path will not look up: a bypass, or
 * a miss. A stored response found is a miss too, unless its caller `joined` an exchange: that
 * counts it as it counts its own lookup (src/adapters/broadcast.ts).
 */
function countUnanswered (cache: Cache, request: PlainRequest, why: Unanswered | undefined, joined: boolean): void {
  if (why === undefined) return
  const { method, url } = request
  if ('bypass' in why) cache.report('bypass', { method, url, reason: why.bypass })
  else if (!why.stored || !joined) cache.report('miss', { method, url })
}

/**
 * `pending`, or a rejection with the signal's reason once it is aborted first; `left` runs once
 * `pending` has settled after such an abort.
 */
async function untilAborted<T> (pending: Promise<T>, signal: AbortSignal, left: () => void): Promise<T> {
  // Settled first, before the race hears of it: an abort after that is too late to count as one.
  let settled = false
  const mark = (): void => { settled = true }
  pending.then(mark, mark)
  let onAbort!: () => void
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => {
      if (settled) return
      pending.then(left, left)
      reject(signal.reason as Error)
    }
    if (signal.aborted) onAbort()
    else listenForAbort(signal, onAbort)
  })
  try {
    return await Promise.race([pending, aborted])
  } finally {
    signal.removeEventListener('abort', onAbort)
  }
}

/** `dispatcher`, but its first dispatch goes to `attach` instead: the exchange is already under way. */
function handingOver (dispatcher: Dispatcher, attach: (handler: Dispatcher.DispatchHandler) => void): Dispatcher {
  let first = true
  return dispatcher.compose((dispatch) => (opts, handler) => {
    if (!first) return dispatch(opts, handler)
    first = false
    attach(handler)
    return true
  })
}

/** Whether undici.fetch would hand this entry to the caller unchanged. */
function servableEntry (entry: CacheEntry): boolean {
  const encoding = entry.headers['content-encoding']
  if (!servableAsIs(entry.status, entry.statusText, typeof encoding === 'string' ? encoding : encoding?.join(', '))) return false
  for (const field in entry.vary) if (FETCH_SETS.has(field)) return false
  return true
}

function toResponse (hit: Hit, method: string, url: string, signal: AbortSignal | undefined): Response {
  const { entry } = hit
  // The stored body itself: FetchedResponse hands out only copies of it.
  const body = hasNoContent(method, entry.status) ? null : entry.body
  const response = new FetchedResponse(url, body, { status: entry.status, statusText: entry.statusText, headers: headersOf(entry), signal })
  const headers = ownHeaders(response)
  headers.append('age', hit.age)
  headers.append('cache-status', hit.cacheStatus)
  return response
}

/**
 * An entry's stored fields as undici Headers, made once per entry while it is hit: a Response
 * copies a Headers object's entries as they are (each field still checked as it goes in), where
 * a list of pairs or a record is converted field by field first, on every hit. Kept for the
 * entries hit lately only: a Headers object costs more memory than a small entry itself.
 */
const headersOf = memoizeWeakly(1024, (entry: CacheEntry): Headers => toHeaders(entry.headers, OWN_FIELDS))

/** Fields a hit gets anew (the stored ones are the answer's as it came). */
const OWN_FIELDS: ReadonlySet<string> = new Set(['age', 'cache-status'])

let defaultFetch: CachedFetch | undefined

/**
 * `fetch` with a default in-memory cache, for scripts and quick starts. Built on first use, so
 * importing the package allocates nothing.
 */
export const cachedFetch: CachedFetch = Object.defineProperty(
  (input: FetchInput, init?: FetchInit) => (defaultFetch ??= createCachedFetch())(input, init),
  'cache',
  { get: () => (defaultFetch ??= createCachedFetch()).cache, enumerable: true }
) as CachedFetch
