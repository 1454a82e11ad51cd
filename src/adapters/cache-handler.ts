/**
 * The handler for a request the cache sent on to the origin. It lets the engine decide on the
 * response (store, merge a 304, invalidate), records the body while it streams to the caller, and
 * on a 304 to our revalidation plays the freshened entry instead. The origin's controller is passed
 * through, so the caller's pause() and abort() reach the socket and nothing buffers without bound.
 */
import type { Duplex } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { Cache, Forwarded, Outcome } from '../cache.js'
import type { CacheRequest } from '../key.js'
import { hasNoContent } from './content.js'
import { ReplayController } from './replay.js'

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController

export class CacheHandler implements Handler {
  readonly #cache: Cache
  readonly #request: CacheRequest
  readonly #lookup: Forwarded
  readonly #handler: Handler
  #outcome: Outcome | undefined

  constructor (cache: Cache, request: CacheRequest, lookup: Forwarded, handler: Handler) {
    this.#cache = cache
    this.#request = request
    this.#lookup = lookup
    this.#handler = handler
  }

  onRequestStart (controller: Controller, context: unknown): void {
    this.#handler.onRequestStart?.(controller, context)
  }

  onRequestUpgrade (controller: Controller, statusCode: number, headers: Record<string, string | string[] | undefined>, socket: Duplex): void {
    this.#handler.onRequestUpgrade?.(controller, statusCode, headers, socket)
  }

  onResponseStart (controller: Controller, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    let outcome: Outcome
    try {
      outcome = this.#cache.forwarded(this.#request, this.#lookup, statusCode, statusMessage ?? '', headers)
    } catch {
      // The cache fails open: a response it cannot make sense of goes to the caller untouched.
      outcome = { kind: 'pass', headers: headers as Record<string, string | string[]>, recorder: undefined }
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

  onResponseEnd (controller: Controller, trailers: Record<string, string | string[] | undefined>): void {
    const outcome = this.#outcome
    if (outcome?.kind === 'replay') {
      const { entry, headers } = outcome
      const body = hasNoContent(this.#request.method, entry.status) ? undefined : entry.body
      new ReplayController(this.#handler, { status: entry.status, statusText: entry.statusText, headers, body }).start(true)
      return
    }
    outcome?.recorder?.end()
    this.#handler.onResponseEnd?.(controller, trailers)
  }

  onResponseError (controller: Controller, error: Error): void {
    if (this.#outcome?.kind === 'pass') this.#outcome.recorder?.abort()
    this.#handler.onResponseError?.(controller, error)
  }
}
