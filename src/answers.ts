/**
 * The engine's half that takes the origin's answer to a forwarded request: what the caller gets
 * (the answer, the stored response freshened by a 304, or a stale one standing in for a failure),
 * what is stored, what is invalidated (RFC 9111 §4.4), and how the lookup counts. The other half,
 * deciding how a request is served, is the Cache's (src/cache.ts), which holds this one.
 */
import { servedHeaders, type Forwarded, type Outcome } from './decision.js'
import type { RequestInfo } from './errors.js'
import { bodyLength, connectionNamesFields, fieldValue, sizeBesidesBody, storableHeaders, toStoredBody, type CacheEntry, type ResponseHeaders } from './entry.js'
import { fieldsFitToStore } from './field-limits.js'
import { invalidatedBy, urlSelector } from './invalidation.js'
import { varyFields, varyValues, type CacheRequest } from './key.js'
import { intern } from './memo.js'
import { extend } from './objects.js'
import type { ResolvedOptions } from './options.js'
import type { PolicyFactory } from './policy.js'
import { Recorder } from './recorder.js'
import { selectedBy } from './revalidation.js'
import type { RequestSettings } from './settings.js'
import { ageOf, appendCacheStatus, ownCacheStatus, withCacheStatus, type CacheEvent, type EventName, type Forward, type Reporter, type SharedCount, type StatusParts } from './status.js'
import type { Selector } from './store/tiers.js'
import type { MaybePromise } from './store/types.js'
import { responseTags } from './tags.js'
import type { Replaces } from './variants.js'
import type { Writes } from './writes.js'

/** Origin answers that stale-if-error may stand in for (RFC 5861 §4). */
const ERROR_STATUSES = new Set([500, 502, 503, 504])

export class Answers {
  readonly #options: ResolvedOptions
  readonly #policies: PolicyFactory
  readonly #writes: Writes
  readonly #reporter: Reporter
  /** The Cache's own invalidation, which reports it: an unsafe method's answer invalidates as `cache.invalidate()` does. */
  readonly #invalidate: (selector: Selector, event: CacheEvent, what: RequestInfo) => Promise<void>
  /** The largest entry a tier can keep: with memory alone, its maxSize, whatever maxEntrySize says. */
  readonly #keepable: number

  constructor (options: ResolvedOptions, policies: PolicyFactory, writes: Writes, reporter: Reporter, invalidate: (selector: Selector, event: CacheEvent, what: RequestInfo) => Promise<void>) {
    this.#options = options
    this.#policies = policies
    this.#writes = writes
    this.#reporter = reporter
    this.#invalidate = invalidate
    this.#keepable = options.store === undefined ? options.maxSize : Infinity
  }

  /**
   * The origin answered a forwarded request: decide what the caller gets and what is stored.
   * `headers` are the response's, as undici hands them over; `shared`, the exchange other callers
   * share, which is told what this lookup counts; `redirected`, that a redirect below the cache led
   * to it (src/adapters/cache-handler.ts): another URL's answer, never stored under this one.
   */
  forwarded (request: CacheRequest, lookup: Forwarded, status: number, statusText: string, headers: Record<string, string | string[] | undefined>, shared?: SharedCount, redirected = false): Outcome {
    for (const url of invalidatedBy(request, status, headers)) {
      // One that fails is a store-error event (`background`): nobody waits for it.
      this.#writes.background(this.#invalidate(urlSelector(url, this.#options.hosts.settingsFor(url).key, request.headers.host), { url }, { method: request.method, url }))
    }
    const parts: StatusParts & { fwd: Forward, fwdStatus: number } = this.#options.cacheStatusKey && lookup.store && !redirected && lookup.key !== undefined
      ? { fwd: lookup.fwd, fwdStatus: status, key: lookup.key }
      : { fwd: lookup.fwd, fwdStatus: status }
    const { entry: previous } = lookup
    if (redirected) {
      // Another URL's answer: it neither revalidates what was stored for this one (a 304 of the
      // target's, to a validator carried along, RFC 9111 §4.3.4) nor fails it (the target's 5xx), and
      // what was stored goes (§4.3.3): the URL now redirects. Never stored under this URL.
      lookup.release?.(false)
      if (previous === undefined) return { kind: 'pass', headers: withCacheStatus(headers, parts), recorder: undefined }
      this.#missed(request, lookup, shared)
      if (lookup.store) this.#writes.remove(previous, lookup.settings, lookup.since)
      // A 304 answers the validators the cache sent (a caller's own conditional request passes the
      // cache by), and the caller has no body to reuse: it gets the stored one this once, as before
      // the redirect; the next request gets the target's.
      return status === 304
        ? { kind: 'replay', entry: previous, headers: this.#served(previous, extend(parts, { ttl: previous.policy.ttl() })) }
        : { kind: 'pass', headers: withCacheStatus(headers, parts), recorder: undefined }
    }
    if (previous !== undefined && status === 304) return this.#revalidated(request, previous, storableHeaders(headers), connectionNamesFields(headers), parts, lookup, shared)
    if (previous !== undefined && isFailure(status)) {
      // A 5xx is no new representation: the stored one is kept, and stands in if stale-if-error
      // allows. Nor is a 408 or a 429 (the origin timed out, or is limiting the rate), which the
      // retries take for failures too: dropping the entry would send every later caller to it.
      const standIn = ERROR_STATUSES.has(status) ? this.failed(request, lookup, status, shared) : undefined
      if (standIn === undefined && !this.mayStandIn(lookup)) this.#missed(request, lookup, shared)
      return standIn ?? { kind: 'pass', headers: withCacheStatus(headers, parts), recorder: undefined }
    }
    // An answer the stored entry may yet stand in for is held back by the adapter, and counted
    // when it is let through (missed()), or as the stale entry if that stands in for it.
    if (previous !== undefined && !this.mayStandIn(lookup)) this.#missed(request, lookup, shared)
    const pass = (stored: boolean, recorder?: Recorder): Outcome => {
      if (!stored) lookup.release?.(false)
      return { kind: 'pass', headers: withCacheStatus(headers, extend(parts, { stored })), recorder }
    }
    const { key } = lookup
    if (!lookup.store || key === undefined) return pass(false)

    const { settings } = lookup
    const refused = (): Outcome => {
      // RFC 9111 §4.3.3: a full response replaces what was stored; if it may not be kept, neither may the old.
      if (previous !== undefined) this.#writes.remove(previous, settings, lookup.since)
      return pass(false)
    }
    const stored = storableHeaders(headers)
    // RFC 9110 §6.6.1: a recipient with a clock dates a response it caches that has no Date (as
    // a 304 without one is dated, src/policy.ts), so that a hit says when it was received.
    const dated = stored.date === undefined ? new Date(this.#options.now()).toUTCString() : undefined
    if (dated !== undefined) stored.date = dated
    const { policy, storable } = this.#policies.create(request, status, stored, settings, lookup.requestTime)
    const retention = policy.retention(stored, settings)
    const fields = varyFields(fieldValue(stored.vary))
    // The body's length when announced. A HEAD response, a 204 and a 304 have none, whatever their
    // Content-Length says (RFC 9110 §9.3.2, §15.3.5, §15.4.5).
    const declared = Number(fieldValue(stored['content-length']) ?? NaN)
    const length = request.method === 'HEAD' || status === 204 || status === 304 ? 0 : Number.isSafeInteger(declared) && declared >= 0 ? declared : undefined
    if (!storable || retention === 0 || fields[0] === '*' || !fieldsFitToStore(stored) || connectionNamesFields(headers)) return refused()
    const vary = varyValues(fields, request.headers)
    const tags = responseTags(stored, settings.tags)
    // With memory alone, the body must fit in maxSize beside what else the entry holds.
    const limit = this.#keepable === Infinity ? settings.maxEntrySize : Math.min(settings.maxEntrySize, this.#keepable - sizeBesidesBody(key, stored, vary, tags))
    if ((length ?? 0) > limit) return refused()
    // An invalidation that started since the request went out, and picks this answer, keeps it
    // from being stored (src/writes.ts): Cache-Status must not say `stored`.
    if (this.#writes.refuses(lookup.since, key, tags)) return pass(false)
    const recorder = new Recorder(limit, length, (body) => {
      const entry: CacheEntry = { key, status, statusText: intern(statusText), headers: stored, body: toStoredBody(body), policy, vary, tags }
      // Processes waiting on this one take the entry only if it is fresh (src/store/coordinator.ts).
      const release = (written: boolean): void => lookup.release?.(written && policy.fresh())
      // It takes the place of the stored response this request selected, whatever either varies on.
      const written = this.#write(request, entry, retention, settings, lookup.since, undefined, previous)
      if (written instanceof Promise) this.#writes.background(written.then(release))
      else release(written)
    }, () => lookup.release?.(false))
    const passed = pass(true, recorder)
    // Its caller gets that Date too (§6.6.1: "cached or forwarded downstream"), as every hit will.
    if (dated !== undefined) passed.headers.date = dated
    return passed
  }

  /**
   * An answer held back while the stored entry could stand in for its failure is let through
   * after all: its lookup is a miss (`shared` as for forwarded()).
   */
  missed (request: CacheRequest, lookup: Forwarded, shared?: SharedCount): void {
    this.#missed(request, lookup, shared)
  }

  /**
   * A forwarded request ended with no answer that counted its lookup: a network error nothing
   * stood in for, or its caller's abort. One that found a stored response is a miss, as one that
   * found none counted as it looked (`shared` as for forwarded()).
   */
  noAnswer (request: CacheRequest, lookup: Forwarded, shared?: SharedCount): void {
    if (lookup.entry !== undefined) this.#missed(request, lookup, shared)
  }

  /**
   * RFC 5861 §4: the origin failed (a network error, or `status` 500/502/503/504 after retries).
   * The stored entry stands in when stale-if-error allows; `undefined` means the failure stands.
   * `shared` as for forwarded().
   */
  failed (request: CacheRequest, lookup: Forwarded, status?: number, shared?: SharedCount): Outcome | undefined {
    lookup.release?.(false)
    const entry = lookup.entry
    if (entry === undefined || !this.mayStandIn(lookup)) return undefined
    this.#count(lookup, 'stale', { url: request.url, key: entry.key, status, reason: 'stale-if-error', bytes: bodyLength(entry.body) }, shared)
    // The request went forward (RFC 9211 §2.2), so no hit (§2.1), though the stored response answers
    // it; forward as the lookup said: `stale`, or `request` for a fresh one the request refused.
    const parts: StatusParts = { fwd: lookup.fwd, fwdStatus: status, ttl: entry.policy.ttl(), detail: 'stale-if-error' }
    return { kind: 'replay', entry, headers: this.#served(entry, parts) }
  }

  /**
   * Whether a failure of this forwarded request would be stood in for by the stored entry (RFC 5861
   * §4), as `failed()` decides it now. The adapters hold such an answer back until its body is
   * complete, so that one that breaks off half way can still be stood in for.
   */
  mayStandIn (lookup: Forwarded): boolean {
    const { entry } = lookup
    // Nobody waits on a background refresh: its failure is reported, not stood in for. Nor does an
    // entry an invalidation picked since the lookup found it (RFC 9111 §4.4) stand in.
    return entry !== undefined && !lookup.background && entry.policy.usableOnError(lookup.directives, lookup.settings) &&
      !this.#writes.outdated(lookup.since, entry.key, entry)
  }

  /**
   * A stored response was looked up but a new answer serves the request: the lookup is a miss,
   * counted as one (hitRatio). A background refresh's lookup was counted already, as its hit.
   */
  #missed (request: CacheRequest, lookup: Forwarded, shared: SharedCount | undefined): void {
    if (lookup.background !== true) this.#count(lookup, 'miss', { method: request.method, url: request.url, reason: lookup.fwd }, shared)
  }

  /**
   * Counts a forwarded lookup's outcome, and tells the exchange other callers share what it counted;
   * nothing for one counted already (Forwarded.counted).
   */
  #count (lookup: Forwarded, name: EventName, event: CacheEvent, shared: SharedCount | undefined): void {
    if (lookup.counted === true) return
    this.#reporter.emit(name, event)
    shared?.counted(name, event)
  }

  /**
   * RFC 9111 §4.3.4: a 304 freshens the stored response, which is then served. `connectionNamed`:
   * its Connection field named end-to-end fields (RFC 9110 §7.6.1), which were meant for this cache
   * and are not stored (§3.1), and may have said no-store or private: served, not stored, and the
   * stored response dropped, as for a 200 of that kind.
   */
  #revalidated (request: CacheRequest, entry: CacheEntry, notModified: ResponseHeaders, connectionNamed: boolean, parts: StatusParts, lookup: Forwarded, shared: SharedCount | undefined): Outcome {
    const event = { url: request.url, key: entry.key, status: 304, bytes: bodyLength(entry.body) }
    if (lookup.background === true) this.#reporter.emit('revalidated', extend(event, { background: true as const }))
    else this.#count(lookup, 'revalidated', event, shared)
    // A 304 whose validators select no stored response updates nothing (§4.3.4). The caller still
    // gets the body we have, under its own fields: the 304's would label it with another
    // representation's validators, which the caller's own conditional requests would then confirm.
    if (!selectedBy(entry.headers, notModified)) return { kind: 'replay', entry, headers: this.#served(entry, extend(parts, { ttl: entry.policy.ttl() })) }
    const { settings } = lookup
    const { policy, storable, headers } = this.#policies.revalidated(request, entry, notModified, settings, lookup.requestTime)
    const { key, status, statusText, body } = entry
    // The 304's Vary is the response's now (RFC 9110 §15.4.5 has it sent as a 200 would): the
    // updated entry is selected by it, not by the fields the old one varied on (§4.1).
    const fields = varyFields(fieldValue(headers.vary))
    const updated: CacheEntry = { key, status, statusText, headers, body, policy, vary: varyValues(fields, request.headers), tags: responseTags(headers, settings.tags) }
    if (storable && fields[0] !== '*' && fieldsFitToStore(headers) && !connectionNamed) {
      // What it replaces must be a response it selects: a newer one another request stored while
      // this 304 was on its way stays (§4.3.4: no stored response selected, none updated).
      const replaces: Replaces = { entry, selected: (current) => current === entry || selectedBy(current.headers, notModified) }
      this.#writes.background(this.#write(request, updated, policy.retention(headers, settings), settings, lookup.since, replaces))
    } else if (connectionNamed || fields[0] === '*' || (!storable && (policy.directives['no-store'] !== undefined || (policy.shared && policy.directives.private !== undefined)))) {
      // §5.2.2.5, §5.2.2.7: what the origin now says may not be stored is not kept as it was
      // either, where max-stale, force-cache or stale-if-error would still serve it; nor what now
      // varies on * (§4.1: it matches no request). (A Set-Cookie in a 304 is its caller's alone:
      // the entry stays as it was, without it.)
      this.#writes.remove(entry, settings, lookup.since)
    }
    return { kind: 'replay', entry: updated, headers: this.#served(updated, extend(parts, { ttl: policy.ttl() })) }
  }

  /** The stored headers as served now: Age (RFC 9111 §5.1) and our Cache-Status added. */
  #served (entry: CacheEntry, parts: StatusParts): ResponseHeaders {
    return servedHeaders(entry, ageOf(entry), appendCacheStatus(entry.headers['cache-status'], ownCacheStatus(parts, entry.key, this.#options.cacheStatusKey)))
  }

  /** Stores an entry beside the other variants of its URL (src/writes.ts); whether it did, synchronously where the store answers so. */
  #write (request: CacheRequest, entry: CacheEntry, retention: number, settings: RequestSettings, since: number, replaces?: Replaces, superseded?: CacheEntry): MaybePromise<boolean> {
    const written = this.#writes.write(entry, retention, settings, since, replaces, superseded)
    return written instanceof Promise ? written.then((done) => this.#stored(request, entry, done)) : this.#stored(request, entry, written)
  }

  #stored (request: CacheRequest, entry: CacheEntry, written: boolean): boolean {
    if (written) this.#reporter.emit('stored', { url: request.url, key: entry.key, status: entry.status, bytes: bodyLength(entry.body) })
    return written
  }
}

/** An answer that says the exchange failed, not what the resource is: the stored response is kept. */
export function isFailure (status: number): boolean {
  return status >= 500 || status === 408 || status === 429
}
