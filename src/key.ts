/**
 * The cache key: method plus normalised URL picks the stored resource; the request header values
 * named by the response's Vary pick the variant (RFC 9111 §4.1). Both adapters build keys here,
 * so `cachedFetch` and the interceptor see the same entries.
 */
import { createHash } from 'node:crypto'
import { lowerCaseName, setField } from './entry.js'
import { memoize } from './memo.js'

/** Request header fields, names in lower case, repeated fields joined with ", ". */
export type RequestHeaders = Record<string, string>

/** What the engine needs to know of a request. */
export interface CacheRequest {
  /** The method as sent: case-sensitive (RFC 9110 §9.1); fetch upper-cases the standard ones. */
  readonly method: string
  /** Absolute URL, WHATWG-normalised, without fragment. */
  readonly url: string
  readonly headers: RequestHeaders
  /** It sends content (a GET or HEAD with a body passes the cache by: src/cache.ts). */
  readonly content?: true
}

/** The values a stored response's Vary fields had in the request that produced it. */
export type VaryValues = Readonly<Record<string, string | undefined>>

/**
 * Normalises a URL as `fetch` does (WHATWG URL parsing: lower-case scheme and host, default port
 * dropped, dot segments resolved, unsafe characters percent-encoded) so that the same resource
 * gets one key whichever adapter asked. The fragment is never part of a request.
 */
export function normalizeUrl (url: string | URL): string {
  return typeof url === 'string' ? normalizedString(url) : withoutFragment(url)
}

/** Parsing is a good part of a hit's cost, and the same URLs come again and again. */
const normalizedString = memoize(1024, (url) => withoutFragment(new URL(url)))

function withoutFragment (parsed: URL): string {
  // An empty fragment ("…#") has hash "" but still shows in href.
  if (!parsed.href.includes('#')) return parsed.href
  const copy = new URL(parsed.href)
  copy.hash = ''
  return copy.href
}

/**
 * The key an entry is stored under: the method, the URL (through the `key` hook when there is
 * one), the Host header when it names another authority, and a `private ` mark for a private
 * cache's entries, which a shared cache on the same store must never serve.
 */
export function storeKey (method: string, url: string, host: string | undefined, settings: { readonly shared: boolean, readonly key: ((url: URL) => URL | string) | undefined }): string {
  const parts = [method, settings.key === undefined ? url : keyUrl(settings.key, url)]
  if (!settings.shared) parts.unshift('private')
  // RFC 9110 §7.1: a Host header names the target's authority; one that is not the connection's
  // (a virtual host) is another resource, though the same server answers.
  if (host !== undefined && host.toLowerCase() !== hostOf(url)) parts.push(`host=${host.toLowerCase()}`)
  // join() makes one flat string. A concatenation would be a rope, which V8 flattens into another
  // string, kept beside it, the first time it compares the key with another: in the memory tier
  // that is every entry's key, on its first hit.
  return parts.join(' ')
}

/**
 * A Host header's value and the other way to write the same authority, with or without the
 * scheme's default port (RFC 9110 §4.2.3: `api.test:80` and `api.test` over http). The key keeps
 * them apart, as it keeps percent-encodings (an origin may route them apart); an invalidation
 * drops both.
 */
export function sameAuthorities (host: string, url: string): readonly string[] {
  const lower = host.toLowerCase()
  const port = url.startsWith('https:') ? ':443' : url.startsWith('http:') ? ':80' : undefined
  if (port === undefined) return [lower]
  return lower.endsWith(port) ? [lower, lower.slice(0, -port.length)] : /:\d*$/.test(lower) ? [lower] : [lower, lower + port]
}

/**
 * The authority of a normalised URL. Every lookup of a request that carries a Host header asks it:
 * parsed each time, it was a sixth of the engine's work on a 1 KB 304 (its lookup and merge took
 * 4.0 µs, against 3.3 µs memoised: alone, in a loop, medians of six runs each).
 */
const hostOf = memoize(1024, (url) => new URL(url).host)

/** The URL part of a key from `storeKey()`, with the ` host=…` that may follow it. */
export function urlOfKey (key: string): string {
  const rest = key.startsWith('private ') ? key.slice('private '.length) : key
  return rest.slice(rest.indexOf(' ') + 1)
}

/**
 * The URL a request is stored under, by the cache's `key` hook. A hook that throws, or returns no
 * URL, keys the request by its own URL: the cache fails open, and an application's bug in its
 * hook costs it sharing entries, never a request.
 */
export function keyUrl (hook: (url: URL) => URL | string, url: string): string {
  try {
    const keyed = hook(new URL(url))
    if (typeof keyed === 'string' || keyed instanceof URL) return normalizeUrl(keyed)
  } catch {
    // Falls through to the request's own URL.
  }
  return url
}

/**
 * The field names a Vary header lists, lower-cased; `['*']` when it contains `*`, which no
 * request ever matches (RFC 9111 §4.1).
 */
export function varyFields (vary: string | undefined): string[] {
  if (vary === undefined || vary === '') return []
  const fields: string[] = []
  for (const part of vary.split(',')) {
    const name = part.trim().toLowerCase()
    if (name === '*') return ['*']
    if (name !== '' && !fields.includes(name)) fields.push(name)
  }
  return fields
}

/** The Vary values of a response without Vary: one object for all of them. */
const NO_VARY: VaryValues = Object.freeze({})

export function varyValues (fields: readonly string[], headers: RequestHeaders): VaryValues {
  if (fields.length === 0) return NO_VARY
  const values: Record<string, string | undefined> = {}
  for (const field of fields) setField(values, field, keptValue(field, headers[field]))
  return values
}

/**
 * Whether a request selects a stored variant. Values are compared after folding white space
 * around commas, a normalisation RFC 9111 §4.1 allows; a field absent in both matches. `kept`: the
 * request's values as compared, worked out once for all the variants of a URL (a digest costs).
 */
export function varyMatches (stored: VaryValues, headers: RequestHeaders, kept?: Map<string, string | undefined>): boolean {
  for (const field in stored) {
    if (field === '*') return false
    let value
    if (kept === undefined) value = keptValue(field, headers[field])
    else if (kept.has(field)) value = kept.get(field)
    else kept.set(field, value = keptValue(field, headers[field]))
    if (stored[field] !== value) return false
  }
  return true
}

/**
 * Request fields that carry credentials. A variant selected by one keeps a SHA-256 digest of the
 * value rather than the value, so that no store (Redis, SQLite, memory) holds a user's session
 * cookie or token in clear beside the response it selects. Equal values have equal digests, so
 * variants are selected as before (RFC 9111 §4.1 compares values, and allows normalising them).
 */
const CREDENTIAL_FIELDS: ReadonlySet<string> = new Set(['authorization', 'cookie', 'proxy-authorization'])

/** A request field's value as a variant keeps it and as it is compared. */
function keptValue (field: string, value: unknown): string | undefined {
  const normalized = normalizeFieldValue(value)
  return normalized !== undefined && CREDENTIAL_FIELDS.has(field) ? digest(normalized) : normalized
}

function digest (value: string): string {
  return `sha256:${createHash('sha256').update(value).digest('base64url')}`
}

/**
 * `value` as compared; what is no string is a field the request does not have (`constructor` is
 * Object.prototype's). RFC 9111 §4.1 lets whitespace be normalised only where the field's syntax
 * allows it: around the commas of a list (RFC 9110 §5.6.1), not inside a quoted string or a
 * comment, where it is data (`name="Smith, John"`, `Bot/1.0 (x, y)`). A `(` left open folds no
 * comma after it: at worst two equal values are kept apart, never two different ones merged.
 */
function normalizeFieldValue (value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined
  if (!value.includes(',')) return trimOws(value)
  let normalized = ''
  let start = 0
  let quoted = false
  let depth = 0
  for (let i = 0; i < value.length; i++) {
    const char = value[i]
    // A quoted-pair (RFC 9110 §5.6.4, §5.6.5) escapes the next character, in a string or a comment.
    if (char === '\\' && (quoted || depth > 0)) i++
    else if (quoted) {
      if (char === '"') quoted = false
    } else if (char === '"' && depth === 0) quoted = true
    else if (char === '(') depth++
    else if (char === ')' && depth > 0) depth--
    else if (char === ',' && depth === 0) {
      normalized += trimOws(value.slice(start, i)) + ', '
      start = i + 1
    }
  }
  return normalized + trimOws(value.slice(start))
}

/**
 * Without the optional whitespace around it, spaces and tabs (RFC 9110 §5.6.3): not `trim()`, which
 * strips a no-break space too (0xA0, obs-text in a field value), and two values that differ by it
 * would select one variant.
 */
function trimOws (text: string): string {
  // Most values have none: no scan for them.
  return isOws(text.charCodeAt(0)) || isOws(text.charCodeAt(text.length - 1)) ? text.replace(OWS_AROUND, '') : text
}

const isOws = (code: number): boolean => code === 0x20 || code === 0x09

const OWS_AROUND = /^[ \t]+|[ \t]+$/g

type RawHeaders =
  | Record<string, string | string[] | number | undefined | null>
  | Iterable<readonly [string, string | string[]]>
  | readonly (string | Buffer | string[])[]
  | null
  | undefined

/**
 * Request fields undici refuses to send (its Request throws: Transfer-Encoding, Keep-Alive and
 * Upgrade are its own to set, Expect it does not support).
 */
const REFUSED_BY_UNDICI = ['transfer-encoding', 'keep-alive', 'upgrade', 'expect']

/** Whether a request carries a field undici refuses: the cache passes it by, so that it fails on a hit as it does on a miss. */
export function refusedByUndici (headers: RequestHeaders): boolean {
  return hasAny(headers, REFUSED_BY_UNDICI)
}

/** Request fields that make the caller's own conditional or partial request: passed through untouched. */
export const CALLER_CONDITIONALS: readonly string[] = ['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range', 'range']

/** Whether the request carries any of these fields (lower-case names). */
export function hasAny (headers: RequestHeaders, names: readonly string[]): boolean {
  for (const name of names) if (headers[name] !== undefined) return true
  return false
}

/**
 * Normalises every header shape undici accepts in dispatch options (a record, an iterable of
 * pairs, a flat `[name, value, …]` array, Buffers) into lower-case names and joined values.
 */
export function normalizeHeaders (raw: unknown): RequestHeaders {
  const headers: RequestHeaders = {}
  const input = raw as RawHeaders
  if (input == null) return headers
  if (Array.isArray(input)) {
    if (input.length > 0 && Array.isArray(input[0])) {
      for (const pair of input as unknown as [string, string][]) append(headers, pair[0], pair[1])
    } else {
      for (let i = 0; i + 1 < input.length; i += 2) append(headers, input[i], input[i + 1])
    }
  } else if (typeof (input as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const [name, value] of input as Iterable<readonly [string, string | string[]]>) append(headers, name, value)
  } else {
    const record = input as Record<string, unknown>
    // Own fields only, as undici reads them (Object.keys): an inherited one is never sent.
    for (const name in record) if (Object.hasOwn(record, name)) append(headers, name, record[name])
  }
  return headers
}

function append (headers: RequestHeaders, name: unknown, value: unknown): void {
  if (value === undefined) return
  const key = lowerCaseName(String(name))
  // Lines of one field are joined by commas (RFC 9110 §5.3), a Cookie's pairs by "; " (RFC 6265
  // §5.4): this is what a revalidation or a retry with an Idempotency-Key sends again.
  const separator = key === 'cookie' ? '; ' : ', '
  const text = Array.isArray(value) ? value.map(toText).join(separator) : toText(value)
  // What is no string is inherited (`constructor`, `__proto__`), not a field sent before.
  const previous: unknown = headers[key]
  setField(headers, key, typeof previous === 'string' ? `${previous}${separator}${text}` : text)
}

/** A field value as undici sends it: a null as an empty value, alone or in a list. */
function toText (value: unknown): string {
  if (value === null) return ''
  // undici coerces what else it is given with a template literal, as here.
  return Buffer.isBuffer(value) ? value.toString('latin1') : `${value as string}`
}
