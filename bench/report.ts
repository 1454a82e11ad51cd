/**
 * Turning what the scenarios measured into what the benchmark prints: medians and ratios, and one
 * text table per scenario, with the contenders that could not take part and why.
 */
import type { BigBodyRun } from './big-body.js'
import type { CollapseRow, ConcurrencyRun, StaleRow } from './concurrency.js'
import type { LatencyRun, Measured } from './latency.js'
import type { MemoryRun, RedisRun } from './storage.js'

export function median (values: readonly number[]): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** The ratio of two contenders' medians; `cpu` takes CPU time instead of wall-clock time. */
export function ratioOf (run: LatencyRun, over: string, under: string, cpu = false): number {
  const of = (id: string): number => {
    const m = run.measured.find((x) => x.id === id)
    return m === undefined ? NaN : median(m.rounds.map((t) => cpu ? t.cpu : t.wall))
  }
  return of(over) / of(under)
}

/** The columns of ratios each latency scenario shows: against what the scenario is about. */
const BASELINES: Record<LatencyRun['scenario'], ReadonlyArray<readonly [string, string]>> = {
  hit: [['floor', '× floor'], ['undiciCacheRequest', '× undici req+cache']],
  revalidate: [['plainRequest', '× plain round trip']],
  miss: [['plainRequest', '× plain round trip']]
}

export const ratio = (value: number): string => Number.isFinite(value) ? `${value.toFixed(2)}×` : '–'
const grouped = (value: number): string => Math.round(value).toLocaleString('en-US')
export const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`

export function formatLatency (run: LatencyRun): string {
  const baselines = BASELINES[run.scenario].filter(([id]) => run.measured.some((m) => m.id === id))
  const head = ['contender', 'µs/op', 'min–max µs', 'cpu µs/op', 'ops/s', ...baselines.map(([, title]) => title), 'origin seen/expected', 'ops/round']
  const rows = run.measured.map((m) => {
    const wall = m.rounds.map((t) => t.wall)
    const med = median(wall)
    return [
      m.label,
      med.toFixed(1),
      `${Math.min(...wall).toFixed(1)}–${Math.max(...wall).toFixed(1)}`,
      median(m.rounds.map((t) => t.cpu)).toFixed(1),
      grouped(1e6 / med),
      ...baselines.map(([id]) => ratio(ratioOf(run, m.id, id))),
      originColumn(run, m),
      grouped(m.opsPerRound)
    ]
  })
  return [table(head, rows), ...formatCannot(run.cannot)].join('\n')
}

function originColumn (run: LatencyRun, m: Measured): string {
  if (m.kind === 'floor') return '–'
  const { originRequests, expectedOriginRequests, notModified, problems } = m.check
  const mark = problems.length === 0 ? '' : ' FAIL'
  const revalidated = run.scenario === 'revalidate' ? `, ${notModified} × 304` : ''
  return `${grouped(originRequests)} / ${grouped(expectedOriginRequests)}${revalidated}${mark}`
}

export function formatCollapse (run: ConcurrencyRun<CollapseRow>): string {
  const head = ['contender', 'origin requests per burst', '1 request ms', '1000 at once ms', '× 1 request']
  const rows = run.rows.map((r) => [
    r.label,
    r.originRequests.join(', '),
    r.medianSingleMs.toFixed(1),
    r.medianBurstMs.toFixed(1),
    ratio(r.burstVsSingle)
  ])
  return [table(head, rows), ...formatCannot(run.cannot)].join('\n')
}

export function formatStale (run: ConcurrencyRun<StaleRow>): string {
  const head = ['contender', '1000 at once ms', 'min–max ms', 'served from cache', 'background revalidations']
  const rows = run.rows.map((r) => [
    r.label,
    r.medianBurstMs.toFixed(1),
    `${Math.min(...r.burstMs).toFixed(1)}–${Math.max(...r.burstMs).toFixed(1)}`,
    r.servedFromCache.join(', '),
    r.revalidations.join(', ')
  ])
  return [table(head, rows), ...formatCannot(run.cannot)].join('\n')
}

export function formatRedis (run: RedisRun): string {
  const head = ['operation', 'µs/op', 'min–max µs', '× raw GET']
  const rows = run.rows.map((r) => [r.label, r.medianUs.toFixed(1), `${Math.min(...r.samples).toFixed(1)}–${Math.max(...r.samples).toFixed(1)}`, ratio(r.vsRawGet)])
  return [
    table(head, rows),
    `  stored value for a 1 KB body: cachedfetch ${run.storedBytes.cachedfetch} B, got ${run.storedBytes.got} B (each compared with a raw GET of its own)`
  ].join('\n')
}

export function formatMemory (run: MemoryRun): string {
  const head = ['contender', 'entries', 'bytes per entry', '× payload']
  const rows = run.rows.map((r) => [r.label, grouped(r.entries), grouped(r.bytesPerEntry), ratio(r.vsPayload)])
  return [table(head, rows), ...formatCannot(run.cannot)].join('\n')
}

export function formatBigBody (run: BigBodyRun): string {
  const head = ['contender', 'no-store: peak RSS growth (runs)', 'ms', 'oversize cacheable: peak RSS growth (runs)', 'ms']
  const labels = [...new Set(run.rows.map((r) => r.label))]
  const rows = labels.map((label) => {
    const of = (variant: string): readonly [string, string] => {
      const r = run.rows.find((x) => x.label === label && x.variant === variant)
      if (r === undefined) return ['–', '–']
      const each = r.runs.length > 1 ? ` (${r.runs.map((x) => (Math.max(0, x.peakRss - x.rssBefore) / 1024 / 1024).toFixed(1)).join(', ')})` : ''
      return [`${mib(r.growth)}${each}`, r.ms.toFixed(0)]
    }
    return [label, ...of('nostore'), ...of('oversize')]
  })
  return [table(head, rows), ...formatCannot(run.cannot)].join('\n')
}

function formatCannot (cannot: ReadonlyArray<{ readonly label: string, readonly why: string }>): string[] {
  return cannot.map(({ label, why }) => `  cannot: ${label} — ${why}`)
}

export function table (head: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  // The first column is text, left-aligned; the others are numbers, right-aligned.
  const line = (cells: readonly string[]): string =>
    cells.map((cell, i) => i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)).join('  ')
  return [line(head), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}
