/**
 * The storage part of `npm run bench`: what an L2 hit in Redis costs next to a raw Redis GET of
 * the same stored bytes, and what 10 000 entries of 1 KB cost in the memory tier (heap and
 * buffers, measured after GC). The Redis part needs the Redis at REDIS_URL (default
 * redis://127.0.0.1:6379) and is skipped, with a note, without one; it writes under a namespace of
 * its own and deletes it.
 */
import { randomBytes } from 'node:crypto'
import KeyvRedis, { createClient } from '@keyv/redis'
import { Agent, request } from 'undici'
import type { Library } from './contenders.js'
import { startBenchOrigin } from './origin.js'

export interface RedisTierResult {
  /** µs per raw GET of the entry's Redis key, on a client of its own. */
  readonly rawGetUs: number
  /** µs per `cache.lookup()` answered from Redis (no memory tier): GET, parse, policy. */
  readonly lookupUs: number
  /** µs per `cachedFetch()` answered from Redis: the lookup plus building the Response. */
  readonly fetchUs: number
  /** lookupUs / rawGetUs: the goal is ≤ 2. */
  readonly lookupVsRawGet: number
  readonly fetchVsRawGet: number
  /** Bytes of the stored value for a 1 KB body. */
  readonly storedBytes: number
}

export interface MemoryTierResult {
  readonly entries: number
  readonly bodyBytes: number
  /** Heap and ArrayBuffer bytes the filled cache holds, per entry. */
  readonly bytesPerEntry: number
  /** bytesPerEntry / bodyBytes: the goal is ≤ 1.5. */
  readonly vsPayload: number
}

export interface StorageResults {
  readonly redis: RedisTierResult | { readonly skipped: string }
  readonly memory: MemoryTierResult
}

const gc = (globalThis as { gc?: () => void }).gc ?? (() => {})

export async function storageBench (lib: Library, body: Buffer, progress: (text: string) => void): Promise<StorageResults> {
  progress('storage: memory tier…')
  const memory = await memoryTier(lib, body)
  progress('storage: Redis tier…')
  const redis = await redisTier(lib, body).catch((error: unknown) => ({ skipped: `Redis not reachable: ${(error as Error).message}` }))
  return { redis, memory }
}

async function memoryTier (lib: Library, body: Buffer, entries = 10_000): Promise<MemoryTierResult> {
  const origin = await startBenchOrigin(body)
  const agent = new Agent()
  try {
    const cache = lib.createCache()
    const dispatcher = agent.compose(lib.cacheInterceptor({ cache }))
    // The client's own buffers and first-use allocations come before the baseline.
    for (let i = 0; i < 200; i++) await (await request(`${origin.url}/warm/${i}`, { dispatcher: agent })).body.arrayBuffer()
    const before = settled()
    for (let i = 0; i < entries; i++) await (await request(`${origin.url}/item/${i}`, { dispatcher })).body.arrayBuffer()
    await new Promise((resolve) => setImmediate(resolve))
    const after = settled()
    if (cache.stats().stored !== entries) throw new Error(`memory tier stored ${cache.stats().stored} of ${entries} entries`)
    const bytesPerEntry = (after - before) / entries
    return { entries, bodyBytes: body.byteLength, bytesPerEntry, vsPayload: bytesPerEntry / body.byteLength }
  } finally {
    await agent.close()
    await origin.close()
  }
}

/** Heap plus ArrayBuffer bytes (where Buffers live) once garbage is gone. */
function settled (): number {
  for (let i = 0; i < 3; i++) gc()
  const usage = process.memoryUsage()
  return usage.heapUsed + usage.arrayBuffers
}

async function redisTier (lib: Library, body: Buffer): Promise<RedisTierResult> {
  const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
  const namespace = `cachedfetch-bench-${randomBytes(6).toString('hex')}`
  const raw = createClient({ url, socket: { connectTimeout: 1000, reconnectStrategy: false } })
  raw.on('error', () => {})
  await raw.connect()
  const client = createClient({ url, disableOfflineQueue: true })
  const origin = await startBenchOrigin(body)
  const agent = new Agent()
  const cache = lib.createCache({ store: new KeyvRedis(client, { throwOnErrors: true }), namespace, maxSize: 0 })
  try {
    const target = `${origin.url}/l2`
    const cachedFetch = lib.createCachedFetch({ cache, dispatcher: agent })
    await (await cachedFetch(target)).arrayBuffer()
    await cache.flush()
    const key = `${namespace}::${namespace}:GET ${target}`
    const stored = await raw.get(key)
    if (stored === null) throw new Error('the primed entry is not in Redis')
    const lookupRequest = { method: 'GET', url: target, headers: {} }
    const ops = {
      rawGet: async () => { await raw.get(key) },
      lookup: async () => {
        const found = await cache.lookup(lookupRequest)
        if (found.kind !== 'hit') throw new Error(`L2 lookup was a ${found.kind}`)
      },
      fetch: async () => {
        const response = await cachedFetch(target)
        await response.arrayBuffer()
        if (response.headers.get('cache-status')?.startsWith('cachedfetch; hit') !== true) throw new Error('L2 fetch was not a hit')
      }
    }
    const samples: Record<keyof typeof ops, number[]> = { rawGet: [], lookup: [], fetch: [] }
    for (const op of Object.values(ops)) await timeFor(op, 200)
    for (let round = 0; round < 7; round++) {
      const names = Object.keys(ops) as Array<keyof typeof ops>
      for (const name of round % 2 === 0 ? names : names.reverse()) samples[name].push(await timeFor(ops[name], 250))
    }
    const rawGetUs = median(samples.rawGet)
    const lookupUs = median(samples.lookup)
    const fetchUs = median(samples.fetch)
    return { rawGetUs, lookupUs, fetchUs, lookupVsRawGet: lookupUs / rawGetUs, fetchVsRawGet: fetchUs / rawGetUs, storedBytes: Buffer.byteLength(stored) }
  } finally {
    for await (const keys of raw.scanIterator({ MATCH: `*${namespace}*` })) for (const key of keys) await raw.unlink(key)
    await raw.close()
    await cache.close()
    if (client.isOpen) await client.close()
    await agent.close()
    await origin.close()
  }
}

/** µs per operation, run one after another for about `ms`. */
async function timeFor (op: () => Promise<void>, ms: number): Promise<number> {
  gc()
  let n = 0
  const start = performance.now()
  while (performance.now() - start < ms) {
    await op()
    n++
  }
  return (performance.now() - start) * 1000 / n
}

function median (values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]!
}

/** The storage section of the printed report, with its two goals. */
export function formatStorage (results: StorageResults): string {
  const mark = (met: boolean): string => met ? 'met   ' : 'MISSED'
  const { redis, memory } = results
  const lines = ['Storage tiers']
  if ('skipped' in redis) {
    lines.push(`  skipped  Redis L2 hit: ${redis.skipped}`)
  } else {
    lines.push(`  raw Redis GET of the stored value (${redis.storedBytes} bytes): ${redis.rawGetUs.toFixed(1)} µs`)
    lines.push(`  cache.lookup() answered from Redis (no memory tier): ${redis.lookupUs.toFixed(1)} µs`)
    lines.push(`  cachedFetch() answered from Redis, Response and body included: ${redis.fetchUs.toFixed(1)} µs (${redis.fetchVsRawGet.toFixed(2)}× the GET)`)
    lines.push(`  ${mark(redis.lookupVsRawGet <= 2)}  L2 hit via Redis ≤ 2× a raw Redis GET: ${redis.lookupVsRawGet.toFixed(2)}×`)
  }
  lines.push(`  memory tier: ${memory.entries} entries of ${memory.bodyBytes} B hold ${Math.round(memory.bytesPerEntry)} B each (heap + buffers after GC)`)
  lines.push(`  ${mark(memory.vsPayload <= 1.5)}  L1 memory ≤ 1.5× payload bytes: ${memory.vsPayload.toFixed(2)}×`)
  return lines.join('\n')
}
