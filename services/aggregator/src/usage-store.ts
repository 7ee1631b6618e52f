import type { ClickHouseClient } from "@keymeter/shared";
import type { UsageRow } from "./usage-rows";

/** Where accepted usage rows go: one INSERT per batch, rollups and offsets follow by view. */
export interface UsageStore {
  insert(rows: UsageRow[]): Promise<void>;
}

export class ClickHouseUsageStore implements UsageStore {
  constructor(private readonly clickhouse: ClickHouseClient) {}

  async insert(rows: UsageRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.clickhouse.insert({ table: "usage_events", values: rows, format: "JSONEachRow" });
  }
}
