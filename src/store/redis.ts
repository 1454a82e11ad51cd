/**
 * What Redis adds beyond Keyv's get/set/delete, through the client @keyv/redis already holds (so
 * the connection settings are the user's): tag and origin indexes, so that `invalidateTag()` and
 * `invalidatePrefix()` never scan the keyspace; invalidation messages to the other processes'
 * memory tiers (pub/sub on a duplicate of that client); and leases for the cross-process
 * single-flight (SET NX PX).
 *
 * Layout, for namespace `ns`: entries are Keyv's (`ns::ns:GET https://…`); index `cachedfetch:ns:tag:<tag>`
 * and `cachedfetch:ns:origin:<origin>` are sorted sets of entry keys scored by expiry, trimmed on
 * every write and expiring with their last member; leases are `cachedfetch:ns:lease:<key>`;
 * messages go on `cachedfetch:ns:invalidate`. Every command touches one key, so Redis Cluster
 * needs no hash tags and entries, indexes and leases spread over its slots.
 */
import type { Keyv } from 'keyv'
import { callWhenOpen, closedCache, withTimeout, type StoreTimeouts } from './keyv.js'
import type { StoreEvents, StoreOperation } from './types.js'

/** The part of a node-redis client (or cluster) used here. */
interface RedisClient {
  eval (script: string, options: { keys: string[], arguments: string[] }): Promise<unknown>
  zRangeByScore (key: string, min: number | string, max: number | string): Promise<string[]>
  unlink (keys: string | string[]): Promise<number>
  zRem (key: string, members: string[]): Promise<number>
  publish (channel: string, message: string): Promise<number>
  scanIterator (options: { MATCH: string, COUNT?: number }): AsyncIterable<string[]>
  duplicate (): RedisClient
  connect (): Promise<unknown>
  subscribe (channel: string, listener: (message: string) => void): Promise<void>
  on (event: string, listener: (...args: unknown[]) => void): unknown
  unref? (): void
  destroy (): void
  readonly isOpen: boolean
}

interface RedisAdapter {
  readonly opts: { readonly dialect?: string }
  readonly client: RedisClient
  getClient (): Promise<RedisClient>
  getMasterNodes? (): Promise<RedisClient[]>
}

/**
 * Adds a member to an index, drops members that expired, and lets the index expire with its last
 * member: one key, one round trip.
 */
const INDEX_SCRIPT = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return 1`

/**
 * Takes a lease unless one is held: 1 when taken, 0 when another process holds it, 2 when the
 * last holder left word that the answer cannot be shared (then nobody waits).
 */
const CLAIM_SCRIPT = `
local held = redis.call('GET', KEYS[1])
if held == ARGV[3] then return 2 end
if held then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`

/**
 * Ends a lease, only for its holder (a lease that lapsed and was taken by another stays theirs):
 * deleted, or replaced by the "pass" word for ARGV[3] ms when the answer cannot serve the waiters.
 */
const RELEASE_SCRIPT = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])`

/** What a lease holds when its holder's answer could not be stored fresh: fetch, do not wait. */
const PASS = 'pass'

/** How a claim went: taken, held by another process, or left open because the answer cannot be shared. */
export type Claimed = 'taken' | 'held' | 'pass'

export type IndexKind = 'tag' | 'origin'

/** Whether a Keyv is backed by @keyv/redis (its adapter says so and holds a client). */
/** Whether a store adapter (a Keyv's `store`) is @keyv/redis's. */
export function isRedis (store: unknown): boolean {
  const adapter = store as Partial<RedisAdapter> | undefined
  return adapter?.opts?.dialect === 'redis' && typeof adapter.getClient === 'function' && adapter.client !== undefined
}

export class RedisLink {
  readonly #adapter: RedisAdapter
  readonly #prefix: string
  readonly #events: StoreEvents
  readonly #timeouts: StoreTimeouts
  readonly #opened: () => Promise<void>
  #subscriber: RedisClient | undefined
  /** Once the cache is closed nothing more is sent: @keyv/redis would open again the client its owner closed. */
  #closed = false

  /**
   * A link when `keyv` is backed by @keyv/redis, else `undefined`. `opened`: settles once the
   * store's first read has (KeyvStore.opened), which the link's calls wait for.
   */
  static of (keyv: Keyv, events: StoreEvents, timeouts: StoreTimeouts, opened: () => Promise<void>): RedisLink | undefined {
    if (!isRedis(keyv.store)) return undefined
    // A Keyv instance's namespace is its owner's, unchecked: encoded, one with a colon ("app:v2") does
    // not fall under another's prefix ("app"), whose clear() would drop its indexes; none at all is
    // "/", which no encoded one is, where "cachedfetch::" was the start of the entry keys of the
    // default namespace, which such a clear() dropped.
    const namespace = keyv.namespace === undefined || keyv.namespace === '' ? '/' : encodeURIComponent(keyv.namespace)
    return new RedisLink(keyv.store as RedisAdapter, `cachedfetch:${namespace}:`, events, timeouts, opened)
  }

  private constructor (adapter: RedisAdapter, prefix: string, events: StoreEvents, timeouts: StoreTimeouts, opened: () => Promise<void>) {
    this.#adapter = adapter
    this.#prefix = prefix
    this.#events = events
    this.#timeouts = timeouts
    this.#opened = opened
  }

  /** The client, once the store has opened: a call before that fails while it still connects. */
  #client (): Promise<RedisClient> {
    return this.#opened().then(() => this.#connected())
  }

  #connected (): Promise<RedisClient> {
    return this.#closed ? closedCache() : this.#adapter.getClient()
  }

  /** Records `key` under each index until `expires` (ms since the epoch); whether Redis did (a failure is reported). */
  async index (key: string, indexes: ReadonlyArray<readonly [IndexKind, string]>, expires: number): Promise<boolean> {
    return await this.#call('index', key, this.#timeouts.write, async (client) => {
      const now = String(Date.now())
      await Promise.all(indexes.map(([kind, name]) =>
        client.eval(INDEX_SCRIPT, { keys: [this.#indexKey(kind, name)], arguments: [now, String(expires), key] })))
      return true
    }) === true
  }

  /** The live keys under an index; `undefined` when Redis failed (reported). */
  async members (kind: IndexKind, name: string): Promise<string[] | undefined> {
    return await this.#call('scan', undefined, this.#timeouts.write, async (client) =>
      await client.zRangeByScore(this.#indexKey(kind, name), Date.now(), '+inf'))
  }

  /** Takes `keys` out of an index; whether Redis did (a failure is reported). */
  async unindex (kind: IndexKind, name: string, keys: readonly string[]): Promise<boolean> {
    if (keys.length === 0) return true
    return await this.#call('index', undefined, this.#timeouts.write, async (client) => { await client.zRem(this.#indexKey(kind, name), [...keys]); return true }) === true
  }

  /** Drops every index and lease of the namespace (`cache.clear()`); entries are Keyv's to clear. Whether Redis did. */
  async dropAll (): Promise<boolean> {
    return await this.#call('clear', undefined, this.#timeouts.write, async (client) => {
      const nodes = await this.#adapter.getMasterNodes?.() ?? [client]
      for (const node of nodes) {
        for await (const keys of node.scanIterator({ MATCH: `${escapeGlob(this.#prefix)}*`, COUNT: 500 })) {
          // One key a command: in a cluster, keys of one batch can live on different slots.
          await Promise.all(keys.map((key) => node.unlink(key)))
        }
      }
      return true
    }) === true
  }

  /** Claims the lease on `key` for `ms`; `undefined` when Redis could not be asked (reported). */
  async claim (key: string, token: string, ms: number): Promise<Claimed | undefined> {
    const attempt = this.#client().then(async (client) =>
      await client.eval(CLAIM_SCRIPT, { keys: [this.#leaseKey(key)], arguments: [token, String(ms), PASS] }))
    try {
      const answer = await withTimeout(attempt, this.#timeouts.read)
      return answer === 1 ? 'taken' : answer === 2 ? 'pass' : 'held'
    } catch (error) {
      this.#events.error('lease', key, error)
      // A claim that lands after we stopped waiting for it would hold the others up for nothing.
      attempt.then((answer) => { if (answer === 1) void this.release(key, token, false, ms) }, () => {})
      return undefined
    }
  }

  /** Ends a lease: others find the entry (`reusable`), or are told to fetch for themselves for `ms`. */
  async release (key: string, token: string, reusable: boolean, ms: number): Promise<void> {
    await this.#call('lease', key, this.#timeouts.write, async (client) =>
      await client.eval(RELEASE_SCRIPT, { keys: [this.#leaseKey(key)], arguments: [token, reusable ? '' : PASS, String(ms)] }))
  }

  #leaseKey (key: string): string {
    return `${this.#prefix}lease:${key}`
  }

  /** Whether Redis took the message (a failure is reported). */
  async publish (message: string): Promise<boolean> {
    return await this.#call('publish', undefined, this.#timeouts.write, async (client) => await client.publish(this.#channel, message)) !== undefined
  }

  /**
   * Listens for other processes' messages on a connection of its own. `onReconnect` runs when the
   * connection comes back after a loss: messages sent meanwhile are gone for good.
   */
  subscribe (onMessage: (message: string) => void, onReconnect: () => void): void {
    // Not through getClient(): that waits for the first connect, which never comes while Redis is
    // down; this connection keeps trying on its own and subscribes once it is up.
    const client = this.#adapter.client.duplicate()
    this.#subscriber = client
    const report = (error: unknown): void => this.#events.error('subscribe', undefined, error)
    // Subscribing again is harmless (node-redis keeps one listener per channel), and covers a first
    // subscribe that failed. A cluster has no 'ready' event: it subscribes once connected.
    const subscribe = (): void => { client.subscribe(this.#channel, onMessage).catch(report) }
    let connected = false
    client.on('error', report)
    client.on('ready', () => {
      // A standalone client is ready again after a reconnect: messages may have been missed.
      if (connected) {
        onReconnect()
        subscribe()
      }
    })
    // The listener must not keep a process alive that has nothing else to do.
    client.unref?.()
    client.connect().then(() => {
      connected = true
      subscribe()
    }, report)
  }

  close (): void {
    this.#closed = true
    // node-redis throws from destroy() on a client that is not open (it never connected, or Redis went away).
    if (this.#subscriber?.isOpen === true) this.#subscriber.destroy()
    this.#subscriber = undefined
  }

  get #channel (): string {
    return this.#prefix + 'invalidate'
  }

  #indexKey (kind: IndexKind, name: string): string {
    return `${this.#prefix}${kind}:${name}`
  }

  async #call<T> (operation: StoreOperation, key: string | undefined, ms: number, work: (client: RedisClient) => Promise<T>): Promise<T | undefined> {
    try {
      return await callWhenOpen(this.#opened(), async () => await work(await this.#connected()), ms)
    } catch (error) {
      this.#events.error(operation, key, error)
      return undefined
    }
  }
}

/** A namespace is matched literally: `*`, `?`, `[` and `\\` in it are no patterns. */
function escapeGlob (text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&')
}
