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
  /** Values held for a URL with some of the variants they were given left out (set()): not all there is. */
  readonly #partial = new WeakSet<Variants>()

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
      // After the entry is gone, the LRU whole again: an `evicted` listener may call the cache back
      // (clear(), an invalidation), which in the middle of the eviction broke the LRU's index, and a
      // URL was served another's body.
      disposeAfter: (variants, key, reason) => {
        if (reason === 'evict') events.evict(key, variantsSize(variants))
      }
    })
  }

  get (key: string): Variants | undefined {
    return this.#lru.get(key)
  }

  /** What is held under `key`, without counting it as used. */
  peek (key: string): Variants | undefined {
    return this.#lru.peek(key)
  }

  /** Whether what is held under `key` leaves out variants it was given (set()): a second tier holds them. */
  partial (key: string): boolean {
    const held = this.#lru.peek(key)
    return held !== undefined && this.#partial.has(held)
  }

  /**
   * Whether the newest variant (the first) is kept. A URL's variants are one value here; larger than
   * maxSize, lru-cache would refuse it and drop what the key held, so that one more variant would
   * empty memory of the URL. The oldest variants (last in the list) go instead, each reported as
   * evicted if memory held it (one a fill from the store brought was never here). A newest one that
   * alone is larger is not kept; the others stay, as many as fit. Either way what is held is partial().
   */
  set (key: string, variants: Variants, ttl: number): boolean {
    if (ttl <= 0) {
      this.#lru.delete(key)
      return false
    }
    if (isEntry(variants) || variantsSize(variants) <= this.#maxSize) {
      // Whole now, whatever this value was held as before.
      this.#partial.delete(variants)
      this.#lru.set(key, variants, { ttl })
      return this.#lru.has(key)
    }
    // A newest one alone too large leaves the others (the one it replaces was left out of them
    // already, src/variants.ts), as many as fit.
    const newestKept = variantsSize(variants[0]!) <= this.#maxSize
    const held = this.#lru.peek(key)
    const kept = newestKept ? [...variants] : variants.slice(1)
    for (let size = variantsSize(kept); size > this.#maxSize;) {
      const dropped = kept.pop()!
      const bytes = variantsSize(dropped)
      size -= bytes
      if (held === dropped || (Array.isArray(held) && held.includes(dropped))) this.#events.evict(key, bytes)
    }
    if (kept.length === 0) this.#lru.delete(key)
    else this.#setPartial(key, toVariants(kept), ttl)
    return newestKept
  }

  #setPartial (key: string, variants: Variants, ttl: number): void {
    this.#partial.add(variants)
    this.#lru.set(key, variants, { ttl })
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
