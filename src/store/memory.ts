/**
 * The default store: live variant sets in an in-process LRU bounded by bytes and by entry count
 * (lru-cache does the bookkeeping). It holds objects, not serialized bytes, so a hit costs a map
 * lookup; it answers synchronously.
 */
import { LRUCache } from 'lru-cache'
import { variantSetSize, type VariantSet } from '../entry.js'
import type { EntryStore, StoreEvents } from './types.js'

export interface MemoryStoreOptions {
  readonly maxSize: number
  readonly maxEntries: number
}

export class MemoryStore implements EntryStore {
  readonly #lru: LRUCache<string, VariantSet>

  constructor (options: MemoryStoreOptions, events: StoreEvents) {
    this.#lru = new LRUCache<string, VariantSet>({
      max: options.maxEntries,
      maxSize: options.maxSize,
      sizeCalculation: variantSetSize,
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
    this.#lru.set(set.key, set, { ttl })
  }

  delete (key: string): void {
    this.#lru.delete(key)
  }

  clear (): void {
    this.#lru.clear()
  }

  /** Bytes held, for `cache.stats()`. */
  get size (): number {
    return this.#lru.calculatedSize
  }
}
