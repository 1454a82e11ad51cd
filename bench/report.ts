/**
 * Turning round samples into results: medians, ops/s, ratios against the floor and against
 * undici's own cache, the project's goals, and the text table the benchmark prints.
 */
import type { ContenderId, ContenderKind } from './contenders.js'

export interface Result {
  readonly id: ContenderId
  readonly label: string
  readonly kind: ContenderKind
  readonly opsPerRound: number
  /** Wall-clock µs per operation, one per round. */
  readonly samples: readonly number[]
  /** CPU µs per operation (all threads), one per round. */
  readonly cpuSamples: readonly number[]
  readonly medianUs: number
  readonly cpuMedianUs: number
  readonly minUs: number
  readonly maxUs: number
  readonly opsPerSec: number
  readonly vsFloor: number
  readonly vsUndiciCacheRequest: number
  readonly vsUndiciCacheFetch: number
}

export interface Goal {
  readonly id: string
  readonly description: string
  /** The ratio the goal is about, from the wall-clock medians. */
  readonly value: number
  /** The same ratio from CPU time, steadier when other processes compete for the CPU. */
  readonly cpuValue: number
  readonly limit: number
  /** `max`: the value must not exceed the limit; `min`: it must reach it. */
  readonly bound: 'max' | 'min'
  readonly met: boolean
  /** The same ratio taken within each round (batches run close together), for how steady it is. */
  readonly perRound: readonly number[]
  /** Rounds in which the ratio within the round met the goal. */
  readonly roundsMet: number
  readonly rounds: number
}

export interface Sample {
  readonly id: ContenderId
  readonly label: string
  readonly kind: ContenderKind
  readonly opsPerRound: number
  readonly samples: readonly number[]
  readonly cpuSamples: readonly number[]
}

export function median (values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

export function summarize (samples: readonly Sample[]): Result[] {
  const medians = new Map(samples.map((s) => [s.id, median(s.samples)]))
  const of = (id: ContenderId): number => medians.get(id) ?? NaN
  return samples.map((s) => {
    const m = of(s.id)
    return {
      ...s,
      medianUs: m,
      cpuMedianUs: median(s.cpuSamples),
      minUs: Math.min(...s.samples),
      maxUs: Math.max(...s.samples),
      opsPerSec: 1e6 / m,
      vsFloor: m / of('floor'),
      vsUndiciCacheRequest: m / of('undiciCacheRequest'),
      vsUndiciCacheFetch: m / of('undiciCacheFetch')
    }
  })
}

/** The project's performance goals for a fresh hit. */
export function evaluateGoals (samples: readonly Sample[]): Goal[] {
  const rounds = new Map(samples.map((s) => [s.id, s]))
  const goal = (id: string, description: string, over: ContenderId, under: ContenderId, bound: 'max' | 'min', limit: number): Goal => {
    const a = rounds.get(over)?.samples ?? []
    const b = rounds.get(under)?.samples ?? []
    const value = median(a) / median(b)
    const cpuValue = median(rounds.get(over)?.cpuSamples ?? []) / median(rounds.get(under)?.cpuSamples ?? [])
    const ok = (ratio: number): boolean => bound === 'max' ? ratio <= limit : ratio >= limit
    const perRound = a.map((x, i) => x / b[i]!)
    return { id, description, value, cpuValue, limit, bound, met: ok(value), perRound, roundsMet: perRound.filter(ok).length, rounds: perRound.length }
  }
  return [
    goal('cachedFetchVsFloor', 'cachedFetch hit ≤ 1.5× floor', 'cachedFetch', 'floor', 'max', 1.5),
    goal('cachedFetchSpeedup', 'cachedFetch hit ≥ 3× faster than undici.fetch + interceptors.cache',
      'undiciCacheFetch', 'cachedFetch', 'min', 3),
    goal('interceptorVsUndici', 'cacheInterceptor hit ≤ undici interceptors.cache (both via request)',
      'cacheInterceptor', 'undiciCacheRequest', 'max', 1)
  ]
}

const ratio = (value: number): string => Number.isFinite(value) ? `${value.toFixed(2)}×` : '–'
const grouped = (value: number): string => Math.round(value).toLocaleString('en-US')

export function formatResults (results: readonly Result[]): string {
  const head = ['contender', 'µs/op', 'min–max µs', 'cpu µs/op', 'ops/s', '× floor', '× undici req+cache', '× undici fetch+cache', 'ops/round']
  const rows = results.map((r) => [
    r.label,
    r.medianUs.toFixed(2),
    `${r.minUs.toFixed(2)}–${r.maxUs.toFixed(2)}`,
    r.cpuMedianUs.toFixed(2),
    grouped(r.opsPerSec),
    ratio(r.vsFloor),
    ratio(r.vsUndiciCacheRequest),
    ratio(r.vsUndiciCacheFetch),
    grouped(r.opsPerRound)
  ])
  return table(head, rows)
}

export function formatGoals (goals: readonly Goal[]): string {
  return goals.map((g) => {
    const mark = g.met ? 'met   ' : 'MISSED'
    const shown = g.bound === 'min' ? `${g.value.toFixed(2)}× faster` : `${g.value.toFixed(2)}×`
    const range = `${Math.min(...g.perRound).toFixed(2)}–${Math.max(...g.perRound).toFixed(2)}`
    return `  ${mark}  ${g.description}: ${shown} (per round ${range}, met in ${g.roundsMet}/${g.rounds}; by CPU time ${g.cpuValue.toFixed(2)}×)`
  }).join('\n')
}

function table (head: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  // The first column is text, left-aligned; the others are numbers, right-aligned.
  const line = (cells: readonly string[]): string =>
    cells.map((cell, i) => i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)).join('  ')
  return [line(head), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}
