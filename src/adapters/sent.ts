/**
 * What undici.fetch sent for cachedFetch's plain requests (src/adapters/fetch.ts), by join key, so
 * that a later identical call that must reach the origin (a revalidation, the stale hit that starts
 * one, an entry since evicted) can send that very request through the interceptor itself, its
 * answer built into a Response by a follower (src/adapters/follower.ts), rather than run
 * undici.fetch, which costs more than the rest of a revalidation put together. Recorded, not
 * rebuilt: the fields fetch adds (User-Agent, Accept, Accept-Encoding, Sec-Fetch-Mode, …) are
 * undici's to choose, and fetch sends the same for identical calls.
 */
import type { Dispatcher } from 'undici'

/** Requests kept; past this the oldest goes, so that memory stays bounded by the URLs used lately. */
const LIMIT = 1024

export class SentRequests {
  readonly #sent = new Map<string, Dispatcher.DispatchOptions>()

  /** The request fetch sent for `key`, now the most recently used. */
  get (key: string): Dispatcher.DispatchOptions | undefined {
    const opts = this.#sent.get(key)
    if (opts !== undefined) {
      this.#sent.delete(key)
      this.#sent.set(key, opts)
    }
    return opts
  }

  /** `dispatcher`, recording under `key` the first request fetch sends through it: later ones follow redirects. */
  recording (key: string, dispatcher: Dispatcher): Dispatcher {
    let first = true
    return Object.assign(Object.create(dispatcher) as Dispatcher, {
      dispatch: (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) => {
        if (first) {
          first = false
          this.#record(key, opts)
        }
        return dispatcher.dispatch(opts, handler)
      }
    })
  }

  #record (key: string, opts: Dispatcher.DispatchOptions): void {
    // Only a request without a body can be sent again as it was (a plain request has none).
    if (opts.body != null || opts.upgrade != null) return
    this.#sent.delete(key)
    if (this.#sent.size >= LIMIT) this.#sent.delete(this.#sent.keys().next().value!)
    this.#sent.set(key, opts)
  }
}
