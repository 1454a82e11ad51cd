/**
 * What the cache stores for one variant of one resource. In memory an entry is a live object (a
 * policy of a few numbers, header fields, the body), so a hit does no parsing; stores outside the
 * process keep it in the versioned form of src/store/format.ts.
 */
import type { VaryValues } from './key.js'
import { intern, memoize } from './memo.js'
import type { Policy } from './stored-policy.js'

/** Response header fields as stored: lower-case names; only `set-cookie` may repeat. */
export type ResponseHeaders = Record<string, string | string[]>

/**
 * Sets a field in a record of fields. A field named `__proto__` is a token like any other (RFC 9110
 * §5.1); assigned, it would set the record's prototype instead (or vanish), so it is defined as the
 * record's own. Records stay plain objects: V8 reads those far faster than prototype-less ones.
 */
export function setField<T> (record: Record<string, T>, name: string, value: T): void {
  if (name === '__proto__') Object.defineProperty(record, name, { value, enumerable: true, configurable: true, writable: true })
  else record[name] = value
}

/** A copy of records of fields, later ones over earlier ones, a field named `__proto__` included (see setField). */
export function copyFields<T> (...records: ReadonlyArray<Readonly<Record<string, T>>>): Record<string, T> {
  const copy: Record<string, T> = {}
  for (const record of records) for (const name in record) setField(copy, name, record[name]!)
  return copy
}

/** One field value as a string: a repeated field's values joined, as RFC 9110 §5.3 allows. */
export function fieldValue (value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value
}

/**
 * A stored body. Up to `SMALL_BODY` bytes it is a one-byte string, one character per byte
 * (latin1, so any bytes round-trip): beside its bytes it costs 16 bytes, where a Buffer costs about
 * 180 (its view, its ArrayBuffer, its backing store), which for 1 KB bodies is most of what an
 * entry costs besides. A larger body stays a Buffer, off the JS heap and never moved by its GC.
 * Either way a caller gets copies (`bodySlice`), never the stored bytes.
 */
export type StoredBody = string | Buffer

const SMALL_BODY = 16 * 1024

export function toStoredBody (bytes: Buffer): StoredBody {
  return bytes.byteLength <= SMALL_BODY ? bytes.toString('latin1') : bytes
}

export function bodyLength (body: StoredBody): number {
  return typeof body === 'string' ? body.length : body.byteLength
}

/** Bytes `start` to `end` of a body, in a Buffer of the caller's own. */
export function bodySlice (body: StoredBody, start = 0, end = bodyLength(body)): Buffer {
  return typeof body === 'string'
    ? Buffer.from(start === 0 && end === body.length ? body : body.slice(start, end), 'latin1')
    : Buffer.from(body.subarray(start, end))
}

/** The whole body in an ArrayBuffer of the caller's own, copied once. */
export function bodyArrayBuffer (body: StoredBody): ArrayBuffer {
  const copy = bytesToFill(bodyLength(body))
  if (typeof body === 'string') copy.write(body, 'latin1')
  else copy.set(body)
  return copy.buffer
}

/**
 * `length` bytes in an ArrayBuffer of their own (`.buffer`, exactly as long), for a copy that
 * fills every one of them at once: not zeroed first, as `new ArrayBuffer()` is. A 100 KB hit read
 * through `cachedFetch()` took 9.8–10.5 µs against 12.4–13.4 with the zeroing (a profile loop,
 * alone, Node 20; on Node 24, 29.4 against 30.7–31.8).
 */
function bytesToFill (length: number): Buffer<ArrayBuffer> {
  return Buffer.allocUnsafeSlow(length)
}

/** `chunks` joined into bytes of their own (bytesToFill); `length` is the sum of theirs. */
export function joinedBytes (chunks: readonly Buffer[], length: number): Buffer<ArrayBuffer> {
  const joined = bytesToFill(length)
  let at = 0
  for (const chunk of chunks) at += chunk.copy(joined, at)
  return joined
}

/** The whole body as bytes for a consumer that copies them (the Response constructor): a large body's own Buffer. */
export function bodyBytes (body: StoredBody): Buffer {
  return typeof body === 'string' ? Buffer.from(body, 'latin1') : body
}

export interface CacheEntry {
  /** The primary key it is stored under (method and URL). */
  readonly key: string
  readonly status: number
  readonly statusText: string
  /** Stored header fields, hop-by-hop fields removed (RFC 9111 §3.1). */
  readonly headers: ResponseHeaders
  readonly body: StoredBody
  readonly policy: Policy
  /** The request values of the fields the response's Vary names. */
  readonly vary: VaryValues
  /** Names `cache.invalidateTag()` drops it by: Cache-Tag, Surrogate-Key and configured tags. */
  readonly tags: readonly string[]
}

/**
 * A resource's stored variants (RFC 9111 §4.1: several responses for one URL, picked by Vary), all
 * under one key, the newest first. Most resources have one, which is kept as it is rather than in
 * an array of one: that array would cost 56 bytes an entry in memory.
 */
export type Variants = CacheEntry | readonly CacheEntry[]

export function variantList (variants: Variants): readonly CacheEntry[] {
  return isEntry(variants) ? [variants] : variants
}

export function toVariants (list: readonly CacheEntry[]): Variants {
  return list.length === 1 ? list[0]! : list
}

export function isEntry (variants: Variants): variants is CacheEntry {
  return !Array.isArray(variants)
}

/** Every tag of a resource's variants, for invalidation by tag. */
export function variantTags (variants: Variants): string[] {
  return variantList(variants).flatMap((variant) => variant.tags)
}

/** Per-entry bookkeeping in memory besides body and header bytes (objects, policy, key). */
const ENTRY_OVERHEAD = 320
/**
 * A header field's own slot, besides its name and value: V8 keeps a record's first properties in
 * the object (some 16 bytes each, measured), and past about 16 of them turns it into a hash table
 * (some 64 bytes each, every field): a response with 100 fields held 8× what the bound counted
 * without this.
 */
const FIELD_OVERHEAD = 16
const MANY_FIELDS = 16
const HASHED_FIELD_OVERHEAD = 64

/** Bytes an entry holds in memory, for the memory tier's bounds. */
function entrySize (entry: CacheEntry): number {
  return sizeBesidesBody(entry.key, entry.headers, entry.vary, entry.tags) + bodyLength(entry.body)
}

/** Bytes an entry holds in memory besides its body: known before the body arrives. */
export function sizeBesidesBody (key: string, headers: ResponseHeaders, vary: VaryValues, tags: readonly string[]): number {
  let size = ENTRY_OVERHEAD + key.length
  let fields = 0
  for (const name in headers) {
    const value = headers[name]!
    size += name.length + (typeof value === 'string' ? value.length : value.join('').length)
    fields++
  }
  size += fields * (fields > MANY_FIELDS ? HASHED_FIELD_OVERHEAD : FIELD_OVERHEAD)
  // The request values its Vary names are the client's to choose: 32 variants of 8 KB each are
  // a quarter MB a URL, not to be left out of the bound.
  for (const name in vary) size += name.length + (vary[name]?.length ?? 0)
  for (const tag of tags) size += tag.length
  return size
}

export function variantsSize (variants: Variants): number {
  if (isEntry(variants)) return entrySize(variants)
  let size = 0
  for (const entry of variants) size += entrySize(entry)
  return size
}

/**
 * A field name in lower case (RFC 9110 §5.1: names are case-insensitive tokens, so only A–Z fold).
 * One that is already, as undici hands them over, is returned as it is: V8's toLowerCase() copies
 * even a string it leaves unchanged (28 bytes a name), and names are folded for every field of
 * every response.
 */
export function lowerCaseName (name: string): string {
  return UPPER_CASE.test(name) ? name.toLowerCase() : name
}

const UPPER_CASE = /[A-Z]/

/** Hop-by-hop fields are never stored (RFC 9111 §3.1, RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization',
  'proxy-authentication-info', 'te', 'trailer', 'transfer-encoding', 'upgrade'
])

/** Connection options that name no end-to-end field (RFC 9112 §9.3, §9.6; RFC 9110 §7.6.1). */
const CONNECTION_OPTIONS = new Set(['close', 'keep-alive', ...HOP_BY_HOP])

const NO_OPTIONS: ReadonlySet<string> = new Set()

/** The options a Connection field lists, lower-cased (RFC 9110 §7.6.1): the fields it names are hop-by-hop. */
export function connectionOptions (connection: string | string[] | undefined): ReadonlySet<string> {
  const value = fieldValue(connection)
  if (value === undefined) return NO_OPTIONS
  return optionsOf(value)
}

/**
 * A Connection value's options, parsed once: an origin sends the same one or two values on every
 * response ("keep-alive"), and parsing it anew (a Set, a split) took 2–3 µs of a 304 through the
 * interceptor in a profile, where a 200 asks twice (which fields to store, and whether to store).
 */
const optionsOf = memoize(256, (value: string): ReadonlySet<string> => {
  const options = new Set<string>()
  for (const option of value.split(',')) {
    const name = option.trim().toLowerCase()
    if (name !== '') options.add(name)
  }
  return options
}, 256)

/**
 * Whether Connection names end-to-end fields. They were sent for this cache, the next recipient
 * (RFC 9110 §7.6.1), and may say `private`, set a cookie or name a Vary field; but RFC 9111 §3.1
 * keeps them out of what is stored, and a stored response without them would be served as if they
 * had never been said. Such a response is not stored.
 */
export function connectionNamesFields (headers: Record<string, string | string[] | undefined>): boolean {
  for (const option of connectionOptions(headers.connection)) if (!CONNECTION_OPTIONS.has(option)) return true
  return false
}

/** Whether a field (its name lower-cased) describes the connection it came on: hop-by-hop, or among `named` by Connection. */
function connectionField (lower: string, named: ReadonlySet<string>): boolean {
  return HOP_BY_HOP.has(lower) || named.has(lower)
}

/**
 * A response's fields as an intermediary passes them on (RFC 9110 §7.6.1): those that describe the
 * connection it came on removed, the others as they are.
 */
export function endToEndFields<T> (headers: Readonly<Record<string, T>>): Record<string, T> {
  const named = connectionOptions(headers.connection as string | string[] | undefined)
  const kept: Record<string, T> = {}
  for (const name in headers) if (!connectionField(lowerCaseName(name), named)) setField(kept, name, headers[name]!)
  return kept
}

/** Response header fields as they may be stored: hop-by-hop fields and those named by Connection removed. */
export function storableHeaders (headers: Record<string, string | string[] | undefined>): ResponseHeaders {
  const named = connectionOptions(headers.connection)
  const stored: ResponseHeaders = {}
  for (const name in headers) {
    const value = headers[name]
    const lower = lowerCaseName(name)
    if (value === undefined || connectionField(lower, named)) continue
    setField(stored, lower, lower === 'set-cookie' ? value : intern(Array.isArray(value) ? value.join(', ') : value))
  }
  return stored
}
