/**
 * Options of a cache: their types, the one frozen `DEFAULTS` object that both the code and the
 * docs use, and `resolveOptions()`, which validates everything once, at construction, and throws a
 * `TypeError` that names the option at fault.
 */
import type { Keyv, KeyvStoreAdapter } from 'keyv'
import { resolvedDefaults, resolveRetry, RETRY_DEFAULTS, type ResolvedRetry, type RetryOptions } from './retry.js'
import { toKeyv } from './store/keyv.js'
import { assertKnownKeys, describe } from './validate.js'

/** Methods whose responses the cache may store (RFC 9111 §3: the method must be cacheable). */
export type CacheableMethod = 'GET' | 'HEAD'

export interface CacheOptions {
  /**
   * A shared cache (a service answering for many users) or a private one (one user's client).
   * In shared mode `private` responses, responses to requests with `Authorization` (unless the
   * response allows it) and responses with `Set-Cookie` are never stored, and `s-maxage` applies.
   * @default true
   * @see https://www.rfc-editor.org/rfc/rfc9111#section-3
   */
  shared?: boolean
  /**
   * Where entries live. By default an in-process LRU bounded by `maxSize` bytes and `maxEntries`
   * entries. Any Keyv instance (or Keyv store adapter, e.g. `new KeyvRedis(url)`) is accepted.
   * @example store: new Keyv({ store: new KeyvSqlite('sqlite://cache.db') })
   */
  store?: Keyv | KeyvStoreAdapter
  /**
   * Byte bound of the in-memory store: bodies, headers and bookkeeping of all entries.
   * @default 67108864 (64 MiB)
   */
  maxSize?: number
  /**
   * Entry-count bound of the in-memory store; the least recently used entry is evicted first.
   * @default 50000
   */
  maxEntries?: number
  /**
   * The largest body the cache records. A larger one streams through to the caller uncached,
   * without being buffered.
   * @default 5242880 (5 MiB)
   */
  maxEntrySize?: number
  /**
   * Request methods whose responses are cached. Other methods pass through; unsafe ones
   * invalidate what is stored for their URL (RFC 9111 §4.4).
   * @default ['GET', 'HEAD']
   */
  methods?: readonly CacheableMethod[]
  /**
   * The clock, in milliseconds since the epoch. Tests replace it to move time without sleeping.
   * @default Date.now
   */
  now?: () => number
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
}

/** Settings a single request can override: `init.cachePolicy` in fetch, `cachePolicy` in dispatch options. */
export interface RequestPolicy {
  /** @see CacheOptions.staleWhileRevalidate */
  staleWhileRevalidate?: number
  /** @see CacheOptions.staleIfError */
  staleIfError?: number
  /** @see CacheOptions.retry */
  retry?: RetryOptions | false
}

/** What a request runs with: the cache's settings with its own overrides applied. */
export interface RequestSettings {
  readonly staleWhileRevalidate: number
  readonly staleIfError: number
  readonly retry: ResolvedRetry | undefined
}

export interface ResolvedOptions {
  readonly shared: boolean
  readonly store: Keyv | undefined
  readonly maxSize: number
  readonly maxEntries: number
  readonly maxEntrySize: number
  readonly methods: ReadonlySet<string>
  readonly now: () => number
  /** The settings of a request without overrides. */
  readonly request: RequestSettings
}

export const DEFAULTS = Object.freeze({
  shared: true,
  maxSize: 64 * 1024 * 1024,
  maxEntries: 50_000,
  maxEntrySize: 5 * 1024 * 1024,
  methods: Object.freeze(['GET', 'HEAD'] as const),
  now: Date.now,
  staleWhileRevalidate: 0,
  staleIfError: 0,
  retry: RETRY_DEFAULTS
})

const CACHEABLE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD'])
const OPTION_KEYS: ReadonlySet<string> = new Set([
  'shared', 'store', 'maxSize', 'maxEntries', 'maxEntrySize', 'methods', 'now', 'staleWhileRevalidate', 'staleIfError', 'retry'
])
const REQUEST_POLICY_KEYS: ReadonlySet<string> = new Set(['staleWhileRevalidate', 'staleIfError', 'retry'])

export function resolveOptions (options: CacheOptions = {}, path = 'options'): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`expected ${path} to be an object, got ${describe(options)}`)
  }
  assertKnownKeys(options, OPTION_KEYS, path)
  const o = options as Record<string, unknown>
  return Object.freeze({
    shared: optionalBoolean(o.shared, `${path}.shared`) ?? DEFAULTS.shared,
    store: toKeyv(o.store, `${path}.store`),
    maxSize: optionalSize(o.maxSize, `${path}.maxSize`) ?? DEFAULTS.maxSize,
    maxEntries: optionalSize(o.maxEntries, `${path}.maxEntries`) ?? DEFAULTS.maxEntries,
    maxEntrySize: optionalSize(o.maxEntrySize, `${path}.maxEntrySize`) ?? DEFAULTS.maxEntrySize,
    methods: toMethods(o.methods, `${path}.methods`),
    now: optionalFunction(o.now, `${path}.now`) as (() => number) | undefined ?? DEFAULTS.now,
    request: Object.freeze({
      staleWhileRevalidate: optionalSeconds(o.staleWhileRevalidate, `${path}.staleWhileRevalidate`) ?? DEFAULTS.staleWhileRevalidate,
      staleIfError: optionalSeconds(o.staleIfError, `${path}.staleIfError`) ?? DEFAULTS.staleIfError,
      retry: resolveRetry(o.retry, `${path}.retry`, resolvedDefaults())
    })
  })
}

/** A request's settings: `base` with the request's own policy applied, validated like options. */
export function requestSettings (base: RequestSettings, policy: unknown, path = 'cachePolicy'): RequestSettings {
  if (policy === undefined) return base
  if (typeof policy !== 'object' || policy === null) {
    throw new TypeError(`expected ${path} to be an object, got ${describe(policy)}`)
  }
  assertKnownKeys(policy, REQUEST_POLICY_KEYS, path)
  const p = policy as Record<string, unknown>
  return {
    staleWhileRevalidate: optionalSeconds(p.staleWhileRevalidate, `${path}.staleWhileRevalidate`) ?? base.staleWhileRevalidate,
    staleIfError: optionalSeconds(p.staleIfError, `${path}.staleIfError`) ?? base.staleIfError,
    retry: p.retry === undefined ? base.retry : resolveRetry(p.retry, `${path}.retry`, base.retry ?? resolvedDefaults())
  }
}

function optionalSeconds (value: unknown, path: string): number | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value
  throw new TypeError(`expected ${path} to be a non-negative integer (seconds) or undefined, got ${describe(value)}`)
}

function optionalBoolean (value: unknown, path: string): boolean | undefined {
  if (value === undefined || typeof value === 'boolean') return value
  throw new TypeError(`expected ${path} to be a boolean or undefined, got ${describe(value)}`)
}

function optionalSize (value: unknown, path: string): number | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value
  throw new TypeError(`expected ${path} to be a positive integer or undefined, got ${describe(value)}`)
}

function optionalFunction (value: unknown, path: string): unknown {
  if (value === undefined || typeof value === 'function') return value
  throw new TypeError(`expected ${path} to be a function or undefined, got ${describe(value)}`)
}

function toMethods (value: unknown, path: string): ReadonlySet<string> {
  if (value === undefined) return new Set(DEFAULTS.methods)
  if (!Array.isArray(value)) {
    throw new TypeError(`expected ${path} to be an array of methods, got ${describe(value)}`)
  }
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
