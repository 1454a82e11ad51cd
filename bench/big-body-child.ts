/**
 * One contender streaming one 200 MB body, alone in a process, for bench/big-body.ts:
 * `node --expose-gc --import tsx bench/big-body-child.ts <contender> <url> <warm-url> [lib]`.
 * It warms the client's code paths on small requests, collects garbage, resets the peak RSS
 * (`/proc/self/clear_refs`), reads the body chunk by chunk keeping none of it, and prints one
 * JSON line: bytes read, ms, RSS before and the peak during.
 *
 * The reader collects garbage after every GC_EVERY bytes it has read. Chunks already read live
 * outside V8's heap, and V8 collects them only past a threshold of such memory, so without this
 * the peak says when V8 chose to collect (from 0 to 50 MiB over the same client, run to run)
 * rather than what the client holds; with it, the peak is what the client keeps plus at most
 * GC_EVERY bytes of chunks read.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { buildField } from './contenders.js'
import { loadLibrary } from './library.js'

export interface ChildReport {
  readonly bytes: number
  readonly ms: number
  /** Resident set size before the body, after GC, bytes. */
  readonly rssBefore: number
  /** The highest resident set size while the body streamed, bytes. */
  readonly peakRss: number
  /** Whether the peak could be reset before the body; without it, the peak may be an earlier one. */
  readonly peakReset: boolean
}

const [id, url, warmUrl, libDir] = process.argv.slice(2)
if (id === undefined || url === undefined || warmUrl === undefined) throw new TypeError('usage: big-body-child.ts <contender> <url> <warm-url> [lib]')
const lib = await loadLibrary(libDir)
const contender = buildField(lib).find((c) => c.id === id)
if (contender === undefined) throw new TypeError(`unknown contender ${id}`)
const client = contender.create()

const status = (field: string): number => {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith(`${field}:`))
  return Number(/(\d+)/.exec(line ?? '')?.[1] ?? NaN) * 1024
}
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {})

for (let i = 0; i < 20; i++) await client.stream(`${warmUrl}${i}`)
for (let i = 0; i < 3; i++) gc()
await sleep(50)
const rssBefore = status('VmRSS')
let peakReset = true
try {
  // "5" resets the peak resident set size to the current one (Linux ≥ 4.0, proc(5)).
  writeFileSync('/proc/self/clear_refs', '5')
} catch {
  peakReset = false
}
const GC_EVERY = 8 * 1024 * 1024
let sinceGc = 0
const start = performance.now()
const bytes = await client.stream(url, (n) => {
  sinceGc += n
  if (sinceGc < GC_EVERY) return
  sinceGc = 0
  gc()
})
const ms = performance.now() - start
const report: ChildReport = { bytes, ms, rssBefore, peakRss: status('VmHWM'), peakReset }
process.stdout.write(JSON.stringify(report) + '\n')
await client.close()
process.exit(0)
