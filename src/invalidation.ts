/**
 * RFC 9111 §4.4: which stored URLs an answer to an unsafe request makes invalid. The target URI,
 * and the Location and Content-Location URIs when they share its origin: a response must not be
 * able to purge another origin's entries.
 */
import { normalizeUrl } from './key.js'

/** Request methods that never invalidate (RFC 9110 §9.2.1). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE'])

export function invalidatedBy (request: { method: string, url: string }, status: number, headers: Record<string, string | string[] | undefined>): string[] {
  // Only a non-error answer (2xx, 3xx) means the request changed something.
  if (SAFE_METHODS.has(request.method) || status < 200 || status >= 400) return []
  const origin = new URL(request.url).origin
  const targets = [request.url]
  for (const name of ['location', 'content-location']) {
    const raw = headers[name]
    const value = Array.isArray(raw) ? raw[0] : raw
    if (value === undefined) continue
    try {
      const target = new URL(value, request.url)
      if (target.origin === origin) targets.push(normalizeUrl(target))
    } catch {
      // An unparsable Location names nothing to invalidate.
    }
  }
  return targets
}
