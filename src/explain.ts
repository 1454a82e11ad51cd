/**
 * Why a response is, or is not, stored, and for how long it is fresh: the engine's decision for
 * one response, in words a person can check against RFC 9111 (the CLI's `--explain`). The decision
 * itself is the policy's (src/policy.ts); the reasons name the rule that decided it.
 */
import { connectionNamesFields, fieldValue, sizeBesidesBody, storableHeaders, type ResponseHeaders } from './entry.js'
import { FIELD_LIMITS, fieldsFitToStore } from './field-limits.js'
import { deltaSeconds, parseDirectives, requestDirectives, type RequestDirectives } from './directives.js'
import { CALLER_CONDITIONALS, hasAny, normalizeHeaders, normalizeUrl, storeKey, varyFields, varyValues, type CacheRequest } from './key.js'
import type { ResolvedOptions } from './options.js'
import { noStoreOverridden, type PolicyFactory } from './policy.js'
import { revalidationHeaders } from './revalidation.js'
import type { Policy } from './stored-policy.js'
import type { RequestSettings } from './settings.js'
import { responseTags } from './tags.js'
import { describe } from './validate.js'

/** Header fields as undici and fetch take them: a record (names in any case), a `Headers`, or name-value pairs. */
export type HeaderFields = Record<string, string | readonly string[] | undefined> | Iterable<readonly [string, string]>

/** The request `cache.explain()` decides for: GET unless `method` says otherwise, with no fields unless given. */
export interface ExplainedRequest {
  readonly method?: string
  readonly url: string | URL
  readonly headers?: HeaderFields
}

export interface Explanation {
  readonly storable: boolean
  /** Why not, one reason per rule that refused it; empty when storable. */
  readonly reasons: readonly string[]
  /** Seconds of freshness, and where they come from. */
  readonly lifetime: number
  readonly lifetimeFrom: string
  /** Seconds since the origin made it (RFC 9111 §4.2.3), and freshness left (negative once stale). */
  readonly age: number
  readonly ttl: number
  /** Seconds it may be served stale while revalidating, and when the origin fails. */
  readonly staleWhileRevalidate: number
  readonly staleIfError: number
  /** Milliseconds a store keeps it (freshness, then a day or the stale windows, for revalidation). */
  readonly retention: number
  /** What is sent to revalidate it: If-None-Match, If-Modified-Since. */
  readonly revalidation: Readonly<Record<string, string>>
}

/** What of the request decides too: its method, directives, and whether it is a conditional of the caller's own. */
interface RequestFacts {
  readonly method: string
  readonly directives: RequestDirectives
  readonly conditional: boolean
  /** It carries Authorization, Proxy-Authorization or Cookie, which alone keeps the response from being stored. */
  readonly credential: boolean
}

/**
 * `cache.explain()`: its arguments checked (a TypeError naming the one at fault), and read as the
 * engine reads a request and a response (fields in any shape, names in any case).
 */
export function explainGiven (policies: PolicyFactory, options: ResolvedOptions, request: ExplainedRequest, status: number, headers: HeaderFields): Explanation {
  if (request === null || typeof request !== 'object' || !(typeof request.url === 'string' || request.url instanceof URL)) {
    throw new TypeError(`expected the request to explain to be an object with a url, got ${describe(request)}`)
  }
  // Any whole number: an odd status a dispatcher below hands over is explained as the engine treats it, not refused.
  if (!Number.isInteger(status)) throw new TypeError(`expected the status to explain to be a whole number, got ${describe(status)}`)
  for (const [fields, what] of [[request.headers, 'the request\'s headers'], [headers, 'the headers to explain']] as const) {
    if (fields !== undefined && (fields === null || typeof fields !== 'object')) throw new TypeError(`expected ${what} to be an object of fields, a Headers or pairs, got ${describe(fields)}`)
  }
  const url = normalizeUrl(request.url)
  const asked: CacheRequest = { method: request.method ?? 'GET', url, headers: normalizeHeaders(request.headers) }
  const received = normalizeHeaders(headers)
  const settings = options.hosts.settingsFor(url)
  const stored = storableHeaders(received)
  // Dated as the engine dates a response without Date before it is stored (src/answers.ts).
  stored.date ??= new Date(options.now()).toUTCString()
  // With memory alone an entry must fit in maxSize, its fields and bookkeeping too (src/answers.ts).
  const memory = options.store !== undefined ? undefined : {
    maxSize: options.maxSize,
    besidesBody: sizeBesidesBody(storeKey(asked.method, url, asked.headers.host, settings), stored,
      varyValues(varyFields(fieldValue(stored.vary)), asked.headers), responseTags(stored, settings.tags))
  }
  return explain(policies, asked, hasAny(asked.headers, CALLER_CONDITIONALS), status, stored, settings, connectionNamesFields(received), memory)
}

/** With memory alone: its bound, and what the entry holds besides its body, which together leave the body's room. */
interface MemoryRoom {
  readonly maxSize: number
  readonly besidesBody: number
}

/** `connectionNamed`: the response's Connection field named end-to-end fields (src/entry.ts), removed from `headers`. */
function explain (policies: PolicyFactory, request: CacheRequest, conditional: boolean, status: number, headers: ResponseHeaders, settings: RequestSettings, connectionNamed: boolean, memory: MemoryRoom | undefined): Explanation {
  const { policy, storable } = policies.create(request, status, headers, settings)
  const sent = revalidationHeaders(request, headers)
  const revalidation = Object.fromEntries(VALIDATORS.filter((name) => sent[name] !== undefined).map((name) => [name, sent[name]!]))
  const { authorization, cookie, 'proxy-authorization': proxyAuthorization, ...others } = request.headers
  const credential = (authorization !== undefined || cookie !== undefined || proxyAuthorization !== undefined) && !storable &&
    policies.create({ ...request, headers: others }, status, headers, settings).storable
  const explained = { method: request.method, directives: requestDirectives(request.headers, settings.ignoreRequestNoCache), conditional, credential }
  return decide(policy, storable, status, headers, explained, settings, policy.retention(headers, settings), revalidation, connectionNamed, memory)
}

/** The request fields a revalidation adds (RFC 9111 §4.3.1). */
const VALIDATORS = ['if-none-match', 'if-modified-since']

function decide (policy: Policy, storable: boolean, status: number, headers: ResponseHeaders, request: RequestFacts, settings: RequestSettings, retention: number, revalidation: Record<string, string>, connectionNamed: boolean, memory: MemoryRoom | undefined): Explanation {
  const reasons: string[] = []
  const d = parseDirectives(fieldValue(headers['cache-control']))
  const { method } = request
  if (!settings.enabled) reasons.push('the cache is turned off for this host (enabled: false)')
  if (!settings.methods.has(method)) reasons.push(`${method} responses are not cached here (methods)`)
  if (request.conditional) reasons.push('the request carries conditional or range headers of its own: it passes through untouched')
  if (request.directives.noStore) reasons.push('the request says no-store (RFC 9111 §5.2.1.5)')
  if (d['no-store'] !== undefined && !noStoreOverridden(d, status)) reasons.push('the response says no-store (RFC 9111 §5.2.2.5)')
  if (settings.shared && d.private !== undefined) reasons.push('the response is private, and this cache is shared (§5.2.2.7)')
  if (settings.shared && headers['set-cookie'] !== undefined) reasons.push('the response sets a cookie, and this cache is shared: a cookie belongs to one user')
  if (varyFields(fieldValue(headers.vary))[0] === '*') reasons.push('the response varies on * (§4.1): no request would ever match it')
  // A HEAD response, a 204 and a 304 have no body, whatever their Content-Length says (RFC 9110
  // §9.3.2, §15.3.5, §15.4.5), as the engine reads them (src/cache.ts).
  const length = method === 'HEAD' || status === 204 || status === 304 ? 0 : Number(fieldValue(headers['content-length']) ?? 0)
  if (length > settings.maxEntrySize) reasons.push(`its body (${length} bytes) is over maxEntrySize (${settings.maxEntrySize})`)
  else if (memory !== undefined && length + memory.besidesBody > memory.maxSize) {
    reasons.push(`its entry (${length} bytes of body, ${memory.besidesBody} of fields and bookkeeping) is over maxSize (${memory.maxSize}), and memory is the only tier`)
  }
  if (!fieldsFitToStore(headers)) reasons.push(`its header fields are malformed (CR, LF, NUL or a character past Latin-1 in a value, a name that is no token) or past the limits (${FIELD_LIMITS.value} characters a value, ${FIELD_LIMITS.total} in all, ${FIELD_LIMITS.count} fields)`)
  if (connectionNamed) reasons.push('its Connection field names end-to-end fields: they were meant for this cache (RFC 9110 §7.6.1), yet would not be stored with it (RFC 9111 §3.1)')
  if (!storable && reasons.length === 0) {
    reasons.push(request.credential
      ? 'the request carries Authorization, Proxy-Authorization or Cookie, and the response is not public, has no s-maxage or must-revalidate (§3.5), nor, for Cookie or Proxy-Authorization, varies on it'
      : 'its status or directives make it unstorable (§3)')
  }
  if (retention === 0 && reasons.length === 0) reasons.push('it has no freshness, no stale window and no validator: it could never be used (§4.2, §4.3)')
  const lifetime = policy.lifetime()
  return {
    storable: reasons.length === 0,
    reasons,
    lifetime,
    lifetimeFrom: lifetimeFrom(policy, d, headers, settings),
    age: Math.floor(policy.age()),
    ttl: policy.ttl(),
    // Windows the cache would use: none where a directive forbids serving it stale (§4.2.4).
    staleWhileRevalidate: policy.staleForbidden() ? 0 : deltaSeconds(d['stale-while-revalidate']) ?? settings.staleWhileRevalidate,
    staleIfError: policy.staleForbidden() ? 0 : deltaSeconds(d['stale-if-error']) ?? settings.staleIfError,
    retention,
    revalidation
  }
}

function lifetimeFrom (policy: Policy, d: Readonly<Record<string, string | true>>, headers: ResponseHeaders, settings: RequestSettings): string {
  if (policy.lifetimeOverride !== undefined) return settings.forceTtl !== undefined ? 'forceTtl (overriding the origin)' : 'defaultTtl (the origin gives none)'
  if (settings.shared && d['s-maxage'] !== undefined) return 's-maxage (§5.2.2.10)'
  if (d['max-age'] !== undefined) return 'max-age (§5.2.2.1)'
  if (headers.expires !== undefined) return 'Expires minus Date (§5.3)'
  if (headers['last-modified'] !== undefined) return 'a heuristic: a tenth of the time since Last-Modified (§4.2.2)'
  return 'nothing: no max-age, s-maxage, Expires or Last-Modified'
}
