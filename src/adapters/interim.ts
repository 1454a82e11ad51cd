/**
 * Interim responses (RFC 9110 §15.2: 1xx, such as 103 Early Hints) left out of what the cache's
 * own handlers see. undici hands one to onResponseStart as it hands the final response, which
 * follows on the same exchange; single-flight, retries and storage each take the first
 * onResponseStart as the response. Decided: a request the cache handles does not show its caller
 * interim responses (fetch never shows them; `undici.request`'s `onInfo` is not called for them).
 * 101 Switching Protocols is no interim response here: undici hands it to onRequestUpgrade.
 */
import type { Duplex } from 'node:stream'
import type { Dispatcher } from 'undici'

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController
type Dispatch = (opts: Dispatcher.DispatchOptions, handler: Handler) => boolean

/** `dispatch`, its handlers never told of an interim response. */
export function withoutInterim (dispatch: Dispatch): Dispatch {
  return (opts, handler) => dispatch(opts, new FinalOnly(handler))
}

class FinalOnly implements Handler {
  readonly #handler: Handler

  constructor (handler: Handler) {
    this.#handler = handler
  }

  onRequestStart (controller: Controller, context: unknown): void {
    this.#handler.onRequestStart?.(controller, context)
  }

  onRequestUpgrade (controller: Controller, statusCode: number, headers: Record<string, string | string[] | undefined>, socket: Duplex): void {
    this.#handler.onRequestUpgrade?.(controller, statusCode, headers, socket)
  }

  onResponseStart (controller: Controller, statusCode: number, headers: Record<string, string | string[] | undefined>, statusMessage?: string): void {
    if (statusCode < 200) return
    this.#handler.onResponseStart?.(controller, statusCode, headers, statusMessage)
  }

  onResponseData (controller: Controller, chunk: Buffer): void {
    this.#handler.onResponseData?.(controller, chunk)
  }

  onResponseEnd (controller: Controller, trailers: Record<string, string | string[] | undefined>): void {
    this.#handler.onResponseEnd?.(controller, trailers)
  }

  onResponseError (controller: Controller, error: Error): void {
    this.#handler.onResponseError?.(controller, error)
  }
}
