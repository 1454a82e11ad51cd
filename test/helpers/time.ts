/**
 * Time for tests that never sleep for freshness. `manualClock()` is passed as the cache's `now`
 * option and moved with `advance()`; its `date()` is what an origin following it sends as Date.
 * `wholeSecondNow()` starts such a clock on a whole second, as an HTTP-date has no fractions: then
 * the apparent age of a fresh response (RFC 9111 §4.2.3) is zero, Age and ttl come out exact, and
 * a Retry-After date is an exact number of milliseconds away.
 */

export interface ManualClock {
  /** The clock's time in ms, for the cache's `now` option. */
  readonly now: () => number
  /** Moves the clock on by `seconds`. */
  readonly advance: (seconds: number) => void
  /** The clock's time as an HTTP-date, for the Date field of an origin that follows this clock. */
  readonly date: () => string
}

/** A manual clock for `now`: tests move time instead of sleeping. */
export function manualClock (start = Date.UTC(2026, 0, 1)): ManualClock {
  let time = start
  return {
    now: () => time,
    advance: (seconds) => { time += seconds * 1000 },
    date: () => new Date(time).toUTCString()
  }
}

/** The real time now, rounded down to a whole second. */
export function wholeSecondNow (): number {
  return Math.floor(Date.now() / 1000) * 1000
}
