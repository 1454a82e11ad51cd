/**
 * Storability, freshness lifetime, revalidation: the only module that uses http-cache-semantics.
 * It decides whether a response may be stored and how long it is fresh; this module corrects what
 * it gets wrong for our purposes and adds what it leaves out, each at the line that decides, with
 * its RFC section (heuristics on our clock, an injectable clock), and merges a 304's fields into
 * the stored ones. The validators a revalidation sends, and whether a 304 selects the stored
 * response, are src/revalidation.ts's. What a stored response keeps is a `Policy`
 * (src/stored-policy.ts): a few numbers worked out here.
 */
import CachePolicy from 'http-cache-semantics'
import { parseHttpDate } from './http-date.js'
import { deltaSeconds, directiveParts, MAX_DELTA_SECONDS, parseDirectives, type Directives } from './directives.js'
import { varyFields, type CacheRequest } from './key.js'
import { fieldValue, setField, type ResponseHeaders } from './entry.js'
import { memoize } from './memo.js'
import { extend } from './objects.js'
import { Policy, type PolicyObject } from './stored-policy.js'

/**
 * Statuses http-cache-semantics understands (its list). RFC 9111 §3 lets a cache store any other
 * final status too, given explicit freshness; it refuses them, so it is shown a stand-in it treats
 * alike: understood, never cacheable by heuristics.
 */
const UNDERSTOOD = new Set([200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501])
const STAND_IN_STATUS = 302

/** RFC 9111 §5.2.2.3: must-understand with a status the cache understands overrides no-store. */
export function noStoreOverridden (directives: Directives, status: number): boolean {
  return directives['must-understand'] !== undefined && UNDERSTOOD.has(status)
}

/** Fields a 304 must not change in the stored response: they describe the stored body (RFC 9111 §3.2). */
const KEPT_ON_UPDATE = new Set(['content-length', 'content-encoding', 'content-range', 'transfer-encoding'])

/** RFC 9111 §4.2.2: heuristic freshness is at most this fraction of the time since Last-Modified (its "typical setting"). */
const HEURISTIC_FRACTION = 0.1

/** The request's settings a new policy reads (src/settings.ts). */
export interface PolicySettings {
  readonly shared: boolean
  readonly defaultTtl: number | undefined
  readonly forceTtl: number | undefined
}

/** A stored response as a 304 updates it. */
export interface StoredResponse {
  readonly status: number
  readonly headers: ResponseHeaders
}

/** A new policy, and whether its response may be stored at all (RFC 9111 §3). */
export interface Created {
  readonly policy: Policy
  readonly storable: boolean
}

export interface Revalidated extends Created {
  /** The stored header fields updated with the 304's (RFC 9111 §3.2). */
  readonly headers: ResponseHeaders
}

/** Builds policies with the cache's clock. */
export class PolicyFactory {
  readonly #now: () => number
  readonly #Clocked: typeof CachePolicy
  readonly #Policy: typeof Policy

  constructor (now: () => number) {
    this.#now = now
    // http-cache-semantics reads the time through its now() method, which it documents as replaceable.
    this.#Clocked = class extends CachePolicy {
      now (): number { return now() }
    }
    // Ours the same way: the clock on the class, not on each of the many policies in memory.
    this.#Policy = class extends Policy {
      override now (): number { return now() }
    }
  }

  /**
   * The policy of a response just received for `request`, sent at `requestTime` (by the cache's
   * clock; none for a response judged apart from any request, as `explain()` does).
   */
  create (request: CacheRequest, status: number, headers: ResponseHeaders, settings: PolicySettings, requestTime?: number): Created {
    const responseTime = this.#now()
    const { shared } = settings
    const policy = this.#httpPolicy(policyRequest(request, fieldValue(headers.vary)), status, headers, shared, responseTime)
    const directives = parseDirectives(fieldValue(headers['cache-control']))
    // RFC 9111 §4.2.1: explicit freshness is max-age, s-maxage (shared caches) or Expires.
    const explicit = directives['max-age'] !== undefined || (shared && directives['s-maxage'] !== undefined) || headers.expires !== undefined
    // defaultTtl stands in for heuristic freshness (§4.2.2). A no-cache response has none to replace:
    // it may never be reused without revalidation (§5.2.2.4), whatever its missing max-age suggests.
    const override = settings.forceTtl ?? (explicit || directives['no-cache'] !== undefined ? undefined : settings.defaultTtl)
    // At most 2^31 seconds (§1.2.2); heuristic freshness bounded by our own clock (heuristicBound).
    const lifetime = override ?? Math.min(policy.maxAge(), explicit ? Infinity : heuristicBound(headers, responseTime), MAX_DELTA_SECONDS)
    const state: PolicyObject = { b: responseTime - initialAge(headers, requestTime ?? responseTime, responseTime), l: lifetime, sh: shared }
    return {
      policy: new this.#Policy(override === undefined ? state : extend(state, { o: override }), directives),
      storable: storable(policy, directives, status, headers, shared)
    }
  }

  /**
   * Rebuilds a policy from `toObject()` and the entry's stored headers, or `undefined` when the
   * object is not one.
   */
  fromObject (value: unknown, headers: ResponseHeaders): Policy | undefined {
    if (typeof value !== 'object' || value === null) return undefined
    const { b, l, sh, o } = value as Partial<Record<keyof PolicyObject, unknown>>
    if (!isFiniteNumber(b) || !isFiniteNumber(l) || l < 0 || typeof sh !== 'boolean' ||
        (o !== undefined && !(Number.isSafeInteger(o) && (o as number) >= 0))) return undefined
    const state: PolicyObject = o === undefined ? { b, l, sh } : { b, l, sh, o: o as number }
    return new this.#Policy(state, parseDirectives(fieldValue(headers['cache-control'])))
  }

  /**
   * Applies a 304 to the stored response it selects (RFC 9111 §4.3.4). The merge is ours: http-cache-semantics
   * only replaces fields the stored response already had, where §3.2 says to add every field the
   * 304 carries, except those that describe the stored body.
   */
  revalidated (request: CacheRequest, stored: StoredResponse, notModified: ResponseHeaders, settings: PolicySettings, requestTime: number): Revalidated {
    // The stored Age was the old response's; the 304 is a new one, with its own Age or none. Left
    // out of the copy rather than deleted from it, which would turn the stored fields into a V8
    // dictionary, slower to copy for each hit (seven fields: 1.1 µs against 0.1 µs, measured alone).
    const { age: _age, ...headers }: ResponseHeaders = stored.headers
    for (const name in notModified) {
      if (KEPT_ON_UPDATE.has(name)) continue
      setField(headers, name, notModified[name]!)
    }
    // RFC 9110 §6.6.1: a response without Date is dated when received. Keeping the stored Date
    // instead would give the freshened response the old one's apparent age (§4.2.3): stale at once.
    if (notModified.date === undefined) headers.date = new Date(this.#now()).toUTCString()
    return { headers, ...this.create(request, stored.status, headers, settings, requestTime) }
  }

  #httpPolicy (request: CachePolicy.Request, status: number, headers: ResponseHeaders, shared: boolean, responseTime: number): CachePolicy {
    const seen = UNDERSTOOD.has(status) || status < 200 || status === 206 || status === 304 ? status : STAND_IN_STATUS
    return new this.#Clocked(request, { status: seen, headers: policyHeaders(headers, status, responseTime) },
      // RFC 8246: immutable promises no change while fresh; it gives no freshness of its own (and
      // http-cache-semantics would give it 24 h read as seconds: a thousand days).
      { shared, cacheHeuristic: HEURISTIC_FRACTION, immutableMinTimeToLive: 0 })
  }
}

/** RFC 9111 §3; in shared mode a response with Set-Cookie is never stored (it belongs to one user). */
function storable (policy: CachePolicy, directives: Directives, status: number, headers: ResponseHeaders, shared: boolean): boolean {
  if (!policy.storable()) return false
  // §5.2.2.3: must-understand stores only statuses the cache understands.
  if (directives['must-understand'] !== undefined && !UNDERSTOOD.has(status)) return false
  return !(shared && headers['set-cookie'] !== undefined)
}

/**
 * RFC 9111 §4.2.3: the age when received (corrected_initial_age), in ms: the larger of the apparent
 * age (how far the origin's Date lies behind our clock) and the Age header plus the time the
 * answer took (response_delay: it may have aged that much on its way). http-cache-semantics uses
 * Age alone.
 */
function initialAge (headers: ResponseHeaders, requestTime: number, responseTime: number): number {
  const date = headers.date === undefined ? undefined : parseHttpDate(fieldValue(headers.date)!, responseTime)
  const apparentAge = date === undefined ? 0 : Math.max(0, responseTime - date)
  // Age is one delta-seconds; of several (a list, or repeated fields), the first counts.
  const age = fieldValue(headers.age)?.split(',')[0]
  const responseDelay = Math.max(0, responseTime - requestTime)
  return Math.round(Math.max(apparentAge, (deltaSeconds(age?.trim()) ?? 0) * 1000 + responseDelay))
}

/**
 * RFC 9111 §4.2.2: a tenth of the time since Last-Modified as our clock measures it, in seconds.
 * http-cache-semantics measures to the origin's Date, which can lie years ahead: a Date in the
 * year 9999 would make a response fresh for centuries.
 */
function heuristicBound (headers: ResponseHeaders, responseTime: number): number {
  const lastModified = headers['last-modified'] === undefined ? undefined : parseHttpDate(fieldValue(headers['last-modified'])!, responseTime)
  return lastModified === undefined ? 0 : HEURISTIC_FRACTION * Math.max(0, responseTime - lastModified) / 1000
}

function isFiniteNumber (value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value)
}

/**
 * The request a new response's policy is built from: only the fields http-cache-semantics reads
 * (a credential's value never goes in: it only asks whether there is one).
 */
function policyRequest (request: CacheRequest, vary: string | undefined): CachePolicy.Request {
  const all = request.headers
  const headers: Record<string, string> = {}
  for (const name of ['host', 'pragma']) {
    const value = all[name]
    if (value !== undefined) headers[name] = value
  }
  if (all['cache-control'] !== undefined) headers['cache-control'] = policyCacheControl(all['cache-control'])
  const varied = varyFields(vary)
  // Its storable() only asks whether Authorization is present. Beyond RFC 9111, a Cookie and a
  // Proxy-Authorization count as the credentials they are (RFC 9110 §11.7.2): a shared cache stores
  // the answer only as §3.5 allows for Authorization (public, s-maxage, must-revalidate), or when the
  // response varies on the field and so is keyed by it.
  if (all.authorization !== undefined || (all['proxy-authorization'] !== undefined && !varied.includes('proxy-authorization')) ||
      (all.cookie !== undefined && !varied.includes('cookie'))) headers.authorization = 'present'
  for (const name of varied) {
    const value = all[name]
    // Only the request's own fields: `constructor` is no field of a request that did not send one.
    if (typeof value === 'string') setField(headers, name, value)
  }
  return { method: request.method, url: request.url, headers }
}

/**
 * Response fields as http-cache-semantics is given them, corrected where it reads them otherwise
 * than RFC 9111 does. Policy applies the rules behind the removed directives itself.
 * - Directive names in lower case (§5.2: case-insensitive; it compares them as written).
 * - No proxy-revalidate: it takes it as "never fresh" in a shared cache; §5.2.2.8 means "like
 *   must-revalidate".
 * - No no-store beside must-understand when the status is understood (§5.2.2.3).
 * - No Pragma: it reads `Pragma: no-cache` in a response as no-cache; §5.4 gives it a meaning in
 *   requests only.
 * - Expires as a strict HTTP-date, or the epoch (already expired) when it is none (§5.3); it would
 *   take whatever Date.parse takes, "0" included, which it reads as the year 2000: fresh for years
 *   after a Date of 1994.
 * - Date and Last-Modified as strict HTTP-dates, or not at all (RFC 9110 §5.6.7, §8.8.2): Date.parse
 *   reads "0" as the year 2000, which would make a response fresh for years by heuristics. Dates
 *   before 1970 go too, and such an Expires is the epoch: Date.parse reads the years 0 to 99 as 1950 to 2049.
 * - Of a directive given twice, the first (§4.2.1); a max-age or s-maxage that is no delta-seconds
 *   as 0 (§4.2.1: invalid freshness information is best taken as stale), where it reads "1e3" as 1.
 */
function policyHeaders (headers: ResponseHeaders, status: number, now: number): Record<string, string> {
  const cacheControl = headers['cache-control'] === undefined ? undefined : correctedCacheControl(fieldValue(headers['cache-control'])!, status)
  const expires = headers.expires === undefined ? undefined : correctedExpires(fieldValue(headers.expires)!, now)
  const date = headers.date === undefined ? undefined : strictDate(fieldValue(headers.date)!, now)
  const lastModified = headers['last-modified'] === undefined ? undefined : strictDate(fieldValue(headers['last-modified'])!, now)
  // Most responses need no correction: the policy then shares the stored fields, not a copy of them.
  if (headers.pragma === undefined && headers['set-cookie'] === undefined && cacheControl === headers['cache-control'] &&
      expires === headers.expires && date === headers.date && lastModified === headers['last-modified']) return headers as Record<string, string>
  const flat: Record<string, string> = {}
  for (const name in headers) if (name !== 'pragma') flat[name] = fieldValue(headers[name])!
  if (cacheControl !== undefined) flat['cache-control'] = cacheControl
  if (expires !== undefined) flat.expires = expires
  if (date === null) delete flat.date
  else if (date !== undefined) flat.date = date
  if (lastModified === null) delete flat['last-modified']
  else if (lastModified !== undefined) flat['last-modified'] = lastModified
  return flat
}

/**
 * The corrections are the same for the same field values, which come again and again (most of an
 * origin's responses share their Cache-Control; many share a Date): they are worked out once. A
 * two-digit RFC 850 year is read against the year when the value was first seen.
 */
const correctedCacheControl = (value: string, status: number): string => (UNDERSTOOD.has(status) ? correctedForUnderstood : correctedForOther)(value)
const correctedForUnderstood = memoize(1024, (value) => correctCacheControl(value, true))
const correctedForOther = memoize(1024, (value) => correctCacheControl(value, false))

function correctCacheControl (value: string, understoodStatus: boolean): string {
  // policyDirectives gives each as `name` or `name=argument`, the name lower-case, nothing blank.
  const parts = policyDirectives(value).map((part) => {
    const eq = part.indexOf('=')
    return eq === -1 ? { part, name: part, argument: undefined } : { part, name: part.slice(0, eq), argument: part.slice(eq + 1).replace(/^"(.*)"$/, '$1') }
  })
  const understood = understoodStatus && parts.some(({ name }) => name === 'must-understand')
  const seen = new Set<string>()
  const kept: string[] = []
  for (const { part, name, argument } of parts) {
    if (seen.has(name)) continue
    seen.add(name)
    if (name === 'proxy-revalidate' || (understood && name === 'no-store')) continue
    if (name === 'max-age' || name === 's-maxage') kept.push(deltaSeconds(argument ?? true) === undefined ? `${name}=0` : part)
    // A private or no-cache naming no field is the unqualified one (§5.2.2.7, §5.2.2.4), and an
    // empty argument to one that takes none (no-store, must-revalidate) does not undo it.
    else kept.push(bareWhenEmpty(part))
  }
  const corrected = kept.join(', ')
  return corrected === value ? value : corrected
}

/** The date as an IMF-fixdate, `null` when it is no HTTP-date or before 1970. */
const strictDate = memoizeAt(1024, (value, now): string | null => {
  const date = parseHttpDate(value, now)
  if (date === undefined || date < 0) return null
  const fixed = new Date(date).toUTCString()
  return fixed === value ? value : fixed
})

const correctedExpires = memoizeAt(1024, (value, now): string => {
  const expires = parseHttpDate(value, now)
  const corrected = new Date(expires === undefined || expires < 0 ? 0 : expires).toUTCString()
  return corrected === value ? value : corrected
})

/** memoize() for a computation that also reads the time when first asked. */
function memoizeAt<T> (limit: number, compute: (value: string, now: number) => T): (value: string, now: number) => T {
  let at = 0
  const memo = memoize(limit, (value) => compute(value, at))
  return (value, now) => {
    at = now
    return memo(value)
  }
}

/**
 * A Cache-Control value's directives as http-cache-semantics reads them right: names in lower case
 * (§5.2: case-insensitive; it compares them as written), and no comma inside a quoted-string
 * argument, which it would take for the start of another directive (it splits at every comma): such
 * a comma becomes a space. `x-note="a, no-store"` stays one extension it ignores (§5.2.3), and
 * `no-cache="Set-Cookie, X-Foo"` the no-cache it reads either way.
 */
function policyDirectives (value: string): string[] {
  const kept: string[] = []
  for (const part of directiveParts(value)) {
    const eq = part.indexOf('=')
    const name = (eq === -1 ? part : part.slice(0, eq)).trim().toLowerCase()
    if (name === '') continue
    kept.push(eq === -1 ? name : `${name}=${part.slice(eq + 1).trim().replaceAll(',', ' ')}`)
  }
  return kept
}

/**
 * A request's Cache-Control as policyDirectives() gives it, a directive with an empty argument as
 * the directive (bareWhenEmpty), as correctCacheControl() keeps a response's.
 */
const policyCacheControl = memoize(1024, (value) => policyDirectives(value).map(bareWhenEmpty).join(', '))

/**
 * A directive as policyDirectives() gives it, `name=`, `name=""` or `name="` (a lone quote, which
 * http-cache-semantics strips to nothing) as `name`: it reads a directive with an empty argument
 * as absent, a request's `no-store=""` too, whose answer it would store (§5.2.1.5).
 */
function bareWhenEmpty (part: string): string {
  const eq = part.indexOf('=')
  return eq !== -1 && /^"{0,2}$/.test(part.slice(eq + 1)) ? part.slice(0, eq) : part
}
