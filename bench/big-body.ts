/**
 * The big-body scenario: a 200 MB body passing through each contender — once uncacheable
 * (`no-store`), once cacheable but larger than any sane entry (`max-age=3600`; cachedfetch's
 * `maxEntrySize` is 5 MiB) — each contender in a child process of its own (bench/big-body-child.ts)
 * so that one's garbage never counts against another. The measure is how far the peak RSS rose
 * above the RSS before the body: a client that streams holds a few chunks; one that buffers holds
 * the body.
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { ChildReport } from './big-body-child.js'
import type { Contender, ContenderId } from './contenders.js'
import type { Session } from './measure.js'
import { SIZES, type BenchOrigin } from './origin.js'
import { median } from './report.js'

export type BigBodyVariant = 'nostore' | 'oversize'
export const VARIANTS: readonly BigBodyVariant[] = ['nostore', 'oversize']

export interface BigBodyRow {
  readonly id: ContenderId
  readonly label: string
  readonly variant: BigBodyVariant
  /** Peak RSS growth while the body streamed, bytes, the median of the runs; the goal is < 32 MiB. */
  readonly growth: number
  readonly ms: number
  /** Each child's report: several for the contenders that decide a goal or are its reference. */
  readonly runs: readonly ChildReport[]
}

export interface BigBodyRun {
  readonly rows: readonly BigBodyRow[]
  readonly cannot: ReadonlyArray<{ readonly label: string, readonly why: string }>
}

const run = promisify(execFile)
const CHILD = fileURLToPath(new URL('big-body-child.ts', import.meta.url))

/** Runs for the contenders a goal is about and for the reference, of which the median counts. */
const DECIDING_RUNS = 3

export async function bigBody (field: readonly Contender[], origin: BenchOrigin, libDir: string | undefined, quick: boolean, session: Session): Promise<BigBodyRun> {
  const able = field.filter((c) => c.cannot['big-body'] === undefined)
  const cannot = field.filter((c) => c.cannot['big-body'] !== undefined).map((c) => ({ label: c.label, why: c.cannot['big-body']! }))
  const rows: BigBodyRow[] = []
  for (const variant of VARIANTS) {
    for (const c of able) {
      const url = `${origin.url}/big-body/${c.id}/${variant}/200m/body`
      const warm = `${origin.url}/big-body-warm/${c.id}/nostore/100k/w`
      // The child runs as this process does (with --import tsx from npm run bench).
      const args = [...process.execArgv.filter((a) => a !== '--expose-gc'), '--expose-gc', CHILD, c.id, url, warm, ...(libDir === undefined ? [] : [libDir])]
      const deciding = c.kind === 'cachedfetch' || c.kind === 'origin'
      const runs: ChildReport[] = []
      for (let i = 0; i < (deciding && !quick ? DECIDING_RUNS : 1); i++) {
        session.progress(`big-body ${variant}: ${c.label} (${i + 1})`)
        try {
          const { stdout } = await run(process.execPath, args, { maxBuffer: 1024 * 1024, timeout: 120_000 })
          const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as ChildReport
          if (report.bytes !== SIZES['200m']) session.warnings.push(`big-body ${variant}, ${c.label}: read ${report.bytes} bytes of ${SIZES['200m']}`)
          if (!report.peakReset) session.notes.push('big-body: the peak RSS could not be reset in the child; growth may be understated')
          runs.push(report)
        } catch (error) {
          session.warnings.push(`big-body ${variant}, ${c.label}: the child failed: ${(error as Error).message.split('\n')[0]}`)
        }
      }
      if (runs.length === 0) continue
      const growth = median(runs.map((r) => Math.max(0, r.peakRss - r.rssBefore)))
      rows.push({ id: c.id, label: c.label, variant, growth, ms: median(runs.map((r) => r.ms)), runs })
    }
  }
  return { rows, cannot }
}
