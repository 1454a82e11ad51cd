/**
 * A bounded chaos run: many requests, many at once, through both faces of one cache (cachedFetch
 * and undici.request with the interceptor) with L2 on a private redis-server that is stopped and
 * started again half way, against origins with random latency that fail a share of requests
 * (test/soak/origins.ts), while resources are invalidated at random (by URL, tag or prefix) and
 * change version when they are. Every answer is checked:
 *
 * - **Wrong body**: a body that is not, byte for byte, one the origin sent for that URL (and
 *   language), an ETag that is not that body's, or a body older than an invalidation allows (below).
 * - **Failed while the origin was up**: a request that rejected, whose body broke off, or that was
 *   answered anything but 200, unless the origin failed that very resource in the same way while the
 *   request was under way: a 503 whose body names an exchange the origin answered 503 for the same
 *   URL and language (after the cache's retries), or a socket error while an exchange the cache
 *   sent for that URL and language failed on its connection, as seen just below the cache (a
 *   dispatcher that watches every exchange), between the request's start and its failure. The
 *   origin's own clock would not do: a caller may join an exchange in the moment between the
 *   origin closing its socket and the client noticing. Anything else (a hang past 10 s, another
 *   error, another status) is the cache failing a request the origin could have answered.
 * - **Unhandled rejections** and uncaught exceptions, counted while the run lasts.
 * - **Memory**: the heap after a GC at checkpoints after warm-up (a quarter of the requests).
 *
 * Which older body may a caller get? HTTP lets a cache serve a stored response while it is fresh
 * (or stale where stale-while-revalidate or stale-if-error allow it) although the origin has
 * changed it. Here a resource changes only when the soak invalidates it, and the soak raises its
 * version *before* it calls `invalidate*()`: the contract tested is that once that call has
 * resolved, no request that starts afterwards gets an older version — from memory, from Redis,
 * standing in for an error, or written back by an exchange that was under way during the
 * invalidation. A request already under way when the invalidation started may get either version.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import KeyvRedis, { createClient } from '@keyv/redis'
import { Agent, request, type Dispatcher } from 'undici'
import { cacheInterceptor, createCache, createCachedFetch, isCachedFetchError, type CacheStats } from '../../src/index.js'
import { normalizeHeaders } from '../../src/key.js'
import { privateRedis } from '../helpers/redis.js'
import { LANGUAGES, SoakOrigins, type OriginCounts, type Resource } from './origins.js'

export interface SoakOptions {
  readonly requests: number
  readonly concurrency: number
  /** Resources on each of the two origins. */
  readonly perOrigin: number
  /** Share of origin exchanges that fail (503, reset, reset mid-body). */
  readonly failureRate: number
  /** Share of operations that are an invalidation instead of a request. */
  readonly invalidationRate: number
  /** Origin latency is uniform in [0, maxLatency) ms. */
  readonly maxLatency: number
  readonly seed: number
  /** Progress lines, when given. */
  readonly log?: (line: string) => void
}

export interface SoakReport {
  readonly requests: number
  readonly wrongBodies: number
  readonly failedWhileUp: number
  readonly unhandledRejections: number
  readonly uncaughtExceptions: number
  /** Failures the origin made on purpose that reached the caller: the origin was down for them. */
  readonly originDown: number
  /** Answers where a stale entry stood in for the origin's failure. */
  readonly staleIfError: number
  readonly invalidations: number
  /** Invalidations that rejected with ERR_STORE_UNREACHABLE (Redis down): their resources' floors stay. */
  readonly unreached: number
  /** The first few problems, for the report. */
  readonly examples: readonly string[]
  readonly origin: OriginCounts
  readonly cache: CacheStats
  /** heapUsed after GC, in bytes: after warm-up, then at each checkpoint. */
  readonly heap: readonly number[]
  readonly seconds: number
  readonly seed: number
}

/** How far the heap may grow after warm-up: the memory tier is 1 MiB, and nothing else should grow. */
export const HEAP_GROWTH_BOUND = 16 * 1024 * 1024

/** The growth of the heap after warm-up: the largest checkpoint less the first. */
export function heapGrowth (report: SoakReport): number {
  return Math.max(...report.heap) - report.heap[0]!
}

/** The line the soak ends with. */
export function verdict (report: SoakReport): string {
  return `${report.wrongBodies} wrong bodies, ${report.failedWhileUp} failed requests while the origin was up, ${report.unhandledRejections} unhandled rejections`
}

/** Counts, one a line. */
export function describeReport (report: SoakReport): string {
  const c = report.cache
  const mib = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1)
  return [
    `seed ${report.seed}: ${report.requests} requests and ${report.invalidations} invalidations in ${report.seconds.toFixed(1)} s`,
    `cache: ${c.hits} hits, ${c.misses} misses, ${c.revalidated} revalidated, ${c.staleServed} stale served (${report.staleIfError} for stale-if-error), ${c.stored} stored, ${c.retries} retries, ${c.storeErrors} store errors`,
    `origin: ${report.origin.ok} answered 200, ${report.origin.notModified} 304, ${report.origin.failed503} failed 503, ${report.origin.resets} reset, ${report.origin.resetsMidBody} reset mid-body; ${report.originDown} requests failed with the origin`,
    `heap after warm-up and at each checkpoint (MiB): ${report.heap.map(mib).join(', ')}; grown by ${mib(heapGrowth(report))} (bound ${mib(HEAP_GROWTH_BOUND)})`,
    ...report.examples.map((example) => `  ${example}`),
    verdict(report)
  ].join('\n')
}

export async function soak (options: SoakOptions): Promise<SoakReport> {
  const random = mulberry32(options.seed)
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const started = performance.now()

  const origins = await SoakOrigins.start({ origins: 2, perOrigin: options.perOrigin, random, failureRate: options.failureRate, maxLatency: options.maxLatency, largeSize: 300 * 1024 })
  const redis = await privateRedis()
  const client = createClient({ url: redis.url, disableOfflineQueue: true })
  const cache = createCache({
    store: new KeyvRedis(client, { throwOnErrors: true }),
    namespace: 'soak',
    // Small, so that entries are evicted and read back from Redis.
    maxSize: 1024 * 1024,
    maxEntrySize: 256 * 1024,
    coordinate: true,
    retry: { limit: 2, baseDelay: 5, maxDelay: 20 }
  })
  const agent = new Agent({ connections: 64 })
  // Below the cache: sees every exchange it sends, retries included.
  const watched = agent.compose(watchResets(origins))
  const cachedFetch = createCachedFetch({ cache, dispatcher: watched })
  const intercepted = watched.compose(cacheInterceptor({ cache }))

  let unhandledRejections = 0
  let uncaughtExceptions = 0
  const examples: string[] = []
  const onRejection = (reason: unknown): void => { unhandledRejections++; note(`unhandled rejection: ${String(reason)}`) }
  const onException = (error: unknown): void => { uncaughtExceptions++; note(`uncaught exception: ${String(error)}`) }
  process.on('unhandledRejection', onRejection)
  process.on('uncaughtException', onException)
  /** The first five problems of each kind. */
  const noted = new Map<string, number>()
  function note (example: string): void {
    const kind = example.slice(0, example.indexOf(':'))
    const count = noted.get(kind) ?? 0
    noted.set(kind, count + 1)
    if (count < 5) examples.push(example)
  }

  let wrongBodies = 0
  let failedWhileUp = 0
  let originDown = 0
  let staleIfError = 0
  let invalidations = 0
  let unreached = 0
  const heap: number[] = []
  const warmUp = Math.floor(options.requests / 4)
  const checkpoints = new Set([warmUp, ...[2, 3, 4, 5, 6, 7, 8].map((n) => Math.floor(options.requests * n / 8))])
  const redisDown = Math.floor(options.requests * 0.4)
  const redisUp = Math.floor(options.requests * 0.55)
  let restart: Promise<void> | undefined

  async function send (resource: Resource, language: string | undefined): Promise<void> {
    const key = `${resource.url} ${language ?? '-'}`
    // Read when the request starts: the oldest version it may get (see the module's comment).
    const floor = resource.floor
    const start = performance.now()
    const headers = language === undefined ? undefined : { 'accept-language': language }
    try {
      const signal = AbortSignal.timeout(10_000)
      let answer: { status: number, header: (name: string) => string | undefined, body: Buffer }
      if (random() < 0.5) {
        const response = await cachedFetch(resource.url, { headers, signal })
        answer = { status: response.status, header: (name) => response.headers.get(name) ?? undefined, body: Buffer.from(await response.arrayBuffer()) }
      } else {
        const response = await request(resource.url, { dispatcher: intercepted, headers, signal })
        const fields = response.headers
        answer = { status: response.statusCode, header: (name) => fieldText(fields[name]), body: Buffer.from(await response.body.arrayBuffer()) }
      }
      const status = answer.header('cache-status') ?? ''
      if (answer.status === 503) {
        const id = Number(/^down (\d+)$/.exec(answer.body.toString())?.[1])
        if (origins.failuresBetween(key, start, performance.now()).some((f) => f.kind === '503' && f.id === id)) originDown++
        else failed(`503 the origin did not send for ${key}: ${status}`)
        return
      }
      if (answer.status !== 200) {
        failed(`status ${answer.status} for ${key}: ${status}`)
        return
      }
      if (status.includes('detail=stale-if-error')) staleIfError++
      const sent = origins.identify(answer.body)
      if (sent === undefined || sent.key !== key || sent.version > resource.version) {
        wrong(`${sent === undefined ? 'a body the origin never sent' : `the body of ${sent.key}`} (${answer.body.byteLength} bytes) for ${key}: ${status}`)
      } else if (sent.version < floor) {
        wrong(`version ${sent.version} of ${key} after an invalidation to version ${floor} had completed: ${status}`)
      } else if (answer.header('etag') !== SoakOrigins.etag(sent.version, language ?? '-')) {
        wrong(`ETag ${answer.header('etag')} with version ${sent.version} of ${key}: ${status}`)
      }
    } catch (error) {
      const socket = codes(error).includes('UND_ERR_SOCKET')
      if (socket && origins.failuresBetween(key, start, performance.now()).some((f) => f.kind === 'reset')) originDown++
      else failed(`${key}: ${String(error)} [${codes(error).join(', ')}]`)
    }
  }

  function wrong (what: string): void {
    wrongBodies++
    note(`wrong body: ${what}`)
  }

  function failed (what: string): void {
    failedWhileUp++
    note(`failed: ${what}`)
  }

  /** Raises the versions of what it picks, then invalidates them; their floor rises once that resolved. */
  async function invalidate (): Promise<void> {
    invalidations++
    const roll = random()
    let picked: Resource[]
    let run: () => Promise<void>
    if (roll < 0.6) {
      const resource = pick(origins.resources)
      picked = [resource]
      run = () => cache.invalidate(resource.url)
    } else if (roll < 0.9) {
      const tag = pick(origins.resources).tag
      picked = origins.resources.filter((r) => r.tag === tag)
      run = () => cache.invalidateTag(tag)
    } else {
      const { url, tag } = pick(origins.resources)
      const prefix = `${new URL(url).origin}/${tag}/`
      picked = origins.resources.filter((r) => r.url.startsWith(prefix))
      run = () => cache.invalidatePrefix(prefix)
    }
    const versions = picked.map((resource) => ++resource.version)
    // One that could not reach Redis (down half way) rejects: it promised nothing, so the floors stay.
    const reached = await run().then(() => true, (error: unknown) => {
      if (!isCachedFetchError(error) || error.code !== 'ERR_STORE_UNREACHABLE') throw error
      unreached++
      return false
    })
    if (reached) picked.forEach((resource, i) => { resource.floor = Math.max(resource.floor, versions[i]!) })
  }

  let next = 0
  async function worker (): Promise<void> {
    while (next < options.requests) {
      if (random() < options.invalidationRate) {
        await invalidate()
        continue
      }
      const i = next++
      if (i === redisDown) redis.stop()
      if (i === redisUp) restart = redis.start()
      if (checkpoints.has(i)) {
        gc()
        heap.push(process.memoryUsage().heapUsed)
        options.log?.(`${i} requests, ${((performance.now() - started) / 1000).toFixed(1)} s: ${verdict(partial())}`)
      }
      const resource = pick(origins.resources)
      await send(resource, resource.kind === 'vary' ? pick(LANGUAGES) : undefined)
    }
  }

  function partial (): SoakReport {
    return {
      requests: next, wrongBodies, failedWhileUp, unhandledRejections, uncaughtExceptions, originDown, staleIfError, invalidations, unreached,
      examples, origin: { ...origins.counts }, cache: cache.stats(), heap, seconds: (performance.now() - started) / 1000, seed: options.seed
    }
  }

  try {
    await Promise.all(Array.from({ length: options.concurrency }, worker))
    await restart
    await cache.flush()
    gc()
    heap.push(process.memoryUsage().heapUsed)
    // Rejections are reported on a later turn of the event loop than the one they happened on.
    await new Promise((resolve) => setTimeout(resolve, 50))
    return partial()
  } finally {
    process.off('unhandledRejection', onRejection)
    process.off('uncaughtException', onException)
    await cache.close()
    await agent.close()
    if (client.isOpen) client.destroy()
    await redis.close()
    await origins.close()
  }
}

/** An interceptor that logs, by resource, each exchange that fails on its connection. */
function watchResets (origins: SoakOrigins): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (opts, handler) => {
    const key = origins.keyOf(`${String(opts.origin)}${opts.path}`, normalizeHeaders(opts.headers)['accept-language'])
    return dispatch(opts, {
      onRequestStart: (controller, context) => handler.onRequestStart?.(controller, context),
      onRequestUpgrade: (controller, status, headers, socket) => handler.onRequestUpgrade?.(controller, status, headers, socket),
      onResponseStart: (controller, status, headers, text) => handler.onResponseStart?.(controller, status, headers, text),
      onResponseData: (controller, chunk) => handler.onResponseData?.(controller, chunk),
      onResponseEnd: (controller, trailers) => handler.onResponseEnd?.(controller, trailers),
      onResponseError: (controller, error) => {
        if (key !== undefined && (error as { code?: unknown }).code === 'UND_ERR_SOCKET') origins.reset(key)
        handler.onResponseError?.(controller, error)
      }
    })
  }
}

function fieldText (value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value
}

/** The codes and names along an error's cause chain (fetch wraps a network error in a TypeError). */
function codes (error: unknown): string[] {
  const found: string[] = []
  for (let e = error as { code?: unknown, name?: unknown, cause?: unknown } | undefined; e !== undefined && e !== null; e = e.cause as typeof e) {
    if (typeof e.code === 'string') found.push(e.code)
    if (typeof e.name === 'string') found.push(e.name)
  }
  return found
}

/** A small seeded PRNG, so that a run can be repeated from its seed. */
function mulberry32 (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
