/**
 * Options of a cache: their types, the one frozen `DEFAULTS` object that both the code and the
 * docs use, and `resolveOptions()`, which validates everything once, at construction, and throws a
 * `TypeError` that names the option at fault.
 */
import type { Keyv, KeyvStoreAdapter } from 'keyv'
import { resolvedDefaults, resolveRetry, RETRY_DEFAULTS, type ResolvedRetry, type RetryOptions } from './retry.js'
import type { CoordinatorOptions } from './store/coordinator.js'
import { toKeyv, type StoreTimeouts } from './store/keyv.js'
import { isRedis } from './store/redis.js'
import { MAX_TAG_LENGTH } from './tags.js'
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
   * The second tier (L2), where entries outlive the process or are shared by a fleet: any Keyv
   * store adapter (`new KeyvRedis(client)`, `new KeyvSqlite(uri)`, …) or Keyv instance. The memory
   * tier (L1) stays in front of it. Without it, entries live in memory only.
   * @example store: new KeyvSqlite({ uri: 'sqlite://cache.db', busyTimeout: 5000 })
   */
  store?: Keyv | KeyvStoreAdapter | Map<string, unknown>
  /**
   * Keeps this cache's entries apart from other caches' on the same Redis or SQLite database;
   * `cache.clear()` clears only its own. For a store adapter: a Keyv instance brings its own.
   * Letters, digits, `_`, `.` and `-`.
   * @default 'cachedfetch'
   */
  namespace?: string
  /**
   * How long a call to `store` may take before it is given up: a read then counts as a miss, a
   * write is skipped, and a `store-error` event says so. The request goes on either way.
   * @default { read: 100, write: 1000 }
   */
  storeTimeouts?: { read?: number, write?: number }
  /**
   * With a Redis store: invalidations (`invalidate*()`, `clear()`, unsafe methods) are published,
   * and those of other processes on the same Redis drop their entries from this one's memory tier.
   * @default true
   */
  pubsub?: boolean
  /**
   * With a Redis store: cross-process single-flight. A process that misses claims the key for
   * `lease` ms (SET NX PX); others that miss it meanwhile wait up to `wait` ms for the entry to
   * appear in Redis instead of going to the origin themselves. `true` takes the defaults.
   * @default false
   */
  coordinate?: boolean | { lease?: number, wait?: number }
  /**
   * Tags given to every entry this cache stores, besides those of the response's `Cache-Tag`
   * and `Surrogate-Key` fields, for `cache.invalidateTag()`.
   * @default []
   */
  tags?: readonly string[]
  /**
   * Byte bound of the memory tier (L1): bodies, headers and bookkeeping of all entries. `0` turns
   * the memory tier off, which needs a `store`.
   * @default 67108864 (64 MiB)
   */
  maxSize?: number
  /**
   * Entry-count bound of the memory tier; the least recently used entry is evicted first.
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
  /** Tags for the entry this request stores, besides the cache's and the response's. */
  tags?: readonly string[]
}

/** What a request runs with: the cache's settings with its own overrides applied. */
export interface RequestSettings {
  readonly staleWhileRevalidate: number
  readonly staleIfError: number
  readonly retry: ResolvedRetry | undefined
  readonly tags: readonly string[]
}

export interface ResolvedOptions {
  readonly shared: boolean
  readonly store: Keyv | undefined
  readonly storeTimeouts: StoreTimeouts
  readonly pubsub: boolean
  readonly coordinate: CoordinatorOptions | undefined
  /** 0 when there is no memory tier. */
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
  namespace: 'cachedfetch',
  storeTimeouts: Object.freeze({ read: 100, write: 1000 }),
  pubsub: true,
  coordinate: Object.freeze({ lease: 5000, wait: 5000, poll: 20 }),
  tags: Object.freeze([] as string[]),
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
  'shared', 'store', 'namespace', 'storeTimeouts', 'pubsub', 'coordinate', 'tags', 'maxSize', 'maxEntries', 'maxEntrySize',
  'methods', 'now', 'staleWhileRevalidate', 'staleIfError', 'retry'
])
const REQUEST_POLICY_KEYS: ReadonlySet<string> = new Set(['staleWhileRevalidate', 'staleIfError', 'retry', 'tags'])
const NAMESPACE = /^[\w.-]{1,64}$/

export function resolveOptions (options: CacheOptions = {}, path = 'options'): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`expected ${path} to be an object, got ${describe(options)}`)
  }
  assertKnownKeys(options, OPTION_KEYS, path)
  const o = options as Record<string, unknown>
  const store = toKeyv(o.store, toNamespace(o.namespace, `${path}.namespace`), `${path}.store`)
  const redis = store !== undefined && isRedis(store)
  const maxSize = optionalSize(o.maxSize, `${path}.maxSize`, 0) ?? DEFAULTS.maxSize
  if (maxSize === 0 && store === undefined) {
    throw new TypeError(`${path}.maxSize of 0 turns the memory tier off, which leaves no store: give ${path}.store too`)
  }
  return Object.freeze({
    shared: optionalBoolean(o.shared, `${path}.shared`) ?? DEFAULTS.shared,
    store,
    storeTimeouts: toTimeouts(o.storeTimeouts, `${path}.storeTimeouts`),
    pubsub: redisOnly(optionalBoolean(o.pubsub, `${path}.pubsub`), redis, `${path}.pubsub`) ?? redis,
    coordinate: redisOnly(toCoordinate(o.coordinate, `${path}.coordinate`), redis, `${path}.coordinate`),
    maxSize,
    maxEntries: optionalSize(o.maxEntries, `${path}.maxEntries`) ?? DEFAULTS.maxEntries,
    maxEntrySize: optionalSize(o.maxEntrySize, `${path}.maxEntrySize`) ?? DEFAULTS.maxEntrySize,
    methods: toMethods(o.methods, `${path}.methods`),
    now: optionalFunction(o.now, `${path}.now`) as (() => number) | undefined ?? DEFAULTS.now,
    request: Object.freeze({
      staleWhileRevalidate: optionalSeconds(o.staleWhileRevalidate, `${path}.staleWhileRevalidate`) ?? DEFAULTS.staleWhileRevalidate,
      staleIfError: optionalSeconds(o.staleIfError, `${path}.staleIfError`) ?? DEFAULTS.staleIfError,
      retry: resolveRetry(o.retry, `${path}.retry`, resolvedDefaults()),
      tags: toTags(o.tags, `${path}.tags`) ?? DEFAULTS.tags
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
    retry: p.retry === undefined ? base.retry : resolveRetry(p.retry, `${path}.retry`, base.retry ?? resolvedDefaults()),
    tags: p.tags === undefined ? base.tags : [...new Set([...base.tags, ...toTags(p.tags, `${path}.tags`)!])]
  }
}

function toNamespace (value: unknown, path: string): string | undefined {
  if (value === undefined || (typeof value === 'string' && NAMESPACE.test(value))) return value
  throw new TypeError(`expected ${path} to be 1 to 64 letters, digits, '_', '.' or '-', got ${describe(value)}`)
}

function toTimeouts (value: unknown, path: string): StoreTimeouts {
  if (value === undefined) return DEFAULTS.storeTimeouts
  if (typeof value !== 'object' || value === null) throw new TypeError(`expected ${path} to be an object, got ${describe(value)}`)
  assertKnownKeys(value, new Set(['read', 'write']), path)
  const t = value as Record<string, unknown>
  return Object.freeze({
    read: optionalSize(t.read, `${path}.read`) ?? DEFAULTS.storeTimeouts.read,
    write: optionalSize(t.write, `${path}.write`) ?? DEFAULTS.storeTimeouts.write
  })
}

function toCoordinate (value: unknown, path: string): CoordinatorOptions | undefined {
  if (value === undefined || value === false) return undefined
  if (value === true) return DEFAULTS.coordinate
  if (typeof value !== 'object' || value === null) throw new TypeError(`expected ${path} to be a boolean or an object, got ${describe(value)}`)
  assertKnownKeys(value, new Set(['lease', 'wait']), path)
  const c = value as Record<string, unknown>
  return Object.freeze({
    lease: optionalSize(c.lease, `${path}.lease`) ?? DEFAULTS.coordinate.lease,
    wait: optionalSize(c.wait, `${path}.wait`) ?? DEFAULTS.coordinate.wait,
    poll: DEFAULTS.coordinate.poll
  })
}

/** Options only a Redis store can honour: asking for them with another is an error, not a no-op. */
function redisOnly<T> (value: T | undefined, redis: boolean, path: string): T | undefined {
  if (value === undefined || value === false || redis) return value
  throw new TypeError(`${path} needs a Redis store (@keyv/redis) as options.store`)
}

function toTags (value: unknown, path: string): readonly string[] | undefined {
  if (value === undefined) return undefined
  if (!Array.isArray(value)) throw new TypeError(`expected ${path} to be an array of strings, got ${describe(value)}`)
  for (const [i, tag] of value.entries()) {
    if (typeof tag !== 'string' || tag === '' || tag.length > MAX_TAG_LENGTH) {
      throw new TypeError(`expected ${path}[${i}] to be a non-empty string of at most ${MAX_TAG_LENGTH} characters, got ${describe(tag)}`)
    }
  }
  return Object.freeze([...new Set(value as string[])])
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

function optionalSize (value: unknown, path: string, min = 1): number | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= min) return value
  const what = min === 0 ? 'a non-negative integer' : 'a positive integer'
  throw new TypeError(`expected ${path} to be ${what} or undefined, got ${describe(value)}`)
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
