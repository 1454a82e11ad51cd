/**
 * What undici.fetch sent for cachedFetch's plain requests (src/adapters/fetch.ts), by shape
 * (src/adapters/plain-request.ts: method, origin, global origin, cache mode and the caller's fields
 * as fetch makes them). A later call of the same shape that must reach the origin (a miss, a revalidation,
 * the stale hit that starts one) sends that request, to its own path, through the interceptor
 * itself, its answer built into a Response by a follower (src/adapters/follower.ts), rather than
 * run undici.fetch, which costs more than the rest of a revalidation put together.
 *
 * Recorded, not rebuilt: the fields fetch adds (User-Agent, Accept, Accept-Encoding,
 * Sec-Fetch-Mode, …) are undici's to choose, and fetch adds the same to every call of one shape.
 * Only the path is ours to set, and a request is recorded only when fetch's own path for it is the
 * one `targetOf` makes, so that a path is never sent other than as fetch would send it.
 */
import type { Dispatcher } from 'undici'
import { memoize } from '../memo.js'

/** Shapes kept; past this the one used longest ago goes. */
const LIMIT = 1024

/** Where fetch sends a request: its dispatch's origin and path. */
export interface Target {
  readonly origin: string
  readonly path: string
}

/**
 * Where fetch sends a request for `input` (parsed as fetch parses it: against the global origin,
 * undici's `setGlobalOrigin`, when there is one), as its dispatch names it: a "?" that ends the
 * URL before its fragment is kept, as undici's fetch keeps it ("/p?#x" is sent as "/p?", "/p?#" as
 * "/p"). `undefined` for a URL fetch refuses (one with credentials) or does not send over HTTP.
 */
export function targetOf (input: string, base: URL | undefined): Target | undefined {
  return base === undefined ? targetOfString(input) ?? undefined : parseTarget(input, base)
}

/**
 * targetOf for a URL string with no global origin, the common call, parsed once per URL: every
 * miss and revalidation of cachedFetch asks, and parsing one took 3–5 µs of a 304 under the
 * profiler. `null` for a URL fetch would not send as recorded.
 */
const targetOfString = memoize(1024, (input: string): Target | null => parseTarget(input, undefined) ?? null)

function parseTarget (input: string, base: URL | undefined): Target | undefined {
  const parsed = new URL(input, base)
  if ((parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || parsed.username !== '' || parsed.password !== '') return undefined
  const path = parsed.pathname + parsed.search
  const { href, hash, search } = parsed
  return { origin: parsed.origin, path: search === '' && href[href.length - hash.length - 1] === '?' ? `${path}?` : path }
}

export class SentRequests {
  /** By shape, the one used longest ago first. */
  readonly #sent = new Map<string, Dispatcher.DispatchOptions>()
  /**
   * The shape used or recorded last, which is last in `#sent` already. Moving a shape to the end
   * takes it out and puts it back, which for the one shape of most callers' requests would make
   * V8 a new table at every request (src/maps.ts).
   */
  #newest: string | undefined

  /** The request fetch sent for a call of `shape`, sent to `target`; the shape is now the most recently used. */
  get (shape: string, target: Target): Dispatcher.DispatchOptions | undefined {
    const opts = this.#sent.get(shape)
    if (opts === undefined) return undefined
    if (shape !== this.#newest) {
      this.#sent.delete(shape)
      this.#sent.set(shape, opts)
      this.#newest = shape
    }
    return { ...opts, path: target.path, headers: fieldsOf(opts) }
  }

  /**
   * `dispatcher`, recording under `shape` the first request fetch sends through it (later ones
   * follow redirects), if fetch sent it to `target`.
   */
  recording (shape: string, target: Target, dispatcher: Dispatcher): Dispatcher {
    let first = true
    return Object.assign(Object.create(dispatcher) as Dispatcher, {
      dispatch: (opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) => {
        if (first) {
          first = false
          if (opts.origin === target.origin && opts.path === target.path) this.#record(shape, opts)
        }
        return dispatcher.dispatch(opts, handler)
      }
    })
  }

  #record (shape: string, opts: Dispatcher.DispatchOptions): void {
    // Only a request without a body can be sent again as it was (a plain request has none).
    if (opts.body != null || opts.upgrade != null) return
    this.#sent.delete(shape)
    if (this.#sent.size >= LIMIT) this.#sent.delete(this.#sent.keys().next().value!)
    this.#sent.set(shape, { ...opts, headers: fieldsOf(opts) })
    this.#newest = shape
  }
}

/**
 * A copy of the fields fetch dispatched (a record: undici's `headersList.entries`). Each request
 * gets options of its own, as fetch gives each: a dispatcher below may write into them (undici's
 * ProxyAgent adds Host), which must reach neither the record nor the next request sent from it.
 */
function fieldsOf (opts: Dispatcher.DispatchOptions): Record<string, string | string[] | undefined> {
  return { ...opts.headers as Record<string, string | string[] | undefined> }
}
