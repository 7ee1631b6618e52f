import { randomUUID } from "node:crypto";
import { type ClickHouseClient, toDateTime } from "@keymeter/shared/stores";

export interface SyntheticUsage {
  keyId: string;
  customerId?: string;
  tier?: string;
  /** Event time, epoch ms. */
  at: number;
  units: number;
}

/**
 * Inserts usage straight into `usage_events` (its views fill the rollups), bypassing Kafka
 * and the aggregator: what a crash between the insert and the counter bump leaves behind.
 */
export async function insertUsage(clickhouse: ClickHouseClient, rows: readonly SyntheticUsage[]): Promise<void> {
  for (let start = 0; start < rows.length; start += 50_000) {
    await clickhouse.insert({
      table: "usage_events",
      format: "JSONEachRow",
      values: rows.slice(start, start + 50_000).map((row) => ({
        event_id: randomUUID(),
        source: "synthetic",
        key_id: row.keyId,
        customer_id: row.customerId ?? "",
        tier: row.tier ?? "",
        event_time: toDateTime(row.at),
        method: "GET",
        route: "/v1/things/:id",
        status: 200,
        latency_ms: 1,
        request_bytes: 0,
        response_bytes: 0,
        units: row.units,
        kafka_topic: "synthetic",
        kafka_partition: 0,
        kafka_offset: 0,
        ingested_at: toDateTime(Date.now()),
      })),
    });
  }
}
