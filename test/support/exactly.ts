import type { UsageEventInput } from "@keymeter/shared/usage";
import { expect } from "vitest";
import type { TestPipeline } from "./pipeline";
import { pollUntil } from "./poll";

/** What a test sent, as far as the exactness check needs it. */
export type SentEvent = Pick<UsageEventInput, "id" | "source" | "subject"> & { data: { units?: number | undefined } };

interface StoredRow {
  source: string;
  event_id: string;
  copies: string;
}

interface KeyTotals {
  key_id: string;
  requests: string;
  units: string;
}

/**
 * The check every exactly-once test ends with: the set of `(source, id)` in `usage_events`
 * is the set sent, each stored once, and the monthly rollup (what a bill is computed from)
 * holds per key exactly the requests and units sent. Totals alone would let one lost event
 * and one duplicate cancel out; per-key units catch a swap between keys as well.
 */
export async function expectExactly(pipeline: TestPipeline, sent: readonly SentEvent[]): Promise<void> {
  const query = async <T>(sql: string): Promise<T[]> => {
    const result = await pipeline.clickhouse.query({ query: sql, format: "JSONEachRow" });
    return result.json<T>();
  };
  const member = (source: string, id: string) => `${source}/${id}`;
  const expected = new Map<string, number>();
  for (const event of sent)
    expected.set(member(event.source, event.id), (expected.get(member(event.source, event.id)) ?? 0) + 1);

  const stored = await query<StoredRow>(
    "SELECT source, event_id, toString(count()) AS copies FROM usage_events GROUP BY source, event_id",
  );
  const storedIds = new Set(stored.map((row) => member(row.source, row.event_id)));
  const duplicated = stored.filter((row) => Number(row.copies) > 1).map((row) => member(row.source, row.event_id));
  const lost = [...expected.keys()].filter((id) => !storedIds.has(id));
  const extra = [...storedIds].filter((id) => !expected.has(id));
  const sample = (ids: string[]) => ids.slice(0, 5).join(", ");
  expect(
    { lost: lost.length, duplicated: duplicated.length, extra: extra.length },
    `stored ids differ from those sent: lost [${sample(lost)}] duplicated [${sample(duplicated)}] extra [${sample(extra)}]`,
  ).toEqual({ lost: 0, duplicated: 0, extra: 0 });

  const perKey = new Map<string, { requests: number; units: number }>();
  for (const event of sent) {
    const totals = perKey.get(event.subject) ?? { requests: 0, units: 0 };
    totals.requests++;
    totals.units += event.data.units ?? 1;
    perKey.set(event.subject, totals);
  }
  const want = Object.fromEntries([...perKey].sort(([a], [b]) => a.localeCompare(b)));
  const rollup = async () => {
    const rows = await query<KeyTotals>(
      `SELECT key_id, toString(sum(requests)) AS requests, toString(sum(units)) AS units
       FROM usage_monthly GROUP BY key_id ORDER BY key_id`,
    );
    return Object.fromEntries(
      rows.map((row) => [row.key_id, { requests: Number(row.requests), units: Number(row.units) }]),
    );
  };
  // The rollups are written by views right after the raw rows (same INSERT): allow them a moment.
  const counted = await pollUntil(
    async () => {
      const now = await rollup();
      return JSON.stringify(now) === JSON.stringify(want) ? now : undefined;
    },
    { timeoutMs: 3_000, what: "the rollups" },
  ).catch(() => rollup());
  expect(counted, "per-key requests and units in usage_monthly").toEqual(want);
}

/** The Kafka partitions that stored rows came from (sorted): shows a test reached them all. */
export async function storedPartitions(pipeline: TestPipeline): Promise<number[]> {
  const result = await pipeline.clickhouse.query({
    query: "SELECT DISTINCT kafka_partition AS p FROM usage_events ORDER BY p",
    format: "JSONEachRow",
  });
  return (await result.json<{ p: number }>()).map((row) => Number(row.p));
}
