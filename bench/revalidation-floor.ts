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
 * Several builds, comma-separated (`dist,.scratch/other`: each a `tsc --outDir` of src/, inside
 * the project so that it finds node_modules), are each a variant of their own, measured in the
 * same rounds: what one change to the engine is worth, with the machine's noise shared.
 *
 * `in-process [dist] [bytes]` measures the same variants against an origin in this process (no
 * sockets) that answers each request on the event loop's next turn, as I/O would. With `bytes`
 * (1000000, say), it first writes to one byte in every 64 of a buffer that large: that evicts what
 * the request's code and data left in the CPU's caches, as the kernel and the origin's process do
 * while a client waits on loopback. What a variant costs then, against what it costs without, is
 * what it pays for running cold (bench/LOG.md, 5 December, night).
 *
 * Under `valgrind --tool=callgrind`, `count <variant> <requests> [dist]` makes that many requests
 * of one variant and nothing else: run it with 6000 and with 3000, and the difference over 3000 is
 * the instructions a request (the origin, a process of its own, is not counted).
 */
import { Agent, Dispatcher, request } from 'undici'
import { loadLibrary } from './library.js'
import { jsonBody, startBenchOrigin } from './origin.js'
import { median } from './report.js'

const MODES = ['interleaved', 'in-process', 'count']
const given = process.argv.slice(2)
// Without a mode the first argument is the build to load, as before modes were added.
const [mode, ...rest] = MODES.includes(given[0] ?? '') ? given : ['interleaved', ...given]
const libDir = mode === 'count' ? rest[2] : rest[0]
const ROUNDS = 12
const PER_ROUND = 1000
const WARM_UP = 5000

const libDirs = libDir?.split(',') ?? [undefined]
const libs = await Promise.all(libDirs.map(async (dir) => await loadLibrary(dir)))
const inProcess = mode === 'in-process'
/** Bytes evicted before each in-process answer. */
const pollute = inProcess ? Number(rest[1] ?? 0) : 0
if (!Number.isSafeInteger(pollute) || pollute < 0) throw new TypeError(`expected a number of bytes to evict, got ${rest[1]}`)
const origin = inProcess ? undefined : await startBenchOrigin()
const etag = origin?.etag ?? '"bench-1"'
const originUrl = origin?.url ?? 'http://in-process.invalid'
const body = jsonBody(1024)

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

const held = { body, headers: { 'content-type': 'application/json', 'content-length': '1024', 'cache-control': 'no-cache', etag } }

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

/**
 * The origin in this process: a 304 to a matching If-None-Match, else the 1 KB body, on the event
 * loop's next turn, after evicting `pollute` bytes' worth of cache lines.
 */
class InProcessOrigin extends Dispatcher {
  readonly #junk: Uint8Array

  constructor (pollute: number) {
    super()
    this.#junk = new Uint8Array(pollute)
  }

  override dispatch (opts: Dispatcher.DispatchOptions, handler: Handler): boolean {
    const conditional = fieldOf(opts.headers, 'if-none-match') === etag
    setImmediate(() => {
      evict(this.#junk)
      handler.onRequestStart?.(idle, {})
      const date = new Date().toUTCString()
      if (conditional) {
        handler.onResponseStart?.(idle, 304, { 'cache-control': 'no-cache', etag, date }, 'Not Modified')
      } else {
        handler.onResponseStart?.(idle, 200, { ...held.headers, date }, 'OK')
        handler.onResponseData?.(idle, Buffer.from(body))
      }
      handler.onResponseEnd?.(idle, {})
    })
    return true
  }

  override async close (): Promise<void> {}
  override async destroy (): Promise<void> {}
}

const idle: Controller = { aborted: false, paused: false, reason: null, abort () {}, pause () {}, resume () {} }

/** A request field, from dispatch headers given as an object or a flat list. */
function fieldOf (headers: unknown, name: string): string | undefined {
  const pairs: unknown[] = Array.isArray(headers) ? headers : Object.entries(headers ?? {}).flat()
  for (let i = 0; i < pairs.length; i += 2) if (String(pairs[i]).toLowerCase() === name) return String(pairs[i + 1])
  return undefined
}

/** Writes to one byte of every 64 (a cache line), so that none of what was cached before stays. */
function evict (junk: Uint8Array): void {
  for (let i = 0; i < junk.length; i += 64) junk[i]!++
}

// undici.request() hands a dispatcher a handler of the old API, which the origin in this process
// does not speak; an interceptor gets it wrapped in the new one, so there each is composed over one
// that hands on what it gets.
const base = (): Dispatcher => inProcess ? new InProcessOrigin(pollute).compose((dispatch) => dispatch) : new Agent()
const variants: Record<string, { dispatcher: Dispatcher, url: string }> = {
  plain: { dispatcher: base(), url: `${originUrl}/floor/fresh/1k/doc` },
  'pass-through': {
    dispatcher: base().compose((dispatch) => (opts, handler) => dispatch(opts, new PassThrough(handler))),
    url: `${originUrl}/floor/fresh/1k/doc`
  },
  'least-304': {
    dispatcher: base().compose((dispatch) => (opts, handler) =>
      dispatch({ ...opts, headers: { ...opts.headers as Fields, 'if-none-match': etag } }, new LeastRevalidation(handler))),
    url: `${originUrl}/least/revalidate/1k/doc`
  },
}
for (const [i, lib] of libs.entries()) {
  variants[libs.length === 1 ? 'cacheInterceptor' : `ours ${libDirs[i]!}`] = {
    dispatcher: base().compose(lib.cacheInterceptor({ cache: lib.createCache() })),
    url: `${originUrl}/ours-${i}/revalidate/1k/doc`
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
  const where = inProcess ? `an origin in this process, ${pollute} bytes evicted before each answer` : 'a loopback origin'
  process.stdout.write(`1 KB, ${where}, ${ROUNDS} rounds of ${PER_ROUND} requests each, medians\n`)
  for (const [name, rounds] of results) {
    const wall = median(rounds.map((r) => r.wall))
    process.stdout.write(`${name.padEnd(18)} ${wall.toFixed(1).padStart(7)} µs  ${(wall / reference).toFixed(2)}× plain  CPU ${median(rounds.map((r) => r.cpu)).toFixed(1)} µs\n`)
  }
}
await Promise.all(Object.values(variants).map(async ({ dispatcher }) => await dispatcher.close()))
await origin?.close()
