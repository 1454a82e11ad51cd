/**
 * The engine. A `Cache` decides, for a request, whether a stored response serves it, must be
 * revalidated, or the request goes to the origin; and, for the origin's answer, what is stored,
 * merged (304) or invalidated. It knows no protocol: the adapters (src/adapters/) carry its
 * decisions into undici's handler API and into `fetch`.
 */
import { entrySize, type CacheEntry, type ResponseHeaders, type VariantSet } from './entry.js'
import { normalizeUrl, primaryKey, varyFields, varyMatches, varyValues, type CacheRequest, type RequestHeaders } from './key.js'
import { resolveOptions, type CacheOptions, type ResolvedOptions } from './options.js'
import { PolicyFactory, requestDirectives, storableHeaders, type RequestDirectives, type Usability } from './policy.js'
import { Recorder } from './recorder.js'
import { appendCacheStatus, formatCacheStatus, Reporter, type Forward, type StatsSnapshot, type StatusParts } from './status.js'
import { KeyvStore } from './store/keyv.js'
import { MemoryStore } from './store/memory.js'
import type { EntryStore, MaybePromise } from './store/types.js'

/** The Fetch standard's request cache modes (`init.cache`), which the fetch adapter passes on. */
export type FetchCacheMode = 'default' | 'no-store' | 'reload' | 'no-cache' | 'force-cache' | 'only-if-cached'

/** Serve this stored response; `headers` carry Age and Cache-Status. */
export interface Hit {
  readonly kind: 'hit'
  readonly entry: CacheEntry
  readonly headers: ResponseHeaders
}

/** Send the request on. With `entry`, it is a revalidation and `headers` carry the validators. */
export interface Forwarded {
  readonly kind: 'forward'
  readonly fwd: Forward
  /** Whether the answer may be stored. */
  readonly store: boolean
  readonly entry: CacheEntry | undefined
  /** Request headers to send instead of the caller's, when they differ. */
  readonly headers: RequestHeaders | undefined
}

/** Nothing usable is stored and the request allows only stored responses (RFC 9111 §5.2.1.7). */
export interface Unsatisfiable {
  readonly kind: 'unsatisfiable'
  readonly headers: ResponseHeaders
}

export type Lookup = Hit | Forwarded | Unsatisfiable

/** What to do with the origin's answer. */
export type Outcome =
  /** Pass the origin's response on with these headers; record its body when `recorder` is set. */
  | { readonly kind: 'pass'; readonly headers: ResponseHeaders; readonly recorder: Recorder | undefined }
  /** The origin said 304: serve the stored entry, updated, instead. */
  | { readonly kind: 'replay'; readonly entry: CacheEntry; readonly headers: ResponseHeaders }

/** Request methods that never invalidate (RFC 9110 §9.2.1). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE'])
/** Request fields that make the caller's own conditional or partial request: passed through untouched. */
const CALLER_CONDITIONALS = ['if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'if-range', 'range']
/** A URL with more variants than this is being fed Vary values without end; the oldest goes. */
const MAX_VARIANTS = 32

export class Cache {
  readonly options: ResolvedOptions
  readonly #store: EntryStore
  readonly #policies: PolicyFactory
  readonly #reporter = new Reporter()
  readonly #memory: MemoryStore | undefined

  constructor (options?: CacheOptions) {
    this.options = resolveOptions(options)
    this.#policies = new PolicyFactory(this.options)
    const events = {
      error: (operation: string, key: string | undefined, error: unknown) =>
        this.#reporter.emit('store-error', { key, reason: operation, error }),
      evict: (key: string, bytes: number) => this.#reporter.emit('evicted', { key, bytes })
    }
    if (this.options.store === undefined) {
      this.#memory = new MemoryStore(this.options, events)
      this.#store = this.#memory
    } else {
      this.#store = new KeyvStore(this.options.store, this.#policies, events)
    }
  }

  /**
   * Decides how a request is served. Synchronous when the store is (the default memory store), so
   * a hit costs no promise.
   */
  lookup (request: CacheRequest, mode: FetchCacheMode = 'default'): MaybePromise<Lookup> {
    if (!this.options.methods.has(request.method)) return this.#bypass(request, 'method')
    if (mode === 'no-store' || hasAny(request.headers, CALLER_CONDITIONALS)) return this.#bypass(request, 'bypass')
    const directives = requestDirectives(request.headers)
    if (mode === 'reload') return this.#forward('request', !directives.noStore, undefined, undefined)
    const found = this.#store.get(primaryKey(request.method, request.url))
    return found instanceof Promise
      ? found.then((set) => this.#choose(request, set, directives, mode))
      : this.#choose(request, found, directives, mode)
  }

  /**
   * A hit that `accept` takes, or `undefined` with nothing reported: the fetch adapter's fast path
   * asks this first and, on `undefined`, takes the full path, which reports.
   */
  probe (request: CacheRequest, mode: FetchCacheMode, accept: (entry: CacheEntry) => boolean): MaybePromise<Hit | undefined> {
    if (!this.options.methods.has(request.method) || hasAny(request.headers, CALLER_CONDITIONALS)) return undefined
    const directives = requestDirectives(request.headers)
    const pick = (set: VariantSet | undefined): Hit | undefined => {
      const entry = findVariant(set, request)
      if (entry === undefined || !accept(entry)) return undefined
      const usability = usable(entry, directives, mode)
      return usability === 'revalidate' ? undefined : this.#hit(entry, usability === 'fresh')
    }
    const found = this.#store.get(primaryKey(request.method, request.url))
    return found instanceof Promise ? found.then(pick) : pick(found)
  }

  #choose (request: CacheRequest, set: VariantSet | undefined, directives: RequestDirectives, mode: FetchCacheMode): Lookup {
    const entry = findVariant(set, request)
    if (entry === undefined) {
      if (directives.onlyIfCached || mode === 'only-if-cached') return this.#unsatisfiable(request)
      this.#reporter.emit('miss', { method: request.method, url: request.url })
      return this.#forward(set === undefined ? 'uri-miss' : 'vary-miss', !directives.noStore, undefined, undefined)
    }
    const usability = usable(entry, directives, mode)
    if (usability !== 'revalidate') return this.#hit(entry, usability === 'fresh')
    // RFC 9111 §5.2.1.7: only-if-cached takes a stored response as it is, or a 504.
    if (directives.onlyIfCached) return this.#unsatisfiable(request)
    // RFC 9211 §2.2: "request" when the entry was fresh but the request would not take it.
    const fwd = entry.policy.ttl() > 0 ? 'request' : 'stale'
    return this.#forward(fwd, !directives.noStore, entry, entry.policy.revalidationHeaders(request))
  }

  #hit (entry: CacheEntry, fresh: boolean): Hit {
    this.#reporter.emit(fresh ? 'hit' : 'stale', { url: entry.url, key: entry.key, bytes: entry.body.byteLength })
    return { kind: 'hit', entry, headers: this.#served(entry, { hit: true, ttl: entry.policy.ttl() }) }
  }

  #bypass (request: CacheRequest, fwd: Forward): Forwarded {
    this.#reporter.emit('bypass', { method: request.method, url: request.url, reason: fwd })
    return this.#forward(fwd, false, undefined, undefined)
  }

  #forward (fwd: Forward, store: boolean, entry: CacheEntry | undefined, headers: RequestHeaders | undefined): Forwarded {
    return { kind: 'forward', fwd, store, entry, headers }
  }

  #unsatisfiable (request: CacheRequest): Unsatisfiable {
    this.#reporter.emit('miss', { method: request.method, url: request.url, reason: 'only-if-cached' })
    return { kind: 'unsatisfiable', headers: { 'cache-status': formatCacheStatus({ fwd: 'miss', detail: 'only-if-cached' }) } }
  }

  /** The stored headers as served now: Age (RFC 9111 §5.1) and our Cache-Status added. */
  #served (entry: CacheEntry, parts: StatusParts): ResponseHeaders {
    const headers = { ...entry.headers }
    headers.age = String(Math.max(0, Math.floor(entry.policy.age())))
    headers['cache-status'] = appendCacheStatus(entry.headers['cache-status'], formatCacheStatus(parts))
    return headers
  }

  /**
   * The origin answered a forwarded request: decide what the caller gets and what is stored.
   * `headers` are the response's, as undici hands them over.
   */
  forwarded (request: CacheRequest, lookup: Forwarded, status: number, statusText: string, headers: Record<string, string | string[] | undefined>): Outcome {
    if (!SAFE_METHODS.has(request.method) && status >= 200 && status < 400) this.#invalidateAfterUnsafe(request, headers)
    const parts: { fwd: Forward, fwdStatus: number } = { fwd: lookup.fwd, fwdStatus: status }
    if (lookup.entry !== undefined && status === 304) return this.#revalidated(request, lookup.entry, storableHeaders(headers), parts)
    const pass = (stored: boolean, recorder?: Recorder): Outcome => ({
      kind: 'pass',
      headers: withCacheStatus(headers, { ...parts, stored }),
      recorder
    })
    if (!lookup.store) return pass(false)

    const stored = storableHeaders(headers)
    const policy = this.#policies.create(request, status, stored)
    const retention = policy.retention(stored)
    const fields = varyFields(single(stored.vary))
    // A HEAD response has no body, whatever its Content-Length says (RFC 9110 §9.3.2).
    const length = request.method === 'HEAD' ? 0 : Number(single(stored['content-length']) ?? 0)
    if (!policy.storable(stored) || retention === 0 || fields[0] === '*' || length > this.options.maxEntrySize) {
      // RFC 9111 §4.3.3: a full response replaces what was stored; if it may not be kept, neither may the old.
      if (lookup.entry !== undefined) void this.#removeVariant(lookup.entry)
      return pass(false)
    }
    const vary = varyValues(fields, request.headers)
    const key = primaryKey(request.method, request.url)
    const recorder = new Recorder(this.options.maxEntrySize, (body) => {
      const entry: CacheEntry = { key, url: request.url, status, statusText, headers: stored, body, policy, vary, size: entrySize(key, stored, body) }
      void this.#write(entry, retention)
    })
    return pass(true, recorder)
  }

  /** RFC 9111 §4.3.4: a 304 freshens the stored response, which is then served. */
  #revalidated (request: CacheRequest, entry: CacheEntry, notModified: ResponseHeaders, parts: StatusParts): Outcome {
    const { matches, policy, headers } = this.#policies.revalidated(request, entry.policy, entry.headers, entry.status, notModified)
    const updated: CacheEntry = { ...entry, headers, policy, size: entrySize(entry.key, headers, entry.body) }
    this.#reporter.emit('revalidated', { url: entry.url, key: entry.key, status: 304 })
    // A 304 whose validator does not match updates nothing (§4.3.4); the body is still the one we have.
    if (matches && policy.storable(headers)) void this.#write(updated, policy.retention(headers))
    return { kind: 'replay', entry: updated, headers: this.#served(updated, { ...parts, ttl: policy.ttl() }) }
  }

  /** Stores an entry beside the other variants of its URL. Never rejects: a failure is an event. */
  async #write (entry: CacheEntry, retention: number): Promise<void> {
    try {
      await this.#writeVariant(entry, retention)
    } catch (error) {
      this.#reporter.emit('store-error', { key: entry.key, reason: 'set', error })
    }
  }

  async #writeVariant (entry: CacheEntry, retention: number): Promise<void> {
    const current = await this.#store.get(entry.key)
    const others = current?.variants.filter((variant) => !sameVariant(variant, entry)) ?? []
    const variants = [entry, ...others].slice(0, MAX_VARIANTS)
    await this.#store.set({ key: entry.key, variants }, Math.max(retention, ...others.map((v) => v.policy.retention(v.headers))))
    this.#reporter.emit('stored', { url: entry.url, key: entry.key, status: entry.status, bytes: entry.body.byteLength })
  }

  async #removeVariant (entry: CacheEntry): Promise<void> {
    const current = await this.#store.get(entry.key)
    if (current === undefined) return
    const others = current.variants.filter((variant) => !sameVariant(variant, entry))
    if (others.length === 0) await this.#store.delete(entry.key)
    else await this.#store.set({ key: entry.key, variants: others }, Math.max(...others.map((v) => v.policy.retention(v.headers))))
  }

  /**
   * RFC 9111 §4.4: a non-error answer to an unsafe method invalidates the target URI, and the
   * Location and Content-Location URIs when they share its origin (a response must not be able to
   * purge another origin's entries).
   */
  #invalidateAfterUnsafe (request: CacheRequest, headers: Record<string, string | string[] | undefined>): void {
    const origin = new URL(request.url).origin
    const targets = [request.url]
    for (const name of ['location', 'content-location']) {
      const value = single(headers[name])
      if (value === undefined) continue
      try {
        const target = new URL(value, request.url)
        if (target.origin === origin) targets.push(normalizeUrl(target))
      } catch {
        // An unparsable Location names nothing to invalidate.
      }
    }
    for (const url of targets) void this.invalidate(url)
  }

  /** Drops every stored variant of a URL, for GET and HEAD. */
  async invalidate (url: string | URL): Promise<void> {
    const normalized = normalizeUrl(url)
    for (const method of ['GET', 'HEAD']) await this.#store.delete(primaryKey(method, normalized))
    this.#reporter.emit('invalidated', { url: normalized })
  }

  /** Drops every entry of this cache. */
  async clear (): Promise<void> {
    await this.#store.clear()
  }

  stats (): StatsSnapshot & { readonly bytesInMemory: number } {
    return { ...this.#reporter.snapshot(), bytesInMemory: this.#memory?.size ?? 0 }
  }
}

/** Builds a cache: the engine both adapters share. */
export function createCache (options?: CacheOptions): Cache {
  return new Cache(options)
}

function withCacheStatus (headers: Record<string, string | string[] | undefined>, parts: StatusParts): ResponseHeaders {
  const copy: ResponseHeaders = {}
  for (const name in headers) {
    const value = headers[name]
    if (value !== undefined) copy[name] = value
  }
  copy['cache-status'] = appendCacheStatus(headers['cache-status'], formatCacheStatus(parts))
  return copy
}

function findVariant (set: VariantSet | undefined, request: CacheRequest): CacheEntry | undefined {
  return set?.variants.find((variant) => varyMatches(variant.vary, request.headers))
}

/**
 * Fetch §4.6 (HTTP-network-or-cache fetch): force-cache and only-if-cached take any stored response,
 * stale or not; no-cache revalidates any stored response, fresh or not.
 */
function usable (entry: CacheEntry, directives: RequestDirectives, mode: FetchCacheMode): Usability {
  if (mode === 'force-cache' || mode === 'only-if-cached') return 'stale-allowed'
  if (mode === 'no-cache') return 'revalidate'
  return entry.policy.usability(directives)
}

function sameVariant (a: CacheEntry, b: CacheEntry): boolean {
  const fields = Object.keys(a.vary)
  if (fields.length !== Object.keys(b.vary).length) return false
  return fields.every((field) => a.vary[field] === b.vary[field])
}

function hasAny (headers: RequestHeaders, names: readonly string[]): boolean {
  for (const name of names) if (headers[name] !== undefined) return true
  return false
}

function single (value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value
}

/** Adapter options: a ready `cache` to share, or the options to build one, not both. */
export interface CacheOrOptions extends CacheOptions {
  /** A cache to use; several adapters given the same one share its entries. */
  cache?: Cache
}

export function cacheFrom (options: CacheOrOptions | undefined, path = 'options'): Cache {
  if (options === undefined) return new Cache()
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(`expected ${path} to be an object, got ${options === null ? 'null' : typeof options}`)
  }
  const { cache, ...rest } = options
  if (cache === undefined) return new Cache(rest)
  if (!(cache instanceof Cache)) throw new TypeError(`expected ${path}.cache to be a Cache from createCache(), got ${typeof cache}`)
  const extra = Object.keys(rest)
  if (extra.length > 0) {
    throw new TypeError(`${path}.cache is given, so ${path}.${extra[0]} must be set on createCache() instead`)
  }
  return cache
}
