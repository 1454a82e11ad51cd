/**
 * Single-flight bookkeeping: identical requests in flight at the same time share one origin
 * exchange. This module says what "identical" means and holds the flights; the adapter's
 * Broadcast (src/adapters/broadcast.ts) does the sharing. A flight leaves the map the moment its
 * exchange ends, so no per-key state outlives it.
 */
import type { CacheRequest } from './key.js'

/**
 * Requests are identical when method, URL, every request header and the cache mode agree: a
 * header the origin might look at (Authorization, Cookie, Accept, …) can change the response.
 */
export function flightKey (request: CacheRequest, mode: string): string {
  const names = Object.keys(request.headers).sort()
  let key = `${request.method} ${request.url} ${mode}`
  for (const name of names) key += `\n${name}: ${request.headers[name]!}`
  return key
}

export class Flights<T> {
  readonly #flights = new Map<string, { readonly flight: T, readonly storeKey: string }>()

  get (key: string): T | undefined {
    return this.#flights.get(key)?.flight
  }

  /** `storeKey` is the key its response is stored under (src/key.ts). */
  start (key: string, flight: T, storeKey: string): void {
    this.#flights.set(key, { flight, storeKey })
  }

  /** Ends a flight; a newer one under the same key is left alone. */
  end (key: string, flight: T): void {
    if (this.#flights.get(key)?.flight === flight) this.#flights.delete(key)
  }

  /**
   * Takes the flights whose store key `picked` picks out of the map: they go on for the callers
   * they have, and identical requests start flights of their own.
   */
  detach (picked: (storeKey: string) => boolean): void {
    for (const [key, { storeKey }] of this.#flights) if (picked(storeKey)) this.#flights.delete(key)
  }

  get size (): number {
    return this.#flights.size
  }
}
