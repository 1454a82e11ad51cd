/**
 * What the cache stores for one variant of one resource. In memory an entry is a live object (a
 * parsed policy, a Buffer body), so a hit does no parsing and no copying; stores outside the
 * process keep it in the versioned form of src/store/format.ts.
 */
import type { VaryValues } from './key.js'
import { intern } from './memo.js'
import type { Policy } from './policy.js'

/** Response header fields as stored: lower-case names; only `set-cookie` may repeat. */
export type ResponseHeaders = Record<string, string | string[]>

/** One field value as a string: a repeated field's values joined, as RFC 9110 §5.3 allows. */
export function fieldValue (value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value
}

export interface CacheEntry {
  /** The primary key it is stored under (method and URL). */
  readonly key: string
  readonly url: string
  readonly status: number
  readonly statusText: string
  /** Stored header fields, hop-by-hop fields removed (RFC 9111 §3.1). */
  readonly headers: ResponseHeaders
  readonly body: Buffer
  readonly policy: Policy
  /** The request values of the fields the response's Vary names. */
  readonly vary: VaryValues
  /** Names `cache.invalidateTag()` drops it by: Cache-Tag, Surrogate-Key and configured tags. */
  readonly tags: readonly string[]
  /** Bytes the entry holds, for the store's bounds. */
  readonly size: number
}

/** A resource's stored variants (RFC 9111 §4.1: several responses for one URL, picked by Vary). */
export interface VariantSet {
  readonly key: string
  readonly variants: readonly CacheEntry[]
  /** When the store that held it lets it go, ms since the epoch: an L1 copy must not outlive it. */
  readonly expires?: number | undefined
}

/** Per-entry bookkeeping in memory besides body and header bytes (objects, policy, key). */
const ENTRY_OVERHEAD = 512

export function entrySize (key: string, headers: ResponseHeaders, body: Buffer): number {
  let size = ENTRY_OVERHEAD + key.length * 2 + body.byteLength
  for (const name in headers) {
    const value = headers[name]!
    size += name.length + (typeof value === 'string' ? value.length : value.join('').length)
  }
  return size
}

export function variantSetSize (set: VariantSet): number {
  let size = 0
  for (const entry of set.variants) size += entry.size
  return size
}

/** Hop-by-hop fields are never stored (RFC 9111 §3.1, RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'proxy-authentication-info', 'te', 'trailer', 'transfer-encoding', 'upgrade'
])

/** Response header fields as they may be stored: hop-by-hop fields and those named by Connection removed. */
export function storableHeaders (headers: Record<string, string | string[] | undefined>): ResponseHeaders {
  const connection = fieldValue(headers.connection)
  const named = connection === undefined ? undefined : new Set(connection.split(',').map((v) => v.trim().toLowerCase()))
  const stored: ResponseHeaders = {}
  for (const name in headers) {
    const value = headers[name]
    const lower = name.toLowerCase()
    if (value === undefined || HOP_BY_HOP.has(lower) || named?.has(lower)) continue
    stored[lower] = lower === 'set-cookie' ? value : intern(Array.isArray(value) ? value.join(', ') : value)
  }
  return stored
}
