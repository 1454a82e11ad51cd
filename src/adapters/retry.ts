/**
 * Retries through undici's own RetryHandler, which re-dispatches and, when a body broke off
 * half-way, resumes it with Range + If-Match. What it lacks we add here, with src/retry.ts deciding:
 * full jitter, a total deadline, Retry-After with a ceiling, 408, Idempotency-Key for POST/PATCH,
 * an event per attempt, no resume without a strong validator, and an abort that also cancels a
 * backoff wait (undici's sleeps on, then sends the retry anyway).
 */
import { randomUUID } from 'node:crypto'
import type { Duplex } from 'node:stream'
import { RetryHandler, type Dispatcher } from 'undici'
import type { Cache } from '../cache.js'
import { normalizeHeaders } from '../key.js'
import { isRetryableError, isRetryableStatus, mayRetry, needsIdempotencyKey, retryDelay, type ResolvedRetry } from '../retry.js'

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController
type Dispatch = Dispatcher.DispatchOptions
type Headers = Record<string, string | string[] | undefined>

/** Dispatches with retries when `retry` allows them for this request, else as it is. */
export function dispatchWithRetry (
  dispatch: (opts: Dispatch, handler: Handler) => boolean,
  opts: Dispatch,
  handler: Handler,
  retry: ResolvedRetry | undefined,
  cache: Cache
): boolean {
  if (retry === undefined) return dispatch(opts, handler)
  const method = opts.method.toUpperCase()
  let headers = normalizeHeaders(opts.headers)
  const keyed = headers['idempotency-key'] !== undefined
  if (needsIdempotencyKey(method, keyed, retry)) {
    // One key for every attempt: that is what makes the retries safe (IETF Idempotency-Key draft).
    headers = { ...headers, 'idempotency-key': randomUUID() }
    opts = { ...opts, headers }
  }
  if (!mayRetry(method, keyed || headers['idempotency-key'] !== undefined, retry)) return dispatch(opts, handler)
  const guard = new RetryGuard(handler, retry, cache, `${String(opts.origin)}${opts.path}`, method)
  const retrying = new RetryHandler(
    { ...opts, retryOptions: { retry: guard.decide, throwOnError: false, maxRetries: retry.limit } },
    { dispatch, handler: guard }
  )
  return dispatch(opts, retrying)
}

/**
 * Sits below the RetryHandler: decides each retry, watches what reached the caller, and hands the
 * caller a controller whose abort() also ends a backoff wait.
 */
class RetryGuard implements Handler, Controller {
  readonly #handler: Handler
  readonly #retry: ResolvedRetry
  readonly #cache: Cache
  readonly #url: string
  readonly #method: string
  readonly #started: number
  #upstream: Controller | undefined
  #bodyStarted = false
  #strongEtag = false
  #reason: Error | null = null
  /** The caller has had its last callback. */
  #finished = false
  #waiting: { timer: NodeJS.Timeout, proceed: (error?: Error | null) => void } | undefined

  constructor (handler: Handler, retry: ResolvedRetry, cache: Cache, url: string, method: string) {
    this.#handler = handler
    this.#retry = retry
    this.#cache = cache
    this.#url = url
    this.#method = method
    this.#started = cache.options.now()
  }

  get aborted (): boolean { return this.#reason !== null || (this.#upstream?.aborted ?? false) }
  get paused (): boolean { return this.#upstream?.paused ?? false }
  get reason (): Error | null { return this.#reason ?? this.#upstream?.reason ?? null }
  pause (): void { this.#upstream?.pause() }
  resume (): void { this.#upstream?.resume() }

  abort (reason?: Error): void {
    if (this.#reason !== null || this.#finished) return
    this.#reason = reason ?? new Error('aborted')
    const waiting = this.#waiting
    this.#waiting = undefined
    if (waiting !== undefined) clearTimeout(waiting.timer)
    // A live connection (a failed response held while we wait) reports the abort itself; after a
    // network error there is none, and the declined retry does.
    this.#upstream?.abort(this.#reason)
    if (waiting !== undefined && !this.#finished) waiting.proceed(this.#reason)
  }

  /** undici's RetryHandler asks this before each retry; `proceed(error)` declines. */
  readonly decide = (error: Error, { state }: { state: { counter: number } }, proceed: (error?: Error | null) => void): void => {
    const attempt = state.counter
    const { statusCode, headers } = error as Error & { statusCode?: number, headers?: Headers }
    const failed = statusCode === undefined ? isRetryableError(error) : isRetryableStatus(statusCode, this.#retry)
    // Past the first body byte, only an exact resume is safe: a strong validator to ask If-Match.
    if (this.#reason !== null || !failed || attempt > this.#retry.limit || (this.#bodyStarted && !this.#strongEtag)) {
      proceed(error)
      return
    }
    const now = this.#cache.options.now()
    const retryAfter = headers?.['retry-after']
    const delay = retryDelay(attempt, typeof retryAfter === 'string' ? retryAfter : undefined, this.#retry, now)
    if (delay === undefined || now - this.#started + delay > this.#retry.deadline) {
      proceed(error)
      return
    }
    this.#cache.report('retry', {
      url: this.#url, method: this.#method, attempt, delay, status: statusCode, reason: (error as { code?: string }).code
    })
    const timer = setTimeout(() => {
      this.#waiting = undefined
      proceed(null)
    }, delay)
    this.#waiting = { timer, proceed }
  }

  onRequestStart (controller: Controller, context: unknown): void {
    this.#upstream = controller
    this.#handler.onRequestStart?.(this, context)
  }

  onRequestUpgrade (controller: Controller, statusCode: number, headers: Headers, socket: Duplex): void {
    this.#handler.onRequestUpgrade?.(this, statusCode, headers, socket)
  }

  onResponseStart (controller: Controller, statusCode: number, headers: Headers, statusMessage?: string): void {
    this.#upstream = controller
    if (this.#reason !== null) return
    const etag = headers.etag
    this.#strongEtag = typeof etag === 'string' && !etag.startsWith('W/')
    this.#handler.onResponseStart?.(this, statusCode, headers, statusMessage)
  }

  onResponseData (_controller: Controller, chunk: Buffer): void {
    if (this.#reason !== null) return
    this.#bodyStarted = true
    this.#handler.onResponseData?.(this, chunk)
  }

  onResponseEnd (controller: Controller, trailers: Headers): void {
    if (this.#reason !== null) {
      this.onResponseError(controller, this.#reason)
      return
    }
    this.#finished = true
    this.#handler.onResponseEnd?.(this, trailers)
  }

  onResponseError (_controller: Controller, error: Error): void {
    if (this.#finished) return
    this.#finished = true
    this.#handler.onResponseError?.(this, this.#reason ?? error)
  }
}
