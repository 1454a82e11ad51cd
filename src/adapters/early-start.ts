/**
 * A caller's handler started before its request is. While the interceptor waits for its store (a
 * lookup in Redis, another process's lease), `undici.request()` holds a caller's abort until the
 * handler it made has a controller (onRequestStart), so the caller waited out the store's timeout
 * or the lease. This one gives the handler a controller at once: an abort before the request
 * starts ends the caller's wait there and then (onResponseError, with the reason), and the request,
 * should it start after all, is aborted as it does. Once the request starts, this controller steers
 * its own: pause(), resume() and abort() given before then are applied to it.
 */
import type { Dispatcher } from 'undici'
import { abortReason } from './request-aborted.js'
import type { Duplex } from 'node:stream'
import { endAnswer } from './answer-end.js'
import { canBorrow } from './subscriber.js'

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController
type Headers = Record<string, string | string[] | undefined>

export class EarlyStart implements Handler, Controller {
  readonly #handler: Handler
  /** The request's own controller, once it has started. */
  #controller: Controller | undefined
  #aborted = false
  #paused = false
  #reason: Error | null = null
  /** The handler has had its last callback. */
  #ended = false
  /** Lent chunks go on lent to a handler that can borrow them (src/adapters/subscriber.ts). */
  readonly onLentData?: (controller: Controller, chunk: Buffer) => void

  constructor (handler: Handler) {
    this.#handler = handler
    if (canBorrow(handler)) this.onLentData = (_controller, chunk) => { if (!this.#ended) handler.onLentData(this, chunk) }
    // Outside dispatch(), as a dispatcher's callbacks always are. A handler that throws is aborted
    // with what it threw, as undici aborts one.
    queueMicrotask(() => {
      try {
        if (!this.#ended) handler.onRequestStart?.(this, {})
      } catch (error) {
        this.#abort(error as Error)
      }
    })
  }

  get aborted (): boolean { return this.#aborted }
  get paused (): boolean { return this.#paused }
  get reason (): Error | null { return this.#reason }

  abort (reason?: Error): void {
    this.#abort(abortReason(reason))
  }

  /** abort(), for this one's own failures: a handler may have replaced abort() on its controller (undici's dump interceptor does). */
  #abort (reason: Error): void {
    if (this.#aborted || this.#ended) return
    this.#aborted = true
    this.#reason = reason
    // Started: its own controller ends it, and its onResponseError comes through here.
    if (this.#controller !== undefined) {
      this.#controller.abort(this.#reason)
      return
    }
    this.#ended = true
    this.#handler.onResponseError?.(this, this.#reason)
  }

  pause (): void {
    this.#paused = true
    this.#controller?.pause()
  }

  resume (): void {
    this.#paused = false
    this.#controller?.resume()
  }

  onRequestStart (controller: Controller): void {
    this.#controller = controller
    if (this.#aborted) controller.abort(this.#reason!)
    else if (this.#paused) controller.pause()
  }

  onRequestUpgrade (_controller: Controller, statusCode: number, headers: Headers, socket: Duplex): void {
    if (!this.#ended) this.#handler.onRequestUpgrade?.(this, statusCode, headers, socket)
  }

  onResponseStart (_controller: Controller, statusCode: number, headers: Headers, statusMessage?: string): void {
    if (!this.#ended) this.#handler.onResponseStart?.(this, statusCode, headers, statusMessage)
  }

  onResponseData (_controller: Controller, chunk: Buffer): void {
    if (!this.#ended) this.#handler.onResponseData?.(this, chunk)
  }

  onResponseEnd (_controller: Controller, trailers: Headers): void {
    if (this.#ended) return
    this.#ended = true
    endAnswer(this.#handler, this, trailers)
  }

  onResponseError (_controller: Controller, error: Error): void {
    if (this.#ended) return
    this.#ended = true
    this.#handler.onResponseError?.(this, error)
  }
}
