/**
 * The benchmark's origin: node:http on 127.0.0.1 answering every path with the same cacheable
 * JSON body (`cache-control: max-age=3600` unless told otherwise, and an ETag). It only counts requests per path — a
 * request log would grow by a million objects during the uncached contender and tax the others
 * with its garbage — so that the benchmark can prove which contenders never reached it.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface BenchOrigin {
  /** `http://127.0.0.1:PORT` */
  readonly url: string
  /** The ETag every response carries. */
  readonly etag: string
  /** Requests the origin has answered for one path. */
  hits (path: string): number
  close (): Promise<void>
}

/** A JSON document of exactly `size` bytes: a few records, then padding. */
export function jsonBody (size: number): Buffer {
  interface Item { id: number, name: string, price: number, tags: string[] }
  const items: Item[] = []
  const length = (pad: string): number => JSON.stringify({ items, pad }).length
  // Records while they fit with a little room to spare; the padding makes up the rest.
  for (let id = 0; length('') < size - 96; id++) items.push({ id, name: `item-${id}`, price: id * 3 + 0.99, tags: ['bench', 'cache'] })
  if (length('') > size) items.pop()
  const text = JSON.stringify({ items, pad: 'x'.repeat(size - length('')) })
  if (Buffer.byteLength(text) !== size) throw new Error(`body is ${Buffer.byteLength(text)} bytes, expected ${size}`)
  return Buffer.from(text)
}

export async function startBenchOrigin (body: Buffer, cacheControl = 'max-age=3600'): Promise<BenchOrigin> {
  const counts = new Map<string, number>()
  const etag = '"bench-1"'
  const headers = {
    'content-type': 'application/json',
    'content-length': String(body.byteLength),
    'cache-control': cacheControl,
    etag
  }
  const server = createServer((req, res) => {
    const path = req.url ?? '/'
    counts.set(path, (counts.get(path) ?? 0) + 1)
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, { 'cache-control': headers['cache-control'], etag }).end()
      return
    }
    res.writeHead(200, headers).end(body)
  })
  // Longer than any pause between one contender's batches, so the uncached one never reconnects.
  server.keepAliveTimeout = 120_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    etag,
    hits: (path) => counts.get(path) ?? 0,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}
