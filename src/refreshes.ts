/**
 * Background revalidations of stale-while-revalidate hits (RFC 5861 §3): one per variant at a time,
 * however many hits arrive meanwhile. A claim lapses after the request's retry deadline, so that a
 * refresh its caller never ran does not block the next one for ever.
 */
import type { CacheEntry } from './entry.js'
import { RETRY_DEFAULTS, type ResolvedRetry } from './retry.js'
import { variantId } from './variants.js'

export class Refreshes {
  readonly #now: () => number
  /** Variants being revalidated, with when each claim lapses. */
  readonly #claims = new Map<string, number>()

  constructor (now: () => number) {
    this.#now = now
  }

  /** Whether a refresh of this variant is claimed and its claim has not lapsed. */
  underWay (entry: CacheEntry): boolean {
    return (this.#claims.get(variantId(entry)) ?? 0) > this.#now()
  }

  /** Claims the refresh of this variant; `false` when one is under way. */
  claim (entry: CacheEntry, retry: ResolvedRetry | undefined): boolean {
    if (this.underWay(entry)) return false
    this.#claims.set(variantId(entry), this.#now() + (retry?.deadline ?? RETRY_DEFAULTS.deadline))
    return true
  }

  /** The refresh of this variant ended, however it went. */
  end (entry: CacheEntry): void {
    this.#claims.delete(variantId(entry))
  }

  get size (): number {
    return this.#claims.size
  }
}
