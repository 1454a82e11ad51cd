/**
 * A real HTTP origin on 127.0.0.1 for tests: every request goes through undici and a socket. Each
 * test routes paths to small handlers and reads back what the origin saw (method, path, headers)
 * and how many times; `respond()` and `bytes()` make fixed answers and bodies for the handlers.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface SeenRequest {
  readonly method: string
  readonly path: string
  readonly headers: IncomingHttpHeaders
}

export type Route = (req: IncomingMessage, res: ServerResponse, seen: SeenRequest) => void | Promise<void>

export interface Origin {
  /** `http://127.0.0.1:PORT` */
  readonly url: string
  /** Every request, in order of arrival. */
  readonly requests: SeenRequest[]
  /** Requests the origin saw for one path (query included). */
  hits (path: string): number
  /** The requests seen for one path. */
  seen (path: string): SeenRequest[]
  route (path: string, handler: Route): void
  close (): Promise<void>
}

export async function startOrigin (routes: Record<string, Route> = {}): Promise<Origin> {
  const table = new Map(Object.entries(routes))
  const requests: SeenRequest[] = []
  const server = createServer((req, res) => {
    const seen: SeenRequest = { method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers }
    requests.push(seen)
    const handler = table.get(seen.path) ?? table.get(seen.path.split('?')[0]!)
    if (handler === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('no route')
      return
    }
    Promise.resolve(handler(req, res, seen)).catch((error: unknown) => {
      res.destroy(error as Error)
    })
  })
  server.keepAliveTimeout = 1000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    hits: (path) => requests.filter((r) => r.path === path).length,
    seen: (path) => requests.filter((r) => r.path === path),
    route: (path, handler) => { table.set(path, handler) },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}

/** A handler that answers with fixed headers and body. */
export function respond (status: number, headers: Record<string, string | string[]>, body: string | Buffer = ''): Route {
  return (_req, res) => {
    res.writeHead(status, headers)
    res.end(body)
  }
}

/** `length` bytes in a fixed pattern (`seed` shifts it): a body whose every byte can be checked. */
export function bytes (length: number, seed = 7): Buffer {
  const body = Buffer.alloc(length)
  for (let i = 0; i < length; i++) body[i] = (i * 31 + seed) % 256
  return body
}

/**
 * A resource at v1 (ETag "v1", fresh for 100 s) whose first revalidation the origin answers 304,
 * still v1, then changes to v2 while that 304 waits for `held`: a late 304 (RFC 9111 §4.3.4).
 * Every other request gets the current version in full. `date` is the test's clock.
 */
export function lateNotModified (date: () => string, held: Promise<void>): Route {
  let current = 'v1'
  return async (req, res) => {
    if (req.headers['if-none-match'] === '"v1"' && current === 'v1') {
      current = 'v2'
      const answered = date()
      await held
      res.writeHead(304, { etag: '"v1"', date: answered, 'cache-control': 'max-age=100' }).end()
      return
    }
    res.writeHead(200, { etag: `"${current}"`, date: date(), 'cache-control': 'max-age=100', 'content-type': 'text/plain' }).end(current)
  }
}

