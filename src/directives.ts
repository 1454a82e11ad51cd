/**
 * Cache-Control parsing (RFC 9111 §5.2): directive names case-insensitive, values unquoted,
 * delta-seconds strictly digits; and what a request asks of the cache (§5.2.1).
 */
import type { RequestHeaders } from './key.js'
import { memoize } from './memo.js'

/** Cache-Control directives, names lower-case; a directive without a value is `true`. */
export type Directives = Readonly<Record<string, string | true>>

/** RFC 9111 §5.2.1: what a request asks of the cache. */
export interface RequestDirectives {
  readonly noCache: boolean
  readonly noStore: boolean
  readonly onlyIfCached: boolean
  readonly maxAge: number | undefined
  /** Seconds of staleness accepted; `Infinity` for a bare `max-stale`. */
  readonly maxStale: number | undefined
  readonly minFresh: number | undefined
  /** RFC 5861 §4: seconds of staleness the client accepts when the origin fails. */
  readonly staleIfError: number | undefined
}

export function parseDirectives (value: string | undefined): Directives {
  return value === undefined ? NONE : parsed(value)
}

const NONE: Directives = Object.freeze({})

/**
 * The directives of a Cache-Control value as written, each trimmed (an empty one for an empty
 * list member): split at the commas between them, never at one inside a quoted-string argument
 * (RFC 9111 §5.2, RFC 9110 §5.6.4: `x-note="a, no-store"` is one directive, which names none). A
 * quoted-string begins an argument, right after its `=`; a DQUOTE anywhere else begins nothing.
 * A value whose quoted-string never ends is split at every comma, as if it had none: what follows
 * an unclosed quote (a `no-store`) is not hidden by it.
 */
export function directiveParts (value: string): string[] {
  const parts: string[] = []
  let start = 0
  let quoted = false
  for (let i = 0; i < value.length; i++) {
    const char = value[i]
    if (quoted) {
      if (char === '\\') i++
      else if (char === '"') quoted = false
    } else if (char === '"' && value.slice(start, i).trimEnd().endsWith('=')) {
      quoted = true
    } else if (char === ',') {
      parts.push(value.slice(start, i).trim())
      start = i + 1
    }
  }
  if (quoted) return value.split(',').map((part) => part.trim())
  parts.push(value.slice(start).trim())
  return parts
}

/** Stored responses share their parsed Cache-Control: most of them send one of a few values. */
const parsed = memoize(1024, (value): Directives => {
  const directives: Record<string, string | true> = {}
  for (const part of directiveParts(value)) {
    const eq = part.indexOf('=')
    const name = (eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase()
    // RFC 9111 §4.2.1: of a directive given twice, the first counts.
    if (name === '' || Object.hasOwn(directives, name)) continue
    directives[name] = eq === -1 ? true : part.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1')
  }
  return Object.freeze(directives)
})

/** RFC 9111 §1.2.2: a delta-seconds past what a cache can represent counts as 2^31. */
export const MAX_DELTA_SECONDS = 2 ** 31

/** Delta-seconds (RFC 9111 §1.2.2): digits only; anything else is invalid and yields `undefined`. */
export function deltaSeconds (value: string | true | undefined): number | undefined {
  if (typeof value !== 'string' || !/^\d+$/.test(value)) return undefined
  return Math.min(Number(value), MAX_DELTA_SECONDS)
}

/** `ignoreNoCache`: the cache's `ignoreRequestNoCache`, a deliberate deviation from §5.2.1.4. */
export function requestDirectives (headers: RequestHeaders, ignoreNoCache = false): RequestDirectives {
  const cacheControl = headers['cache-control']
  const cc = parseDirectives(cacheControl)
  const maxStale = cc['max-stale']
  return {
    // RFC 9111 §5.4: Pragma: no-cache counts only when Cache-Control is absent.
    noCache: !ignoreNoCache && (cc['no-cache'] !== undefined ||
      (cacheControl === undefined && /(^|,)\s*no-cache\s*(,|$)/i.test(headers.pragma ?? ''))),
    noStore: cc['no-store'] !== undefined,
    onlyIfCached: cc['only-if-cached'] !== undefined,
    maxAge: deltaSeconds(cc['max-age']),
    maxStale: maxStale === true ? Infinity : deltaSeconds(maxStale),
    minFresh: deltaSeconds(cc['min-fresh']),
    staleIfError: deltaSeconds(cc['stale-if-error'])
  }
}
