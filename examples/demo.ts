/**
 * `npm start`: a local origin with a few endpoints and a cachedFetch in front of it. Each line
 * shows a request, what the cache did (from the response's Cache-Status), how many requests the
 * origin has seen for that path, and the time it took.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { createCachedFetch, type FetchInit } from '../src/index.js'

/** The origin is slow on purpose, as real ones are: a cache hit is visible in the timings. */
const ORIGIN_LATENCY_MS = 40

const hits = new Map<string, number>()
let version = 1
let flaky = 0

const routes: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {
  '/max-age': (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=1' })
    res.end(JSON.stringify({ greeting: 'fresh for one second' }))
  },
  '/etag': (req, res) => {
    const etag = `"v${version}"`
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, { etag, 'cache-control': 'max-age=0' }).end()
      return
    }
    res.writeHead(200, { 'content-type': 'application/json', etag, 'cache-control': 'max-age=0' })
    res.end(JSON.stringify({ version }))
  },
  '/swr': (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=1, stale-while-revalidate=30' })
    res.end(JSON.stringify({ servedAt: new Date().toISOString().slice(11, 23) }))
  },
  '/flaky': (_req, res) => {
    // Fails twice in three: the cache's retries (with backoff) hide it from the caller.
    if (flaky++ % 3 !== 2) {
      res.writeHead(503, { 'retry-after': '0' }).end('busy')
      return
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' })
    res.end('worked on the third try')
  },
  '/no-store': (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'no-store' })
    res.end('never stored')
  },
  '/plain': (_req, res) => {
    // No Cache-Control, no Expires, no validators: RFC 9111 alone gives nothing to store.
    res.writeHead(200, { 'content-type': 'text/plain' })
    res.end('no freshness from the origin')
  },
  '/vary': (req, res) => {
    const language = req.headers['accept-language'] === 'fr' ? 'fr' : 'en'
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=60', vary: 'accept-language' })
    res.end(language === 'fr' ? 'bonjour' : 'hello')
  }
}

const server = createServer((req, res) => {
  const path = req.url ?? '/'
  hits.set(path, (hits.get(path) ?? 0) + 1)
  setTimeout(() => (routes[path] ?? ((_q, r) => r.writeHead(404).end()))(req, res), ORIGIN_LATENCY_MS)
})
// Every address, so that the origin answers as 127.0.0.1 and as localhost (IPv4 or IPv6).
await new Promise<void>((resolve) => server.listen(0, resolve))
const port = (server.address() as AddressInfo).port
const base = `http://127.0.0.1:${port}`
const fetch = createCachedFetch({
  // Per-host policy: the same origin under another name gets freshness where the origin gives none.
  hosts: { localhost: { defaultTtl: 30 } }
})

/** MISS / HIT / STALE / REVALIDATED / BYPASS, read from our Cache-Status member (RFC 9211). */
function outcome (cacheStatus: string | null): string {
  const ours = cacheStatus?.split(',').pop() ?? ''
  if (/; hit/.test(ours)) return /ttl=-/.test(ours) ? 'STALE' : 'HIT'
  // Gone to the origin, which failed: the stale entry stood in (RFC 5861 §4).
  if (/detail=stale-if-error/.test(ours)) return 'STALE'
  if (/fwd-status=304/.test(ours)) return 'REVALIDATED'
  if (/fwd=(bypass|method)/.test(ours)) return 'BYPASS'
  return /stored/.test(ours) ? 'MISS (stored)' : 'MISS'
}

async function show (path: string, init?: FetchInit, note = '', origin = base): Promise<void> {
  const started = performance.now()
  const response = await fetch(origin + path, init)
  const body = await response.text()
  const ms = (performance.now() - started).toFixed(1).padStart(6)
  const label = outcome(response.headers.get('cache-status')).padEnd(13)
  console.log(`${ms} ms  ${label} ${path.padEnd(10)} origin hits: ${hits.get(path) ?? 0}  ${body.slice(0, 32).padEnd(32)} ${note}`)
}

console.log(`cachedfetch demo — origin at ${base}, ${ORIGIN_LATENCY_MS} ms latency\n`)
console.log('max-age: stored, served from memory, revalidated once stale')
await show('/max-age')
await show('/max-age')
await show('/max-age')
await sleep(1100)
await show('/max-age', { headers: { 'cache-control': 'max-stale=60' } }, '(stale allowed by the request)')
await show('/max-age', undefined, '(stale: fetched again)')

console.log('\nETag: every use revalidates; the origin answers 304 without a body')
await show('/etag')
await show('/etag')
version++
await show('/etag', undefined, '(new version: 200 replaces the entry)')
await show('/etag')

console.log('\nstale-while-revalidate: a stale entry is served at once and refreshed in the background')
await show('/swr')
await show('/swr')
await sleep(1100)
await show('/swr', undefined, '(stale, served at once; one refresh starts)')
await show('/swr', undefined, '(still stale: the refresh is on its way)')
await sleep(100)
await show('/swr', undefined, '(refreshed in the background)')

console.log('\nretries: an origin that fails twice, then answers')
await show('/flaky', undefined, '(two 503s retried with backoff)')

console.log('\nper-host policy: one origin, two names; localhost has defaultTtl: 30, 127.0.0.1 nothing')
await show('/plain', undefined, '(localhost)', `http://localhost:${port}`)
await show('/plain', undefined, '(localhost: 30 s of freshness by policy)', `http://localhost:${port}`)
await show('/plain', undefined, '(127.0.0.1)')
await show('/plain', undefined, '(127.0.0.1: nothing to store, fetched again)')

console.log('\nno-store: never stored')
await show('/no-store')
await show('/no-store')

console.log('\nVary: one entry per Accept-Language')
await show('/vary', { headers: { 'accept-language': 'en' } })
await show('/vary', { headers: { 'accept-language': 'fr' } })
await show('/vary', { headers: { 'accept-language': 'en' } })
await show('/vary', { headers: { 'accept-language': 'fr' } })

console.log('\nbypass: the caller asks for no cache at all')
await show('/max-age', { cache: 'no-store' })

const stats = fetch.cache.stats()
console.log(`\nstats: ${stats.hits} hits, ${stats.staleServed} stale, ${stats.misses} misses, ${stats.revalidated} revalidated, ${stats.retries} retries, hit ratio ${(stats.hitRatio * 100).toFixed(0)}%`)
server.close()
