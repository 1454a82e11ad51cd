/**
 * What the cache tells the world: the Cache-Status header (RFC 9211) on every response it touched,
 * `node:diagnostics_channel` events, and the counters behind `cache.stats()`.
 */
import diagnostics from 'node:diagnostics_channel'
import { MAX_DELTA_SECONDS } from './directives.js'
import { setField, type CacheEntry, type ResponseHeaders } from './entry.js'

/** The name this cache uses in Cache-Status. */
export const CACHE_NAME = 'cachedfetch'

/** RFC 9211 §2.2: why the request went forward. */
export type Forward = 'bypass' | 'method' | 'uri-miss' | 'vary-miss' | 'miss' | 'request' | 'stale'

export interface StatusParts {
  readonly hit?: boolean
  readonly fwd?: Forward
  readonly fwdStatus?: number
  readonly ttl?: number
  readonly stored?: boolean
  readonly detail?: string
  /** RFC 9211 §2.7: the cache key, shown when the cache's `cacheStatusKey` option asks for it. */
  readonly key?: string
}

/** Formats this cache's Cache-Status list member, e.g. `cachedfetch; fwd=stale; fwd-status=304`. */
export function formatCacheStatus (parts: StatusParts): string {
  let value = CACHE_NAME
  if (parts.hit === true) value += '; hit'
  if (parts.fwd !== undefined) value += `; fwd=${parts.fwd}`
  if (parts.fwdStatus !== undefined) value += `; fwd-status=${parts.fwdStatus}`
  if (parts.ttl !== undefined) value += `; ttl=${parts.ttl}`
  if (parts.stored === true) value += '; stored'
  if (parts.key !== undefined) value += `; key=${sfString(parts.key)}`
  if (parts.detail !== undefined) value += `; detail=${parts.detail}`
  return value
}

/** Our Cache-Status member, with the key when the `cacheStatusKey` option asks for it (`withKey`). */
export function ownCacheStatus (parts: StatusParts, key: string | undefined, withKey: boolean): string {
  return formatCacheStatus(withKey && key !== undefined ? { ...parts, key } : parts)
}

/**
 * RFC 8941 §3.3.3: an sf-string holds printable ASCII, `\` and `"` escaped. Anything else a key
 * may hold (a Host header's byte past ASCII) is percent-encoded: %XX, or %uXXXX past Latin-1; and
 * so is `%` itself, so that an encoded byte cannot be taken for one that was written so.
 */
function sfString (text: string): string {
  const escaped = text.replace(/[\\"]/g, '\\$&').replace(/[^\x20-\x24\x26-\x7e]/g, (char) => {
    const code = char.charCodeAt(0)
    return code < 0x100 ? `%${code.toString(16).toUpperCase().padStart(2, '0')}` : `%u${code.toString(16).toUpperCase().padStart(4, '0')}`
  })
  return `"${escaped}"`
}

/**
 * RFC 9211 §2: caches closer to the user append their member, so an upstream CDN's stays first.
 */
export function appendCacheStatus (upstream: string | string[] | undefined, ours: string): string {
  if (upstream === undefined || upstream === '') return ours
  return `${Array.isArray(upstream) ? upstream.join(', ') : upstream}, ${ours}`
}

/** The events published on `node:diagnostics_channel`, each on the channel `cachedfetch:<name>`. */
export const EVENTS = [
  'hit', 'miss', 'stale', 'revalidated', 'stored', 'evicted', 'invalidated', 'bypass', 'store-error',
  'retry', 'refresh-failed'
] as const
export type EventName = typeof EVENTS[number]

export interface CacheEvent {
  readonly url?: string
  readonly method?: string
  readonly key?: string
  readonly status?: number
  readonly bytes?: number
  readonly reason?: string
  readonly error?: unknown
  /** For `retry`: which retry this is (1 for the first) and the wait before it, in ms. */
  readonly attempt?: number
  readonly delay?: number
  /**
   * Set on what a stale-while-revalidate hit's background refresh did (`revalidated`): published,
   * not counted in `cache.stats()`. Its lookup counted once already, as the stale hit it served.
   */
  readonly background?: true
}

/**
 * An exchange several callers share (single-flight, src/adapters/broadcast.ts), told what the
 * first caller's lookup counted once its answer is known: each caller that joined it with a stored
 * response of its own, revalidated or stood in for, counts the same (every lookup counts once).
 */
export interface SharedCount {
  counted (name: EventName, event: CacheEvent): void
}

export function isSharedCount (handler: object): handler is SharedCount {
  return typeof (handler as Partial<SharedCount>).counted === 'function'
}

const channels = Object.fromEntries(EVENTS.map((name) => [name, diagnostics.channel(`${CACHE_NAME}:${name}`)])) as
  Record<EventName, diagnostics.Channel>

export interface Stats {
  hits: number
  misses: number
  revalidated: number
  stored: number
  evicted: number
  invalidated: number
  bypassed: number
  storeErrors: number
  retries: number
  staleServed: number
  /** Body bytes served from the cache instead of the origin. */
  bytesServed: number
}

export interface StatsSnapshot extends Readonly<Stats> {
  /** Lookups answered from the cache, (hits + staleServed) / (hits + staleServed + misses + revalidated); 0 before any. */
  readonly hitRatio: number
}

const COUNTER: Record<EventName, keyof Stats | undefined> = {
  hit: 'hits',
  miss: 'misses',
  stale: 'staleServed',
  revalidated: 'revalidated',
  stored: 'stored',
  evicted: 'evicted',
  invalidated: 'invalidated',
  bypass: 'bypassed',
  'store-error': 'storeErrors',
  retry: 'retries',
  'refresh-failed': undefined
}

/** Counts events and publishes them to subscribers, if any. One per cache. */
export class Reporter {
  readonly #stats: Stats = {
    hits: 0, misses: 0, revalidated: 0, stored: 0, evicted: 0, invalidated: 0, bypassed: 0, storeErrors: 0, retries: 0, staleServed: 0, bytesServed: 0
  }

  emit (name: EventName, event: CacheEvent): void {
    const counter = COUNTER[name]
    if (counter !== undefined && event.background !== true) {
      this.#stats[counter]++
      // A 304's stored body is served from the cache too, instead of the origin's.
      if ((name === 'hit' || name === 'stale' || name === 'revalidated') && event.bytes !== undefined) this.#stats.bytesServed += event.bytes
    }
    const channel = channels[name]
    if (channel.hasSubscribers) channel.publish(event)
  }

  snapshot (): StatsSnapshot {
    const s = this.#stats
    // Every lookup counts once, as one of these four; a stale response served is served from the cache.
    const fromCache = s.hits + s.staleServed
    const lookups = fromCache + s.misses + s.revalidated
    return { ...s, hitRatio: lookups === 0 ? 0 : fromCache / lookups }
  }
}

/** A forwarded response's fields with our Cache-Status member added. */
export function withCacheStatus (headers: Record<string, string | string[] | undefined>, parts: StatusParts): ResponseHeaders {
  const copy: ResponseHeaders = {}
  for (const name in headers) {
    const value = headers[name]
    if (value !== undefined) setField(copy, name, value)
  }
  copy['cache-status'] = appendCacheStatus(headers['cache-status'], formatCacheStatus(parts))
  return copy
}

/** RFC 9111 §5.1: Age is whole seconds, and past 2^31 it is 2^31 (§1.2.2). */
export function ageOf (entry: CacheEntry): string {
  return String(Math.min(MAX_DELTA_SECONDS, Math.max(0, Math.floor(entry.policy.age()))))
}
