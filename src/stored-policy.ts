/**
 * A stored response's policy: how old it is, how long it is fresh, and whether a request may use
 * it as it is, stale, or only after revalidation (RFC 9111 §4.2, §5.2; RFC 5861). A few numbers
 * worked out when the response arrived (src/policy.ts) and the response's parsed Cache-Control:
 * a hit reads nothing else.
 */
import { deltaSeconds, type Directives, type RequestDirectives } from './directives.js'
import type { ResponseHeaders } from './entry.js'
import { extend } from './objects.js'

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

/** How long an entry is kept once stale, so that it can still be revalidated or served stale where allowed. */
const STALE_RETENTION_MS = 24 * 3600 * 1000

/** What a stored response's policy keeps in a store outside the process (src/store/format.ts). */
export interface PolicyObject {
  /**
   * When its age was zero, ms since the epoch by the cache's clock: when it was received, less its
   * age then (RFC 9111 §4.2.3). Its age is the time since.
   */
  readonly b: number
  /** Its freshness lifetime, seconds. */
  readonly l: number
  readonly sh: boolean
  /** Seconds of freshness set by `forceTtl` or `defaultTtl` instead of the origin's; absent otherwise. */
  readonly o?: number
}

/**
 * A stored response's policy: its freshness lifetime and age, and the response directives that
 * decide how it may be used once stale. http-cache-semantics computes the lifetime when the
 * response arrives; what it would keep besides (its own parse of every field, the request) is
 * not kept, since neither a hit nor a revalidation needs it: a 304 makes a new policy from the
 * updated response (PolicyFactory.revalidated). A policy is a few numbers, so a memory-tier entry
 * stays small.
 */
export class Policy {
  /** When its age was zero, ms since the epoch. */
  readonly #born: number
  /** Freshness lifetime in seconds (RFC 9111 §4.2.1), heuristics or an override included. */
  readonly #lifetime: number
  /** Seconds of freshness set by `forceTtl` or `defaultTtl` instead of the origin's. */
  readonly lifetimeOverride: number | undefined
  readonly shared: boolean
  readonly directives: Directives

  constructor (state: PolicyObject, directives: Directives) {
    this.#born = state.b
    this.#lifetime = state.l
    this.lifetimeOverride = state.o
    this.shared = state.sh
    this.directives = directives
  }

  /** Freshness lifetime in seconds (RFC 9111 §4.2.1), heuristics included; at most 2^31 (§1.2.2). */
  lifetime (): number {
    return this.#lifetime
  }

  /** The cache's clock. PolicyFactory gives each cache a subclass with its own, so that no policy carries one. */
  now (): number {
    return Date.now()
  }

  /** Current age in seconds (RFC 9111 §4.2.3): its age when received plus the time spent here. */
  age (): number {
    return (this.now() - this.#born) / 1000
  }

  /** Whether it is fresh now (RFC 9111 §4.2): ttl() rounds down, so a response with less than a second left has a ttl of 0. */
  fresh (): boolean {
    return this.#lifetime > this.age()
  }

  /** Remaining freshness in whole seconds; negative once stale (Cache-Status `ttl`, RFC 9211 §2.7). */
  ttl (): number {
    return Math.floor(this.#lifetime - this.age())
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
    const fresh = Math.max(0, (this.#lifetime - this.age()) * 1000)
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
  staleForbidden (): boolean {
    const d = this.directives
    return d['must-revalidate'] !== undefined || d['no-cache'] !== undefined ||
      (this.shared && (d['proxy-revalidate'] !== undefined || d['s-maxage'] !== undefined))
  }

  /**
   * RFC 9111 §4.2 and §5.2.1. Unlike http-cache-semantics' evaluateRequest(), a fresh response
   * with must-revalidate is used as it is: the directive only applies once it is stale (§5.2.2.2).
   */
  usability (request: RequestDirectives, defaults: StaleDefaults): Usability {
    if (this.#refusedBy(request)) return 'revalidate'
    const age = this.age()
    const lifetime = this.#lifetime
    if (lifetime > age) return 'fresh'
    // RFC 9111 §4.2.4: no stale response where a directive forbids it, whatever else allows it.
    if (this.staleForbidden()) return 'revalidate'
    const staleness = age - lifetime
    if (request.maxStale !== undefined) return staleness <= request.maxStale ? 'stale-allowed' : 'revalidate'
    // §5.2.1.1: a request's max-age without max-stale refuses any stale response, one the origin's
    // stale-while-revalidate would allow included.
    if (request.maxAge !== undefined) return 'revalidate'
    const window = deltaSeconds(this.directives['stale-while-revalidate']) ?? defaults.staleWhileRevalidate
    if (window > 0 && staleness <= window) return 'stale-while-revalidate'
    return 'revalidate'
  }

  /**
   * RFC 5861 §4: whether this stale response may stand in for an origin that failed. The request's
   * stale-if-error, else the response's, else the default, bounds the staleness. Decided: a request
   * that refused this response itself (no-cache, a max-age it is past, a min-fresh it cannot give,
   * RFC 9111 §5.2.1) asked for the origin's answer, as a read that must see a write just made does:
   * only a stale-if-error of its own lets the stored response stand in for that answer's failure.
   */
  usableOnError (request: RequestDirectives, defaults: StaleDefaults): boolean {
    if (this.staleForbidden()) return false
    const window = request.staleIfError ??
      (this.#refusedBy(request) ? 0 : deltaSeconds(this.directives['stale-if-error']) ?? defaults.staleIfError)
    return window > 0 && this.age() - this.#lifetime <= window
  }

  /** Whether the request's own directives refuse this response, fresh or not (RFC 9111 §5.2.1.1, .3, .4). */
  #refusedBy (request: RequestDirectives): boolean {
    const age = this.age()
    return request.noCache || (request.maxAge !== undefined && age > request.maxAge) ||
      (request.minFresh !== undefined && this.#lifetime - age < request.minFresh)
  }

  toObject (): PolicyObject {
    const state = { b: this.#born, l: this.#lifetime, sh: this.shared }
    return this.lifetimeOverride === undefined ? state : extend(state, { o: this.lifetimeOverride })
  }
}
