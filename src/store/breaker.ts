/**
 * Keeps a store that has stopped answering from being sent every call. A call given up at its
 * timeout and still unsettled a while later (the store's write timeout) has stalled: a SQLite file
 * another program holds locked, a half-open connection. Sent every call regardless, such a store
 * holds each one with its data, and node-sqlite3 a thread of libuv's pool for each, up to its
 * busyTimeout: the pool that DNS lookups, the file system and zlib wait on too (four requests at
 * once to a host name waited 20–40 s so). While MAX_STALLED calls have stalled, calls are refused
 * at once (a miss, a skipped write, each reported) but for one every while, which finds out whether
 * the store answers again; one answered in time closes the breaker, and what stalled before no
 * longer counts. A store that is slow but answers within that while never trips it.
 */

/** Calls stalled, past which calls are refused. */
const MAX_STALLED = 2

export class StallBreaker {
  /** How long a call given up may stay unsettled before it counts as stalled; and how often one goes through while open. */
  readonly #stallMs: number
  /** Calls stalled since the store last answered one in time, not settled since. */
  #stalled = 0
  /** Counts the times the store answered again: a stall from before no longer counts. */
  #run = 0
  /** When a call last went through while open. */
  #probed = -Infinity

  constructor (stallMs: number) {
    this.#stallMs = stallMs
  }

  /** Whether a call may be sent now: the breaker is closed, or a while has passed since the last call it let through. */
  admits (): boolean {
    if (this.#stalled < MAX_STALLED) return true
    const now = performance.now()
    if (now - this.#probed < this.#stallMs) return false
    this.#probed = now
    return true
  }

  /** What a refused call is told. */
  refusal (): Error {
    return new Error(`not sent: ${this.#stalled} store calls given up at their timeouts are still unsettled (a lock, a half-open connection)`)
  }

  /** A call given up at its timeout, which the store has yet to settle. */
  givenUp (sent: Promise<unknown>): void {
    const run = this.#run
    let stalled = false
    const timer = setTimeout(() => {
      if (this.#run !== run) return
      stalled = true
      this.#stalled++
    }, this.#stallMs)
    // A stalled call must not keep the process alive.
    timer.unref()
    const settled = (): void => {
      clearTimeout(timer)
      if (stalled && this.#run === run) this.#stalled--
    }
    sent.then(settled, settled)
  }

  /** A call the store answered within its timeout: it answers again. */
  answered (): void {
    if (this.#stalled === 0) return
    this.#stalled = 0
    this.#run++
  }
}
