/**
 * What an invalidation drops: the URLs an answer to an unsafe request makes invalid (RFC 9111
 * §4.4), and the selectors of the invalidation API (a URL, a prefix, a tag).
 *
 * RFC 9111 §4.4: which stored URLs an answer to an unsafe request makes invalid. The target URI,
 * and the Location and Content-Location URIs when they share its origin: a response must not be
 * able to purge another origin's entries.
 */
import { normalizeUrl, storeKey, type CacheRequest } from './key.js'
import type { Selector } from './store/tiers.js'

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
  for (const name of ['location', 'content-location']) {
    const raw = headers[name]
    const value = Array.isArray(raw) ? raw[0] : raw
    if (value === undefined) continue
    try {
      const named = new URL(value, target)
      if (named.origin === target.origin) targets.push(normalizeUrl(url.origin + named.pathname + named.search))
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
  return { kind: 'keys', keys: ['GET', 'HEAD'].flatMap((method) => [true, false].map((shared) => storeKey(method, url, host, { shared, key }))) }
}

/** Entries whose URL starts with `prefix`, an absolute URL; a TypeError for anything else. */
export function prefixSelector (prefix: string | URL): Selector & { kind: 'prefix' } {
  try {
    return { kind: 'prefix', prefix: new URL(prefix).href }
  } catch {
    throw new TypeError(`expected prefix to be an absolute URL such as 'https://api.example.com/users/', got ${JSON.stringify(String(prefix))}`)
  }
}

export function tagSelector (tag: string): Selector {
  if (typeof tag !== 'string' || tag === '') throw new TypeError(`expected tag to be a non-empty string, got ${JSON.stringify(tag)}`)
  return { kind: 'tag', tag }
}
