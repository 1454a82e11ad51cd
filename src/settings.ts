/**
 * What a request runs with, and where it comes from: the cache's options, then the most specific
 * `hosts` entry for the request's host, then the request's own `cachePolicy`. One validator,
 * `applyPolicy()`, reads all three, so an option means the same and fails the same (a TypeError
 * naming its path, e.g. `options.hosts["*.example.com"].defaultTtl`) wherever it is set.
 */
import { resolveRetry, type ResolvedRetry, type RetryOptions } from './retry.js'
import { MAX_DELTA_SECONDS } from './directives.js'
import { MAX_TAG_LENGTH } from './tags.js'
import { assertKnownKeys, describe, isOptionsObject, optionalBoolean, optionalSize } from './validate.js'

/** Methods whose responses the cache may store (RFC 9111 §3: the method must be cacheable). */
export type CacheableMethod = 'GET' | 'HEAD'

/** What can be set for the whole cache, per host (`hosts`), and most of it per request. */
export interface HostPolicy {
  /**
   * `false` sends this host's requests past the cache (Cache-Status `fwd=bypass`).
   * @default true
   */
  enabled?: boolean
  /**
   * A shared cache (a service answering for many users) or a private one (one user's client).
   * In shared mode `private` responses, responses to requests with `Authorization` (unless the
   * response allows it) and responses with `Set-Cookie` are never stored, and `s-maxage` applies.
   * @default true
   * @see https://www.rfc-editor.org/rfc/rfc9111#section-3
   */
  shared?: boolean
  /**
   * Request methods whose responses are cached. Other methods pass through; unsafe ones
   * invalidate what is stored for their URL (RFC 9111 §4.4).
   * @default ['GET', 'HEAD']
   */
  methods?: readonly CacheableMethod[]
  /**
   * Seconds of freshness for a response that gives none of its own (no max-age, s-maxage or
   * Expires), instead of the heuristic of RFC 9111 §4.2.2; it is then stored without validators too.
   * @default undefined (heuristic freshness only)
   */
  defaultTtl?: number
  /**
   * Seconds of freshness for every storable response, whatever it says: a deliberate deviation
   * from RFC 9111 §4.2.1 for origins whose headers are wrong. It never makes a response storable
   * that is not (no-store, private in a shared cache, Set-Cookie).
   * @default undefined
   */
  forceTtl?: number
  /**
   * Seconds a stale response may be served while it is revalidated in the background, for
   * responses that give no `stale-while-revalidate` of their own (RFC 5861 §3).
   * @default 0
   */
  staleWhileRevalidate?: number
  /**
   * Seconds a stale response may be served when the origin fails (network error, timeout,
   * 500/502/503/504 after retries), for responses and requests that give no `stale-if-error` of
   * their own (RFC 5861 §4).
   * @default 0
   */
  staleIfError?: number
  /**
   * Retries of failed origin requests; `false` (or `{ limit: 0 }`) turns them off.
   * @default { limit: 2 } (see RETRY_DEFAULTS)
   */
  retry?: RetryOptions | false
  /**
   * Tags given to every entry stored, besides those of the response's `Cache-Tag` and
   * `Surrogate-Key` fields, for `cache.invalidateTag()`.
   * @default []
   */
  tags?: readonly string[]
  /**
   * The largest body recorded. A larger one streams through to the caller uncached, without
   * being buffered.
   * @default 5242880 (5 MiB)
   */
  maxEntrySize?: number
  /**
   * Serve stored responses to requests that say `Cache-Control: no-cache` or `Pragma: no-cache`
   * as if they did not (a deviation from RFC 9111 §5.2.1.4, for clients that send it always).
   * @default false
   */
  ignoreRequestNoCache?: boolean
  /**
   * The URL a request is cached under: return another to make requests that differ only in noise
   * (tracking parameters, say) share an entry. The request still goes to the origin as it was.
   * @example key: (url) => { for (const name of [...url.searchParams.keys()]) if (name.startsWith('utm_')) url.searchParams.delete(name); return url }
   */
  key?: (url: URL) => URL | string
}

/** What a single request can override: `init.cachePolicy` in fetch, `cachePolicy` in dispatch options. */
export type RequestPolicy = Omit<HostPolicy, 'shared' | 'methods' | 'key'>

/** A request's settings: every key of HostPolicy, resolved. */
export interface RequestSettings {
  readonly enabled: boolean
  readonly shared: boolean
  readonly methods: ReadonlySet<string>
  readonly defaultTtl: number | undefined
  readonly forceTtl: number | undefined
  readonly staleWhileRevalidate: number
  readonly staleIfError: number
  readonly retry: ResolvedRetry
  readonly tags: readonly string[]
  readonly maxEntrySize: number
  readonly ignoreRequestNoCache: boolean
  readonly key: ((url: URL) => URL | string) | undefined
}

export const HOST_POLICY_KEYS: ReadonlySet<string> = new Set([
  'enabled', 'shared', 'methods', 'defaultTtl', 'forceTtl', 'staleWhileRevalidate', 'staleIfError', 'retry', 'tags',
  'maxEntrySize', 'ignoreRequestNoCache', 'key'
])
export const REQUEST_POLICY_KEYS: ReadonlySet<string> = new Set([...HOST_POLICY_KEYS].filter((key) => key !== 'shared' && key !== 'methods' && key !== 'key'))

const CACHEABLE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD'])

/**
 * `base` with the keys of `value` that are in `allowed` applied, each validated. `value` may hold
 * other keys (the cache's options do); a policy of its own (a hosts entry, a request's) may not.
 */
export function applyPolicy (base: RequestSettings, value: Record<string, unknown>, join: (key: string) => string): RequestSettings {
  const v = value
  return Object.freeze({
    enabled: optionalBoolean(v.enabled, join('enabled')) ?? base.enabled,
    shared: optionalBoolean(v.shared, join('shared')) ?? base.shared,
    methods: v.methods === undefined ? base.methods : toMethods(v.methods, join('methods')),
    defaultTtl: seconds(v.defaultTtl, join('defaultTtl')) ?? base.defaultTtl,
    forceTtl: seconds(v.forceTtl, join('forceTtl')) ?? base.forceTtl,
    staleWhileRevalidate: seconds(v.staleWhileRevalidate, join('staleWhileRevalidate')) ?? base.staleWhileRevalidate,
    staleIfError: seconds(v.staleIfError, join('staleIfError')) ?? base.staleIfError,
    retry: v.retry === undefined ? base.retry : resolveRetry(v.retry, join('retry'), base.retry),
    tags: v.tags === undefined ? base.tags : Object.freeze([...new Set([...base.tags, ...toTags(v.tags, join('tags'))])]),
    maxEntrySize: optionalSize(v.maxEntrySize, join('maxEntrySize')) ?? base.maxEntrySize,
    ignoreRequestNoCache: optionalBoolean(v.ignoreRequestNoCache, join('ignoreRequestNoCache')) ?? base.ignoreRequestNoCache,
    key: keyHook(v.key, join('key')) ?? base.key
  })
}

/** A policy given as its own object (a hosts entry, a request's `cachePolicy`): only its keys. */
export function applyOwnPolicy (base: RequestSettings, value: unknown, path: string, allowed: ReadonlySet<string>): RequestSettings {
  if (!isOptionsObject(value)) {
    throw new TypeError(`expected ${path} to be an object, got ${describe(value)}`)
  }
  assertKnownKeys(value, allowed, path)
  return applyPolicy(base, value as Record<string, unknown>, (key) => `${path}.${key}`)
}

/** Seconds, at most 2^31: the most delta-seconds can say (RFC 9111 §1.2.2). Beyond, an expiry in ms no longer reads back as an integer from Redis. */
function seconds (value: unknown, path: string): number | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value <= MAX_DELTA_SECONDS) return value
  throw new TypeError(`expected ${path} to be a non-negative integer (seconds) of at most ${MAX_DELTA_SECONDS} or undefined, got ${describe(value)}`)
}

function keyHook (value: unknown, path: string): ((url: URL) => URL | string) | undefined {
  if (value === undefined || typeof value === 'function') return value as ((url: URL) => URL | string) | undefined
  throw new TypeError(`expected ${path} to be a function (url: URL) => URL | string, or undefined, got ${describe(value)}`)
}

function toMethods (value: unknown, path: string): ReadonlySet<string> {
  if (!Array.isArray(value)) throw new TypeError(`expected ${path} to be an array of methods, got ${describe(value)}`)
  const methods = new Set<string>()
  for (const [i, method] of value.entries()) {
    if (typeof method !== 'string' || !CACHEABLE_METHODS.has(method)) {
      // RFC 9111 §3: only methods defined as cacheable; POST would need its body in the key.
      throw new TypeError(`expected ${path}[${i}] to be 'GET' or 'HEAD', got ${describe(method)}`)
    }
    methods.add(method)
  }
  return methods
}

function toTags (value: unknown, path: string): readonly string[] {
  if (!Array.isArray(value)) throw new TypeError(`expected ${path} to be an array of strings, got ${describe(value)}`)
  for (const [i, tag] of value.entries()) {
    if (typeof tag !== 'string' || tag === '' || tag.length > MAX_TAG_LENGTH) {
      throw new TypeError(`expected ${path}[${i}] to be a non-empty string of at most ${MAX_TAG_LENGTH} characters, got ${describe(tag)}`)
    }
  }
  return value as string[]
}
