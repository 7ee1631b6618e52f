import { Readable } from "node:stream";
import type { ClickHouseClient } from "@keymeter/shared/stores";

/** The statement each batch is sent with; the rows follow as JSONEachRow lines. */
export const INSERT_USAGE_EVENTS = "INSERT INTO usage_events FORMAT JSONEachRow";

/** Where accepted usage rows go: one INSERT per batch; rollups and offsets follow by view. */
export interface UsageStore {
  /** Inserts JSONEachRow lines (see usageRowJson) in one INSERT, under `queryId`. */
  insert(rows: string[], queryId: string): Promise<void>;
}

export class ClickHouseUsageStore implements UsageStore {
  constructor(private readonly clickhouse: ClickHouseClient) {}

  async insert(rows: string[], queryId: string): Promise<void> {
    if (rows.length === 0) return;
    const { stream } = await this.clickhouse.exec({
      query: INSERT_USAGE_EVENTS,
      query_id: queryId,
      values: Readable.from([rows.join("\n")]),
    });
    // The response must be read to the end, or the socket is not given back to the pool.
    for await (const _ of stream);
  }
}
