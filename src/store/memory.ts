/**
 * L1: live variant sets in an in-process LRU bounded by bytes and by entry count (lru-cache does
 * the bookkeeping). It holds objects, not serialized bytes, so a hit costs a map lookup; it
 * answers synchronously.
 */
import { LRUCache } from 'lru-cache'
import { variantSetSize, type VariantSet } from '../entry.js'
import type { StoreEvents } from './types.js'

export interface MemoryStoreOptions {
  readonly maxSize: number
  readonly maxEntries: number
  /** The cache's clock: entries expire by it, so tests move time instead of sleeping. */
  readonly now: () => number
}

export class MemoryStore {
  readonly #lru: LRUCache<string, VariantSet>

  constructor (options: MemoryStoreOptions, events: StoreEvents) {
    this.#lru = new LRUCache<string, VariantSet>({
      max: options.maxEntries,
      maxSize: options.maxSize,
      sizeCalculation: variantSetSize,
      perf: { now: options.now },
      dispose: (set, key, reason) => {
        if (reason === 'evict') events.evict(key, variantSetSize(set))
      }
    })
  }

  get (key: string): VariantSet | undefined {
    return this.#lru.get(key)
  }

  set (set: VariantSet, ttl: number): void {
    // A set larger than maxSize is refused by lru-cache; it stays a miss.
    if (ttl > 0) this.#lru.set(set.key, set, { ttl })
    else this.#lru.delete(set.key)
  }

  delete (key: string): void {
    this.#lru.delete(key)
  }

  /** Drops the sets `drop` picks; how many. */
  deleteWhere (drop: (set: VariantSet) => boolean): number {
    let dropped = 0
    for (const [key, set] of this.#lru.entries()) {
      if (drop(set) && this.#lru.delete(key)) dropped++
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
