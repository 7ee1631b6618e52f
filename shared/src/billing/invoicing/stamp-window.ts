import { nextPeriod, type Period } from "../periods";
import { offsetAt } from "../time-zone";

/**
 * How far apart a zone's UTC offsets are over the 13 month starts from `period` on: 0 for a
 * fixed offset (UTC, Asia/Kolkata), an hour for most zones with daylight saving.
 */
export function offsetSpreadMs(period: Period, timeZone: string): number {
  const offsets: number[] = [];
  let month = period;
  for (let i = 0; i < 13; i++) {
    offsets.push(offsetAt(month.start, timeZone));
    month = nextPeriod(month, timeZone);
  }
  return Math.max(...offsets) - Math.min(...offsets);
}

/**
 * Where meter event timestamps for `period` may fall: the period narrowed at both ends by the
 * zone's offset spread. Stripe repeats a subscription's anchor at one UTC time of day, so for a
 * zone with daylight saving its periods can start and end up to the spread away from the local
 * month; a timestamp inside the narrowed window is inside Stripe's period for that month
 * whichever way it drifted, and never in a neighbour's. For a fixed offset it is the period.
 */
export function stampWindow(period: Period, timeZone: string): Period {
  const spread = offsetSpreadMs(period, timeZone);
  return { id: period.id, start: period.start + spread, end: period.end - spread };
}
