import { type ClickHouseClient, quoteString, toDateTime } from "../stores/clickhouse";
import { periodUnitsQueries } from "./period-units-sql";
import type { Period } from "./periods";

/** Month-to-date billable units from ClickHouse, the truth quotas are enforced against. */
export interface UsageReader {
  /** One key's units in `period`. */
  keyUnits(keyId: string, period: Period): Promise<number>;
  /**
   * Every key's units in each of `periods` (one per distinct time-zone offset in use):
   * result.get(periodKey(period)).get(keyId). Keys without usage are absent.
   */
  unitsByKey(periods: readonly Period[]): Promise<Map<string, Map<string, number>>>;
}

/** Periods with the same id can have different bounds (time zones): key them by their bounds. */
export function periodKey(period: Pick<Period, "start" | "end">): string {
  return `${period.start}/${period.end}`;
}

const at = (ms: number) => `toDateTime(${quoteString(toDateTime(ms))}, 'UTC')`;

/**
 * Reads usage for quotas. A single key reads raw `usage_events` (ordered by key id, so a
 * range read of that key; exact for any time zone). A sweep over all keys reads the hourly
 * rollup, which is exact for periods that start and end on a UTC hour (every zone whose
 * offset is whole hours, DST included) and, for zones like Asia/Kolkata or Pacific/Chatham,
 * adds the raw events of the partial hours at either end. Daily or monthly rollups would be
 * off by up to a day for any zone but UTC.
 */
export class ClickHouseUsageReader implements UsageReader {
  constructor(private readonly clickhouse: ClickHouseClient) {}

  async keyUnits(keyId: string, period: Period): Promise<number> {
    const result = await this.clickhouse.query({
      query: `SELECT sum(units) AS units FROM usage_events WHERE key_id = ${quoteString(keyId)} AND event_time >= ${at(period.start)} AND event_time < ${at(period.end)}`,
      format: "JSONEachRow",
    });
    const [row] = await result.json<{ units: string | number }>();
    return Number(row?.units ?? 0);
  }

  async unitsByKey(periods: readonly Period[]): Promise<Map<string, Map<string, number>>> {
    const distinct = [...new Map(periods.map((period) => [periodKey(period), period])).values()];
    const totals = new Map(distinct.map((period) => [periodKey(period), new Map<string, number>()]));
    if (distinct.length === 0) return totals;
    const add = (period: Period, keyId: string, units: number) => {
      if (units === 0) return;
      const byKey = totals.get(periodKey(period));
      byKey?.set(keyId, (byKey.get(keyId) ?? 0) + units);
    };

    const { rollup, raw } = periodUnitsQueries(distinct, "key_id");
    for (const query of raw === undefined ? [rollup] : [rollup, raw]) {
      await this.eachRow(query, (keyId, values) => {
        for (const [i, period] of distinct.entries()) add(period, keyId, values[i] ?? 0);
      });
    }
    return totals;
  }

  /** Runs `query` with TabSeparated output (cheapest to read for 100k rows) and hands each row over. */
  private async eachRow(query: string, onRow: (keyId: string, values: number[]) => void): Promise<void> {
    const result = await this.clickhouse.query({ query, format: "TabSeparated" });
    const text = await result.text();
    for (const line of text.split("\n")) {
      if (line === "") continue;
      const [keyId = "", ...values] = line.split("\t");
      onRow(keyId, values.map(Number));
    }
  }
}
