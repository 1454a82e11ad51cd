/**
 * Options of a cache: their types, the one frozen `DEFAULTS` object that both the code and the
 * docs use, and `resolveOptions()`, which validates everything once, at construction, and throws a
 * `TypeError` that names the option at fault. What can also be set per host and per request lives
 * in src/settings.ts.
 */
import type { Keyv, KeyvStoreAdapter } from 'keyv'
import { HostTable } from './hosts.js'
import { resolvedDefaults, RETRY_DEFAULTS } from './retry.js'
import { applyPolicy, HOST_POLICY_KEYS, type HostPolicy, type RequestSettings } from './settings.js'
import type { CoordinatorOptions } from './store/coordinator.js'
import { adapterOf, toKeyv, type StoreTimeouts } from './store/keyv.js'
import { isRedis } from './store/redis.js'
import { assertKnownKeys, describe, isOptionsObject, MAX_TIMER_MS, optionalBoolean, optionalSize } from './validate.js'

export type { CacheableMethod, HostPolicy, RequestPolicy, RequestSettings } from './settings.js'

/** The cache's options: where entries live and how many, plus every per-host setting as the default. */
export interface CacheOptions extends HostPolicy {
  /**
   * Settings for some hosts over the rest of these options, by pattern: `'api.example.com'`,
   * `'localhost:8080'`, `'*.example.com'`. The most specific wins: exact host and port, exact host,
   * longest wildcard. Each entry takes the keys of HostPolicy.
   * @example hosts: { 'api.example.com': { defaultTtl: 60 }, '*.internal': { enabled: false } }
   */
  hosts?: Record<string, HostPolicy>
  /**
   * The second tier (L2), where entries outlive the process or are shared by a fleet: any Keyv
   * store adapter (`new KeyvRedis(client)`, `new KeyvSqlite(uri)`, …) or Keyv instance. The memory
   * tier (L1) stays in front of it. Without it, entries live in memory only.
   * @example store: new KeyvSqlite({ uri: 'sqlite://cache.db', busyTimeout: 100 })
   */
  store?: Keyv | KeyvStoreAdapter | Map<string, unknown>
  /**
   * Keeps this cache's entries apart from other caches' on the same Redis or SQLite database;
   * `cache.clear()` clears only its own. For a store adapter: a Keyv instance brings its own.
   * Lower-case letters, digits, `.` and `-` (SQLite's LIKE, which Keyv clears with, ignores case and
   * reads `_` as any character).
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
   * appear in Redis instead of going to the origin themselves, reading it every `poll` ms. `true`
   * takes the defaults (`DEFAULTS.coordinate`).
   * @default false
   */
  coordinate?: boolean | { lease?: number, wait?: number, poll?: number }
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
   * Adds the cache key to Cache-Status (`key="GET https://…"`, RFC 9211 §2.7), for debugging what
   * is stored under which key. Off by default: a key can be long, and names the request's URL.
   * @default false
   */
  cacheStatusKey?: boolean
  /**
   * The clock, in milliseconds since the epoch. Tests replace it to move time without sleeping.
   * @default Date.now
   */
  now?: () => number
}

export interface ResolvedOptions {
  readonly store: Keyv | undefined
  readonly storeTimeouts: StoreTimeouts
  readonly pubsub: boolean
  readonly coordinate: CoordinatorOptions | undefined
  /** 0 when there is no memory tier. */
  readonly maxSize: number
  readonly maxEntries: number
  readonly now: () => number
  readonly cacheStatusKey: boolean
  /** The settings of a request to a host without an entry in `hosts`, and without overrides. */
  readonly settings: RequestSettings
  readonly hosts: HostTable
}

/** The most entries `maxEntries` may ask for: lru-cache allocates its index for all of them up front. */
const MAX_ENTRIES = 2 ** 24

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

const OPTION_KEYS: ReadonlySet<string> = new Set([
  ...HOST_POLICY_KEYS, 'hosts', 'store', 'namespace', 'storeTimeouts', 'pubsub', 'coordinate', 'maxSize', 'maxEntries', 'now',
  'cacheStatusKey'
])

/** The settings of a request when nothing is set. */
const DEFAULT_SETTINGS: RequestSettings = Object.freeze({
  enabled: true,
  shared: DEFAULTS.shared,
  methods: new Set(DEFAULTS.methods),
  defaultTtl: undefined,
  forceTtl: undefined,
  staleWhileRevalidate: DEFAULTS.staleWhileRevalidate,
  staleIfError: DEFAULTS.staleIfError,
  retry: resolvedDefaults(),
  tags: DEFAULTS.tags,
  maxEntrySize: DEFAULTS.maxEntrySize,
  ignoreRequestNoCache: false,
  key: undefined
})
/**
 * Lower-case letters, digits, '.' and '-': Keyv's SQLite store clears a namespace with LIKE, which
 * ignores case and reads '_' as any character, so 'A' or 'a_b' would clear 'a' or 'aXb' too.
 */
const NAMESPACE = /^[a-z0-9.-]{1,64}$/

export function resolveOptions (options: CacheOptions = {}, path = 'options'): ResolvedOptions {
  if (!isOptionsObject(options)) {
    throw new TypeError(`expected ${path} to be an object, got ${describe(options)}`)
  }
  assertKnownKeys(options, OPTION_KEYS, path)
  const o = options as Record<string, unknown>
  const namespace = toNamespace(o.namespace, `${path}.namespace`)
  const redis = o.store !== undefined && isRedis(adapterOf(o.store))
  const maxSize = optionalSize(o.maxSize, `${path}.maxSize`, 0) ?? DEFAULTS.maxSize
  if (maxSize === 0 && o.store === undefined) {
    throw new TypeError(`${path}.maxSize of 0 turns the memory tier off, which leaves no store: give ${path}.store too`)
  }
  const settings = applyPolicy(DEFAULT_SETTINGS, o, (key) => `${path}.${key}`)
  const resolved = {
    storeTimeouts: toTimeouts(o.storeTimeouts, `${path}.storeTimeouts`),
    pubsub: redisOnly(optionalBoolean(o.pubsub, `${path}.pubsub`), redis, `${path}.pubsub`) ?? redis,
    coordinate: redisOnly(toCoordinate(o.coordinate, `${path}.coordinate`), redis, `${path}.coordinate`),
    maxSize,
    // lru-cache allocates its index for all of them up front (some 36 bytes an entry).
    maxEntries: optionalSize(o.maxEntries, `${path}.maxEntries`, 1, MAX_ENTRIES) ?? DEFAULTS.maxEntries,
    now: optionalFunction(o.now, `${path}.now`) as (() => number) | undefined ?? DEFAULTS.now,
    cacheStatusKey: optionalBoolean(o.cacheStatusKey, `${path}.cacheStatusKey`) ?? false,
    settings,
    hosts: new HostTable(settings, o.hosts, `${path}.hosts`)
  }
  // Last, once every other option is good: an adapter wrapped is claimed for its namespace (and
  // Keyv writes the namespace into it), which a construction refused must leave as it was.
  return Object.freeze({ store: toKeyv(o.store, namespace, DEFAULTS.namespace, `${path}.store`), ...resolved })
}

function toNamespace (value: unknown, path: string): string | undefined {
  if (value === undefined || (typeof value === 'string' && NAMESPACE.test(value))) return value
  throw new TypeError(`expected ${path} to be 1 to 64 lower-case letters, digits, '.' or '-', got ${describe(value)}`)
}

function toTimeouts (value: unknown, path: string): StoreTimeouts {
  if (value === undefined) return DEFAULTS.storeTimeouts
  if (!isOptionsObject(value)) throw new TypeError(`expected ${path} to be an object, got ${describe(value)}`)
  assertKnownKeys(value, new Set(['read', 'write']), path)
  const t = value as Record<string, unknown>
  return Object.freeze({
    read: optionalSize(t.read, `${path}.read`, 1, MAX_TIMER_MS) ?? DEFAULTS.storeTimeouts.read,
    write: optionalSize(t.write, `${path}.write`, 1, MAX_TIMER_MS) ?? DEFAULTS.storeTimeouts.write
  })
}

function toCoordinate (value: unknown, path: string): CoordinatorOptions | undefined {
  if (value === undefined || value === false) return undefined
  if (value === true) return DEFAULTS.coordinate
  if (!isOptionsObject(value)) throw new TypeError(`expected ${path} to be a boolean or an object, got ${describe(value)}`)
  // `poll` too, so that DEFAULTS.coordinate, spread and changed, is an option as it is.
  assertKnownKeys(value, new Set(['lease', 'wait', 'poll']), path)
  const c = value as Record<string, unknown>
  return Object.freeze({
    lease: optionalSize(c.lease, `${path}.lease`, 1, MAX_TIMER_MS) ?? DEFAULTS.coordinate.lease,
    wait: optionalSize(c.wait, `${path}.wait`, 1, MAX_TIMER_MS) ?? DEFAULTS.coordinate.wait,
    poll: optionalSize(c.poll, `${path}.poll`, 1, MAX_TIMER_MS) ?? DEFAULTS.coordinate.poll
  })
}

/** Options only a Redis store can honour: asking for them with another is an error, not a no-op. */
function redisOnly<T> (value: T | undefined, redis: boolean, path: string): T | undefined {
  if (value === undefined || value === false || redis) return value
  throw new TypeError(`${path} needs a Redis store (@keyv/redis) as options.store`)
}


function optionalFunction (value: unknown, path: string): unknown {
  if (value === undefined || typeof value === 'function') return value
  throw new TypeError(`expected ${path} to be a function or undefined, got ${describe(value)}`)
}

