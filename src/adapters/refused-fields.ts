/**
 * Request fields in dispatch options that undici's Request refuses (it throws as the request is
 * made, below the interceptors). The cache passes such a request by, so that it fails on a hit as
 * it does on a miss: read for the key, a field it refuses would be served the answer stored for
 * another shape of it, and a request undici never sends would join another's exchange. The checks
 * are undici 7's (lib/core/request.js, processHeader), in shape and in order; what it sends, it is
 * sent as given.
 */
import { isFieldValue, isToken } from '../field-limits.js'

/** Fields undici sets itself, or does not support: a request that gives one is refused. */
const UNDICI_OWN = new Set(['transfer-encoding', 'keep-alive', 'upgrade', 'expect'])

/** Whether undici refuses these request fields, given as dispatch options give them. */
export function refusedFields (headers: unknown): boolean {
  if (headers == null) return false
  const seen = { host: false, contentLength: false }
  if (Array.isArray(headers)) {
    if (headers.length % 2 !== 0) return true
    for (let i = 0; i < headers.length; i += 2) if (refusedField(headers[i], headers[i + 1], seen)) return true
    return false
  }
  if (typeof headers !== 'object') return true
  if (hasOwnIterator(headers)) {
    for (const pair of headers as Iterable<unknown>) {
      if (!Array.isArray(pair) || pair.length !== 2 || refusedField(pair[0], pair[1], seen)) return true
    }
    return false
  }
  const record = headers as Record<string, unknown>
  for (const name of Object.keys(record)) if (refusedField(name, record[name], seen)) return true
  return false
}

/** A value refusedValue() passed (a primitive) as undici makes it text. */
function asText (value: unknown): string {
  return `${value as string}`
}

/** A value undici will not make text of: an object (but null), or a symbol, which a template literal throws on. */
function refusedValue (value: unknown): boolean {
  return (value !== null && typeof value === 'object') || typeof value === 'symbol'
}

/** How undici tells an iterable of pairs from a record: an iterator of its own, or of a class's. */
export function hasOwnIterator (value: object): boolean {
  const prototype: unknown = Object.getPrototypeOf(value)
  return Object.hasOwn(value, Symbol.iterator) ||
    (prototype != null && prototype !== Object.prototype && typeof (value as Partial<Iterable<unknown>>)[Symbol.iterator] === 'function')
}

function refusedField (name: unknown, value: unknown, seen: { host: boolean, contentLength: boolean }): boolean {
  if (value === undefined) return false
  if (refusedValue(value) && !Array.isArray(value)) return true
  if (typeof name !== 'string' || !isToken(name)) return true
  let text: string | undefined
  if (Array.isArray(value)) {
    for (const item of value as unknown[]) if (item !== null && (refusedValue(item) || !isFieldValue(asText(item)))) return true
  } else {
    text = value === null ? '' : asText(value)
    if (!isFieldValue(text)) return true
  }
  const lower = name.toLowerCase()
  if (lower === 'host') {
    if (seen.host || text === undefined) return true
    seen.host = true
  } else if (lower === 'content-length') {
    if (seen.contentLength || text === undefined || !/^\d+$/.test(text)) return true
    seen.contentLength = true
  } else if (lower === 'connection') {
    if (text === undefined) return true
    for (const option of text.toLowerCase().split(',')) if (!isToken(option.trim())) return true
  } else if (UNDICI_OWN.has(lower)) {
    return true
  }
  return false
}
