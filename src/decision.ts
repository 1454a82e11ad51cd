/**
 * What the engine decides, as data the adapters act on: how a request is served (`Lookup`) and
 * what becomes of the origin's answer (`Outcome`).
 */
import { copyFields, type CacheEntry, type ResponseHeaders } from './entry.js'
import type { RequestHeaders } from './key.js'
import type { RequestSettings } from './options.js'
import type { RequestDirectives } from './directives.js'
import type { Recorder } from './recorder.js'
import type { Forward } from './status.js'

/** The Fetch standard's request cache modes (`init.cache`), which the fetch adapter passes on. */
export type FetchCacheMode = 'default' | 'no-store' | 'reload' | 'no-cache' | 'force-cache' | 'only-if-cached'

export const FETCH_CACHE_MODES: readonly FetchCacheMode[] = ['default', 'no-store', 'reload', 'no-cache', 'force-cache', 'only-if-cached']

/** Serve this stored response; `headers` carry Age and Cache-Status. */
export interface Hit {
  readonly kind: 'hit'
  readonly entry: CacheEntry
  /** The stored fields as served: `age` and `cache-status` set (computed on first use). */
  readonly headers: ResponseHeaders
  /** The served Age and Cache-Status values, for an adapter that builds its headers itself. */
  readonly age: string
  readonly cacheStatus: string
  /**
   * Stale within stale-while-revalidate: revalidate in the background with this, then report
   * the end with `cache.refreshed()`. Set on one hit per entry at a time.
   */
  readonly refresh: Forwarded | undefined
}

/** Send the request on. With `entry`, it is a revalidation and `headers` carry the validators. */
export interface Forwarded {
  readonly kind: 'forward'
  readonly fwd: Forward
  /** Whether the answer may be stored. */
  readonly store: boolean
  readonly entry: CacheEntry | undefined
  /** Request headers to send instead of the caller's, when they differ. */
  readonly headers: RequestHeaders | undefined
  readonly directives: RequestDirectives
  readonly settings: RequestSettings
  /**
   * The key its answer is stored under (src/key.ts), worked out once, by its lookup: a `key` hook
   * runs once for each lookup, however many parts of the cache need the key (flight, entry,
   * Cache-Status). None for a request the cache passes by, which stores nothing.
   */
  readonly key: string | undefined
  /** A stale-while-revalidate refresh, which no caller waits on. */
  readonly background: boolean
  /**
   * Its caller's lookup counted already: one a shared exchange sent on alone (its answer was for
   * one user) after it counted, as it looked, the miss it found. Its exchange counts nothing.
   */
  readonly counted?: true
  /**
   * How many invalidations had started when its lookup began, short of any under way then (src/writes.ts):
   * what it stores must not undo a later one (src/invalidation.ts), nor may a request that starts after
   * one join its flight (src/flight.ts).
   */
  readonly since: number
  /**
   * The cache's clock when the request went on to the origin (its lookup decided so, or another
   * process's lease was granted): RFC 9111 §4.2.3's request_time. The time the answer took counts
   * in its age; a retry's wait counts too, which errs on the old side, never the fresh one.
   */
  readonly requestTime: number
  /**
   * Ends the cross-process claim this request holds (src/store/coordinator.ts), once its answer
   * is stored or known not to be, so that other processes stop waiting: `reusable` when a fresh
   * entry is there for them. Once only; later calls do nothing.
   */
  readonly release?: ((reusable: boolean) => void) | undefined
}

/** Nothing usable is stored and the request allows only stored responses (RFC 9111 §5.2.1.7). */
export interface Unsatisfiable {
  readonly kind: 'unsatisfiable'
  readonly headers: ResponseHeaders
}

export type Lookup = Hit | Forwarded | Unsatisfiable

/** What to do with the origin's answer. */
export type Outcome =
  /** Pass the origin's response on with these headers; record its body when `recorder` is set. */
  | { readonly kind: 'pass'; readonly headers: ResponseHeaders; readonly recorder: Recorder | undefined }
  /** Serve this stored entry instead: freshened by a 304, or standing in for a failed origin. */
  | { readonly kind: 'replay'; readonly entry: CacheEntry; readonly headers: ResponseHeaders }

/** A request going on to the origin (not a background refresh). */
export function forward (fwd: Forward, store: boolean, entry: CacheEntry | undefined, headers: RequestHeaders | undefined, directives: RequestDirectives,
  settings: RequestSettings, key: string | undefined, since: number, requestTime: number): Forwarded {
  return { kind: 'forward', fwd, store, entry, headers, directives, settings, key, background: false, since, requestTime }
}

export class HitResult implements Hit {
  readonly kind = 'hit'
  #headers: ResponseHeaders | undefined

  constructor (readonly entry: CacheEntry, readonly age: string, readonly cacheStatus: string, readonly refresh: Forwarded | undefined) {}

  /** The fetch fast path builds its own list from age and cacheStatus; only others pay for this. */
  get headers (): ResponseHeaders {
    return (this.#headers ??= servedHeaders(this.entry, this.age, this.cacheStatus))
  }
}

/** The stored fields as served (Object.assign: several times faster than a spread on Node 20). */
export function servedHeaders (entry: CacheEntry, age: string, cacheStatus: string): ResponseHeaders {
  const served = { age, 'cache-status': cacheStatus }
  // Object.assign would make a field named __proto__ the copy's prototype (src/entry.ts setField).
  return Object.hasOwn(entry.headers, '__proto__') ? copyFields<string | string[]>(entry.headers, served) : Object.assign({}, entry.headers, served)
}
