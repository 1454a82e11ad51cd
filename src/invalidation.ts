/**
 * What an invalidation drops: the URLs an answer to an unsafe request makes invalid (RFC 9111
 * §4.4), the selectors of the invalidation API (a URL, a prefix, a tag), and the log that keeps
 * a response fetched before an invalidation from being stored after it.
 *
 * RFC 9111 §4.4: which stored URLs an answer to an unsafe request makes invalid. The target URI,
 * and the Location and Content-Location URIs when they share its origin: a response must not be
 * able to purge another origin's entries.
 */
import { lowerCaseName, variantTags, type Variants } from './entry.js'
import { normalizeUrl, sameAuthorities, storeKey, type CacheRequest } from './key.js'
import { picks, type Selector } from './store/tiers.js'
import { describe } from './validate.js'

/** Request methods that never invalidate (RFC 9110 §9.2.1). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE'])

export function invalidatedBy (request: CacheRequest, status: number, headers: Record<string, string | string[] | undefined>): string[] {
  // Only a non-error answer (2xx, 3xx) means the request changed something.
  if (SAFE_METHODS.has(request.method) || status < 200 || status >= 400) return []
  const targets = [request.url]
  const url = new URL(request.url)
  let target: URL
  try {
    // RFC 9110 §7.1: a Host header names the target's authority, and Location resolves against it;
    // its entries are keyed by it too (src/key.ts), so the URLs stay on the connection's origin.
    const host = request.headers.host
    target = host === undefined ? url : new URL(`${url.protocol}//${host}${url.pathname}${url.search}`)
  } catch {
    return targets
  }
  for (const name in headers) {
    // Field names are case-insensitive (RFC 9110 §5.1); a dispatcher below may hand them over in any case.
    const lower = lowerCaseName(name)
    if (lower !== 'location' && lower !== 'content-location') continue
    const raw = headers[name]
    const value = Array.isArray(raw) ? raw[0] : raw
    if (value === undefined) continue
    try {
      const named = new URL(value, target)
      if (named.origin !== target.origin) continue
      const at = normalizeUrl(url.origin + named.pathname + named.search)
      targets.push(at)
      // An empty query (`/a?`) is one fetch keeps and undici.request drops: both are invalidated.
      if (named.search === '' && named.href.split('#')[0]!.endsWith('?')) targets.push(`${at}?`)
    } catch {
      // An unparsable Location names nothing to invalidate.
    }
  }
  return targets
}

/**
 * Every stored variant of a URL, GET and HEAD, shared and private: the resource changed for
 * everyone. With `host`, those of the URL asked for under that Host header.
 */
export function urlSelector (url: string, key: ((url: URL) => URL | string) | undefined, host?: string): Selector {
  const hosts = host === undefined ? [undefined] : sameAuthorities(host, url)
  return { kind: 'keys', keys: ['GET', 'HEAD'].flatMap((method) => [true, false].flatMap((shared) => hosts.map((named) => storeKey(method, url, named, { shared, key })))) }
}

/** Entries whose URL starts with `prefix`, an absolute URL; a TypeError for anything else. */
export function prefixSelector (prefix: string | URL): Selector & { kind: 'prefix' } {
  return { kind: 'prefix', prefix: absoluteUrl(prefix, 'prefix', 'https://api.example.com/users/') }
}

/**
 * An invalidation's URL, a string or a URL, normalised as a request's is (its fragment dropped: no
 * request carries one); a TypeError naming it, `what`, with an `example`, for anything else.
 */
export function absoluteUrl (value: unknown, what: string, example: string): string {
  try {
    if (typeof value === 'string' || value instanceof URL) return normalizeUrl(new URL(value))
  } catch {
    // No absolute URL: refused below, as what is no string or URL is.
  }
  throw new TypeError(`expected ${what} to be an absolute URL such as '${example}', got ${describe(value)}`)
}

export function tagSelector (tag: string): Selector {
  if (typeof tag !== 'string' || tag === '') throw new TypeError(`expected tag to be a non-empty string, got ${JSON.stringify(tag)}`)
  return { kind: 'tag', tag }
}

/**
 * How many recent invalidations a write is checked against; one older than all of them is dropped.
 * Other processes' count too (Redis pub/sub): a fleet that invalidates hundreds of times a second
 * would fill a few hundred within one slow response, and no response that slow would be stored.
 */
const REMEMBERED = 4096

/**
 * Invalidations in the order they started. A response on its way while one started may be older
 * than it (the application changed the resource, then invalidated it), and so may the variants a
 * write read from the store while one was under way: a write that could carry either is not made
 * where that invalidation picks it, or it would undo the invalidation.
 */
export class InvalidationLog {
  #count = 0
  readonly #recent: Array<{ readonly count: number, readonly selector: Selector }> = []
  /** The counts of the invalidations under way. */
  readonly #running = new Set<number>()

  /** How many invalidations have started. */
  get count (): number {
    return this.#count
  }

  /** An invalidation starts; call the function returned when it has ended. */
  record (selector: Selector): () => void {
    const count = ++this.#count
    this.#recent.push({ count, selector })
    if (this.#recent.length > REMEMBERED) this.#recent.shift()
    this.#running.add(count)
    return () => this.#running.delete(count)
  }

  /**
   * What a write that reads the store now checks against: the invalidations started after the
   * first `since` (its request was sent then), and those under way now (what it reads may be gone
   * by the time it writes).
   */
  floor (since: number): number {
    let floor = since
    for (const count of this.#running) floor = Math.min(floor, count - 1)
    return floor
  }

  /**
   * Whether an invalidation started after the first `floor` picks these variants of `key`; with
   * none (`undefined`: a response not received yet), whether one may, a tag picking anything.
   */
  covers (floor: number, key: string, variants: Variants | undefined): boolean {
    return this.coversTagged(floor, key, variants === undefined ? undefined : () => variantTags(variants))
  }

  /** As covers(), for what is stored under `key` with the tags `tags` gives (`undefined`: not known yet). */
  coversTagged (floor: number, key: string, tags: (() => readonly string[]) | undefined): boolean {
    if (floor === this.#count) return false
    // Those it would have to be checked against are forgotten: it may be covered.
    if (this.#recent[0]!.count > floor + 1) return true
    // Newest first, down to those that started by `floor`: only the few since are read.
    for (let i = this.#recent.length - 1; i >= 0; i--) {
      const { count, selector } = this.#recent[i]!
      if (count <= floor) return false
      if (tags === undefined ? selector.kind === 'tag' || picks(selector, key, () => []) : picks(selector, key, tags)) return true
    }
    return false
  }
}
