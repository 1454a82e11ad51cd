/**
 * L2: any Keyv backend. Values are variant sets in the versioned frame of src/store/format.ts; a
 * value that does not parse is a miss, deleted and reported, and one read again as the same bytes
 * is decoded once (src/store/decoded.ts). Every call has a timeout, and every failure is a miss or
 * a skipped write plus an event: a broken store never fails a request (shared/DESIGN.md).
 */
import { Keyv, type KeyvStoreAdapter } from 'keyv'
import type { PolicyFactory } from '../policy.js'
import { describe } from '../validate.js'
import { StallBreaker } from './breaker.js'
import { DecodedFrames } from './decoded.js'
import { deserializeVariants, serializeVariants, storedTags, type StoredVariants } from './format.js'
import type { StoreEvents } from './types.js'

export interface StoreTimeouts {
  /** ms a read may take before it counts as a miss. */
  readonly read: number
  /** ms a write or delete may take before it is given up, and a listing may wait for the store's next rows. */
  readonly write: number
}

/** A key no entry has (entry keys start with a method): read once when the store is opened. */
const OPEN_PROBE = 'open probe'

/** UTF-16 code units of frames kept decoded (src/store/decoded.ts): some 700 entries of 1 KB bodies. */
const DECODED_BUDGET = 1024 * 1024

export class StoreTimeoutError extends Error {
  override readonly name = 'StoreTimeoutError'
}

/**
 * What a listing found, and whether a store call failed part way (reported): then the store may
 * hold more than it found. A store Keyv cannot list at all finds nothing and fails nothing.
 */
export interface Scanned {
  readonly keys: string[]
  readonly failed: boolean
}

/** What a scan of the store looks at: a key, and the tags of the value under it. */
export type ScanFilter = (key: string, tags: () => readonly string[]) => boolean

export class KeyvStore {
  readonly keyv: Keyv
  readonly #policies: PolicyFactory
  readonly #events: StoreEvents
  readonly #timeouts: StoreTimeouts
  readonly #decoded = new DecodedFrames(DECODED_BUDGET)

  readonly #onError: ((error: unknown) => void) | undefined

  constructor (keyv: Keyv, policies: PolicyFactory, events: StoreEvents, timeouts: StoreTimeouts) {
    this.keyv = keyv
    this.#policies = policies
    this.#events = events
    this.#timeouts = timeouts
    this.#breaker = new StallBreaker(timeouts.write)
    // A Keyv of the caller's may report failures only as 'error' events (ours throws them): one
    // listener while the cache is open.
    if (!ours.has(keyv)) keyv.on('error', this.#onError = (error: unknown) => events.error('keyv', undefined, error))
    // One read first, alone, that every call waits for: stores open lazily and badly when many
    // calls come at once (@keyv/redis fails all but one of them), and a store that cannot open (a
    // SQLite file in a missing directory) says so here, as an event, rather than as an unhandled
    // rejection of @keyv/sqlite's, which would end the process.
    // Bounded, as every call is: a first read that never settles must not hold back every call after it.
    this.#opening = withTimeout(firstRead(keyv), timeouts.write).then(() => {}, (error: unknown) => events.error('open', undefined, error))
    void this.#opening.finally(() => { this.#opening = undefined })
  }

  /** The store's first read, while it is under way. */
  #opening: Promise<void> | undefined

  /**
   * Settles once the store's first read has (a failure is reported there). Calls to the store's
   * client made beside Keyv's (src/store/redis.ts) wait for it too: @keyv/redis hands out its
   * client while it is still connecting, and one built to fail at once while offline fails them.
   */
  opened (): Promise<void> {
    return this.#opening ?? Promise.resolve()
  }

  #closed = false
  readonly #breaker: StallBreaker

  /**
   * `call`, once the store is open, given up after `ms` (src/store/keyv.ts callWhenOpen); refused
   * while the store has stopped answering (src/store/breaker.ts), unless `needed`: a delete an
   * invalidation makes, which carries no data, and without which what it drops would come back.
   * Once the cache is closed nothing more is sent: @keyv/redis would open again the connection its
   * owner just closed.
   */
  #call<T> (call: () => Promise<T>, ms: number, needed = false): Promise<T> {
    const breaker = this.#breaker
    if (!needed && !breaker.admits()) return Promise.reject(breaker.refusal())
    return callWhenOpen(this.#opening, () => this.#closed ? closedCache() : call(), ms, (sent) => { breaker.givenUp(sent) })
      .then((value) => {
        breaker.answered()
        return value
      })
  }

  close (): void {
    this.#closed = true
    if (this.#onError !== undefined) this.keyv.off('error', this.#onError)
  }

  async get (key: string): Promise<StoredVariants | undefined> {
    let value: unknown
    try {
      value = await this.#call(() => this.keyv.get(key), this.#timeouts.read)
    } catch (error) {
      this.#events.error('get', key, error)
      // Keyv's JSON serializer throws on a value it cannot parse: that value is gone too.
      if (error instanceof SyntaxError) this.#drop(key)
      return undefined
    }
    if (value === undefined || value === null) return undefined
    const stored = typeof value === 'string'
      ? this.#decoded.decode(value, key, (frame) => deserializeVariants(frame, key, this.#policies))
      : deserializeVariants(value, key, this.#policies)
    if (stored === undefined) {
      this.#events.error('get', key, new TypeError(`stored value under ${JSON.stringify(key)} is not a cachedfetch entry of this version`))
      this.#drop(key)
    }
    return stored
  }

  /** Deletes of bad values under way, by key. */
  readonly #dropping = new Map<string, Promise<unknown>>()

  /**
   * Deletes a bad value without the lookup that found it waiting (a store busy with another
   * process's write makes a delete wait up to the write timeout, where a read was quick); a write
   * of the key waits for it instead, which it would otherwise remove. One at a time for a key: the
   * lookups that find the value meanwhile leave it to the first.
   */
  #drop (key: string): void {
    if (this.#dropping.has(key)) return
    const dropping: Promise<unknown> = this.delete(key).finally(() => {
      if (this.#dropping.get(key) === dropping) this.#dropping.delete(key)
    })
    this.#dropping.set(key, dropping)
  }

  /** Resolves `true` once written, `false` when the write failed or timed out (reported). */
  async set (key: string, stored: StoredVariants, ttl: number): Promise<boolean> {
    const dropping = this.#dropping.get(key)
    if (dropping !== undefined) await dropping
    let written: boolean | undefined
    const done = await this.#attempt('set', key, async () => { written = await this.keyv.set(key, serializeVariants(key, stored), ttl) })
    // A Keyv that does not throw answers false; its 'error' event has said why.
    return done && written !== false
  }

  async delete (key: string): Promise<boolean> {
    return await this.#attempt('delete', key, () => this.keyv.delete(key))
  }

  async clear (): Promise<boolean> {
    return await this.#attempt('clear', undefined, () => this.keyv.clear())
  }

  /**
   * The keys whose entries `filter` picks, by listing the store (SQLite, Postgres, MySQL, MongoDB,
   * Redis, a Map: those Keyv can list); none, reported, when the store cannot be listed. A listing
   * may take as long as the store goes on answering (@keyv/sqlite pages ten rows at a time: a few
   * thousand rows took longer than one write may); it fails once the store has not answered for the
   * write timeout, and what it found until then is still returned, marked failed, and reported.
   */
  async scan (filter: ScanFilter): Promise<Scanned> {
    const rows = listing(this.keyv)
    if (rows === undefined) {
      this.#events.error('scan', undefined, new TypeError('the store cannot list its keys (Keyv has no iterator for it), so prefix and tag invalidation reach only the memory tier'))
      return { keys: [], failed: false }
    }
    let failed = false
    const keys = new Set<string>()
    const seen = new Set<string>()
    let iterator: AsyncIterator<[string, unknown]> | undefined
    try {
      // The store open first, as for every call; the listing's own calls are bounded below.
      await callWhenOpen(this.#opening, async () => {}, this.#timeouts.write)
      // A store that pages by offset (@keyv/sqlite) skips a row for each row deleted behind the
      // listing meanwhile (another process's invalidation, a read that drops an expired row): it
      // is listed again until a listing finds no row it had not seen.
      for (let pass = 0, added = true; added && pass < MAX_SCAN_PASSES; pass++) {
        added = false
        iterator = rows()[Symbol.asyncIterator]()
        for (;;) {
          const next = await withTimeout(iterator.next(), this.#timeouts.write)
          if (next.done === true) break
          const [key, value] = next.value
          if (seen.has(key)) continue
          seen.add(key)
          added = true
          if (filter(key, () => storedTags(value) ?? [])) keys.add(key)
        }
      }
    } catch (error) {
      failed = true
      this.#events.error('scan', undefined, error)
      // A listing given up on lets go of what it holds (a cursor, in some stores).
      void iterator?.return?.().catch(() => {})
    }
    return { keys: [...keys], failed }
  }

  async #attempt (operation: 'set' | 'delete' | 'clear', key: string | undefined, call: () => Promise<unknown>): Promise<boolean> {
    try {
      // A delete or clear carries no data, and an invalidation needs it: not held back by the breaker.
      await this.#call(call, this.#timeouts.write, operation !== 'set')
      return true
    } catch (error) {
      this.#events.error(operation, key, error)
      return false
    }
  }
}

/**
 * A Keyv's entries as its own iterator reads them, but row by row: a row that does not parse (a
 * NULL or a BLOB in SQLite, JSON cut short under a serializer of the caller's) is passed over,
 * where Keyv's iterator throws and ends the listing, and an expired one is passed over, not
 * deleted on the way, which makes a store that pages by offset (@keyv/sqlite) skip a row for each.
 * `undefined` when Keyv cannot list the store.
 */
function listing (keyv: Keyv): (() => AsyncIterable<[string, unknown]>) | undefined {
  if (typeof keyv.iterator !== 'function') return undefined
  const store = keyv.store as Map<unknown, unknown> | { iterator: (namespace?: string) => AsyncIterable<[unknown, unknown]> }
  const namespace = keyv.namespace
  // Keyv files a key under `namespace:key` (as it is without a namespace, or with useKeyPrefix off).
  const prefix = keyv.useKeyPrefix && namespace !== undefined && namespace !== '' ? `${namespace}:` : ''
  return async function * () {
    const raw = store instanceof Map ? store.entries() : store.iterator(namespace)
    for await (const [key, value] of raw) {
      if (typeof key !== 'string') continue
      let data: unknown
      try {
        data = await keyv.deserializeData(value as string)
      } catch {
        continue
      }
      if (typeof data !== 'object' || data === null) continue
      const { value: stored, expires } = data as { value?: unknown, expires?: unknown }
      if (typeof expires === 'number' && Date.now() > expires) continue
      if (!key.startsWith(prefix)) continue
      yield [key.slice(prefix.length), stored]
    }
  }
}

/** How often a listing is made again at most, to find the rows deletions behind it made it skip. */
const MAX_SCAN_PASSES = 4

/** `promise`, or a StoreTimeoutError once `ms` have passed: one promise and one timer a call, on every store call's path. */
export function withTimeout<T> (promise: Promise<T>, ms: number, onTimeout?: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      onTimeout?.()
      reject(new StoreTimeoutError(`store call took longer than ${ms} ms`))
    }, ms)
    promise.then((value) => {
      clearTimeout(timer)
      resolve(value)
    }, (error: Error) => {
      clearTimeout(timer)
      reject(error)
    })
  })
}

/** What a store call made once the cache is closed comes to: nothing sent, a store-error saying why. */
export function closedCache (): Promise<never> {
  return Promise.reject(new Error('the cache is closed'))
}

/** The store's first read; a Keyv-like store of the caller's that throws at once fails it, not createCache(). */
function firstRead (keyv: Keyv): Promise<unknown> {
  try {
    return keyv.get(OPEN_PROBE)
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)))
  }
}

/**
 * `call` once `opening` (the store's first read) has settled, given up `ms` from now. One given up
 * while it waited is never made, and its closure (a write's whole entry) is let go at once: calls
 * made while the store does not answer must not pile up, to go out late and all together once it
 * does (an offline queue, which the README has a Redis client built without), where a late write
 * could undo an invalidation made since. `givenUp` hears of one given up once made, with the call
 * the store has yet to settle.
 */
export function callWhenOpen<T> (opening: Promise<void> | undefined, call: () => Promise<T>, ms: number, givenUp?: (sent: Promise<T>) => void): Promise<T> {
  let sent: Promise<T> | undefined
  const send = (): Promise<T> => (sent = call())
  if (opening === undefined) return withTimeout(send(), ms, () => givenUp?.(sent!))
  let waiting: (() => Promise<T>) | undefined = send
  const made = opening.then(() => {
    const now = waiting
    waiting = undefined
    return now === undefined ? Promise.reject(new StoreTimeoutError('given up while the store was opening')) : now()
  })
  return withTimeout(made, ms, () => {
    waiting = undefined
    if (sent !== undefined) givenUp?.(sent)
  })
}

/** The namespace an adapter was wrapped for, so that two caches never share one by accident. */
const wrapped = new WeakMap<object, string>()
/** The Keyvs built here: they throw their errors, so no 'error' listener is needed on them. */
const ours = new WeakSet<Keyv>()

/**
 * A Keyv instance is used as it is, with its own namespace and serializer. A bare Keyv store
 * adapter (`new KeyvRedis(…)`, `new KeyvSqlite(…)`, a Map) gets a Keyv of ours: the `namespace`
 * option, and a serializer that stores our frame as it is (Keyv's JSON one would escape it).
 */
export function toKeyv (value: unknown, namespace: string | undefined, defaultNamespace: string, path: string): Keyv | undefined {
  if (value === undefined) return undefined
  if (value instanceof Keyv || isKeyvLike(value)) {
    if (namespace !== undefined) {
      throw new TypeError(`${path} is a Keyv instance, which brings its own namespace: set it there, or give a store adapter with options.namespace`)
    }
    return value as Keyv
  }
  if (!isStoreLike(value)) {
    throw new TypeError(`expected ${path} to be a Keyv instance or a Keyv store adapter, got ${describe(value)}`)
  }
  const name = namespace ?? defaultNamespace
  const previous = wrapped.get(value)
  // Keyv sets the namespace on the adapter itself: one adapter cannot serve two namespaces.
  if (previous !== undefined && previous !== name) {
    throw new TypeError(`${path} already serves namespace ${JSON.stringify(previous)}; give each namespace its own store adapter`)
  }
  wrapped.set(value, name)
  const keyv = new Keyv({ store: value as KeyvStoreAdapter, namespace: name, serialize: serializeRecord, deserialize: deserializeRecord, throwOnErrors: true })
  ours.add(keyv)
  return keyv
}

/** Keyv's record `{ value, expires }` as `<expires>\n<frame>`: nothing escaped, nothing encoded twice. */
function serializeRecord (record: { value?: unknown, expires?: number | null }): string {
  return `${record.expires ?? ''}\n${String(record.value)}`
}

/** Never throws: what is not a record of ours is handed on as a value the frame reader refuses. */
function deserializeRecord<T> (text: string): { value?: T, expires?: number } {
  const end = typeof text === 'string' ? text.indexOf('\n') : -1
  if (end === -1) return { value: text as T }
  const expires = end === 0 ? undefined : Number(text.slice(0, end))
  return { value: text.slice(end + 1) as T, expires: Number.isFinite(expires) ? expires : undefined }
}

/** The store adapter a `store` option holds: a Keyv's own, or the adapter given. */
export function adapterOf (value: unknown): unknown {
  return value instanceof Keyv || isKeyvLike(value) ? (value as Keyv).store : value
}

/** A Keyv from another copy of the package: `instanceof` fails across copies. */
function isKeyvLike (value: unknown): boolean {
  return isStoreLike(value) && typeof (value as { hooks?: unknown }).hooks === 'object' &&
    typeof (value as { opts?: { store?: unknown } }).opts?.store === 'object'
}

function isStoreLike (value: unknown): value is object {
  if (typeof value !== 'object' || value === null) return false
  const store = value as Record<string, unknown>
  return typeof store.get === 'function' && typeof store.set === 'function' &&
    typeof store.delete === 'function' && typeof store.clear === 'function'
}
