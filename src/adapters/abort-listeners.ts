/**
 * Listening to a caller's abort signal as undici's fetch listens (lib/web/fetch/request.js). One
 * signal may serve many requests at once and outlive them all (an application's shutdown signal):
 * its listener limit is raised where it is Node's default, as undici raises it, so that 200
 * callers sharing one print no MaxListenersExceededWarning; and a listener for a response (or a
 * hit's body stream) dropped before its body is read is removed once that is collected, instead of
 * keeping it, and its body, alive for as long as the signal lives.
 */
import { defaultMaxListeners, getMaxListeners, setMaxListeners } from 'node:events'

/** undici's own limit for a signal it listens to. */
const MAX_LISTENERS = 1500

const dropped = new FinalizationRegistry<{ readonly signal: AbortSignal, readonly listener: () => void }>(
  ({ signal, listener }) => { signal.removeEventListener('abort', listener) })

/** Adds `listener` for the signal's abort, once. */
export function onAbort (signal: AbortSignal, listener: () => void): void {
  if (getMaxListeners(signal) === defaultMaxListeners) setMaxListeners(MAX_LISTENERS, signal)
  signal.addEventListener('abort', listener, { once: true })
}

/** Removes `listener` from the signal once `holder` is collected; `listener` must not hold `holder`. */
export function removeWhenCollected (holder: object, signal: AbortSignal, listener: () => void): void {
  dropped.register(holder, { signal, listener })
}
