import { instantOfWallTime, wallClock } from "./time-zone";

/** A billing period: a calendar month in the customer's time zone, [start, end). */
export interface Period {
  /** `YYYY-MM` of the month in the customer's zone, e.g. "2026-11". */
  id: string;
  /** First instant of the period, epoch ms. */
  start: number;
  /** First instant of the next period, epoch ms (exclusive end). */
  end: number;
}

/** Milliseconds since the epoch; injected everywhere a period is computed, so tests can move time. */
export type Clock = () => number;

export const systemClock: Clock = () => Date.now();

const PERIOD_ID = /^(\d{4})-(0[1-9]|1[0-2])$/;

/** The instant local midnight on the first of `month` (1-12) begins in `timeZone`. */
function monthStart(year: number, month: number, timeZone: string): number {
  return instantOfWallTime(Date.UTC(year, month - 1, 1), timeZone);
}

function periodId(year: number, month: number): string {
  return `${String(year).padStart(4, "0")}-${String(month).padStart(2, "0")}`;
}

function periodFor(year: number, month: number, timeZone: string): Period {
  const next = month === 12 ? { year: year + 1, month: 1 } : { year, month: month + 1 };
  return {
    id: periodId(year, month),
    start: monthStart(year, month, timeZone),
    end: monthStart(next.year, next.month, timeZone),
  };
}

/**
 * The calendar month containing `instantMs` in `timeZone` (an IANA name; see
 * `timeZoneSchema`). Boundaries are exact across DST changes and for zones whose offset is
 * not a whole hour (Asia/Kolkata +05:30, Pacific/Chatham +12:45/+13:45); where local
 * midnight on the 1st does not exist, the month starts at the transition.
 */
export function periodOf(instantMs: number, timeZone: string): Period {
  const wall = wallClock(instantMs, timeZone);
  let period = periodFor(wall.year, wall.month, timeZone);
  // A transition across midnight can put an instant before its wall date's month start.
  if (instantMs < period.start) period = previousPeriod(period, timeZone);
  else if (instantMs >= period.end) period = nextPeriod(period, timeZone);
  return period;
}

/** The period with id `id` ("2026-11") in `timeZone`. */
export function periodById(id: string, timeZone: string): Period {
  const match = PERIOD_ID.exec(id);
  if (!match) throw new Error(`not a period id: ${id}`);
  return periodFor(Number(match[1]), Number(match[2]), timeZone);
}

export function nextPeriod(period: Period, timeZone: string): Period {
  return periodOf(period.end, timeZone);
}

export function previousPeriod(period: Period, timeZone: string): Period {
  return periodOf(period.start - 1, timeZone);
}
