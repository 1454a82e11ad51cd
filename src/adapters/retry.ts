/**
 * Retries through undici's own RetryHandler, which re-dispatches and, when a body broke off
 * half-way, resumes it with Range + If-Match. What it lacks we add here, with src/retry.ts deciding:
 * full jitter, a total deadline, Retry-After with a ceiling, 408, Idempotency-Key for POST/PATCH,
 * an event per attempt, no resume without a strong validator, and an abort that also cancels a
 * backoff wait (undici's sleeps on, then sends the retry anyway).
 */
import { randomUUID } from 'node:crypto'
import type { Duplex } from 'node:stream'
import { errors, RetryHandler, type Dispatcher } from 'undici'
import { abortReason } from './request-aborted.js'
import type { Cache } from '../cache.js'
import { normalizeHeaders } from '../key.js'
import { endAnswer } from './answer-end.js'
import { extend } from '../objects.js'
import { isRetryableError, isRetryableStatus, mayRetry, needsIdempotencyKey, retriedByKey, retryDelay, type ResolvedRetry } from '../retry.js'

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController
type Dispatch = Dispatcher.DispatchOptions
type Headers = Record<string, string | string[] | undefined>

/**
 * RetryHandler's lists of what to retry, read only by its default retry function, which decide()
 * replaces: given once here, so that it does not build its default lists again for every request.
 */
const DECIDED_BY_GUARD = Object.freeze({ methods: [], statusCodes: [], errorCodes: [] })

/** Dispatches with retries when `retry` allows them for this request, else as it is. */
export function dispatchWithRetry (
  dispatch: (opts: Dispatch, handler: Handler) => boolean,
  opts: Dispatch,
  handler: Handler,
  retry: ResolvedRetry,
  cache: Cache
): boolean {
  if (retry.limit === 0) return dispatch(opts, handler)
  // As sent: methods are case-sensitive (RFC 9110 §9.1), and a lower-case `get` is no GET, to retry or resume.
  const method = opts.method
  // The fields are read only for a method an Idempotency-Key makes retryable: not for every GET.
  let keyed = false
  if (retriedByKey(method)) {
    const headers = normalizeHeaders(opts.headers)
    // An empty key is none: a server that reads it so would get the same POST again and again.
    keyed = (headers['idempotency-key']?.trim() ?? '') !== ''
    if (needsIdempotencyKey(method, keyed, retry)) {
      // One key for every attempt: that is what makes the retries safe. Quoted: the IETF draft's field
      // is a Structured Field string (RFC 8941 §3.3.3), and a bare UUID, which may start with a digit,
      // is not even a token, so a server that parses the field strictly refuses it.
      // A spread, not extend(): these are fields, and one may be named __proto__ (src/objects.ts).
      opts = extend(opts, { headers: { ...headers, 'idempotency-key': `"${randomUUID()}"` } })
      keyed = true
    }
  }
  if (!mayRetry(method, keyed, retry)) return dispatch(opts, handler)
  const guard = new RetryGuard(dispatch, handler, retry, cache, `${String(opts.origin)}${opts.path}`, method)
  const retrying = (): RetryHandler => new RetryHandler(
    // RetryHandler copies the options with a `body` set: options without one would come out with a
    // hidden class of their own on Node 20 (src/objects.ts), which every read of them below misses.
    // Its resume spreads the fields into a record with its own `range` and `if-match`: given as a
    // list or an iterator they would go as numbered fields, and a caller's `Range` twice. A record
    // of lower-case names, the fields as sent, is what it can spread.
    extend(opts, {
      headers: normalizeHeaders(opts.headers),
      body: opts.body,
      retryOptions: { retry: guard.decide, throwOnError: false, maxRetries: retry.limit, ...DECIDED_BY_GUARD }
    }),
    { dispatch: guard.dispatchLater, handler: guard }
  )
  // A request without a body is sent as it is, and RetryHandler is made only once an answer or an
  // error needs it: a 304 (every revalidation that finds the entry still good) or a 404 never does.
  if (opts.body == null) return dispatch(opts, new FinalAnswers(guard, retry, retrying))
  // One with a body is sent as RetryHandler wraps it, so that it knows once a one-shot body (a
  // stream: every body fetch sends) is spent, and never re-sends it empty.
  const made = retrying()
  return dispatch((made as unknown as { opts: Dispatch }).opts, new FinalAnswers(guard, retry, made))
}

/**
 * Sits between the connection and undici's RetryHandler for one attempt. An answer whose status is
 * never retried (a 304, a 404: any 3xx or 4xx but 408 and 429) goes straight to the guard:
 * RetryHandler would build an Error, stack trace and all, and pause the socket to ask decide()
 * about it, only to be told no, which for every 304 of a revalidation cost more than the rest of
 * the cache's work. A 2xx goes through RetryHandler, which must see its body to resume it should
 * it break off; a retryable status, every error, and every answer to a resume go through it too.
 * A first attempt may come with no RetryHandler yet, only the means to make one: it is made when an
 * answer or error needs it, and told then of the attempt's start, which the guard heard of first.
 */
class FinalAnswers implements Handler {
  #retrying: Handler | (() => Handler)
  readonly #guard: Handler
  readonly #retry: ResolvedRetry
  #target: Handler | undefined
  #started: { readonly controller: Controller, readonly context: unknown } | undefined

  constructor (guard: Handler, retry: ResolvedRetry, retrying: Handler | (() => Handler)) {
    this.#guard = guard
    this.#retry = retry
    this.#retrying = retrying
  }

  /** RetryHandler, made now if there was none. */
  #retryHandler (): Handler {
    if (typeof this.#retrying === 'function') {
      this.#retrying = this.#retrying()
      // It forwards the start to the guard again, which takes it once and steers through it from then on.
      if (this.#started !== undefined) this.#retrying.onRequestStart?.(this.#started.controller, this.#started.context)
    }
    return this.#retrying
  }

  onRequestStart (controller: Controller, context: unknown): void {
    if (typeof this.#retrying !== 'function') {
      this.#retrying.onRequestStart?.(controller, context)
      return
    }
    this.#started = { controller, context }
    this.#guard.onRequestStart?.(controller, context)
  }

  onRequestUpgrade (controller: Controller, statusCode: number, headers: Headers, socket: Duplex): void {
    this.#retryHandler().onRequestUpgrade?.(controller, statusCode, headers, socket)
  }

  onResponseStart (controller: Controller, statusCode: number, headers: Headers, statusMessage?: string): void {
    this.#target = statusCode >= 300 && !isRetryableStatus(statusCode, this.#retry) ? this.#guard : this.#retryHandler()
    this.#target.onResponseStart?.(controller, statusCode, headers, statusMessage)
  }

  onResponseData (controller: Controller, chunk: Buffer): void {
    (this.#target ?? this.#retryHandler()).onResponseData?.(controller, chunk)
  }

  onResponseEnd (controller: Controller, trailers: Headers): void {
    (this.#target ?? this.#retryHandler()).onResponseEnd?.(controller, trailers)
  }

  onResponseError (controller: Controller, error: Error): void {
    (this.#target ?? this.#retryHandler()).onResponseError?.(controller, error)
  }
}

/**
 * A handler told of each attempt's start, which the caller's handler sees only once (the first):
 * the context of each, where an interceptor below says what that attempt went through (undici's
 * redirect interceptor, the hops it followed).
 */
export interface AttemptAware {
  onAttemptStart: (context: unknown) => void
}

function isAttemptAware (handler: Handler): handler is Handler & AttemptAware {
  return typeof (handler as Partial<AttemptAware>).onAttemptStart === 'function'
}

/**
 * Sits below the RetryHandler: decides each retry, waits out the backoff before the retry is
 * dispatched, watches what reached the caller, and hands the caller a controller whose abort()
 * also ends a backoff wait.
 */
class RetryGuard implements Handler, Controller {
  readonly #dispatch: (opts: Dispatch, handler: Handler) => boolean
  readonly #handler: Handler
  readonly #retry: ResolvedRetry
  readonly #cache: Cache
  readonly #url: string
  readonly #method: string
  readonly #started: number
  #upstream: Controller | undefined
  /** The caller has had onResponseStart. */
  #answered = false
  #bodyStarted = false
  /**
   * The answer the caller has is a 2xx with a strong validator and a Content-Length: only such a
   * one may be resumed. RetryHandler asks If-Match only of a 2xx's ETag, and resumes any other
   * answer it passed on (a 503 past the deadline, say) with a bare Range, which could splice two
   * versions.
   */
  #resumable = false
  /**
   * The whole body's length, of an answer that may be resumed. RetryHandler checks a resume's
   * Content-Range against it, but not the bytes the resume brings: a 206 may send less than its
   * range (RFC 9110 §15.3.7 allows a part), or break off between chunks and end cleanly. Without a
   * length it checks nothing of the range's end, and a short body would pass as whole.
   */
  #length: number | undefined
  /** Body bytes the caller has had, of every attempt. */
  #received = 0
  /** The attempt a retry was granted for: RetryHandler may ask again for it (see decide()). */
  #granted = 0
  #reason: Error | null = null
  /** The caller has had its last callback. */
  #finished = false
  /** The caller has had onRequestStart, which it must get exactly once however many attempts. */
  #requestStarted = false
  /** The backoff the next dispatch waits for, set by decide(). */
  #delay = 0
  #waiting: NodeJS.Timeout | undefined
  /** A retry is dispatched (or waiting to be) but has not reached a connection: no live attempt. */
  #between = false

  constructor (dispatch: (opts: Dispatch, handler: Handler) => boolean, handler: Handler, retry: ResolvedRetry, cache: Cache, url: string, method: string) {
    this.#dispatch = dispatch
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
    this.#reason = abortReason(reason)
    if (this.#waiting !== undefined || this.#between) {
      // Between attempts no connection is open to report the abort: it ends here.
      clearTimeout(this.#waiting)
      this.#waiting = undefined
      this.#finish(this.#reason)
      return
    }
    this.#upstream?.abort(this.#reason)
  }

  /**
   * RetryHandler re-dispatches through this once the failed attempt is over; the wait happens
   * here, with no connection held. (Waiting inside decide() instead loses a HEAD's failure: its
   * end arrives before the decision does.)
   */
  readonly dispatchLater = (opts: Dispatch, retryHandler: Handler): boolean => {
    this.#between = true
    // A resume is pinned by If-Match to the strong ETag of the answer it continues. A caller's
    // If-Range, which that answer did not match if it came whole, would have the origin ignore the
    // resume's Range as well (RFC 9110 §13.1.5). The fields are a record here (dispatchWithRetry).
    const fields = opts.headers as Record<string, string> | undefined
    if (this.#answered && fields?.['if-range'] !== undefined) {
      const { 'if-range': _ignored, ...headers } = fields
      opts = extend(opts, { headers })
    }
    // A resume of a body that broke off is RetryHandler's to check, whatever its status.
    const retrying = this.#answered ? retryHandler : new FinalAnswers(this, this.#retry, retryHandler)
    // RetryHandler hides a resumed attempt's onRequestStart from us: this gate sees it.
    const handler: Handler = {
      onRequestStart: (controller, context) => {
        this.#between = false
        if (this.#reason !== null) controller.abort(this.#reason)
        else retrying.onRequestStart?.(controller, context)
      },
      onRequestUpgrade: (...args) => retrying.onRequestUpgrade?.(...args),
      onResponseStart: (...args) => retrying.onResponseStart?.(...args),
      onResponseData: (...args) => retrying.onResponseData?.(...args),
      onResponseEnd: (...args) => retrying.onResponseEnd?.(...args),
      onResponseError: (controller, error) => {
        this.#between = false
        retrying.onResponseError?.(controller, error)
      }
    }
    this.#waiting = setTimeout(() => {
      this.#waiting = undefined
      if (this.#reason !== null) {
        this.#finish(this.#reason)
        return
      }
      try {
        this.#dispatch(opts, handler)
      } catch (error) {
        this.#finish(error as Error)
      }
    }, this.#delay)
    return true
  }

  /** undici's RetryHandler asks this before each retry; `proceed(error)` declines, `proceed(null)` retries. */
  readonly decide = (error: Error, { state }: { state: { counter: number } }, proceed: (error?: Error | null) => void): void => {
    const attempt = state.counter
    const { statusCode, headers } = error as Error & { statusCode?: number, headers?: Headers }
    const failed = statusCode === undefined ? isRetryableError(error) : isRetryableStatus(statusCode, this.#retry)
    // Once the caller has the answer's start, only an exact resume is safe: past its first body
    // byte, with a strong validator to ask If-Match. Before that byte there is no retry at all:
    // undici's RetryHandler would send the request again without a Range and then refuse the
    // complete answer it gets for lacking a Content-Range, after a second origin request for nothing.
    if (this.#reason !== null || !failed || attempt > this.#retry.limit || (this.#answered && !(this.#bodyStarted && this.#resumable))) {
      proceed(error)
      return
    }
    // A retryable status whose body then breaks off is asked about twice, at its start and at its
    // error, for one retry: granted once, counted once, waited for once.
    if (attempt === this.#granted) {
      proceed(null)
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
    this.#delay = delay
    this.#granted = attempt
    // A caller whose first attempt never connected has no controller yet to abort the wait with.
    this.#start({})
    // The caller may have aborted inside that onRequestStart, with no attempt or wait to end yet.
    if (this.#reason !== null) {
      proceed(error)
      return
    }
    proceed(null)
  }

  #start (context: unknown): void {
    if (this.#requestStarted) return
    this.#requestStarted = true
    this.#handler.onRequestStart?.(this, context)
  }

  onRequestStart (controller: Controller, context: unknown): void {
    this.#upstream = controller
    if (this.#reason !== null) controller.abort(this.#reason)
    // A later start is another attempt's (ours: RetryHandler passes each on until an answer has
    // started, after which its hops no longer matter; or undici's retry interceptor's below), or a
    // redirect hop's within one attempt, which carries that attempt's context again: either way the
    // handler is told of it.
    else if (this.#requestStarted && isAttemptAware(this.#handler)) this.#handler.onAttemptStart(context)
    else this.#start(context)
  }

  onRequestUpgrade (controller: Controller, statusCode: number, headers: Headers, socket: Duplex): void {
    this.#handler.onRequestUpgrade?.(this, statusCode, headers, socket)
  }

  onResponseStart (controller: Controller, statusCode: number, headers: Headers, statusMessage?: string): void {
    this.#upstream = controller
    if (this.#reason !== null || this.#finished) return
    this.#answered = true
    const { etag, 'content-length': length } = headers
    // Range is defined for GET alone (RFC 9110 §14.2): a PUT, DELETE or keyed POST "resumed" with one
    // would be run again by the origin, which ignores the Range, to no avail.
    this.#resumable = this.#method === 'GET' && statusCode >= 200 && statusCode < 300 && typeof etag === 'string' && !etag.startsWith('W/') &&
      typeof length === 'string' && /^\d+$/.test(length)
    this.#length = this.#resumable ? Number(length) : undefined
    this.#handler.onResponseStart?.(this, statusCode, headers, statusMessage)
  }

  onResponseData (_controller: Controller, chunk: Buffer): void {
    if (this.#reason !== null || this.#finished) return
    this.#bodyStarted = true
    this.#received += chunk.byteLength
    this.#handler.onResponseData?.(this, chunk)
  }

  onResponseEnd (_controller: Controller, trailers: Headers): void {
    if (this.#finished) return
    if (this.#reason !== null) {
      this.#finish(this.#reason)
      return
    }
    // Short or long of the whole after a resume: never passed, or stored, as the body (RFC 9111 §3.3).
    if (this.#length !== undefined && this.#received !== this.#length) {
      this.#finish(new errors.ResponseContentLengthMismatchError())
      return
    }
    this.#finished = true
    endAnswer(this.#handler, this, trailers)
  }

  onResponseError (_controller: Controller | undefined, error: Error): void {
    this.#finish(this.#reason ?? error)
  }

  #finish (error: Error): void {
    if (this.#finished) return
    this.#finished = true
    this.#handler.onResponseError?.(this, error)
  }
}
