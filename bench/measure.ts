/**
 * How the latency scenarios time their contenders: warm each up twice (in both orders), size its
 * batch to about `roundMs`, then run interleaved rounds — the order alternating, with a forced GC
 * before each batch only under `--gc` — and keep every round's µs/op, wall-clock and CPU. The
 * medians are taken in bench/report.ts. Interleaving matters on a shared machine: a burst of load
 * from elsewhere hits one round of every contender rather than every round of one.
 *
 * The warm-up is long (a second per contender by default) because the longer code paths take
 * thousands of operations to be optimised: measured alone, the interceptor's 304 took 1.5–1.9 ms
 * for its first 250 operations and came down to 160–175 µs only after several thousand.
 */
export interface Runner {
  readonly id: string
  readonly label: string
  /** One operation; resolves to the body bytes it read. */
  op (): Promise<number>
  /**
   * Runs before each batch, outside the timing: miss + store starts each batch with an empty cache;
   * the other scenarios let go of what clients leaked (Client.settle).
   */
  before? (): Promise<void> | void
}

export interface Timing {
  /** Wall-clock µs per operation: the latency a caller sees. */
  readonly wall: number
  /**
   * CPU µs per operation (process.cpuUsage, all threads of this process; the origin runs in its
   * own): the work done. It does not count time spent waiting for a CPU, so on a busy machine its
   * ratios are often steadier.
   */
  readonly cpu: number
}

export interface Rounds {
  readonly id: string
  readonly label: string
  readonly opsPerRound: number
  readonly rounds: readonly Timing[]
}

export interface Plan {
  readonly rounds: number
  readonly roundMs: number
  readonly warmupMs: number
  /** Past this, no new round starts (at least three run): a busy machine must not stretch the run. */
  readonly budgetMs: number
  /** Body bytes every operation must read; `undefined` when operations read other things (a raw Redis GET). */
  readonly bodyBytes: number | undefined
}

export interface Session {
  readonly progress: (text: string) => void
  /** Problems that make the numbers wrong (a short body): the run exits 1. */
  readonly warnings: string[]
  /** Conditions that make the numbers less certain (a busy machine). */
  readonly notes: string[]
  /**
   * Whether each batch (and each round of the 1000-at-once scenarios) starts with a forced full GC
   * (`--gc`). It is not the default because it measures something other than a contender's steady
   * work: V8 deoptimises the optimised code that holds a weak reference to an object the GC finds
   * dead, and a forced GC finds many (with `--trace-deopt`, eight forced GCs marked 366 optimised
   * functions of the interceptor's 304 path for deoptimisation, "weak objects", undici's cache 361
   * and a plain undici.request 81; the same runs without them, 1 each). Every batch then ran while
   * that code was being optimised again: the interceptor's 304 took 400 µs for the first 250
   * operations after a forced GC and 250 µs after 3000, against a steady 215 µs without. Without
   * forced GCs the garbage is collected where V8 decides, within one contender's batch or the next
   * one's; the alternating order and the medians spread that, and the CPU-time columns count the
   * GC threads' work.
   */
  readonly forcedGc: boolean
}

const gc = (globalThis as { gc?: () => void }).gc

/**
 * The contenders' order in round `round`: shuffled, with the round as the seed, so that runs repeat
 * and each contender comes after a different one from round to round. Each pays for the garbage of
 * the one run before it; in a fixed order, forward and back, it only ever followed its two
 * neighbours in the list (cachedfetch never followed got or make-fetch-happen, the plain round
 * trip mostly did).
 */
export function roundOrder<T> (list: readonly T[], round: number): T[] {
  const order = [...list]
  // mulberry32: a small generator, good enough to order a handful of contenders.
  let seed = (round * 0x9e3779b1) >>> 0
  const random = (): number => {
    seed = (seed + 0x6d2b79f5) >>> 0
    let t = Math.imul(seed ^ (seed >>> 15), seed | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[order[i], order[j]] = [order[j]!, order[i]!]
  }
  return order
}

export async function interleave (title: string, runners: readonly Runner[], plan: Plan, session: Session): Promise<Rounds[]> {
  const batch = async (r: Runner, n: number): Promise<Timing> => {
    await r.before?.()
    if (session.forcedGc) gc?.()
    let bytes = 0
    const cpu = process.cpuUsage()
    const start = process.hrtime.bigint()
    for (let i = 0; i < n; i++) bytes += await r.op()
    const elapsed = Number(process.hrtime.bigint() - start)
    const used = process.cpuUsage(cpu)
    if (plan.bodyBytes !== undefined && bytes !== n * plan.bodyBytes) session.warnings.push(`${title}, ${r.label}: read ${bytes} body bytes in ${n} operations, expected ${n * plan.bodyBytes}`)
    return { wall: elapsed / 1000 / n, cpu: (used.user + used.system) / n }
  }
  // Growing batches for about `ms`; resolves the fastest µs/op among them, which sizes the rounds.
  // Not the last batch's: one that caught a full collection (40–50 ms of a large heap) made every
  // round of its contender a tenth of `roundMs` long, and such rounds catch collections by chance.
  const runFor = async (r: Runner, ms: number): Promise<number> => {
    let n = 8
    let total = 0
    let fastest = Infinity
    while (total < ms * 1000) {
      const timing = await batch(r, n)
      // The larger of the two: GC threads can make CPU time exceed wall time.
      const us = Math.max(timing.wall, timing.cpu)
      fastest = Math.min(fastest, us)
      total += us * n
      n *= 2
    }
    return fastest
  }

  const perOp = new Map<string, number>()
  for (const [pass, order] of [runners, [...runners].reverse()].entries()) {
    for (const r of order) {
      session.progress(`${title}: warming up (${pass + 1}/2) ${r.label}`)
      const us = await runFor(r, plan.warmupMs / 2)
      perOp.set(r.id, Math.min(us, perOp.get(r.id) ?? Infinity))
    }
  }
  const opsPerRound = new Map(runners.map((r) => [r.id, Math.max(20, Math.round(plan.roundMs * 1000 / perOp.get(r.id)!))]))
  const rounds = new Map<string, Timing[]>(runners.map((r) => [r.id, []]))
  const began = performance.now()
  for (let round = 0; round < plan.rounds; round++) {
    if (round >= 3 && performance.now() - began > plan.budgetMs) {
      session.notes.push(`${title}: stopped after ${round} of ${plan.rounds} rounds to stay within ${plan.budgetMs / 1000} s; the machine is busy`)
      break
    }
    for (const r of roundOrder(runners, round)) {
      session.progress(`${title}: round ${round + 1}/${plan.rounds} ${r.label}`)
      rounds.get(r.id)!.push(await batch(r, opsPerRound.get(r.id)!))
    }
  }
  return runners.map((r) => ({ id: r.id, label: r.label, opsPerRound: opsPerRound.get(r.id)!, rounds: rounds.get(r.id)! }))
}
