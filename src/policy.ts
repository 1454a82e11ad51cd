/**
 * Freshness and storability: the only module that uses http-cache-semantics. It decides
 * storability, freshness lifetime, age and revalidation headers; this module adds what it leaves
 * out or gets wrong for our purposes, each at the line that decides, with its RFC section:
 * request directives it ignores (only-if-cached, max-stale with a value), must-revalidate on a
 * fresh response, the 304 merge of new header fields, and an injectable clock.
 */
import CachePolicy from 'http-cache-semantics'
import { parseHttpDate } from './http-date.js'
import { deltaSeconds, parseDirectives, type Directives, type RequestDirectives } from './directives.js'
import { varyFields, type CacheRequest, type RequestHeaders } from './key.js'
import { fieldValue, type ResponseHeaders } from './entry.js'

export type PolicyObject = CachePolicy.CachePolicyObject

/**
 * How a stored response may be used for a request: as it is (fresh, or stale where the request
 * allows), stale while it is revalidated in the background (RFC 5861 §3), or only after revalidation.
 */
export type Usability = 'fresh' | 'stale-allowed' | 'stale-while-revalidate' | 'revalidate'

/** The stale windows that apply when the response and request give none, in seconds. */
export interface StaleDefaults {
  readonly staleWhileRevalidate: number
  readonly staleIfError: number
}

/**
 * Statuses http-cache-semantics understands (its list). RFC 9111 §3 lets a cache store any other
 * final status too, given explicit freshness; it refuses them, so it is shown a stand-in it treats
 * alike: understood, never cacheable by heuristics.
 */
const UNDERSTOOD = new Set([200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501])
const STAND_IN_STATUS = 302

/** Fields a 304 must not change in the stored response: they describe the stored body (RFC 9111 §3.2). */
const KEPT_ON_UPDATE = new Set(['content-length', 'content-encoding', 'content-range', 'transfer-encoding'])

/** How long an entry is kept once stale, so that it can still be revalidated or served stale where allowed. */
const STALE_RETENTION_MS = 24 * 3600 * 1000

/** What a policy is built with: the cache's clock, and the request's mode and freshness overrides. */
export interface PolicyConfig {
  readonly shared: boolean
  readonly now: () => number
}

/** The request's settings a new policy reads (src/settings.ts). */
export interface PolicySettings {
  readonly shared: boolean
  readonly defaultTtl: number | undefined
  readonly forceTtl: number | undefined
}

/**
 * A stored response's policy: http-cache-semantics' CachePolicy with our clock, plus the parsed
 * response directives it does not expose.
 */
export class Policy {
  readonly #policy: CachePolicy
  readonly #shared: boolean
  readonly #now: () => number
  readonly #responseTime: number
  readonly #initialAge: number
  readonly #status: number
  #lifetime: number | undefined
  /** Seconds of freshness set by `forceTtl` or `defaultTtl` instead of the origin's. */
  readonly lifetimeOverride: number | undefined
  readonly directives: Directives

  constructor (policy: CachePolicy, config: PolicyConfig, status: number, headers: ResponseHeaders, responseTime: number, lifetimeOverride: number | undefined) {
    this.#policy = policy
    this.lifetimeOverride = lifetimeOverride
    this.#status = status
    this.#shared = config.shared
    this.#now = config.now
    this.#responseTime = responseTime
    this.directives = parseDirectives(fieldValue(headers['cache-control']))
    // RFC 9111 §4.2.3: the age when received is the larger of the Age header and the apparent age
    // (how far the origin's Date lies behind our clock). http-cache-semantics uses Age alone.
    const date = Date.parse(fieldValue(headers.date) ?? '')
    const apparentAge = Number.isFinite(date) ? Math.max(0, (responseTime - date) / 1000) : 0
    // Age is one delta-seconds; of several (a list, or repeated fields), the first counts.
    const age = fieldValue(headers.age)?.split(',')[0]
    this.#initialAge = Math.max(apparentAge, deltaSeconds(age?.trim()) ?? 0)
  }

  /** RFC 9111 §3; in shared mode a response with Set-Cookie is never stored (it belongs to one user). */
  storable (headers: ResponseHeaders): boolean {
    if (!this.#policy.storable()) return false
    // §5.2.2.3: must-understand stores only statuses the cache understands.
    if (this.directives['must-understand'] !== undefined && !UNDERSTOOD.has(this.#status)) return false
    if (this.#shared && headers['set-cookie'] !== undefined) return false
    return true
  }

  /** Freshness lifetime in seconds (RFC 9111 §4.2.1), heuristics included. */
  lifetime (): number {
    // Constant for a stored response, and far from free in http-cache-semantics: computed once.
    return (this.#lifetime ??= this.lifetimeOverride ?? this.#policy.maxAge())
  }

  /** Current age in seconds (RFC 9111 §4.2.3): initial age plus the time spent here. */
  age (): number {
    return this.#initialAge + (this.#now() - this.#responseTime) / 1000
  }

  /** Remaining freshness in whole seconds; negative once stale (Cache-Status `ttl`, RFC 9211 §2.7). */
  ttl (): number {
    return Math.floor(this.lifetime() - this.age())
  }

  hasValidators (headers: ResponseHeaders): boolean {
    return headers.etag !== undefined || headers['last-modified'] !== undefined
  }

  /**
   * How long a store should keep the entry, in ms: its remaining freshness, then a day of stale
   * life (or the longer stale window it allows), since a stale entry can still be revalidated or
   * served where the request allows (max-stale, force-cache, stale-if-error). Zero when it could
   * never be used: no freshness, no stale window and no validators.
   */
  retention (headers: ResponseHeaders, defaults: StaleDefaults): number {
    const fresh = Math.max(0, (this.lifetime() - this.age()) * 1000)
    const staleWindow = 1000 * Math.max(
      deltaSeconds(this.directives['stale-while-revalidate']) ?? defaults.staleWhileRevalidate,
      deltaSeconds(this.directives['stale-if-error']) ?? defaults.staleIfError
    )
    if (fresh === 0 && staleWindow === 0 && !this.hasValidators(headers)) return 0
    return Math.round(fresh + Math.max(staleWindow, STALE_RETENTION_MS))
  }

  /**
   * Whether a stale response must be revalidated whatever the request allows: must-revalidate
   * (§5.2.2.2), no-cache (§5.2.2.4), and in a shared cache proxy-revalidate (§5.2.2.8) and
   * s-maxage, which implies it (§5.2.2.10).
   */
  #mustRevalidateWhenStale (): boolean {
    const d = this.directives
    return d['must-revalidate'] !== undefined || d['no-cache'] !== undefined ||
      (this.#shared && (d['proxy-revalidate'] !== undefined || d['s-maxage'] !== undefined))
  }

  /**
   * RFC 9111 §4.2 and §5.2.1. Unlike http-cache-semantics' evaluateRequest(), a fresh response
   * with must-revalidate is used as it is: the directive only applies once it is stale (§5.2.2.2).
   */
  usability (request: RequestDirectives, defaults: StaleDefaults): Usability {
    if (request.noCache) return 'revalidate'
    const age = this.age()
    const lifetime = this.lifetime()
    if (request.maxAge !== undefined && age > request.maxAge) return 'revalidate'
    if (request.minFresh !== undefined && lifetime - age < request.minFresh) return 'revalidate'
    if (lifetime > age) return 'fresh'
    // RFC 9111 §4.2.4: no stale response where a directive forbids it, whatever else allows it.
    if (this.#mustRevalidateWhenStale()) return 'revalidate'
    const staleness = age - lifetime
    if (request.maxStale !== undefined && staleness <= request.maxStale) return 'stale-allowed'
    const window = deltaSeconds(this.directives['stale-while-revalidate']) ?? defaults.staleWhileRevalidate
    if (window > 0 && staleness <= window) return 'stale-while-revalidate'
    return 'revalidate'
  }

  /**
   * RFC 5861 §4: whether this stale response may stand in for an origin that failed. The request's
   * stale-if-error, else the response's, else the default, bounds the staleness.
   */
  usableOnError (request: RequestDirectives, defaults: StaleDefaults): boolean {
    if (this.#mustRevalidateWhenStale()) return false
    const window = request.staleIfError ?? deltaSeconds(this.directives['stale-if-error']) ?? defaults.staleIfError
    return window > 0 && this.age() - this.lifetime() <= window
  }

  /**
   * Request headers for a conditional request: If-None-Match from the stored ETag, If-Modified-Since
   * from the stored Last-Modified, and only from those (RFC 9111 §4.3.1).
   */
  revalidationHeaders (request: CacheRequest): RequestHeaders {
    // The whole request goes in: what comes back is the request to send, validators added.
    const { method, url, headers } = request
    return this.#policy.revalidationHeaders({ method, url, headers }) as RequestHeaders
  }

  toObject (): PolicyObject {
    return this.#policy.toObject()
  }

  /** The underlying CachePolicy, for the factory's 304 handling. */
  get raw (): CachePolicy {
    return this.#policy
  }
}

export interface Revalidated {
  /** Whether the 304 matched the stored response's validators (RFC 9111 §4.3.4). */
  readonly matches: boolean
  readonly policy: Policy
  /** The stored header fields updated with the 304's (RFC 9111 §3.2). */
  readonly headers: ResponseHeaders
}

/** Builds policies with the cache's clock and mode. */
export class PolicyFactory {
  readonly #now: () => number
  readonly #Clocked: typeof CachePolicy

  constructor (now: () => number) {
    this.#now = now
    // http-cache-semantics reads the time through its now() method, which it documents as replaceable.
    this.#Clocked = class extends CachePolicy {
      now (): number { return now() }
    }
  }

  create (request: CacheRequest, status: number, headers: ResponseHeaders, settings: PolicySettings): Policy {
    const responseTime = this.#now()
    const seen = UNDERSTOOD.has(status) || status < 200 || status === 206 || status === 304 ? status : STAND_IN_STATUS
    const { shared } = settings
    const policy = new this.#Clocked(
      policyRequest(request, fieldValue(headers.vary)),
      { status: seen, headers: policyHeaders(headers, status, responseTime) },
      { shared }
    )
    const directives = parseDirectives(fieldValue(headers['cache-control']))
    // RFC 9111 §4.2.1: explicit freshness is max-age, s-maxage (shared caches) or Expires.
    const explicit = directives['max-age'] !== undefined || (shared && directives['s-maxage'] !== undefined) || headers.expires !== undefined
    const override = settings.forceTtl ?? (explicit ? undefined : settings.defaultTtl)
    return new Policy(policy, { shared, now: this.#now }, status, headers, responseTime, override)
  }

  /**
   * Rebuilds a policy from `toObject()` and the entry's stored headers, or `undefined` when the
   * object is not one.
   */
  fromObject (value: unknown, status: number, headers: ResponseHeaders, lifetimeOverride: number | undefined): Policy | undefined {
    try {
      const object = value as PolicyObject
      if (typeof object.t !== 'number' || typeof object.sh !== 'boolean') return undefined
      const policy = new Policy(this.#Clocked.fromObject(object), { shared: object.sh, now: this.#now }, status, headers, object.t, lifetimeOverride)
      // A truncated object passes fromObject() and fails later; ask it everything a lookup will.
      policy.storable(headers)
      policy.raw.revalidationHeaders({ url: object.u, method: object.m, headers: {} })
      if (!Number.isFinite(policy.lifetime())) return undefined
      return policy
    } catch {
      return undefined
    }
  }

  /**
   * Applies a 304 to a stored response. http-cache-semantics picks whether it matches; the merge is
   * ours, because it only replaces fields the stored response already had, where RFC 9111 §3.2 says
   * to add every field the 304 carries, except those that describe the stored body.
   */
  revalidated (request: CacheRequest, stored: Policy, storedHeaders: ResponseHeaders, status: number, notModified: ResponseHeaders, settings: PolicySettings): Revalidated {
    const { matches } = stored.raw.revalidatedPolicy(policyRequest(request, undefined), { status: 304, headers: policyHeaders(notModified, 304, this.#now()) })
    const headers: ResponseHeaders = { ...storedHeaders }
    // The stored Age was the old response's; the 304 is a new one, with its own Age or none.
    delete headers.age
    for (const name in notModified) {
      if (KEPT_ON_UPDATE.has(name)) continue
      headers[name] = notModified[name]!
    }
    // RFC 9110 §6.6.1: a response without Date is dated when received. Keeping the stored Date
    // instead would give the freshened response the old one's apparent age (§4.2.3): stale at once.
    if (notModified.date === undefined) headers.date = new Date(this.#now()).toUTCString()
    return { matches, policy: this.create(request, status, headers, settings), headers }
  }
}

/**
 * The request a policy is built from. Only the fields http-cache-semantics reads are passed, so
 * that a stored policy never keeps the request's other fields (credentials, cookies) unless the
 * response's Vary names them: those it must keep to compare later (RFC 9111 §4.1).
 */
function policyRequest (request: CacheRequest, vary: string | undefined): CachePolicy.Request {
  const all = request.headers
  const headers: Record<string, string> = {}
  for (const name of ['host', 'pragma']) {
    const value = all[name]
    if (value !== undefined) headers[name] = value
  }
  if (all['cache-control'] !== undefined) headers['cache-control'] = lowerDirectiveNames(all['cache-control'])
  // Its storable() only asks whether Authorization is present.
  if (all.authorization !== undefined) headers.authorization = 'present'
  for (const name of varyFields(vary)) {
    const value = all[name]
    if (value !== undefined) headers[name] = value
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
 * - Expires as a strict HTTP-date, or "0" (already expired) when it is none (§5.3); it would take
 *   whatever Date.parse takes.
 */
function policyHeaders (headers: ResponseHeaders, status: number, now: number): Record<string, string> {
  const cacheControl = headers['cache-control'] === undefined ? undefined : correctedCacheControl(fieldValue(headers['cache-control'])!, status)
  const expires = headers.expires === undefined ? undefined : correctedExpires(fieldValue(headers.expires)!, now)
  // Most responses need no correction: the policy then shares the stored fields, not a copy of them.
  if (headers.pragma === undefined && headers['set-cookie'] === undefined &&
      cacheControl === headers['cache-control'] && expires === headers.expires) return headers as Record<string, string>
  const flat: Record<string, string> = {}
  for (const name in headers) if (name !== 'pragma') flat[name] = fieldValue(headers[name])!
  if (cacheControl !== undefined) flat['cache-control'] = cacheControl
  if (expires !== undefined) flat.expires = expires
  return flat
}

const correctedCacheControl = (value: string, status: number): string => {
  const parts = lowerDirectiveNames(value).split(',').map((part) => part.trim())
  const understood = parts.includes('must-understand') && UNDERSTOOD.has(status)
  const corrected = parts.filter((part) => part !== 'proxy-revalidate' && !(understood && part === 'no-store')).join(', ')
  return corrected === value ? value : corrected
}

function correctedExpires (value: string, now: number): string {
  const expires = parseHttpDate(value, now)
  const corrected = expires === undefined ? '0' : new Date(expires).toUTCString()
  return corrected === value ? value : corrected
}

function lowerDirectiveNames (value: string): string {
  return value.replace(/(^|,)\s*([^=,]+)/g, (_match, comma: string, name: string) => `${comma}${name.toLowerCase()}`)
}
