/**
 * Plain requests: a GET or HEAD of a string or URL that `cachedFetch` may answer without running
 * undici.fetch (src/adapters/fetch.ts), and the keys it files them under: the join key identical
 * callers follow a leader by (src/adapters/follower.ts), and the shape that requests fetch sent are
 * recorded by and sent again for (src/adapters/sent.ts).
 */
import { getGlobalOrigin, Headers, type RequestInit } from 'undici'
import { wellFormedField } from '../field-limits.js'
import { flightKey } from '../flight.js'
import { normalizeHeaders, normalizeUrl, refusedByUndici, type CacheRequest, type RequestHeaders } from '../key.js'

/** A GET or HEAD of a string or URL with nothing else that changes how fetch sends it. */
export interface PlainRequest extends CacheRequest {
  readonly mode: 'default' | 'force-cache' | 'only-if-cached'
}

/**
 * The request, when the fast path may answer it; `undefined` when only the full path can. Only a
 * URL, given as text (a URL object is read into it at the call, src/adapters/fetch-arguments.ts):
 * a Request brings a body, signal and mode of its own.
 */
export function plainRequest (input: string | Request, init: RequestInit): PlainRequest | undefined {
  if (typeof input !== 'string') return undefined
  // Any other option is fetch's to check or to act on (integrity, above all): the full path.
  for (const option in init) if (!PLAIN_INIT.has(option)) return undefined
  const method = init.method === undefined ? 'GET' : typeof init.method === 'string' ? init.method.toUpperCase() : undefined
  if (method === undefined) return undefined
  // A signal that is no AbortSignal (a polyfill's) is one fetch refuses: the full path raises its TypeError.
  if ((method !== 'GET' && method !== 'HEAD') || init.body != null || (init.signal != null && !(init.signal instanceof AbortSignal)) ||
      init.signal?.aborted === true || (init.redirect !== undefined && init.redirect !== 'follow')) return undefined
  const mode = (init.cache ?? 'default')
  if (mode !== 'default' && mode !== 'force-cache' && mode !== 'only-if-cached') return undefined
  if (!readAsSent(init.headers)) return undefined
  try {
    // Parsed as fetch parses it: against the global origin, when there is one.
    const globalOrigin = getGlobalOrigin()
    const headers = normalizeHeaders(init.headers)
    // fetch never sends a Host of the caller's: the full path keys the request by its URL alone.
    // A field undici refuses fails there, on a hit as on a miss.
    if (headers.host !== undefined || refusedByUndici(headers)) return undefined
    return { method, url: normalizeUrl(globalOrigin === undefined ? input : new URL(input, globalOrigin)), headers, mode }
  } catch {
    return undefined // the full path raises fetch's own TypeError
  }
}

/** The init options a request the fast path answers may have; anything else takes the full path. */
const PLAIN_INIT = new Set(['method', 'headers', 'cache', 'redirect', 'signal', 'body', 'dispatcher'])

/**
 * Whether normalizeHeaders reads an init's fields as fetch sends them, and fetch takes them (a
 * field it refuses fails on a hit as on a miss: on the full path). Not a value of undefined or
 * null either, which fetch sends as the text "undefined" or "null" (`{ authorization: token }`
 * with no token) and normalizeHeaders reads as undici.request's: absent, or empty. Such a request
 * takes the full path, which sees what fetch sends: else it would be served the variant stored
 * for a request without the field.
 */
function readAsSent (headers: unknown): boolean {
  // Fields come as src/adapters/fetch-arguments.ts copied them: a Headers object, a Map or another
  // iterable as pairs, checked like any others; else a record.
  if (headers === undefined) return true
  if (headers === null || typeof headers !== 'object') return false
  if (Array.isArray(headers)) {
    for (const pair of headers as unknown[]) {
      if (!Array.isArray(pair) || pair.length !== 2 || !sendable(pair[0], pair[1])) return false
    }
    return true
  }
  const record = headers as Record<string, unknown>
  // A symbol is no field name: fetch refuses the record.
  if (Object.getOwnPropertySymbols(record).length > 0) return false
  for (const name in record) if (!sendable(name, record[name])) return false
  return true
}

/**
 * A field name and a value read alike by fetch and normalizeHeaders: a string, or a primitive that
 * fetch turns into the same text. Not an object: fetch sends an array as `String(array)`, one
 * comma-joined line, and a Buffer as its text in UTF-8, where normalizeHeaders reads the one as field
 * lines (a Cookie's joined by `; `) and the other as Latin-1, and a lookup so keyed was served
 * another request's variant.
 */
function sendable (name: unknown, value: unknown): boolean {
  const type = typeof value
  return typeof name === 'string' && (type === 'string' || type === 'number' || type === 'boolean' || type === 'bigint') &&
    wellFormedField(name, String(value))
}

/**
 * The key identical followable requests share in the leaders' map; `undefined` for one that
 * cannot follow or lead. Two calls share it only when fetch sends them the same fields, so it is
 * made of the fields as fetch makes them (`sentFields`), not as `normalizeHeaders` reads them for
 * the cache.
 */
export function joinKey (request: PlainRequest | undefined, init: RequestInit): string | undefined {
  return request === undefined ? undefined : keyOf(request, init, request.url)
}

/**
 * The shape of a followable request, which the requests fetch sent are recorded by
 * (src/adapters/sent.ts): its join key with the origin for the URL, and the global origin fetch
 * reads URLs against and makes a Referer from; `undefined` for one that cannot follow or lead.
 */
export function shapeKey (request: PlainRequest, init: RequestInit, origin: string, globalOrigin: URL | undefined): string | undefined {
  return keyOf(request, init, globalOrigin === undefined ? origin : `${origin} ${globalOrigin.href}`)
}

function keyOf (request: PlainRequest, init: RequestInit, target: string): string | undefined {
  if (!followable(request, init)) return undefined
  const headers = init.headers === undefined ? request.headers : sentFields(init.headers)
  return headers === undefined ? undefined : flightKey({ method: request.method, url: target, headers }, request.mode)
}

/**
 * Whether a caller may follow an identical one's flight (src/adapters/follower.ts): one that
 * reaches the origin, through our dispatcher, with only what `plainRequest` reads of its init,
 * so that fetch would send exactly the leader's request.
 */
function followable (request: PlainRequest, init: RequestInit): boolean {
  if (request.mode === 'only-if-cached') return false
  for (const option in init) if (!FOLLOWABLE_INIT.has(option)) return false
  return true
}

const FOLLOWABLE_INIT = new Set(['method', 'headers', 'cache', 'redirect', 'signal'])

/**
 * The fields fetch sends for an init's `headers`, by fetch's own rules (undici's Headers): values
 * trimmed, anything given turned into a string (`undefined` into "undefined"), a repeated field
 * joined (a Cookie with "; "); `undefined` for headers fetch refuses, which fetch itself rejects.
 */
function sentFields (init: unknown): RequestHeaders | undefined {
  let headers: Headers
  try {
    headers = new Headers(init as ConstructorParameters<typeof Headers>[0])
  } catch {
    return undefined
  }
  // No prototype: a field may be named `constructor` or `__proto__`.
  const fields = Object.create(null) as RequestHeaders
  // Set-Cookie is the one field Headers yields more than once: fetch sends it joined with ", ".
  for (const [name, value] of headers) fields[name] = fields[name] === undefined ? value : `${fields[name]}, ${value}`
  return fields
}
