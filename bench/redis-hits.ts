/**
 * Hits answered from Redis, in a loop, for two questions the benchmark's side-by-side rounds
 * cannot answer on a noisy machine:
 * - `interleaved`: the CPU time a request of a raw GET; of a memory hit through each face; of a raw
 *   GET followed by that same memory hit; of a round trip to an echo server in another process, alone
 *   and followed by the interceptor's memory hit; and of a hit answered from Redis (no memory tier)
 *   through each face, three rounds of each. It shows what interleaving a network read with a hit
 *   costs, and that Redis is not what makes it cost.
 * - `floor`: the wall-clock time of a raw GET; of the least an interceptor answering from Redis can
 *   do under `undici.request()` (one GET of the stored value, its bytes played as the body with
 *   fixed fields: no decoding, no policy, no Cache-Status of its own); and of a hit from Redis
 *   through each face: interleaved rounds, medians, each as a multiple of the raw GET, as the
 *   benchmark's goal puts it. It shows how much of that bound `undici.request()` takes by itself.
 * - `count <cachedFetch|interceptor> <hits>`: that many hits from Redis through one face, after 2000
 *   that are not asked for, and nothing else: for an instruction counter, which does not care what
 *   else the machine does. Run under `valgrind --tool=callgrind` with 2500 hits and with 500; the
 *   difference over 2000 is the instructions a hit (the origin, a process of its own, is not
 *   counted).
 *
 *     node --import tsx bench/redis-hits.ts interleaved [dist]
 *     node --import tsx bench/redis-hits.ts floor [dist]
 *     valgrind --tool=callgrind node --import tsx bench/redis-hits.ts count cachedFetch 2500 [dist]
 *
 * Needs the Redis at REDIS_URL (default redis://127.0.0.1:6379); deletes what it wrote.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createConnection } from 'node:net'
import KeyvRedis, { createClient } from '@keyv/redis'
import { Agent, request } from 'undici'
import { type Library, loadLibrary } from './library.js'
import { startBenchOrigin } from './origin.js'
import { median } from './report.js'

const [mode = 'interleaved', ...rest] = process.argv.slice(2)
const libDir = mode === 'count' ? rest[2] : rest[0]
const FLOOR_ROUNDS = 14
const FLOOR_PER_ROUND = 1000
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const ROUNDS = 3
const ROUND_MS = 1500
const UNCOUNTED = 2000

const lib = await loadLibrary(libDir)
const origin = await startBenchOrigin()
const raw = createClient({ url: REDIS_URL })
await raw.connect()
const namespace = `cachedfetch-redis-hits-${randomBytes(6).toString('hex')}`
const client = createClient({ url: REDIS_URL, disableOfflineQueue: true })
const redisCache = lib.createCache({ store: new KeyvRedis(client, { throwOnErrors: true }), namespace, maxSize: 0, storeTimeouts: { read: 2000, write: 2000 } })
const url = (name: string): string => `${origin.url}/redis-hits/${name}/fresh/1k/doc`

/** One request and its body, read; throws unless it was a hit. */
const viaInterceptor = (dispatcher: Agent | ReturnType<Agent['compose']>, target: string) => async (): Promise<void> => {
  const response = await request(target, { dispatcher })
  await response.body.arrayBuffer()
  if (!String(response.headers['cache-status']).startsWith('cachedfetch; hit')) throw new Error(`${target}: not a hit`)
}
const viaFetch = (fetch: ReturnType<Library['createCachedFetch']>, target: string) => async (): Promise<void> => {
  const response = await fetch(target)
  await response.arrayBuffer()
  if (response.headers.get('cache-status')?.startsWith('cachedfetch; hit') !== true) throw new Error(`${target}: not a hit`)
}

const faces = {
  interceptor: {
    memory: viaInterceptor(new Agent().compose(lib.cacheInterceptor()), url('memory-interceptor')),
    redis: viaInterceptor(new Agent().compose(lib.cacheInterceptor({ cache: redisCache })), url('redis-interceptor'))
  },
  cachedFetch: {
    memory: viaFetch(lib.createCachedFetch({ dispatcher: new Agent() }), url('memory-fetch')),
    redis: viaFetch(lib.createCachedFetch({ cache: redisCache, dispatcher: new Agent() }), url('redis-fetch'))
  }
}

try {
  // The first request of each is the miss that stores; the Redis writes land before any hit.
  for (const face of Object.values(faces)) {
    for (const hit of [face.memory, face.redis]) await hit().catch(() => {})
  }
  await redisCache.flush()
  const key = `${namespace}::${namespace}:GET ${url('redis-interceptor')}`
  if (await raw.get(key) === null) throw new Error('the entry is not in Redis')

  if (mode === 'count') {
    const [face = '', hits = ''] = rest
    const hit = (faces as Record<string, { redis: () => Promise<void> } | undefined>)[face]?.redis
    if (hit === undefined || !Number.isSafeInteger(Number(hits))) throw new TypeError('expected count <cachedFetch|interceptor> <hits> [lib]')
    for (let i = 0; i < UNCOUNTED + Number(hits); i++) await hit()
  } else if (mode === 'interleaved') {
    const rawGet = async (): Promise<void> => { await raw.get(key) }
    const echo = await echoRoundTrip()
    const ops: Record<string, () => Promise<void>> = {
      'raw GET': rawGet,
      'interceptor: memory hit': faces.interceptor.memory,
      'interceptor: raw GET, then memory hit': async () => { await rawGet(); await faces.interceptor.memory() },
      'TCP echo': echo.roundTrip,
      'interceptor: TCP echo, then memory hit': async () => { await echo.roundTrip(); await faces.interceptor.memory() },
      'interceptor: hit from Redis': faces.interceptor.redis,
      'cachedFetch: memory hit': faces.cachedFetch.memory,
      'cachedFetch: raw GET, then memory hit': async () => { await rawGet(); await faces.cachedFetch.memory() },
      'cachedFetch: hit from Redis': faces.cachedFetch.redis
    }
    const cpu: Record<string, string[]> = {}
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, op] of Object.entries(ops)) {
        for (let i = 0; i < UNCOUNTED; i++) await op()
        const start = performance.now()
        const before = process.cpuUsage()
        let n = 0
        for (; performance.now() - start < ROUND_MS; n += 100) for (let i = 0; i < 100; i++) await op()
        const used = process.cpuUsage(before)
        ;(cpu[name] ??= []).push(((used.user + used.system) / n).toFixed(1))
      }
    }
    for (const [name, rounds] of Object.entries(cpu)) process.stdout.write(`${name.padEnd(40)} CPU µs a request: ${rounds.join(', ')}\n`)
    echo.close()
  } else if (mode === 'floor') {
    const ops: Record<string, () => Promise<unknown>> = {
      'raw GET': async () => await raw.get(key),
      'least interceptor answering from Redis': leastFromRedis(key, url('least')),
      'cacheInterceptor: hit from Redis': faces.interceptor.redis,
      'cachedFetch: hit from Redis': faces.cachedFetch.redis
    }
    const wall: Record<string, number[]> = {}
    const cpu: Record<string, number[]> = {}
    const names = Object.keys(ops)
    for (const name of names) for (let i = 0; i < UNCOUNTED; i++) await ops[name]!()
    for (let round = 0; round < FLOOR_ROUNDS; round++) {
      for (const name of round % 2 === 0 ? names : [...names].reverse()) {
        const start = performance.now()
        const before = process.cpuUsage()
        for (let i = 0; i < FLOOR_PER_ROUND; i++) await ops[name]!()
        const used = process.cpuUsage(before)
        ;(wall[name] ??= []).push((performance.now() - start) * 1000 / FLOOR_PER_ROUND)
        ;(cpu[name] ??= []).push((used.user + used.system) / FLOOR_PER_ROUND)
      }
    }
    const reference = median(wall['raw GET']!)
    process.stdout.write(`${FLOOR_ROUNDS} rounds of ${FLOOR_PER_ROUND} each, medians\n`)
    for (const name of names) {
      const us = median(wall[name]!)
      process.stdout.write(`${name.padEnd(40)} ${us.toFixed(1).padStart(6)} µs  ${(us / reference).toFixed(2)}× the raw GET  CPU ${median(cpu[name]!).toFixed(1)} µs\n`)
    }
  } else {
    throw new TypeError(`expected a mode of interleaved, floor or count, got ${mode}`)
  }
} finally {
  for await (const keys of raw.scanIterator({ MATCH: `*${namespace}*` })) if (keys.length > 0) await raw.del(keys)
  await redisCache.close()
  await client.close()
  await raw.close()
  await origin.close()
}
process.exit(0)

/**
 * The least an interceptor answering from Redis does for `undici.request()`: one GET, and the value
 * played as the response (its bytes, whatever they hold) with fields fixed in advance.
 */
function leastFromRedis (key: string, target: string): () => Promise<void> {
  const controller = { aborted: false, paused: false, reason: null, abort () {}, pause () {}, resume () {} }
  const fields = { 'content-type': 'application/json', 'cache-control': 'max-age=3600', etag: '"bench-1"' }
  const dispatcher = new Agent().compose(() => (_opts, handler) => {
    raw.get(key).then((value) => {
      handler.onRequestStart?.(controller, {})
      handler.onResponseStart?.(controller, 200, fields, 'OK')
      handler.onResponseData?.(controller, Buffer.from(value ?? ''))
      handler.onResponseEnd?.(controller, {})
    }, (error: Error) => handler.onResponseError?.(controller, error))
    return true
  })
  return async () => {
    const response = await request(target, { dispatcher })
    if ((await response.body.arrayBuffer()).byteLength === 0) throw new Error('the least interceptor found nothing in Redis')
  }
}

/**
 * A round trip to another process that is not Redis: four bytes to an echo server and back, over
 * one TCP connection. A hit after it shows what waiting for another process costs the code that
 * runs next, whoever that process is.
 */
async function echoRoundTrip (): Promise<{ roundTrip: () => Promise<void>, close: () => void }> {
  // It exits when this process does (its stdin closes), whichever way this one ends.
  const server = spawn(process.execPath, ['-e', `
    const s = require('node:net').createServer((c) => { c.setNoDelay(true); c.on('data', (d) => c.write(d)) })
    s.listen(0, '127.0.0.1', () => console.log(s.address().port))
    process.stdin.on('end', () => process.exit(0)).resume()`], { stdio: ['pipe', 'pipe', 'inherit'] })
  const [port] = await once(server.stdout, 'data') as [Buffer]
  const socket = createConnection(Number(port.toString()), '127.0.0.1').setNoDelay(true)
  await once(socket, 'connect')
  return {
    roundTrip: async () => {
      socket.write('ping')
      await once(socket, 'data')
    },
    close: () => {
      socket.destroy()
      server.kill()
    }
  }
}
