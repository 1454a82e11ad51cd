/**
 * What a controller's `abort()` without a reason ends a request with: undici's own
 * RequestAbortedError (`code` UND_ERR_ABORTED, `name` AbortError), which handlers and libraries
 * recognise their own abort by, as a request through a plain Agent ends with it.
 */
import { errors } from 'undici'

export function abortReason (reason: Error | undefined): Error {
  return reason ?? new errors.RequestAbortedError()
}
