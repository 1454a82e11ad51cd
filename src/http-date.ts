/**
 * HTTP-date (RFC 9110 §5.6.7), strictly: IMF-fixdate, and the obsolete RFC 850 and asctime forms a
 * recipient must still accept. `Date.parse` accepts far more ("Sun, 06 Nov 1994 08:49:37" without
 * its zone, dashes, one-digit hours), and RFC 9111 §5.3 says an Expires that is not an HTTP-date
 * means "already expired"; so a date is only what these patterns match.
 */

import { memoize } from './memo.js'

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec']
const DAY = '(?:mon|tue|wed|thu|fri|sat|sun)'
const LONG_DAY = '(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)'
const MONTH = `(${MONTHS.join('|')})`
const TIME = '(\\d{2}):(\\d{2}):(\\d{2})'

const IMF_FIXDATE = new RegExp(`^${DAY}, (\\d{2}) ${MONTH} (\\d{4}) ${TIME} GMT$`, 'i')
const RFC_850 = new RegExp(`^${LONG_DAY}, (\\d{2})-${MONTH}-(\\d{2}) ${TIME} GMT$`, 'i')
const ASCTIME = new RegExp(`^${DAY} ${MONTH} ([ \\d]\\d) ${TIME} (\\d{4})$`, 'i')

/** Milliseconds since the epoch, or `undefined` for anything that is not an HTTP-date. */
export function parseHttpDate (value: string, now: number): number | undefined {
  const text = value.trim()
  const time = timeless(text)
  if (time !== null) return time
  const m = RFC_850.exec(text)
  if (m === null) return undefined
  // RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is in the past century.
  const thisYear = new Date(now).getUTCFullYear()
  let year = Math.floor(thisYear / 100) * 100 + Number(m[3])
  if (year > thisYear + 50) year -= 100
  return utc(year, m[2]!, Number(m[1]), m[4]!, m[5]!, m[6]!)
}

/**
 * An IMF-fixdate or asctime date, which reads the same whatever the time, parsed once: a response's
 * Date repeats for a second and its Last-Modified far longer, and parsing one took 1–2 µs of a 304
 * in a profile. `null` for neither (an RFC 850 date, whose century depends on the clock, or no date).
 */
const timeless = memoize(1024, (text: string): number | null => {
  let m = IMF_FIXDATE.exec(text)
  if (m !== null) return utc(Number(m[3]), m[2]!, Number(m[1]), m[4]!, m[5]!, m[6]!) ?? null
  m = ASCTIME.exec(text)
  if (m !== null) return utc(Number(m[6]), m[1]!, Number(m[2]!.trim()), m[3]!, m[4]!, m[5]!) ?? null
  return null
}, 29) // no IMF-fixdate (29 characters) or asctime date (24) is longer

function utc (year: number, month: string, day: number, hours: string, minutes: string, seconds: string): number | undefined {
  // setUTCFullYear, not Date.UTC, which reads the years 0 to 99 as 1900 to 1999.
  const time = new Date(0).setUTCFullYear(year, MONTHS.indexOf(month.toLowerCase()), day) + ((Number(hours) * 60 + Number(minutes)) * 60 + Number(seconds)) * 1000
  // 31 Feb rolls over into March; a date that does not exist is no date.
  return new Date(time).getUTCDate() === day && Number(hours) < 24 && Number(minutes) < 60 && Number(seconds) < 61 ? time : undefined
}
