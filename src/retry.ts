/**
 * When and how long to wait before trying the origin again: which requests may be retried
 * (idempotent methods; POST and PATCH only with an Idempotency-Key), which failures count,
 * exponential backoff with full jitter, Retry-After, and a total deadline. The mechanics of
 * re-sending (and resuming a body with Range + If-Match) are undici's RetryHandler's
 * (src/adapters/retry.ts); this module only decides.
 */
import { parseHttpDate } from './http-date.js'
import { isToken } from './field-limits.js'
import { assertKnownKeys, describe, isOptionsObject, MAX_TIMER_MS, optionalBoolean, optionalSize } from './validate.js'

export interface RetryOptions {
  /**
   * Retries after the first attempt; 0 turns retrying off.
   * @default 2
   */
  limit?: number
  /**
   * Methods retried. POST and PATCH are retried only when the request carries an
   * `Idempotency-Key` header, whatever this says.
   * @default ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']
   */
  methods?: readonly string[]
  /**
   * Response statuses that are retried.
   * @default [408, 429, 500, 502, 503, 504]
   */
  statusCodes?: readonly number[]
  /**
   * The first backoff step in ms; attempt n waits a random time in [0, baseDelay × 2^(n-1)]
   * ("full jitter"), capped by maxDelay.
   * @default 200
   */
  baseDelay?: number
  /**
   * Cap of one backoff wait, in ms.
   * @default 5000
   */
  maxDelay?: number
  /**
   * The longest Retry-After honoured, in ms; an origin asking for a longer wait gets its error
   * surfaced instead of a retry.
   * @default 30000
   */
  maxRetryAfter?: number
  /**
   * Total time for all attempts and waits, in ms: no retry starts after it, nor waits past it. An
   * attempt under way is bounded by its own timeouts (undici's headersTimeout and bodyTimeout).
   * @default 60000
   */
  deadline?: number
  /**
   * Add a fresh `Idempotency-Key` (a UUID as a Structured Field string, `"…"`, the same on every
   * attempt) to POST and PATCH requests that have none, so that they can be retried safely.
   * @see https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/
   * @default false
   */
  idempotencyKey?: boolean
}

export interface ResolvedRetry {
  readonly limit: number
  readonly methods: ReadonlySet<string>
  readonly statusCodes: ReadonlySet<number>
  readonly baseDelay: number
  readonly maxDelay: number
  readonly maxRetryAfter: number
  readonly deadline: number
  readonly idempotencyKey: boolean
}

/** Retried statuses, each for the reason the server gives. */
const RETRY_STATUS_CODES = [
  408, // Request Timeout
  429, // Too Many Requests
  500, // Internal Server Error
  502, // Bad Gateway
  503, // Service Unavailable
  504 // Gateway Timeout
] as const

/** Network failures where the request may not have reached the application: worth another try. */
const RETRY_ERROR_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ENOTFOUND', 'ENETDOWN', 'ENETUNREACH', 'EHOSTDOWN', 'EHOSTUNREACH',
  'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT'
])

export const RETRY_DEFAULTS = Object.freeze({
  limit: 2,
  methods: Object.freeze(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']),
  statusCodes: Object.freeze([...RETRY_STATUS_CODES]),
  baseDelay: 200,
  maxDelay: 5000,
  maxRetryAfter: 30_000,
  deadline: 60_000,
  idempotencyKey: false
})

const RETRY_KEYS: ReadonlySet<string> = new Set(Object.keys(RETRY_DEFAULTS))

/** Methods that may be retried once they carry an Idempotency-Key (the IETF draft's use). */
const KEYED_METHODS = new Set(['POST', 'PATCH'])

/**
 * `value` over `base`, the settings it refines key by key (the defaults, a cache's, a host's).
 * Retries are off at a limit of 0, and `false` is `{ limit: 0 }`: settings over it that name no
 * limit leave them off, and one that names a limit turns them on with the others kept.
 */
export function resolveRetry (value: unknown, path: string, base: ResolvedRetry): ResolvedRetry {
  if (value === false) return base.limit === 0 ? base : Object.freeze({ ...base, limit: 0 })
  if (value === undefined) return base
  if (!isOptionsObject(value)) {
    throw new TypeError(`expected ${path} to be an object or false, got ${describe(value)}`)
  }
  assertKnownKeys(value, RETRY_KEYS, path)
  const o = value as Record<string, unknown>
  const resolved: ResolvedRetry = {
    limit: optionalSize(o.limit, `${path}.limit`, 0) ?? base.limit,
    methods: o.methods === undefined ? base.methods : new Set(methods(o.methods, `${path}.methods`).map((m) => m.toUpperCase())),
    statusCodes: o.statusCodes === undefined ? base.statusCodes : new Set(statuses(o.statusCodes, `${path}.statusCodes`)),
    // A wait is a timer: these bound it.
    baseDelay: optionalSize(o.baseDelay, `${path}.baseDelay`, 0, MAX_TIMER_MS) ?? base.baseDelay,
    maxDelay: optionalSize(o.maxDelay, `${path}.maxDelay`, 0, MAX_TIMER_MS) ?? base.maxDelay,
    maxRetryAfter: optionalSize(o.maxRetryAfter, `${path}.maxRetryAfter`, 0, MAX_TIMER_MS) ?? base.maxRetryAfter,
    deadline: optionalSize(o.deadline, `${path}.deadline`, 0) ?? base.deadline,
    idempotencyKey: optionalBoolean(o.idempotencyKey, `${path}.idempotencyKey`) ?? base.idempotencyKey
  }
  return Object.freeze(resolved)
}

export function resolvedDefaults (): ResolvedRetry {
  const d = RETRY_DEFAULTS
  return Object.freeze({ ...d, methods: new Set(d.methods), statusCodes: new Set(d.statusCodes) })
}


/** Whether a method is retried only with an Idempotency-Key: only then do its fields matter here. */
export function retriedByKey (method: string): boolean {
  return KEYED_METHODS.has(method)
}

/** Whether a request may be sent again at all (RFC 9110 §9.2.2: idempotent methods). */
export function mayRetry (method: string, hasIdempotencyKey: boolean, retry: ResolvedRetry): boolean {
  return retriedByKey(method) ? hasIdempotencyKey : retry.methods.has(method)
}

export function needsIdempotencyKey (method: string, hasIdempotencyKey: boolean, retry: ResolvedRetry): boolean {
  return retry.idempotencyKey && retriedByKey(method) && !hasIdempotencyKey
}

export function isRetryableStatus (status: number, retry: ResolvedRetry): boolean {
  return retry.statusCodes.has(status)
}

export function isRetryableError (error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && RETRY_ERROR_CODES.has(code)
}

/**
 * The wait before retry number `attempt` (1 for the first retry), in ms, or `undefined` when the
 * origin's Retry-After asks for longer than `maxRetryAfter`. Retry-After is authoritative when
 * present and within bounds (RFC 9110 §10.2.3): the origin knows when it will be ready.
 */
export function retryDelay (attempt: number, retryAfter: string | undefined, retry: ResolvedRetry, now: number, random: () => number = Math.random): number | undefined {
  const asked = parseRetryAfter(retryAfter, now)
  if (asked !== undefined) return asked > retry.maxRetryAfter ? undefined : asked
  const ceiling = Math.min(retry.maxDelay, retry.baseDelay * 2 ** (attempt - 1))
  return Math.round(random() * ceiling)
}

/** Retry-After: delay-seconds or an HTTP-date (RFC 9110 §10.2.3); anything else is ignored. */
export function parseRetryAfter (value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000
  // An HTTP-date, strictly: Date.parse reads "0.5" or "-1" as dates in 2000 and 2001 (no wait at
  // all) and "2030" as that year (a wait past maxRetryAfter: no retry).
  const date = parseHttpDate(trimmed, now)
  return date === undefined ? undefined : Math.max(0, date - now)
}


/** Method names: tokens (RFC 9110 §9.1), one a string (`'GET,HEAD'` is no method). */
function methods (value: unknown, path: string): string[] {
  if (Array.isArray(value) && value.every((v) => typeof v === 'string' && isToken(v))) return value as string[]
  throw new TypeError(`expected ${path} to be an array of method names, one a string, got ${Array.isArray(value) ? JSON.stringify(value) : describe(value)}`)
}


/** Error statuses, 4xx and 5xx: a retry of anything else would send every success, redirect or 304 again. */
function statuses (value: unknown, path: string): number[] {
  if (Array.isArray(value) && value.every((v) => Number.isInteger(v) && (v as number) >= 400 && (v as number) <= 599)) return value as number[]
  throw new TypeError(`expected ${path} to be an array of status codes from 400 to 599, got ${Array.isArray(value) ? JSON.stringify(value) : describe(value)}`)
}
