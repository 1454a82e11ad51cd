/**
 * fetch's arguments read as fetch reads them: all of them, at the call. A caller may go on to
 * change what it passed (a pager that sets `url.searchParams` and calls again, a Headers object
 * reused for the next request) while this request still waits for the store or for another's
 * answer; whatever is read after that wait must be what the caller passed, not what it has become.
 */
import { Headers, Request, type RequestInit } from 'undici'
import type { RequestPolicy } from '../options.js'
import { describe } from '../validate.js'
import { NodeHeaders, NodeRequest } from './node-web.js'

export type FetchInput = string | URL | Request | globalThis.Request
export type FetchInit = (RequestInit | globalThis.RequestInit) & {
  /** This request's own stale windows and retries, over the cache's. */
  cachePolicy?: RequestPolicy
}

/**
 * The input as undici.fetch takes it. Anything that is no Request is read now into its text, as
 * fetch reads it (WebIDL USVString: a URL's, or a subclass's own toString(); a String object's,
 * another library's URL).
 *
 * A Request from another fetch implementation (Node's global one is an older undici) is not an
 * instance of ours, and undici.fetch would read it as the string "[object Request]": it is copied.
 * Its body is read whole first, as the bytes it was made from, unless `init` brings a body of its
 * own (fetch leaves the input's unread then; a null one is none): passed on as its stream, it
 * would go out chunked, without the Content-Length Node's fetch sends, and could not follow a 307
 * or 308.
 */
export function toUndiciInput (input: FetchInput, init: RequestInit): string | Request | Promise<Request> {
  if (typeof input === 'string' || input instanceof Request) return input
  if (!(input instanceof NodeRequest)) return String(input)
  const { url, method, headers, signal, redirect, cache, integrity, keepalive, mode, credentials, referrerPolicy } = input
  const copy = (body: ArrayBuffer | null): Request => new Request(url, {
    method, headers: [...headers], body, signal, redirect, cache, integrity, keepalive, mode, credentials, referrerPolicy
  })
  return input.body === null || init.body != null ? copy(null) : input.arrayBuffer().then(copy)
}

/**
 * The members of fetch's RequestInit (WHATWG Fetch), with undici's `dispatcher` and our `cachePolicy`.
 * Ours keeps only these: fetch ignores any other.
 */
const MEMBERS = ['method', 'headers', 'body', 'referrer', 'referrerPolicy', 'mode', 'credentials', 'cache', 'redirect',
  'integrity', 'keepalive', 'signal', 'duplex', 'priority', 'window', 'dispatcher', 'cachePolicy'] as const

/**
 * The init, read as fetch reads a dictionary (WebIDL): undefined or null for none, else an object
 * whose members are read as properties, inherited ones and getters too (`fetch(url, request)`,
 * `Object.create(defaults)`). Its fields are copied, as fetch copies them into its Request.
 */
export function readInit (given: unknown): FetchInit {
  if (given === undefined || given === null) return {}
  if (typeof given !== 'object' && typeof given !== 'function') {
    throw new TypeError(`expected fetch's init (argument 2) to be an object, got ${describe(given)}`)
  }
  // Mostly an object literal: a copy of its own members reads them all (getters included). A member
  // that is undefined is one not given (WebIDL §3.2.17): `{ body: undefined }` is a plain GET.
  let init: Record<string, unknown>
  if (Object.getPrototypeOf(given) === Object.prototype) {
    init = { ...given }
    // Made again without them, rather than with `delete`, which would leave a slow dictionary.
    for (const name in init) {
      if (init[name] === undefined) {
        init = definedMembers(init)
        break
      }
    }
  } else {
    init = {}
    for (const name of MEMBERS) {
      const value = (given as Record<string, unknown>)[name]
      if (value !== undefined) init[name] = value
    }
  }
  if (init.headers !== undefined) init.headers = copyFields(init.headers)
  return init
}

function definedMembers (record: Record<string, unknown>): Record<string, unknown> {
  const defined: Record<string, unknown> = {}
  for (const name in record) if (record[name] !== undefined) defined[name] = record[name]
  return defined
}

/**
 * Fields as given, copied: a Headers object (ours or the global one) or an iterator into pairs, a
 * record or a list of pairs into one of its own. Anything fetch would refuse is left as it is, to
 * be refused.
 */
function copyFields (headers: unknown): unknown {
  if (headers === null || typeof headers !== 'object') return headers
  if (headers instanceof Headers || headers instanceof NodeHeaders) return [...headers]
  if (Array.isArray(headers)) return headers.map((pair: unknown) => Array.isArray(pair) ? [...pair as unknown[]] : pair)
  // A Map or another iterable of pairs, which may be readable once (map.entries()).
  if (typeof (headers as Partial<Iterable<unknown>>)[Symbol.iterator] === 'function') return [...headers as Iterable<unknown>]
  return { ...headers }
}
