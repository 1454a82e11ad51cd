/**
 * Answers from memory must not hold the event loop. A hit needs no I/O, so a caller that awaits
 * one hit after another awaits only microtasks, and the loop never turns: timers, I/O and undici's
 * own deferred work wait for the whole run. undici destroys each response body it makes on a
 * setImmediate: 10 000 hits in a row through the interceptor left 10 000 of them pending, every
 * object of every hit alive, and V8, seeing those survive, began to allocate their kinds straight
 * into the old generation, where every later request's garbage of those kinds waited for a full
 * collection (scavenges in a 1 KB 304 loop after 3000 such hits took 2.7–3.6 ms each, against
 * 1.1 ms once hits let the loop turn; bench/LOG.md, What changed).
 *
 * Waiting for the loop's next turn at every hit, as the interceptor did, cost a turn a hit: its
 * 1 KB hit took 1.4× as long as it does now, its 100 KB hit 1.4–1.7× (two builds interleaved in one
 * process). So an answer from memory is given at once until such answers have held the loop for
 * HOLD_MS; the next waits for the turn. cachedFetch()'s 1 KB hit, which never waited before, takes
 * 1.00–1.30× as long for it (four pairs of runs): at a turn V8 runs the scavenges it schedules as
 * tasks, before its young generation is full (over 480 000 hits, 220 scavenges against 190).
 */

/** How long answers from memory may follow one another before the event loop must turn. */
const HOLD_MS = 1

/** When the first answer since the loop last turned was given; `undefined` once it has turned. */
let heldSince: number | undefined
/** The turn that answers past HOLD_MS wait for, and what lets them go. */
let turn: Promise<void> | undefined
let release: (() => void) | undefined

/**
 * `undefined` when an answer from memory may be given now, else the loop's next turn to wait for.
 * The clock is the process's, not the cache's: a cache clock that tests freeze or move must not
 * decide how long the loop is held.
 */
export function turnDue (): Promise<void> | undefined {
  const now = performance.now()
  if (heldSince === undefined) {
    heldSince = now
    setImmediate(turned)
    return undefined
  }
  if (now - heldSince < HOLD_MS) return undefined
  return turn ??= new Promise((resolve) => { release = resolve })
}

function turned (): void {
  heldSince = undefined
  turn = undefined
  const waiting = release
  release = undefined
  waiting?.()
}
