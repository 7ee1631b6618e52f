import { Readable } from "node:stream";
import type { ClickHouseClient } from "@keymeter/shared/stores";
import { INSERT_USAGE_EVENTS, type UsageRows } from "./usage-rows";

/** Where accepted usage rows go: one INSERT per batch; rollups and offsets follow by view. */
export interface UsageStore {
  /** Inserts the rows in one INSERT, under `queryId`. */
  insert(rows: UsageRows, queryId: string): Promise<void>;
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
}
