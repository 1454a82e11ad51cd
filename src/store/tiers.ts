/**
 * The tiers as one store: L1, live entries in a byte-bounded in-process LRU, in front of L2, any
 * Keyv store, with Redis's extras when L2 is Redis. A hit in L2 fills L1 for no longer than L2
 * keeps the entry; writes go to both; an invalidation reaches both and, through Redis pub/sub,
 * the other processes' L1.
 */
import { randomUUID } from 'node:crypto'
import { variantTags, type Variants } from '../entry.js'
import { urlOfKey } from '../key.js'
import type { ResolvedOptions } from '../options.js'
import type { PolicyFactory } from '../policy.js'
import { Coordinator } from './coordinator.js'
import { KeyvStore } from './keyv.js'
import { MemoryStore } from './memory.js'
import { RedisLink, type IndexKind } from './redis.js'
import type { EntryStore, MaybePromise, StoreEvents } from './types.js'

/** What an invalidation drops: entries by key, by URL prefix, by tag, or all of this namespace. */
export type Selector =
  | { readonly kind: 'keys', readonly keys: readonly string[] }
  | { readonly kind: 'prefix', readonly prefix: string }
  | { readonly kind: 'tag', readonly tag: string }
  | { readonly kind: 'all' }

export interface TierParts {
  readonly l1: MemoryStore | undefined
  readonly l2: KeyvStore | undefined
  readonly redis: RedisLink | undefined
  /** Whether invalidations are sent to, and taken from, the other processes on the same Redis. */
  readonly pubsub: boolean
  /** The cache's clock, which L1 and the stored expiry follow; Redis's own keys follow Redis's. */
  readonly now: () => number
}

export class Tiers implements EntryStore {
  readonly #l1: MemoryStore | undefined
  readonly #l2: KeyvStore | undefined
  readonly #redis: RedisLink | undefined
  readonly #events: StoreEvents
  /** Tells this process's messages from the others'. */
  readonly #id = randomUUID()
  /** Invalidations are published to the other processes on this Redis, with or without a memory tier here. */
  readonly #publish: boolean
  readonly #now: () => number
  /**
   * Moves on whenever an invalidation starts or ends: an L2 read that began before cannot put what
   * it read back into L1, where it would outlive the invalidation.
   */
  #generation = 0
  /**
   * L2 writes of this process under way, by key: the newest one's. Until it lands, what L1 holds
   * under the key is newer than what L2 holds.
   */
  readonly #writing = new Map<string, Promise<unknown>>()
  /** Told of each invalidation another process published, once this one's memory has dropped it. */
  #invalidatedElsewhere: ((selector: Selector) => void) | undefined

  constructor (parts: TierParts, events: StoreEvents) {
    this.#now = parts.now
    this.#l1 = parts.l1
    this.#l2 = parts.l2
    this.#redis = parts.redis
    this.#events = events
    this.#publish = parts.pubsub && parts.redis !== undefined
    // Every process that publishes listens too, a memory tier or not: the others' invalidations are
    // recorded (src/writes.ts), so that an answer on its way here since before one is not stored in
    // Redis, where it would undo it for the whole fleet. A message lost while the connection was
    // down may have been an invalidation: L1 starts over.
    if (this.#publish) this.#redis!.subscribe((message) => this.#received(message), () => this.#dropLocal({ kind: 'all' }))
  }

  get (key: string): MaybePromise<Variants | undefined> {
    const local = this.#l1?.get(key)
    if (local !== undefined || this.#l2 === undefined) return local
    return this.#fromL2(key, this.#l2)
  }

  /**
   * All the variants stored under `key`, for a write that stores them again with one changed:
   * L1's, unless L1 holds only some of them (it had to leave the others out, src/store/memory.ts),
   * then L2's, which holds them all; written from L1's, L2 would lose the others.
   */
  getWhole (key: string): MaybePromise<Variants | undefined> {
    return this.#l1 !== undefined && this.#l2 !== undefined && this.#l1.partial(key) ? this.getSettled(key) : this.get(key)
  }

  /**
   * What L2 holds under `key` (getShared), once this process's write of it under way has landed:
   * for a write that stores the list it reads again. Read before, L2 would not yet hold that
   * write's variant, and the list written would drop it.
   */
  getSettled (key: string): MaybePromise<Variants | undefined> {
    const writing = this.#writing.get(key)
    return writing === undefined ? this.getShared(key) : writing.then(() => this.getShared(key))
  }

  /** What L1 holds under `key` now, as a whole (not what it left out of a URL's variants); nothing is read. */
  local (key: string): Variants | undefined {
    return this.#l1 === undefined || this.#l1.partial(key) ? undefined : this.#l1.peek(key)
  }

  /** Whether there is a second tier, shared with other processes, behind L1. */
  get layered (): boolean {
    return this.#l2 !== undefined
  }

  /**
   * What L2 holds under `key` now, past what L1 holds, which L1 then takes; L1's when L2 has none
   * (or fails), or without an L2. L1 holds the variants of a URL as this process last saw them:
   * another process may have stored others since (RFC 9111 §4.1), which a lookup that finds none of
   * L1's fit must see.
   */
  getShared (key: string): MaybePromise<Variants | undefined> {
    const local = this.#l1?.get(key)
    if (this.#l2 === undefined) return local
    return this.#fromL2(key, this.#l2).then((shared) => shared ?? local)
  }

  #fromL2 (key: string, l2: KeyvStore): Promise<Variants | undefined> {
    const generation = this.#generation
    // L1 takes what L2 holds unless this process stored under the key meanwhile, or had a write of
    // it on its way when the read began: L2's would be older.
    const held = this.#l1?.peek(key)
    const writing = this.#writing.has(key)
    return l2.get(key).then((stored) => {
      if (stored === undefined) return undefined
      if (this.#l1 !== undefined && !writing && generation === this.#generation && this.#l1.peek(key) === held) {
        this.#l1.set(key, stored.variants, stored.expires === undefined ? Infinity : stored.expires - this.#now())
      }
      return stored.variants
    })
  }

  set (key: string, variants: Variants, ttl: number): MaybePromise<boolean> {
    const expires = this.#now() + ttl
    const kept = this.#l1?.set(key, variants, ttl)
    // Memory alone: stored only if memory kept it, not if it is larger than maxSize.
    if (this.#l2 === undefined) return kept === true
    const l2 = this.#l2
    if (this.#redis === undefined) return this.#landing(key, l2.set(key, { variants, expires }, ttl))
    // Indexed first: tag and prefix invalidation find entries in Redis by their indexes, so one
    // written unindexed would outlive every such invalidation there. A key indexed and not written
    // (the write failed) costs nothing. Indexed again once written: another process's invalidation
    // between the two may have read the index, found no entry yet, and taken the key out of it.
    const redis = this.#redis
    const index = (): Promise<boolean> => redis.index(key, indexesOf(key, variants), Date.now() + ttl)
    return this.#landing(key, index().then(async (indexed) => {
      if (!indexed || !await l2.set(key, { variants, expires }, ttl)) return false
      // Written whether this one lands or not (a failure is reported).
      await index()
      return true
    }))
  }

  /** Records an L2 write of `key` under way (#writing) until it lands. */
  #landing (key: string, write: Promise<boolean>): Promise<boolean> {
    this.#writing.set(key, write)
    const landed = (): void => {
      if (this.#writing.get(key) === write) this.#writing.delete(key)
    }
    write.then(landed, landed)
    return write
  }

  delete (key: string): MaybePromise<void> {
    this.#l1?.delete(key)
    if (this.#l2 !== undefined) return this.#l2.delete(key).then(() => undefined)
  }

  /**
   * Drops what `selector` picks from every tier here, then tells the other processes' L1; whether
   * the store and the other processes were reached: `false` when a store call failed (reported),
   * and the store may still hold, and serve, some of what was to be dropped.
   */
  async invalidate (selector: Selector): Promise<boolean> {
    this.#dropLocal(selector)
    const l2 = this.#l2
    let reached = true
    if (l2 !== undefined) {
      if (selector.kind === 'all') {
        // The indexes before the entries: a write landing meanwhile indexes its key again once written
        // (set()), where dropped after, they would go with its index, and no tag or prefix
        // invalidation would find it again.
        if (this.#redis !== undefined) reached = await this.#redis.dropAll()
        reached = await l2.clear() && reached
      } else {
        const { keys, failed } = await this.#l2Keys(l2, selector)
        // Only the members read: an entry tagged since then keeps its place in the index. Taken out
        // before the deletes, so that a write landing after them has indexed its key again after.
        const unindexed = selector.kind === 'tag' && !failed && this.#redis !== undefined ? await this.#redis.unindex('tag', selector.tag, keys) : true
        const deleted = await Promise.all(keys.map(async (key) => await l2.delete(key)))
        reached = !failed && unindexed && deleted.every(Boolean)
      }
      // What L1 took from L2 while the deletes were on their way is dropped too.
      this.#dropLocal(selector)
    }
    if (this.#publish) reached = await this.#redis!.publish(JSON.stringify({ from: this.#id, selector })) && reached
    return reached
  }

  /** L2's keys under a selector, from Redis's indexes or by listing the store, and whether reading them failed part way. */
  async #l2Keys (l2: KeyvStore, selector: Exclude<Selector, { kind: 'all' }>): Promise<{ readonly keys: readonly string[], readonly failed: boolean }> {
    if (selector.kind === 'keys') return { keys: selector.keys, failed: false }
    if (this.#redis === undefined) return await l2.scan((key, tags) => picks(selector, key, tags))
    const members = selector.kind === 'tag'
      ? await this.#redis.members('tag', selector.tag)
      : (await this.#redis.members('origin', new URL(selector.prefix).origin))?.filter((key) => urlOfKey(key).startsWith(selector.prefix))
    return members === undefined ? { keys: [], failed: true } : { keys: members, failed: false }
  }

  #received (message: string): void {
    let parsed: { from?: unknown, selector?: Selector }
    try {
      parsed = JSON.parse(message) as typeof parsed
    } catch (error) {
      this.#events.error('subscribe', undefined, error)
      return
    }
    const selector = parsed.selector
    if (parsed.from === this.#id || !isSelector(selector)) return
    this.#dropLocal(selector)
    this.#invalidatedElsewhere?.(selector)
  }

  /**
   * Tells `listener` of each invalidation another process publishes, as it arrives (src/writes.ts
   * records them, so that a response on its way here since before one is not stored where it picks).
   */
  onInvalidatedElsewhere (listener: (selector: Selector) => void): void {
    this.#invalidatedElsewhere = listener
  }

  #dropLocal (selector: Selector): void {
    this.#generation++
    if (selector.kind === 'all') this.#l1?.clear()
    else this.#l1?.deleteWhere((key, variants) => picks(selector, key, () => variantTags(variants)))
  }

  close (): void {
    this.#l2?.close()
    this.#redis?.close()
  }

  /** Bytes held in memory, for `cache.stats()`. */
  get memoryBytes (): number {
    return this.#l1?.size ?? 0
  }
}

/** The tiers a cache's options ask for, and the cross-process coordinator when they ask for one. */
export function openStores (options: ResolvedOptions, policies: PolicyFactory, events: StoreEvents): { tiers: Tiers, coordinator: Coordinator | undefined } {
  const { store, storeTimeouts, maxSize, pubsub, coordinate, now } = options
  const l2 = store === undefined ? undefined : new KeyvStore(store, policies, events, storeTimeouts)
  const redis = l2 === undefined ? undefined : RedisLink.of(l2.keyv, events, storeTimeouts, () => l2.opened())
  const tiers = new Tiers({
    l1: maxSize === 0 ? undefined : new MemoryStore(options, events),
    l2,
    redis,
    pubsub,
    now
  }, events)
  return { tiers, coordinator: coordinate === undefined || redis === undefined ? undefined : new Coordinator(redis, coordinate) }
}

/** Whether `selector` picks the entry stored under `key`, whose tags `tags` lists. */
export function picks (selector: Selector, key: string, tags: () => readonly string[]): boolean {
  switch (selector.kind) {
    case 'keys': return selector.keys.includes(key)
    case 'prefix': return urlOfKey(key).startsWith(selector.prefix)
    case 'tag': return tags().includes(selector.tag)
    case 'all': return true
  }
}

function indexesOf (key: string, variants: Variants): Array<readonly [IndexKind, string]> {
  const indexes: Array<readonly [IndexKind, string]> = [['origin', new URL(urlOfKey(key).split(' ')[0]!).origin]]
  for (const tag of new Set(variantTags(variants))) indexes.push(['tag', tag])
  return indexes
}

function isSelector (value: unknown): value is Selector {
  if (typeof value !== 'object' || value === null) return false
  const s = value as Record<string, unknown>
  switch (s.kind) {
    case 'keys': return Array.isArray(s.keys) && s.keys.every((k) => typeof k === 'string')
    case 'prefix': return typeof s.prefix === 'string'
    case 'tag': return typeof s.tag === 'string'
    case 'all': return true
    default: return false
  }
}
