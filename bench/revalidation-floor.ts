/**
 * What a 1 KB 304 costs any interceptor, next to what it costs ours: whether the revalidation goal
 * (≤ 1.2× a plain round trip) is out of reach for an interceptor as such, or only for the work our
 * engine does. Interleaved in one process, order alternating, after untimed warm-up:
 * - `plain`: `undici.request()` with no interceptor, a 200 with the body (the goal's reference);
 * - `pass-through`: the same through an interceptor on undici's new handler API that passes every
 *   callback on, so undici converts the header fields into an object and back, as it does for
 *   every interceptor under `undici.request()`;
 * - `least-304`: an interceptor that adds If-None-Match and, on the 304, plays a body it holds with
 *   its fields merged with the 304's: the least a caching interceptor can do (no lookup, no policy,
 *   no store, no single-flight, no retries);
 * - `cacheInterceptor`: ours, with the defaults.
 *
 *     node --import tsx bench/revalidation-floor.ts [dist]
 *
 * Under `valgrind --tool=callgrind`, `count <variant> <requests>` makes that many requests of one
 * variant and nothing else: run it with 6000 and with 3000, and the difference over 3000 is the
 * instructions a request (the origin, a process of its own, is not counted).
 */
import { Agent, request, type Dispatcher } from 'undici'
import { loadLibrary } from './library.js'
import { jsonBody, startBenchOrigin } from './origin.js'
import { median } from './report.js'

const [mode = 'interleaved', ...rest] = process.argv.slice(2)
const libDir = mode === 'count' ? rest[2] : rest[0]
const ROUNDS = 12
const PER_ROUND = 1000
const WARM_UP = 5000

const lib = await loadLibrary(libDir)
const origin = await startBenchOrigin()

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController
type Fields = Record<string, string | string[] | undefined>

/** Passes every callback on unchanged. */
class PassThrough implements Handler {
  constructor (protected readonly handler: Handler) {}
  onRequestStart (controller: Controller, context: unknown): void { this.handler.onRequestStart?.(controller, context) }
  onResponseStart (controller: Controller, status: number, headers: Fields, statusText?: string): void {
    this.handler.onResponseStart?.(controller, status, headers, statusText)
  }

  onResponseData (controller: Controller, chunk: Buffer): void { this.handler.onResponseData?.(controller, chunk) }
  onResponseEnd (controller: Controller, trailers: Fields): void { this.handler.onResponseEnd?.(controller, trailers) }
  onResponseError (controller: Controller, error: Error): void { this.handler.onResponseError?.(controller, error) }
}

const held = { body: jsonBody(1024), headers: { 'content-type': 'application/json', 'content-length': '1024', 'cache-control': 'no-cache', etag: origin.etag } }

/** On a 304, the held response, its fields merged with the 304's; anything else as it comes. */
class LeastRevalidation extends PassThrough {
  override onResponseStart (controller: Controller, status: number, headers: Fields, statusText?: string): void {
    if (status !== 304) {
      super.onResponseStart(controller, status, headers, statusText)
      return
    }
    this.handler.onResponseStart?.(controller, 200, Object.assign({}, held.headers, headers), 'OK')
    // A copy, as any cache must give: the caller owns its chunks.
    this.handler.onResponseData?.(controller, Buffer.from(held.body))
  }
}

const variants: Record<string, { dispatcher: Dispatcher, url: string }> = {
  plain: { dispatcher: new Agent(), url: `${origin.url}/floor/fresh/1k/doc` },
  'pass-through': {
    dispatcher: new Agent().compose((dispatch) => (opts, handler) => dispatch(opts, new PassThrough(handler))),
    url: `${origin.url}/floor/fresh/1k/doc`
  },
  'least-304': {
    dispatcher: new Agent().compose((dispatch) => (opts, handler) =>
      dispatch({ ...opts, headers: { ...opts.headers as Fields, 'if-none-match': origin.etag } }, new LeastRevalidation(handler))),
    url: `${origin.url}/least/revalidate/1k/doc`
  },
  cacheInterceptor: {
    dispatcher: new Agent().compose(lib.cacheInterceptor({ cache: lib.createCache() })),
    url: `${origin.url}/ours/revalidate/1k/doc`
  }
}

async function batch (name: string, n: number): Promise<{ wall: number, cpu: number }> {
  const { dispatcher, url } = variants[name]!
  const start = performance.now()
  const cpuStart = process.cpuUsage()
  for (let i = 0; i < n; i++) await (await request(url, { dispatcher })).body.arrayBuffer()
  const cpu = process.cpuUsage(cpuStart)
  return { wall: (performance.now() - start) * 1000 / n, cpu: (cpu.user + cpu.system) / n }
}

if (mode === 'count') {
  const [name = 'cacheInterceptor', requests = '3000'] = rest
  if (!(name in variants)) throw new TypeError(`expected a variant of ${Object.keys(variants).join(', ')}, got ${name}`)
  await batch(name, Number(requests))
} else {
  const names = Object.keys(variants)
  for (const name of names) await batch(name, WARM_UP)
  const results = new Map<string, { wall: number, cpu: number }[]>(names.map((name) => [name, []]))
  for (let round = 0; round < ROUNDS; round++) {
    for (const name of round % 2 === 0 ? names : [...names].reverse()) results.get(name)!.push(await batch(name, PER_ROUND))
  }
  const reference = median(results.get('plain')!.map((r) => r.wall))
  process.stdout.write(`1 KB, ${ROUNDS} rounds of ${PER_ROUND} requests each, medians\n`)
  for (const [name, rounds] of results) {
    const wall = median(rounds.map((r) => r.wall))
    process.stdout.write(`${name.padEnd(18)} ${wall.toFixed(1).padStart(7)} µs  ${(wall / reference).toFixed(2)}× plain  CPU ${median(rounds.map((r) => r.cpu)).toFixed(1)} µs\n`)
  }
}
await Promise.all(Object.values(variants).map(async ({ dispatcher }) => await dispatcher.close()))
await origin.close()
