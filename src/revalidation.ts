/**
 * Revalidation (RFC 9111 §4.3): the request a stale entry is revalidated with, and whether a 304
 * selects it for update. http-cache-semantics has the same rules; we do not build its policy for
 * every revalidation to ask it, which cost more than the rest of one. The 304 merge is the policy
 * factory's (src/policy.ts), which builds the freshened policy.
 */
import { connectionOptions, fieldValue, setField, type ResponseHeaders } from './entry.js'
import type { CacheRequest, RequestHeaders } from './key.js'

/**
 * The request to send to revalidate a stored response (RFC 9111 §4.3.1): the caller's, hop-by-hop
 * fields removed, with If-None-Match from the stored ETag and If-Modified-Since from the stored
 * Last-Modified, and only from those.
 */
export function revalidationHeaders (request: CacheRequest, stored: ResponseHeaders): RequestHeaders {
  const headers = withoutHopByHop(request.headers)
  const etag = fieldValue(stored.etag)
  const lastModified = fieldValue(stored['last-modified'])
  // Weak validators (a W/ entity tag, a Last-Modified date) for GET and HEAD only: If-None-Match
  // compares weakly and If-Modified-Since applies to those two (RFC 9110 §13.1.2, §13.1.3).
  // http-cache-semantics keeps them to GET, after RFC 2616 §13.3.3: a HEAD then misses its 304.
  const weakAllowed = request.method === 'GET' || request.method === 'HEAD'
  if (etag !== undefined && (weakAllowed || !isWeak(etag))) headers['if-none-match'] = etag
  if (lastModified !== undefined && weakAllowed) headers['if-modified-since'] = lastModified
  return headers
}

/**
 * RFC 9111 §4.3.4: whether a 304 selects the stored response for update. A strong entity tag
 * selects the response with that tag; else a weak one, compared weakly; else Last-Modified; a 304
 * with no validator selects a stored response that has none either. (The same rule as
 * http-cache-semantics' revalidatedPolicy(), which builds two policies to tell.)
 */
export function selectedBy (stored: ResponseHeaders, notModified: ResponseHeaders): boolean {
  const storedTag = fieldValue(stored.etag)
  const tag = fieldValue(notModified.etag)
  // A strong validator selects the stored responses with that same strong validator: not a weak one
  // of the same opaque tag, whose bytes it does not promise.
  if (tag !== undefined && !isWeak(tag)) return storedTag !== undefined && storedTag.trim() === tag.trim()
  if (tag !== undefined && storedTag !== undefined) return opaqueTag(storedTag) === opaqueTag(tag)
  const lastModified = fieldValue(stored['last-modified'])
  if (lastModified !== undefined) return lastModified === fieldValue(notModified['last-modified'])
  return storedTag === undefined && tag === undefined && notModified['last-modified'] === undefined
}

const isWeak = (tag: string): boolean => tag.trimStart().startsWith('W/')
const opaqueTag = (tag: string): string => tag.trim().replace(/^W\//, '')

/**
 * Request fields that are the connection's, not the request's (RFC 9110 §7.6.1), and those
 * Connection names. Proxy-Authorization stays: this cache is the client's, so the proxy the
 * caller's credentials are for (RFC 9110 §11.7.2) is the next hop of the revalidation too, and
 * would refuse it without them.
 */
const HOP_BY_HOP_REQUEST = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'])

function withoutHopByHop (headers: RequestHeaders): RequestHeaders {
  const named = connectionOptions(headers.connection)
  const kept: RequestHeaders = {}
  for (const name in headers) if (!HOP_BY_HOP_REQUEST.has(name) && !named.has(name)) setField(kept, name, headers[name]!)
  return kept
}
