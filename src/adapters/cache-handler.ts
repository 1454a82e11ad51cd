/**
 * The handler for a request the cache sent on to the origin. It lets the engine decide on the
 * response (store, merge a 304, invalidate, stand in for a failure), records the body while it
 * streams to the caller, and plays a stored entry instead when the engine says so. The origin's
 * controller is passed through, so the caller's pause() and abort() reach the socket and nothing
 * buffers without bound.
 *
 * One answer does not stream: a revalidation whose failure a stale entry would stand in for
 * (stale-if-error) is held back until its body is complete, up to `maxEntrySize` bytes, so that a
 * body that breaks off half way is still stood in for rather than failing a caller who already
 * has its headers. Past that bound it streams, and a later failure reaches the caller.
 */
import type { Duplex } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { Cache, Forwarded, Outcome } from '../cache.js'
import type { CacheEntry, ResponseHeaders } from '../entry.js'
import type { CacheRequest } from '../key.js'
import { hasNoContent } from './content.js'
import { ReplayController } from './replay.js'
import type { AttemptAware } from './retry.js'
import { isSharedCount, type SharedCount } from '../status.js'

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController
type Headers = Record<string, string | string[] | undefined>

export class CacheHandler implements Handler, AttemptAware {
  readonly #cache: Cache
  readonly #request: CacheRequest
  readonly #lookup: Forwarded
  readonly #handler: Handler
  /** The exchange other callers share, when this handler answers one (src/adapters/broadcast.ts). */
  readonly #shared: SharedCount | undefined
  #outcome: Outcome | undefined
  #requestStarted = false
  /** The answer held back while the stored entry could still stand in for its failure. */
  #held: Held | undefined
  /**
   * The URLs undici's redirect interceptor below the cache has requested so far for this request,
   * one a hop, when there is one (its context's `history`, which it goes on adding to).
   */
  #hops: readonly unknown[] | undefined

  constructor (cache: Cache, request: CacheRequest, lookup: Forwarded, handler: Handler) {
    this.#cache = cache
    this.#request = request
    this.#lookup = lookup
    this.#handler = handler
    this.#shared = isSharedCount(handler) ? handler : undefined
  }

  onRequestStart (controller: Controller, context: unknown): void {
    this.#requestStarted = true
    this.onAttemptStart(context)
    this.#handler.onRequestStart?.(controller, context)
  }

  /** Each attempt's start, the first and each retry's (src/adapters/retry.ts): its own redirect hops. */
  onAttemptStart (context: unknown): void {
    const history = (context as { history?: unknown } | null | undefined)?.history
    this.#hops = Array.isArray(history) ? history : undefined
  }

  onRequestUpgrade (controller: Controller, statusCode: number, headers: Headers, socket: Duplex): void {
    this.#handler.onRequestUpgrade?.(controller, statusCode, headers, socket)
  }

  onResponseStart (controller: Controller, statusCode: number, headers: Headers, statusMessage?: string): void {
    let outcome: Outcome
    // An answer a redirect below led to is another URL's (RFC 9111 §2: stored under the request's
    // target): it goes on, never stored under this one. It may be another user's (a request with
    // credentials redirected from /me to /profile/alice), another origin's, or reached through a
    // hop that said no-store; none of which the final answer's own fields would show.
    const redirected = (this.#hops?.length ?? 0) > 1
    try {
      outcome = this.#cache.answers.forwarded(this.#request, this.#lookup, statusCode, statusMessage ?? '', headers, this.#shared, redirected)
    } catch {
      // The cache fails open: a response it cannot make sense of goes to the caller untouched.
      outcome = { kind: 'pass', headers: headers as ResponseHeaders, recorder: undefined }
      this.#lookup.release?.(false)
    }
    this.#outcome = outcome
    if (outcome.kind !== 'pass') return
    // RFC 5861 §4: a failure is an error until the body is complete, and stale-if-error covers it
    // (not another URL's: a redirect's).
    if (!redirected && this.#cache.answers.mayStandIn(this.#lookup)) {
      this.#held = { status: statusCode, statusText: statusMessage ?? '', headers: outcome.headers, chunks: [], bytes: 0 }
      return
    }
    this.#handler.onResponseStart?.(controller, statusCode, outcome.headers, statusMessage)
  }

  onResponseData (controller: Controller, chunk: Buffer): void {
    const outcome = this.#outcome
    if (outcome?.kind !== 'pass') return
    outcome.recorder?.write(chunk)
    const held = this.#held
    if (held !== undefined) {
      held.bytes += chunk.byteLength
      if (held.bytes <= this.#lookup.settings.maxEntrySize) {
        held.chunks.push(chunk)
        return
      }
      // Too large to hold: the caller gets what was held, then the rest as it comes.
      this.#held = undefined
      this.#cache.answers.missed(this.#request, this.#lookup, this.#shared)
      this.#handler.onResponseStart?.(controller, held.status, held.headers, held.statusText)
      for (const early of held.chunks) {
        if (controller.aborted) return
        this.#handler.onResponseData?.(controller, early)
      }
      if (controller.aborted) return
    }
    this.#handler.onResponseData?.(controller, chunk)
  }

  onResponseEnd (controller: Controller, trailers: Headers): void {
    const outcome = this.#outcome
    if (outcome?.kind === 'replay') {
      this.#replay(outcome.entry, outcome.headers)
      return
    }
    outcome?.recorder?.end()
    const held = this.#held
    if (held !== undefined) {
      // Complete: played to the caller as a stored response is, honouring its pause().
      this.#held = undefined
      this.#cache.answers.missed(this.#request, this.#lookup, this.#shared)
      const body = hasNoContent(this.#request.method, held.status) ? undefined : Buffer.concat(held.chunks, held.bytes)
      new ReplayController(this.#handler, { status: held.status, statusText: held.statusText, headers: held.headers, body, trailers }).start(this.#requestStarted)
      return
    }
    this.#handler.onResponseEnd?.(controller, trailers)
  }

  onResponseError (controller: Controller | undefined, error: Error): void {
    // Nothing will be stored for other processes to wait on (an abort, a reset, a failed connect).
    this.#lookup.release?.(false)
    const outcome = this.#outcome
    // The stored entry was to be served anyway (a 304, a stand-in for a 5xx): the answer's own
    // failure does not matter to it.
    if (outcome?.kind === 'replay' && controller?.aborted !== true) {
      this.#replay(outcome.entry, outcome.headers)
      return
    }
    if (outcome?.kind === 'pass') outcome.recorder?.abort()
    const held = this.#held !== undefined
    this.#held = undefined
    // RFC 5861 §4: no answer at all (a network error, after retries), or one that broke off before
    // the caller saw any of it, may be stood in for too; a caller's own abort may not. (undici
    // passes no controller when the connection never opened.)
    const standIn = (outcome === undefined || held) && controller?.aborted !== true ? this.#cache.answers.failed(this.#request, this.#lookup, undefined, this.#shared) : undefined
    if (standIn?.kind === 'replay') {
      this.#replay(standIn.entry, standIn.headers)
      return
    }
    // No answer counted its lookup (forwarded() never ran, or held the count back): it counts now.
    if (outcome === undefined || held) this.#cache.answers.noAnswer(this.#request, this.#lookup, this.#shared)
    this.#handler.onResponseError?.(controller!, error)
  }

  #replay (entry: CacheEntry, headers: ResponseHeaders): void {
    const body = hasNoContent(this.#request.method, entry.status) ? undefined : entry.body
    new ReplayController(this.#handler, { status: entry.status, statusText: entry.statusText, headers, body }).start(this.#requestStarted)
  }
}

/** An answer held back until its body is complete. */
interface Held {
  readonly status: number
  readonly statusText: string
  readonly headers: ResponseHeaders
  readonly chunks: Buffer[]
  bytes: number
}
