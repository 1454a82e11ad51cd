/**
 * The handler for a request the cache sent on to the origin. It lets the engine decide on the
 * response (store, merge a 304, invalidate, stand in for a failure), records the body while it
 * streams to the caller, and plays a stored entry instead when the engine says so. The origin's
 * controller is passed through, so the caller's pause() and abort() reach the socket and nothing
 * buffers without bound.
 */
import type { Duplex } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { Cache, Forwarded, Outcome } from '../cache.js'
import type { CacheEntry, ResponseHeaders } from '../entry.js'
import type { CacheRequest } from '../key.js'
import { hasNoContent } from './content.js'
import { ReplayController } from './replay.js'

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController
type Headers = Record<string, string | string[] | undefined>

export class CacheHandler implements Handler {
  readonly #cache: Cache
  readonly #request: CacheRequest
  readonly #lookup: Forwarded
  readonly #handler: Handler
  #outcome: Outcome | undefined
  #requestStarted = false

  constructor (cache: Cache, request: CacheRequest, lookup: Forwarded, handler: Handler) {
    this.#cache = cache
    this.#request = request
    this.#lookup = lookup
    this.#handler = handler
  }

  onRequestStart (controller: Controller, context: unknown): void {
    this.#requestStarted = true
    this.#handler.onRequestStart?.(controller, context)
  }

  onRequestUpgrade (controller: Controller, statusCode: number, headers: Headers, socket: Duplex): void {
    this.#handler.onRequestUpgrade?.(controller, statusCode, headers, socket)
  }

  onResponseStart (controller: Controller, statusCode: number, headers: Headers, statusMessage?: string): void {
    let outcome: Outcome
    try {
      outcome = this.#cache.forwarded(this.#request, this.#lookup, statusCode, statusMessage ?? '', headers)
    } catch {
      // The cache fails open: a response it cannot make sense of goes to the caller untouched.
      outcome = { kind: 'pass', headers: headers as ResponseHeaders, recorder: undefined }
      this.#lookup.release?.(false)
    }
    this.#outcome = outcome
    if (outcome.kind === 'pass') this.#handler.onResponseStart?.(controller, statusCode, outcome.headers, statusMessage)
  }

  onResponseData (controller: Controller, chunk: Buffer): void {
    const outcome = this.#outcome
    if (outcome?.kind !== 'pass') return
    outcome.recorder?.write(chunk)
    this.#handler.onResponseData?.(controller, chunk)
  }

  onResponseEnd (controller: Controller, trailers: Headers): void {
    const outcome = this.#outcome
    if (outcome?.kind === 'replay') {
      this.#replay(outcome.entry, outcome.headers)
      return
    }
    outcome?.recorder?.end()
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
    // RFC 5861 §4: no answer at all (a network error, after retries) may be stood in for too; a
    // caller's own abort may not. (undici passes no controller when the connection never opened.)
    const standIn = outcome === undefined && controller?.aborted !== true ? this.#cache.failed(this.#request, this.#lookup) : undefined
    if (standIn?.kind === 'replay') {
      this.#replay(standIn.entry, standIn.headers)
      return
    }
    this.#handler.onResponseError?.(controller!, error)
  }

  #replay (entry: CacheEntry, headers: ResponseHeaders): void {
    const body = hasNoContent(this.#request.method, entry.status) ? undefined : entry.body
    new ReplayController(this.#handler, { status: entry.status, statusText: entry.statusText, headers, body }).start(this.#requestStarted)
  }
}
