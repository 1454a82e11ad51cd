/**
 * What the cache stores for one variant of one resource, and its versioned serialization for
 * stores outside the process. In memory an entry is a live object (a parsed policy, a Buffer body),
 * so a hit does no parsing and no copying; serialized it is a compact plain object.
 */
import type { VaryValues } from './key.js'
import type { Policy, PolicyFactory, PolicyObject } from './policy.js'

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
  /** Bytes the entry holds, for the store's bounds. */
  readonly size: number
}

/** A resource's stored variants (RFC 9111 §4.1: several responses for one URL, picked by Vary). */
export interface VariantSet {
  readonly key: string
  readonly variants: readonly CacheEntry[]
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

/** Version of the serialized form. A stored value of another version is a miss and is deleted. */
export const FORMAT_VERSION = 1

interface SerializedEntry {
  u: string
  s: number
  m: string
  h: ResponseHeaders
  b: Buffer
  p: PolicyObject
  /** Vary values; `null` for a field the request did not send, which JSON would otherwise drop. */
  y: Record<string, string | null>
}

export interface SerializedVariantSet {
  v: typeof FORMAT_VERSION
  k: string
  e: SerializedEntry[]
}

export function serializeVariantSet (set: VariantSet): SerializedVariantSet {
  return {
    v: FORMAT_VERSION,
    k: set.key,
    e: set.variants.map((entry) => ({
      u: entry.url,
      s: entry.status,
      m: entry.statusText,
      h: entry.headers,
      b: entry.body,
      p: entry.policy.toObject(),
      y: toNulls(entry.vary)
    }))
  }
}

/**
 * Rebuilds a variant set read from a store, or returns `undefined` when the value is not one:
 * another format version, another key, or anything malformed. Never throws.
 */
export function deserializeVariantSet (value: unknown, key: string, policies: PolicyFactory): VariantSet | undefined {
  if (!isRecord(value) || value.v !== FORMAT_VERSION || value.k !== key || !Array.isArray(value.e)) return undefined
  const variants: CacheEntry[] = []
  for (const item of value.e as unknown[]) {
    if (!isRecord(item)) return undefined
    const { u, s, m, h, b, p, y } = item
    const body = toBuffer(b)
    if (typeof u !== 'string' || typeof s !== 'number' || typeof m !== 'string' ||
        !isHeaders(h) || body === undefined || !isRecord(y)) return undefined
    const policy = policies.fromObject(p, s, h)
    if (policy === undefined) return undefined
    const vary = fromNulls(y)
    if (vary === undefined) return undefined
    variants.push({ key, url: u, status: s, statusText: m, headers: h, body, policy, vary, size: entrySize(key, h, body) })
  }
  return { key, variants }
}

function toNulls (vary: VaryValues): Record<string, string | null> {
  const values: Record<string, string | null> = {}
  for (const field in vary) values[field] = vary[field] ?? null
  return values
}

function fromNulls (value: Record<string, unknown>): VaryValues | undefined {
  const vary: Record<string, string | undefined> = {}
  for (const field in value) {
    const v = value[field]
    if (v !== null && typeof v !== 'string') return undefined
    vary[field] = v ?? undefined
  }
  return vary
}

function toBuffer (value: unknown): Buffer | undefined {
  if (Buffer.isBuffer(value)) return value
  // A store that keeps typed arrays (not Keyv's JSON serializer) hands back a Uint8Array.
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  return undefined
}

function isHeaders (value: unknown): value is ResponseHeaders {
  if (!isRecord(value)) return false
  for (const name in value) {
    const field = value[name]
    if (typeof field !== 'string' && !(Array.isArray(field) && field.every((v) => typeof v === 'string'))) return false
  }
  return true
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
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
    stored[lower] = lower === 'set-cookie' ? value : (Array.isArray(value) ? value.join(', ') : value)
  }
  return stored
}
