/**
 * The engine. A `Cache` decides, for a request, whether a stored response serves it, must be
 * revalidated, or the request goes to the origin; its `answers` (src/answers.ts) decide, for the
 * origin's answer, what is stored, merged (304) or invalidated. It knows no protocol: the adapters
 * (src/adapters/) carry its decisions into undici's handler API and into `fetch`.
 */
import { Answers } from './answers.js'
import { CachedFetchError, type RequestInfo } from './errors.js'
import { forward, HitResult, type FetchCacheMode, type Forwarded, type Hit, type Lookup, type Unsatisfiable } from './decision.js'
import { bodyLength, type CacheEntry, type Variants } from './entry.js'
import { explainGiven, type Explanation, type ExplainedRequest, type HeaderFields } from './explain.js'
import { Flights } from './flight.js'
import { absoluteUrl, prefixSelector, tagSelector, urlSelector } from './invalidation.js'
import { CALLER_CONDITIONALS, hasAny, storeKey, type CacheRequest } from './key.js'
import { assertKnownKeys, describe, isOptionsObject } from './validate.js'
import { resolveOptions, type CacheOptions, type ResolvedOptions } from './options.js'
import { applyOwnPolicy, REQUEST_POLICY_KEYS, type RequestSettings } from './settings.js'
import { requestDirectives, type RequestDirectives } from './directives.js'
import { PolicyFactory } from './policy.js'
import { revalidationHeaders } from './revalidation.js'
import type { Usability } from './stored-policy.js'
import { Refreshes, type Abortable } from './refreshes.js'
import { ageOf, appendCacheStatus, formatCacheStatus, ownCacheStatus, Reporter, type CacheEvent, type EventName, type Forward, type StatsSnapshot, type StatusParts } from './status.js'
import type { Coordinator } from './store/coordinator.js'
import { openStores, type Tiers, type Selector } from './store/tiers.js'
import type { MaybePromise, StoreEvents } from './store/types.js'
import { extend } from './objects.js'
import { findVariant } from './variants.js'
import { Writes } from './writes.js'

/**
 * Why a probe found no hit, as its caller's lookup counts (Cache.probe): the cache is bypassed, or
 * nothing usable is stored (a miss), or a stored response is (it counts what the exchange it joins
 * counts: revalidated, stale, a miss).
 */
export type Unanswered = { readonly bypass: Forward } | { readonly stored: boolean }

export type { FetchCacheMode, Forwarded, Hit, Lookup, Outcome, Unsatisfiable } from './decision.js'


export class Cache {
  readonly options: ResolvedOptions
  readonly #store: Tiers
  readonly #coordinator: Coordinator | undefined
  readonly #policies: PolicyFactory
  readonly #reporter = new Reporter()
  readonly #refreshes: Refreshes
  readonly #writes: Writes
  /**
   * Requests in flight, for the interceptor's single-flight (src/adapters/broadcast.ts). Held by
   * the engine so that every adapter on this cache shares them.
   * @internal For the adapters (src/adapters/), not for applications.
   */
  readonly flights = new Flights<unknown>((since, storeKey) => this.#writes.invalidatedSince(since, storeKey), () => this.#writes.started)
  /**
   * What the origin's answers to forwarded requests do: served, stored, merged, stood in for (src/answers.ts).
   * @internal For the adapters (src/adapters/), not for applications.
   */
  readonly answers: Answers

  constructor (options?: CacheOptions) {
    this.options = resolveOptions(options)
    this.#policies = new PolicyFactory(this.options.now)
    this.#refreshes = new Refreshes(this.options.now)
    const events: StoreEvents = {
      error: (operation, key, error) => this.#reporter.emit('store-error', { key, reason: operation, error }),
      evict: (key, bytes) => this.#reporter.emit('evicted', { key, bytes })
    }
    const { tiers, coordinator } = openStores(this.options, this.#policies, events)
    this.#store = tiers
    this.#writes = new Writes(tiers, this.#reporter)
    this.#coordinator = coordinator
    this.answers = new Answers(this.options, this.#policies, this.#writes, this.#reporter, (selector: Selector, event: CacheEvent, what: RequestInfo) => this.#invalidate(selector, event, what))
  }

  /**
   * Decides how a request is served, and counts a lookup that found nothing stored (or that is
   * answered from the store); one forwarded with a stored response counts by its answer
   * (src/answers.ts). Synchronous when the store is (the default memory store), so a hit costs no
   * promise.
   * @internal For the adapters (src/adapters/) and the benchmark, not for applications.
   */
  lookup (request: CacheRequest, mode: FetchCacheMode = 'default', settings: RequestSettings = this.settings(request.url)): MaybePromise<Lookup> {
    const asked = requestDirectives(request.headers, settings.ignoreRequestNoCache)
    // Fetch's no-cache mode is the request's no-cache (Fetch §4.6), given as the mode or, by fetch, as max-age=0.
    const directives = mode === 'no-cache' && !asked.noCache ? { ...asked, noCache: true } : asked
    if (!settings.enabled) return this.#bypass(request, 'bypass', directives, settings)
    if (!settings.methods.has(request.method)) return this.#bypass(request, 'method', directives, settings)
    // A GET or HEAD with content (RFC 9110 §9.3.1 gives it no meaning; a search API may read it) is
    // answered by what it sends: nothing stored serves it, nor is its answer stored under a key
    // that leaves the content out.
    const bypass = mode === 'no-store' || request.content === true || hasAny(request.headers, CALLER_CONDITIONALS)
    // RFC 9111 §5.2.1.7, Fetch §4.6: only-if-cached never reaches the origin, whatever else the request says.
    if (bypass && (directives.onlyIfCached || mode === 'only-if-cached')) return this.#unsatisfiable(request)
    if (bypass) return this.#bypass(request, 'bypass', directives, settings)
    // Taken before the store is read: an invalidation that starts while the read is on its way may
    // drop what it returns, and counts as after this lookup (writes, flights).
    const since = this.#writes.since
    const key = storeKey(request.method, request.url, request.headers.host, settings)
    if (mode === 'reload') {
      // The reload mode takes nothing stored, and only-if-cached sends nothing: nothing serves it.
      if (directives.onlyIfCached) return this.#unsatisfiable(request)
      this.#reporter.emit('miss', { method: request.method, url: request.url, reason: 'request' })
      return forward('request', !directives.noStore, undefined, undefined, directives, settings, key, since, this.options.now())
    }
    let found = this.#read(key, request)
    // Memory holds variants of the URL, none of them this request's: another process may have
    // stored it in the shared tier since (src/store/tiers.ts).
    if (found !== undefined && !(found instanceof Promise) && this.#store.layered && findVariant(found, request) === undefined) found = this.#store.getShared(key)
    return found instanceof Promise
      ? found.then((variants) => this.#choose(request, key, variants, directives, mode, settings, since))
      : this.#choose(request, key, found, directives, mode, settings, since)
  }

  /**
   * A request's settings: this cache's, then its host's (`hosts`), then the request's own policy
   * (`cachePolicy`, validated here: a bad one is a TypeError naming it). Without a URL, the cache's.
   */
  settings (url: string | undefined, policy?: unknown): RequestSettings {
    const host = url === undefined ? this.options.settings : this.options.hosts.settingsFor(url)
    return policy === undefined ? host : applyOwnPolicy(host, policy, 'cachePolicy', REQUEST_POLICY_KEYS)
  }

  /**
   * A hit that `accept` takes, or `undefined` with nothing reported: the fetch adapter's fast path
   * asks this first and, on `undefined`, takes the full path, which reports. A stale-while-revalidate
   * hit is taken only while its refresh is under way: one not yet started is the interceptor's to
   * start, with the request undici.fetch sends (User-Agent, Accept, …; src/adapters/sent.ts), which
   * an origin may answer otherwise without them. `unanswered`: told, when there is no hit, how the
   * lookup counts, for a caller that may follow another's request in flight rather than look up on
   * the full path: it counts itself once it does (one that cannot takes the full path, which counts it).
   * @internal For the adapters (src/adapters/), not for applications.
   */
  probe (request: CacheRequest, mode: FetchCacheMode, accept: (entry: CacheEntry) => boolean, unanswered?: (why: Unanswered) => void): MaybePromise<Hit | undefined> {
    const settings = this.settings(request.url)
    if (!settings.enabled || !settings.methods.has(request.method) || hasAny(request.headers, CALLER_CONDITIONALS)) {
      // The full path would report a bypass (lookup): a caller that follows reports it instead.
      unanswered?.({ bypass: settings.enabled && !settings.methods.has(request.method) ? 'method' : 'bypass' })
      return undefined
    }
    const directives = requestDirectives(request.headers, settings.ignoreRequestNoCache)
    const since = this.#writes.since
    const key = storeKey(request.method, request.url, request.headers.host, settings)
    const pick = (variants: Variants | undefined): Hit | undefined => {
      // What an invalidation under way is about to drop is gone already: the full path finds a miss.
      const entry = variants !== undefined && this.#writes.outdated(since, key, variants) ? undefined : findVariant(variants, request)
      if (entry === undefined) {
        unanswered?.({ stored: false })
        return undefined
      }
      const usability = accept(entry) ? usable(entry, directives, mode, settings) : undefined
      if (usability === 'fresh' || usability === 'stale-allowed' || (usability === 'stale-while-revalidate' && this.#refreshes.underWay(entry))) {
        return this.#hit(request, entry, usability, undefined)
      }
      unanswered?.({ stored: true })
      return undefined
    }
    const found = this.#read(key, request)
    return found instanceof Promise ? found.then(pick) : pick(found)
  }

  /** What is stored under `key` for `request`: the entry a write under way is storing, if it fits, then the store's. */
  #read (key: string, request: CacheRequest): MaybePromise<Variants | undefined> {
    return this.#writes.landing(key, request) ?? this.#store.get(key)
  }

  #choose (request: CacheRequest, key: string, stored: Variants | undefined, directives: RequestDirectives, mode: FetchCacheMode, settings: RequestSettings, since: number): Lookup {
    // What an invalidation under way is about to drop is gone already (Writes.outdated).
    const variants = stored !== undefined && this.#writes.outdated(since, key, stored) ? undefined : stored
    const entry = findVariant(variants, request)
    if (entry === undefined) {
      if (directives.onlyIfCached || mode === 'only-if-cached') return this.#unsatisfiable(request)
      this.#reporter.emit('miss', { method: request.method, url: request.url })
      return forward(variants === undefined ? 'uri-miss' : 'vary-miss', !directives.noStore, undefined, undefined, directives, settings, key, since, this.options.now())
    }
    const usability = usable(entry, directives, mode, settings)
    if (usability === 'fresh' || usability === 'stale-allowed') return this.#hit(request, entry, usability, undefined)
    // A refresh is a request of this one's: none for a request whose response may not be stored
    // (RFC 9111 §5.2.1.5), nor for one that may not reach the origin at all (§5.2.1.7).
    if (usability === 'stale-while-revalidate') {
      return this.#hit(request, entry, usability, directives.noStore || directives.onlyIfCached ? undefined : this.#refresh(request, key, entry, directives, settings, since))
    }
    // RFC 9111 §5.2.1.7: only-if-cached takes a stored response as it is, or a 504.
    if (directives.onlyIfCached) return this.#unsatisfiable(request)
    // RFC 9211 §2.2: "request" when the entry was fresh but the request would not take it.
    const fwd = entry.policy.fresh() ? 'request' : 'stale'
    return forward(fwd, !directives.noStore, entry, revalidationHeaders(request, entry.headers), directives, settings, key, since, this.options.now())
  }

  /** The background revalidation a stale-while-revalidate hit starts, unless one is under way (RFC 5861 §3). */
  #refresh (request: CacheRequest, key: string, entry: CacheEntry, directives: RequestDirectives, settings: RequestSettings, since: number): Forwarded | undefined {
    if (this.#refreshes.underWay(entry)) return undefined
    const refresh: Forwarded = { ...forward('stale', true, entry, revalidationHeaders(request, entry.headers), directives, settings, key, since, this.options.now()), background: true }
    if (!this.#refreshes.claim(entry, settings.retry, refresh)) return undefined
    // flush() waits for it to start its exchange, then for it to end (refreshStarted()).
    this.#writes.background(this.#refreshes.starting(refresh))
    return refresh
  }

  /**
   * A background refresh ended; `error` when it failed, which leaves the entry as it was.
   * @internal For the adapters (src/adapters/), not for applications.
   */
  refreshed (request: CacheRequest, refresh: Forwarded, error?: unknown): void {
    const entry = refresh.entry!
    this.#refreshes.end(entry, refresh)
    if (error !== undefined) this.#reporter.emit('refresh-failed', { url: request.url, key: entry.key, error })
  }

  /**
   * A background refresh's exchange started: `flush()` and `close()` wait for its end
   * (`refreshed()`), and `close()` aborts it through `controller` (src/refreshes.ts).
   * @internal For the adapters (src/adapters/), not for applications.
   */
  refreshStarted (refresh: Forwarded, controller: Abortable): void {
    this.#writes.background(this.#refreshes.started(refresh, controller))
  }

  /** `counted`: its lookup counted already (a miss, as it looked), and this counts nothing more. */
  #hit (request: CacheRequest, entry: CacheEntry, usability: Usability, refresh: Forwarded | undefined, counted = false): Hit {
    // force-cache and only-if-cached take entries fresh or not: what is counted is what it is.
    const fresh = usability === 'fresh' || (usability === 'stale-allowed' && entry.policy.fresh())
    if (!counted) this.#reporter.emit(fresh ? 'hit' : 'stale', { url: request.url, key: entry.key, bytes: bodyLength(entry.body) })
    // RFC 9211 §2.1, §3: a hit is a request not forwarded, a stale one says so by its negative ttl;
    // the refresh a stale-while-revalidate hit starts is no part of this request.
    const parts: StatusParts = usability === 'stale-while-revalidate'
      ? { hit: true, ttl: entry.policy.ttl(), detail: 'stale-while-revalidate' }
      : { hit: true, ttl: entry.policy.ttl() }
    return new HitResult(entry, ageOf(entry), appendCacheStatus(entry.headers['cache-status'], ownCacheStatus(parts, entry.key, this.options.cacheStatusKey)), refresh)
  }

  #bypass (request: CacheRequest, fwd: Forward, directives: RequestDirectives, settings: RequestSettings): Forwarded {
    this.#reporter.emit('bypass', { method: request.method, url: request.url, reason: fwd })
    return forward(fwd, false, undefined, undefined, directives, settings, undefined, this.#writes.since, this.options.now())
  }

  #unsatisfiable (request: CacheRequest): Unsatisfiable {
    this.#reporter.emit('miss', { method: request.method, url: request.url, reason: 'only-if-cached' })
    // Nothing went forward (RFC 9211 §2.2): no fwd. RFC 9211 §2 would have a response the cache makes
    // itself carry no member; this one keeps it, so that a caller can tell it from an origin's 504.
    return { kind: 'unsatisfiable', headers: { 'cache-status': formatCacheStatus({ detail: 'only-if-cached' }) } }
  }

  /**
   * Reports an event of an adapter's (a retry, say) with this cache's counters and channels.
   * @internal For the adapters (src/adapters/), not for applications.
   */
  report (name: EventName, event: CacheEvent): void {
    this.#reporter.emit(name, event)
  }

  /**
   * Drops every stored variant of a URL, for GET and HEAD, from memory and store, and from the
   * memory of other processes on the same Redis; rejects with ERR_STORE_UNREACHABLE when the store
   * could not be reached (each of these four does). `host`: those stored for requests that sent this
   * Host header to the URL's address (a virtual host behind a load balancer's address), as an
   * unsafe request with that Host invalidates them.
   */
  async invalidate (url: string | URL, options?: { readonly host?: string }): Promise<void> {
    if (options !== undefined && !isOptionsObject(options)) throw new TypeError(`expected options to be an object, got ${describe(options)}`)
    if (options !== undefined) assertKnownKeys(options, INVALIDATE_OPTIONS, 'options')
    const host = options?.host
    if (host !== undefined && (typeof host !== 'string' || host === '')) throw new TypeError(`expected options.host to be a Host header's value, got ${describe(host)}`)
    const normalized = absoluteUrl(url, 'url', 'https://api.example.com/users/1')
    await this.#invalidate(urlSelector(normalized, this.settings(normalized).key, host), { url: normalized }, { method: 'invalidate', url: normalized })
  }

  /**
   * Drops every entry whose URL starts with `prefix`, an absolute URL (`https://api.example.com/users/`).
   * With Redis this reads the origin's index; other stores are listed.
   */
  async invalidatePrefix (prefix: string | URL): Promise<void> {
    const selector = prefixSelector(prefix)
    await this.#invalidate(selector, { url: selector.prefix, reason: 'prefix' }, { method: 'invalidatePrefix', url: selector.prefix })
  }

  /** Drops every entry tagged `tag` (by Cache-Tag, Surrogate-Key or the `tags` option). */
  async invalidateTag (tag: string): Promise<void> {
    await this.#invalidate(tagSelector(tag), { reason: `tag ${tag}` }, { method: 'invalidateTag', url: tag })
  }

  /** Drops every entry of this cache's namespace, and only those. */
  async clear (): Promise<void> {
    await this.#invalidate({ kind: 'all' }, { reason: 'clear' }, { method: 'clear', url: 'all' })
  }

  /**
   * Rejects with ERR_STORE_UNREACHABLE when the store, or the other processes, could not be reached:
   * what it was to drop is gone from memory, but the store may still hold it, and serve it here and
   * elsewhere. Resolved, it reached everything.
   */
  async #invalidate (selector: Selector, event: CacheEvent, what: RequestInfo): Promise<void> {
    // From now on identical requests do not join an exchange whose lookup began before (src/flight.ts).
    if (!await this.#writes.invalidate(selector)) {
      throw new CachedFetchError('ERR_STORE_UNREACHABLE', 'the invalidation reached memory but not the store, which may still hold what it was to drop (the store-error events say why); call it again', what)
    }
    this.#reporter.emit('invalidated', event)
  }

  /**
   * What this cache decides for a response: storable or not and why, its freshness lifetime, age,
   * and the request headers a revalidation would send. `headers` as received (an Age included).
   * Fields in any shape undici or fetch takes (a record with names in any case, a `Headers`, pairs),
   * read as the engine reads a request's and a response's.
   */
  explain (request: ExplainedRequest, status: number, headers: HeaderFields): Explanation {
    return explainGiven(this.#policies, this.options, request, status, headers)
  }

  /**
   * Cross-process single-flight for a miss about to go to the origin: either the entry another
   * process stored meanwhile, or the request with the claim it now holds. Without a coordinator,
   * or for a request that will not store, the request as it is.
   * @internal For the adapters (src/adapters/), not for applications.
   */
  coordinate (request: CacheRequest, lookup: Forwarded, mode: FetchCacheMode = 'default'): MaybePromise<Lookup> {
    const coordinator = this.#coordinator
    // Only a plain miss: a reload or no-cache request must reach the origin whatever is stored
    // meanwhile, and so must one whose directives may refuse what another process stores (no-cache,
    // max-age=0 as fetch's no-cache mode sends, min-fresh), which would wait for it to no purpose.
    const { key, directives } = lookup
    if (coordinator === undefined || mode !== 'default' || !lookup.store || key === undefined || lookup.entry !== undefined ||
        lookup.background || (lookup.fwd !== 'uri-miss' && lookup.fwd !== 'vary-miss') ||
        directives.noCache || directives.maxAge === 0 || directives.minFresh !== undefined) return lookup
    // The request goes out once the claim is held: waiting for the other process is no part of its answer's age.
    return coordinator.claim(key, async () => {
      const entry = findVariant(await this.#store.getShared(key), request)
      const usability = entry === undefined ? undefined : usable(entry, lookup.directives, 'default', lookup.settings)
      // Its lookup counted a miss as it looked: the entry another process stored serves it (Cache-Status
      // says hit), and a lookup counts once.
      return usability === 'fresh' ? this.#hit(request, entry!, usability, undefined, true) : undefined
    }).then((claim) => 'found' in claim ? claim.found : extend(lookup, { release: claim.release, requestTime: this.options.now() }))
  }

  /**
   * Aborts the background refreshes under way and starts no more, waits for store writes in flight
   * (each bounded by `storeTimeouts.write`) and invalidations, ends the `coordinate` leases it still
   * holds, then closes what the cache opened itself, the Redis pub/sub connection. The store is the
   * caller's to close after: closed before, a Redis client would be opened again by a late write.
   */
  async close (): Promise<void> {
    this.#coordinator?.close()
    this.#refreshes.close(new Error('the cache was closed'))
    await this.flush()
    // Claims whose answers have not come: nothing stores those now, so the others need not wait for them.
    this.#coordinator?.releaseHeld()
    await this.#coordinator?.settled()
    this.#store.close()
  }

  /**
   * Waits until the background refreshes, store writes and invalidations in flight have ended (each
   * bounded by its timeout: a refresh by its caller's headersTimeout and bodyTimeout, and retries).
   */
  async flush (): Promise<void> {
    await this.#writes.flush()
    // The leases those writes ended (coordinate), released once they landed.
    await this.#coordinator?.settled()
  }

  stats (): CacheStats {
    return {
      ...this.#reporter.snapshot(),
      bytesInMemory: this.#store.memoryBytes,
      inFlight: this.flights.size,
      refreshing: this.#refreshes.size
    }
  }
}

export interface CacheStats extends StatsSnapshot {
  /** Bytes held by the memory tier. */
  readonly bytesInMemory: number
  /** Origin exchanges shared by identical requests right now. */
  readonly inFlight: number
  /** Background revalidations running now. */
  readonly refreshing: number
}

/** What invalidate() takes besides the URL. */
const INVALIDATE_OPTIONS: ReadonlySet<string> = new Set(['host'])

/** Builds a cache: the engine both adapters share. */
export function createCache (options?: CacheOptions): Cache {
  return new Cache(options)
}

/**
 * Fetch §4.6 (HTTP-network-or-cache fetch): force-cache and only-if-cached take any stored response,
 * stale or not; no-cache revalidates any stored response, fresh or not.
 */
function usable (entry: CacheEntry, directives: RequestDirectives, mode: FetchCacheMode, settings: RequestSettings): Usability {
  if (mode === 'force-cache' || mode === 'only-if-cached') return 'stale-allowed'
  if (mode === 'no-cache') return 'revalidate'
  return entry.policy.usability(directives, settings)
}

