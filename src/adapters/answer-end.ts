/**
 * The end of an answer handed to a handler, as undici hands it: an end callback that throws is that
 * handler's error. undici's retry interceptor throws there to retry; a replay, a flight or a retry
 * layer that let the throw go would leave its caller waiting for ever.
 */
import type { Dispatcher } from 'undici'

export function endAnswer (handler: Dispatcher.DispatchHandler, controller: Dispatcher.DispatchController, trailers: Record<string, string | string[] | undefined>): void {
  try {
    handler.onResponseEnd?.(controller, trailers)
  } catch (error) {
    handler.onResponseError?.(controller, error as Error)
  }
}
