/**
 * The benchmark's origin: node:http on 127.0.0.1. A request's path says what to answer:
 * `/<anything>/<mode>/<size>/<name>`, where the mode picks the caching headers (FRESH: an hour of
 * max-age; REVALIDATE: no-cache, so every use is a conditional request that gets a 304; SWR:
 * stale at once, usable for an hour while revalidated; SLOW: fresh, answered after a delay; and the
 * streamed 200 MB modes) and the size picks the JSON body (`1k`, `100k`, `200m`). Every response
 * carries the same ETag, and a matching If-None-Match gets a 304.
 *
 * The origin counts requests (and 304s) per directory — the path without its last segment — so
 * that the benchmark can prove which contenders never reached it, including those that request a
 * new URL each time (miss + store), without keeping a record per request.
 *
 * It runs in a process of its own (bench/origin-process.ts), as a real origin would: sharing the
 * contenders' thread, it would take their CPU, and it could not even start a slow answer's delay
 * until a burst of 1000 requests had all been dispatched, which made collapsing look slower than
 * it is. The counts come back over IPC.
 */
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/** What the origin answers under `/<…>/<mode>/…`. */
export const MODES = {
  fresh: 'max-age=3600',
  revalidate: 'no-cache',
  swr: 'max-age=0, stale-while-revalidate=3600',
  slow: 'max-age=3600',
  nostore: 'no-store',
  oversize: 'max-age=3600'
} as const
export type Mode = keyof typeof MODES

export const SIZES = { '1k': 1024, '100k': 100 * 1024, '200m': 200 * 1024 * 1024 } as const
export type Size = keyof typeof SIZES

/** How long a `slow` answer takes: an origin farther than loopback, so that collapsing shows. */
export const SLOW_MS = 50
/** Bodies this large are streamed from one chunk, never held whole by the origin. */
const STREAM_CHUNK = 64 * 1024

export interface Counts {
  /** Requests the origin answered. */
  readonly requests: number
  /** Of them, 304 Not Modified answers to a matching If-None-Match. */
  readonly notModified: number
}

export interface BenchOrigin {
  /** `http://127.0.0.1:PORT` */
  readonly url: string
  /** The ETag every response carries. */
  readonly etag: string
  /** What the origin answered under one directory (`/cachedFetch/fresh/1k`). */
  seen (directory: string): Promise<Counts>
  close (): Promise<void>
}

/** A JSON document of exactly `size` bytes: a few records, then padding. */
export function jsonBody (size: number): Buffer {
  interface Item { id: number, name: string, price: number, tags: string[] }
  const items: Item[] = []
  const length = (pad: string): number => JSON.stringify({ items, pad }).length
  // Records while they fit with a little room to spare (at most 100: a big body is mostly padding).
  for (let id = 0; id < 100 && length('') < size - 96; id++) items.push({ id, name: `item-${id}`, price: id * 3 + 0.99, tags: ['bench', 'cache'] })
  if (length('') > size) items.pop()
  const text = JSON.stringify({ items, pad: 'x'.repeat(size - length('')) })
  if (Buffer.byteLength(text) !== size) throw new Error(`body is ${Buffer.byteLength(text)} bytes, expected ${size}`)
  return Buffer.from(text)
}

/** Starts the origin in a process of its own; it ends with the benchmark. */
export async function startBenchOrigin (): Promise<BenchOrigin> {
  const child = fork(new URL('./origin-process.ts', import.meta.url), { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const [ready] = await once(child, 'message') as [{ url: string, etag: string }]
  let next = 0
  const waiting = new Map<number, (counts: Counts) => void>()
  child.on('message', (message: { id: number, counts: Counts }) => waiting.get(message.id)?.(message.counts))
  return {
    url: ready.url,
    etag: ready.etag,
    seen: (directory) => new Promise((resolve) => {
      const id = next++
      waiting.set(id, (counts) => {
        waiting.delete(id)
        resolve(counts)
      })
      child.send({ id, directory })
    }),
    close: async () => {
      child.kill()
      if (child.exitCode === null && child.signalCode === null) await once(child, 'exit')
    }
  }
}

/** The origin itself, in this process: what bench/origin-process.ts runs. */
export async function startOriginServer (): Promise<{ url: string, etag: string, seen: (directory: string) => Counts, close: () => Promise<void> }> {
  const counts = new Map<string, { requests: number, notModified: number }>()
  const etag = '"bench-1"'
  const bodies = new Map<Size, Buffer>([['1k', jsonBody(SIZES['1k'])], ['100k', jsonBody(SIZES['100k'])]])
  const chunk = Buffer.alloc(STREAM_CHUNK, 'x')

  const server = createServer((req, res) => {
    const path = req.url ?? '/'
    const directory = path.slice(0, path.lastIndexOf('/'))
    const [mode, size] = directory.split('/').slice(-2) as [Mode, Size]
    let count = counts.get(directory)
    if (count === undefined) counts.set(directory, count = { requests: 0, notModified: 0 })
    count.requests++
    const cacheControl = MODES[mode]
    if (cacheControl === undefined || SIZES[size] === undefined) {
      res.writeHead(404).end()
      return
    }
    if (req.headers['if-none-match'] === etag) {
      count.notModified++
      res.writeHead(304, { 'cache-control': cacheControl, etag }).end()
      return
    }
    const headers = { 'content-type': 'application/json', 'content-length': String(SIZES[size]), 'cache-control': cacheControl, etag }
    const body = bodies.get(size)
    if (body === undefined) stream(res.writeHead(200, headers), SIZES[size], chunk)
    else if (mode === 'slow') setTimeout(() => res.writeHead(200, headers).end(body), SLOW_MS)
    else res.writeHead(200, headers).end(body)
  })
  // Longer than any pause between one contender's batches, so the uncached one never reconnects.
  server.keepAliveTimeout = 120_000
  // The 1000-concurrent scenarios open up to 1000 connections at once.
  server.maxConnections = 4096
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    etag,
    seen: (directory) => ({ ...(counts.get(directory) ?? { requests: 0, notModified: 0 }) }),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}

/** Writes `total` bytes of one chunk, respecting back-pressure: the origin never holds the body. */
function stream (res: ServerResponse, total: number, chunk: Buffer): void {
  let left = total
  const write = (): void => {
    while (left > 0) {
      const piece = left >= chunk.byteLength ? chunk : chunk.subarray(0, left)
      left -= piece.byteLength
      if (!res.write(piece)) {
        res.once('drain', write)
        return
      }
    }
    res.end()
  }
  res.on('error', () => {})
  write()
}
