import { quoteString, toDateTime } from "../stores/clickhouse";
import type { Period } from "./periods";

const HOUR_MS = 3_600_000;
const at = (ms: number) => `toDateTime(${quoteString(toDateTime(ms))}, 'UTC')`;

/**
 * The SQL that sums `units` per group in each of `periods` exactly, in any time zone: the whole
 * hours from the hourly rollup (columns u0, u1, ...), then, only when some period starts or ends
 * inside an hour (zones like Asia/Kolkata or Pacific/Chatham), those partial hours from raw
 * events (columns r0, r1, ...). Daily or monthly rollups would be off by up to a day outside UTC.
 * `groupBy` names the grouping columns; `where` (optional) filters both queries.
 */
export function periodUnitsQueries(
  periods: readonly Period[],
  groupBy: string,
  where?: string,
): { rollup: string; raw: string | undefined } {
  const filter = where ? `${where} AND ` : "";
  const hours = periods.map((period) => ({
    from: Math.ceil(period.start / HOUR_MS) * HOUR_MS,
    to: Math.floor(period.end / HOUR_MS) * HOUR_MS,
  }));
  const columns = hours.map((h, i) => `sumIf(units, hour >= ${at(h.from)} AND hour < ${at(h.to)}) AS u${i}`);
  const rollup = `SELECT ${groupBy}, ${columns.join(", ")} FROM usage_hourly WHERE ${filter}hour >= ${at(Math.min(...hours.map((h) => h.from)))} AND hour < ${at(Math.max(...hours.map((h) => h.to)))} GROUP BY ${groupBy}`;
  const partial = periods.map((period, i) => {
    const ranges: Array<[number, number]> = [];
    const h = hours[i];
    if (h && period.start < h.from) ranges.push([period.start, h.from]);
    if (h && h.to < period.end) ranges.push([h.to, period.end]);
    return ranges;
  });
  const all = partial.flat();
  if (all.length === 0) return { rollup, raw: undefined };
  const inRanges = (ranges: Array<[number, number]>) =>
    ranges.map(([from, to]) => `(event_time >= ${at(from)} AND event_time < ${at(to)})`).join(" OR ");
  const rawColumns = partial.map((ranges, i) =>
    ranges.length === 0 ? `toUInt64(0) AS r${i}` : `sumIf(units, ${inRanges(ranges)}) AS r${i}`,
  );
  const raw = `SELECT ${groupBy}, ${rawColumns.join(", ")} FROM usage_events WHERE ${filter}(${inRanges(all)}) GROUP BY ${groupBy}`;
  return { rollup, raw };
}
