/**
 * L1: live variants in an in-process LRU bounded by bytes and by entry count (lru-cache does the
 * bookkeeping). It holds objects, not serialized bytes, so a hit costs a map lookup; it answers
 * synchronously. The value under a key is the variants themselves (a single one as it is): no wrapper object per URL.
 */
import { LRUCache } from 'lru-cache'
import { isEntry, toVariants, variantsSize, type Variants } from '../entry.js'
import type { StoreEvents } from './types.js'

export interface MemoryStoreOptions {
  readonly maxSize: number
  readonly maxEntries: number
  /** The cache's clock: entries expire by it, so tests move time instead of sleeping. */
  readonly now: () => number
}

export class MemoryStore {
  readonly #lru: LRUCache<string, Variants>
  readonly #maxSize: number
  readonly #events: StoreEvents

  constructor (options: MemoryStoreOptions, events: StoreEvents) {
    this.#maxSize = options.maxSize
    this.#events = events
    this.#lru = new LRUCache<string, Variants>({
      max: options.maxEntries,
      maxSize: options.maxSize,
      sizeCalculation: variantsSize,
      perf: { now: options.now },
      // The cache's clock at every expiry check. By default lru-cache keeps a reading for a
      // millisecond of real time and arms a timer to forget it: a clock moved within that
      // millisecond went unseen (an entry past its retention was still found), and a timer was
      // made and fired for two in five 1 KB 304s through the interceptor.
      ttlResolution: 0,
      dispose: (variants, key, reason) => {
        if (reason === 'evict') events.evict(key, variantsSize(variants))
      }
    })
  }

  get (key: string): Variants | undefined {
    return this.#lru.get(key)
  }

  /** Whether the variants are kept: not when one alone is larger than maxSize (lru-cache refuses it). */
  set (key: string, variants: Variants, ttl: number): boolean {
    if (ttl <= 0) {
      this.#lru.delete(key)
      return false
    }
    this.#lru.set(key, this.#fitted(key, variants), { ttl })
    return this.#lru.has(key)
  }

  /**
   * A URL's variants are one value here. Larger than maxSize, lru-cache would refuse it and drop
   * what the key held: one more variant would empty memory of the URL, the one just stored too.
   * The oldest variants (last in the list) go instead, each reported as evicted; one alone that is
   * larger is refused, and stays a miss.
   */
  #fitted (key: string, variants: Variants): Variants {
    if (isEntry(variants) || variantsSize(variants) <= this.#maxSize) return variants
    const kept = [...variants]
    while (kept.length > 1 && variantsSize(kept) > this.#maxSize) this.#events.evict(key, variantsSize(kept.pop()!))
    return toVariants(kept)
  }

  delete (key: string): void {
    this.#lru.delete(key)
  }

  /** Drops the keys `drop` picks; how many. */
  deleteWhere (drop: (key: string, variants: Variants) => boolean): number {
    let dropped = 0
    for (const [key, variants] of this.#lru.entries()) {
      if (drop(key, variants) && this.#lru.delete(key)) dropped++
    }
    return dropped
  }

  clear (): void {
    this.#lru.clear()
  }

  /** Bytes held, for `cache.stats()`. */
  get size (): number {
    return this.#lru.calculatedSize
  }
}
