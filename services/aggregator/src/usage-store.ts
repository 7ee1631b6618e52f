import { Readable } from "node:stream";
import { type ClickHouseClient, quoteString } from "@keymeter/shared/stores";
import { INSERT_USAGE_EVENTS, type UsageRows } from "./usage-rows";

/** Where accepted usage rows go: one INSERT per batch; rollups and offsets follow by view. */
export interface UsageStore {
  /** Inserts the rows in one INSERT, under `queryId`. */
  insert(rows: UsageRows, queryId: string): Promise<void>;
  /** After a failed insert: returns once the server no longer runs `queryId` (a timed-out insert may still be applied). */
  settle?(queryId: string): Promise<void>;
}

export class ClickHouseUsageStore implements UsageStore {
  constructor(private readonly clickhouse: ClickHouseClient) {}

  async insert(rows: UsageRows, queryId: string): Promise<void> {
    if (rows.count === 0) return;
    const { stream } = await this.clickhouse.exec({
      query: INSERT_USAGE_EVENTS,
      query_id: queryId,
      values: Readable.from([rows.bytes()]),
    });
    // The response must be read to the end, or the socket is not given back to the pool.
    for await (const _ of stream);
  }

  /** Throws when ClickHouse cannot say, or still runs the query after `limitMs`: the caller retries later. */
  async settle(queryId: string, limitMs = 30_000): Promise<void> {
    const deadline = Date.now() + limitMs;
    for (;;) {
      const result = await this.clickhouse.query({
        query: `SELECT count() AS n FROM system.processes WHERE query_id = ${quoteString(queryId)}`,
        format: "JSONEachRow",
      });
      const [row] = await result.json<{ n: string | number }>();
      if (Number(row?.n ?? 0) === 0) return;
      if (Date.now() > deadline) throw new Error(`insert ${queryId} still runs after ${limitMs} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
