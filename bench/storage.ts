/**
 * The storage scenarios:
 * - redis: a hit answered from Redis (no memory tier) next to a raw Redis GET of the same stored
 *   value, on a client of its own: cachedfetch through `cachedFetch()`, through the interceptor and
 *   its bare `cache.lookup()` (GET, policy; no Response), and got over a Keyv on Redis, the
 *   one peer with a Redis store of its own. One hot key, read again and again: its frame is
 *   decoded once (src/store/decoded.ts), which the README says beside the table. Needs the Redis at REDIS_URL (default
 *   redis://127.0.0.1:6379) and is skipped, with a note, without one; it writes under namespaces of
 *   its own and deletes them.
 * - memory: what 10 000 entries of 1 KB cost each contender with a memory cache: heap and
 *   ArrayBuffer bytes after GC, per entry, next to the 1 KB body.
 */
import { randomBytes } from 'node:crypto'
import { setImmediate as tick } from 'node:timers/promises'
import KeyvRedis, { createClient } from '@keyv/redis'
import { Keyv } from 'keyv'
import { Agent, request } from 'undici'
import { gotClient, type Contender, type ContenderId } from './contenders.js'
import type { Library } from './library.js'
import { interleave, type Session } from './measure.js'
import type { BenchOrigin } from './origin.js'
import { median } from './report.js'

export interface RedisRow {
  readonly id: 'rawGet' | 'lookup' | 'cachedFetch' | 'cacheInterceptor' | 'gotRawGet' | 'got'
  readonly label: string
  readonly samples: readonly number[]
  readonly medianUs: number
  /** medianUs over the raw GET of the same stored value (cachedfetch's, or got's own). */
  readonly vsRawGet: number
}

export interface RedisRun {
  readonly rows: readonly RedisRow[]
  /** Bytes of the stored value for a 1 KB body: cachedfetch's, got's. */
  readonly storedBytes: { readonly cachedfetch: number, readonly got: number }
}

export interface MemoryRow {
  readonly id: ContenderId
  readonly label: string
  readonly entries: number
  readonly bodyBytes: number
  /** Heap and ArrayBuffer bytes the filled cache holds, per entry. */
  readonly bytesPerEntry: number
  /** bytesPerEntry / bodyBytes: the goal is ≤ 1.5. */
  readonly vsPayload: number
}

export interface MemoryRun {
  readonly rows: readonly MemoryRow[]
  readonly cannot: ReadonlyArray<{ readonly label: string, readonly why: string }>
}

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {})
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

export async function redisTier (lib: Library, origin: BenchOrigin, rounds: number, roundMs: number, warmupMs: number, session: Session): Promise<RedisRun> {
  const raw = createClient({ url: REDIS_URL, socket: { connectTimeout: 1000, reconnectStrategy: false } })
  raw.on('error', () => {})
  await raw.connect()
  const id = randomBytes(6).toString('hex')
  const namespace = `cachedfetch-bench-${id}`
  const gotNamespace = `got-bench-${id}`
  const cacheClient = createClient({ url: REDIS_URL, disableOfflineQueue: true })
  const gotKeyv = new Keyv({ store: new KeyvRedis(REDIS_URL), namespace: gotNamespace })
  const agent = new Agent()
  // Read timeouts past the 100 ms default: a read that waited out a full collection of this busy
  // process would be a miss (as a service wants it), which this scenario of hits counts as a failure.
  const cache = lib.createCache({ store: new KeyvRedis(cacheClient, { throwOnErrors: true }), namespace, maxSize: 0, storeTimeouts: { read: 2000, write: 2000 } })
  const interceptorAgent = new Agent().compose(lib.cacheInterceptor({ cache }))
  const got = gotClient(gotKeyv)
  try {
    const target = `${origin.url}/redis/cachedFetch/fresh/1k/doc`
    const interceptorTarget = `${origin.url}/redis/cacheInterceptor/fresh/1k/doc`
    const gotTarget = `${origin.url}/redis/got/fresh/1k/doc`
    const cachedFetch = lib.createCachedFetch({ cache, dispatcher: agent })
    await (await cachedFetch(target)).arrayBuffer()
    await (await request(interceptorTarget, { dispatcher: interceptorAgent })).body.arrayBuffer()
    await got.get(gotTarget)
    await cache.flush()
    await tick()
    const key = `${namespace}::${namespace}:GET ${target}`
    const stored = await raw.get(key)
    if (stored === null) throw new Error('the primed cachedfetch entry is not in Redis')
    let gotKey: string | undefined
    for await (const keys of raw.scanIterator({ MATCH: `*${gotNamespace}*` })) gotKey ??= keys[0]
    const gotStored = gotKey === undefined ? null : await raw.get(gotKey)
    if (gotKey === undefined || gotStored === null) throw new Error('the primed got entry is not in Redis')

    const lookupRequest = { method: 'GET', url: target, headers: {} }
    const hit = (what: string, cacheStatus: string | null | undefined): void => {
      if (cacheStatus?.startsWith('cachedfetch; hit') !== true) throw new Error(`${what} from Redis was not a hit: ${cacheStatus ?? 'no Cache-Status'}`)
    }
    const ops: Record<RedisRow['id'], { label: string, op: () => Promise<number> }> = {
      rawGet: { label: 'raw Redis GET of cachedfetch\'s stored value', op: async () => (await raw.get(key))!.length },
      lookup: {
        label: 'cachedfetch: cache.lookup() (GET, policy; one hot key, its frame decoded once)',
        op: async () => {
          const found = await cache.lookup(lookupRequest)
          if (found.kind !== 'hit') throw new Error(`L2 lookup was a ${found.kind}`)
          return 0
        }
      },
      cachedFetch: {
        label: 'cachedfetch: cachedFetch(), body read',
        op: async () => {
          const response = await cachedFetch(target)
          const bytes = (await response.arrayBuffer()).byteLength
          hit('cachedFetch()', response.headers.get('cache-status'))
          return bytes
        }
      },
      cacheInterceptor: {
        label: 'cachedfetch: request + cacheInterceptor, body read',
        op: async () => {
          const response = await request(interceptorTarget, { dispatcher: interceptorAgent })
          const bytes = (await response.body.arrayBuffer()).byteLength
          hit('the interceptor', response.headers['cache-status'] as string | undefined)
          return bytes
        }
      },
      gotRawGet: { label: 'raw Redis GET of got\'s stored value', op: async () => (await raw.get(gotKey))!.length },
      got: { label: 'got over Keyv + @keyv/redis, body read', op: () => got.get(gotTarget) }
    }
    const runners = Object.entries(ops).map(([id, { label, op }]) => ({ id, label, op, before: () => got.settle?.() }))
    const measured = await interleave('redis', runners, { rounds, roundMs, warmupMs, budgetMs: 20_000, bodyBytes: undefined }, session)
    for (const path of ['/redis/cachedFetch/fresh/1k', '/redis/cacheInterceptor/fresh/1k', '/redis/got/fresh/1k']) {
      const { requests } = await origin.seen(path)
      if (requests !== 1) session.warnings.push(`redis: the origin saw ${requests} requests under ${path}, expected only the priming one`)
    }
    const medians = new Map(measured.map((m) => [m.id, median(m.rounds.map((t) => t.wall))]))
    return {
      rows: measured.map((m) => {
        const medianUs = medians.get(m.id)!
        const base = medians.get(m.id === 'got' || m.id === 'gotRawGet' ? 'gotRawGet' : 'rawGet')!
        return { id: m.id as RedisRow['id'], label: m.label, samples: m.rounds.map((t) => t.wall), medianUs, vsRawGet: medianUs / base }
      }),
      storedBytes: { cachedfetch: Buffer.byteLength(stored), got: Buffer.byteLength(gotStored) }
    }
  } finally {
    for (const ns of [namespace, gotNamespace]) {
      for await (const keys of raw.scanIterator({ MATCH: `*${ns}*` })) for (const k of keys) await raw.unlink(k)
    }
    await raw.close()
    await cache.close()
    if (cacheClient.isOpen) await cacheClient.close()
    await got.close()
    await agent.close()
    await interceptorAgent.close()
  }
}

export async function memoryTier (field: readonly Contender[], origin: BenchOrigin, entries: number, session: Session): Promise<MemoryRun> {
  const able = field.filter((c) => c.cannot.memory === undefined)
  const cannot = field.filter((c) => c.cannot.memory !== undefined).map((c) => ({ label: c.label, why: c.cannot.memory! }))
  const rows: MemoryRow[] = []
  for (const c of able) {
    session.progress(`memory: ${c.label}`)
    const client = c.create()
    try {
      // The client's own buffers and first-use allocations come before the baseline: uncached
      // requests, then cached ones (which stay, in the baseline), so that the code the JIT compiles
      // while the cache fills is not counted as what the entries hold.
      for (let i = 0; i < 200; i++) await client.get(`${origin.url}/memory-warm/${c.id}/nostore/1k/w${i}`)
      for (let i = 0; i < 5000; i++) await client.get(`${origin.url}/memory-warm/${c.id}/fresh/1k/w${i}`)
      const before = await heldBytes()
      const directory = `/memory/${c.id}/fresh/1k`
      for (let i = 0; i < entries; i++) await client.get(`${origin.url}${directory}/e${i}`)
      await tick()
      const after = await heldBytes()
      // Every entry is still there: the first one, asked again, does not reach the origin.
      await client.get(`${origin.url}${directory}/e0`)
      const { requests } = await origin.seen(directory)
      if (requests !== entries) session.warnings.push(`memory, ${c.label}: the origin saw ${requests} requests for ${entries} entries (and the first again): the cache did not hold them all`)
      const bytesPerEntry = (after - before) / entries
      rows.push({ id: c.id, label: c.label, entries, bodyBytes: 1024, bytesPerEntry, vsPayload: bytesPerEntry / 1024 })
    } finally {
      await client.close()
    }
  }
  return { rows, cannot }
}

/**
 * Heap plus ArrayBuffer bytes (where Buffers live) once garbage is gone. A turn of the event loop
 * between collections lets finalizers run (undici registers response bodies with a
 * FinalizationRegistry), which free what the next collection then takes.
 */
async function heldBytes (): Promise<number> {
  for (let i = 0; i < 4; i++) {
    gc()
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.arrayBuffers
}
