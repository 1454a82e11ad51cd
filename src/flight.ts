/**
 * Single-flight bookkeeping: identical requests in flight at the same time share one origin
 * exchange. This module says what "identical" means and holds the flights; the adapter's
 * Broadcast (src/adapters/broadcast.ts) does the sharing. A flight leaves the map the moment its
 * exchange ends, so no per-key state outlives it.
 */
import type { CacheRequest } from './key.js'
import { without } from './maps.js'

/**
 * Requests are identical when method, URL, every request header and the cache mode agree: a
 * header the origin might look at (Authorization, Cookie, Accept, …) can change the response.
 */
export function flightKey (request: CacheRequest, mode: string): string {
  const names = sorted(Object.keys(request.headers))
  let key = `${request.method} ${request.url} ${mode}`
  for (const name of names) key += `\n${name}: ${request.headers[name]!}`
  return key
}

/** Insertion takes time quadratic in the count: past this many fields (few requests have them), sort(). */
const FEW_NAMES = 32

/**
 * Names in the order sort() gives, sorted in place. A handful are sorted by insertion: Node 20's
 * sort() allocated 0.9 KB to sort the six fields of a request fetch sends, and every request that
 * makes or joins a flight sorts its fields.
 */
function sorted (names: string[]): string[] {
  if (names.length > FEW_NAMES) return names.sort()
  for (let i = 1; i < names.length; i++) {
    const name = names[i]!
    let at = i
    for (; at > 0 && names[at - 1]! > name; at--) names[at] = names[at - 1]!
    names[at] = name
  }
  return names
}

export class Flights<T> {
  #flights = new Map<string, { readonly flight: T, readonly storeKey: string, readonly since: number }>()
  readonly #invalidatedSince: (since: number, storeKey: string) => boolean
  readonly #started: () => number

  /**
   * `invalidatedSince`: whether an invalidation that started after the first `since` may pick
   * `storeKey`; `started`: how many invalidations have started.
   */
  constructor (invalidatedSince: (since: number, storeKey: string) => boolean, started: () => number) {
    this.#invalidatedSince = invalidatedSince
    this.#started = started
  }

  /**
   * The flight identical requests join. Not one an invalidation that may pick its entry began after
   * (it went on for the callers it had; its answer, or the entry that stands in for a failure, may
   * predate that invalidation): identical requests start flights of their own. One under way when
   * the flight started does not keep callers from it: the flight's request went out after that
   * invalidation began, and its lookup counted what that invalidation picks as gone already.
   */
  get (key: string): T | undefined {
    const found = this.#flights.get(key)
    if (found === undefined || !this.#invalidatedSince(found.since, found.storeKey)) return found?.flight
    this.#flights = without(this.#flights, key)
    return undefined
  }

  /** `storeKey` is the key its response is stored under (src/key.ts). */
  start (key: string, flight: T, storeKey: string): void {
    this.#flights.set(key, { flight, storeKey, since: this.#started() })
  }

  /** Ends a flight; a newer one under the same key is left alone. */
  end (key: string, flight: T): void {
    if (this.#flights.get(key)?.flight === flight) this.#flights = without(this.#flights, key)
  }

  get size (): number {
    return this.#flights.size
  }
}
