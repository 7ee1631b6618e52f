import { type ClickHouseClient, quoteString } from "@keymeter/shared/stores";

/** One row per partition of `topic` with rows: `partition`, and `offset` as text (UInt64). */
export function lastStoredOffsetsQuery(topic: string): string {
  return `SELECT kafka_partition AS partition, toString(maxMerge(max_offset)) AS offset
              FROM ingest_offsets WHERE kafka_topic = ${quoteString(topic)}
              GROUP BY kafka_partition`;
}

/**
 * The last Kafka offset stored in ClickHouse per partition, read from `ingest_offsets`
 * (filled by a materialized view on the same INSERT as the raw rows). This, not Kafka's
 * committed offset, decides what is already counted.
 */
export class OffsetStore {
  constructor(private readonly clickhouse: ClickHouseClient) {}

  /** Map partition -> last stored offset, for every partition of `topic` that has rows. */
  async lastStoredOffsets(topic: string): Promise<Map<number, bigint>> {
    const result = await this.clickhouse.query({ query: lastStoredOffsetsQuery(topic), format: "JSONEachRow" });
    const rows = await result.json<{ partition: number; offset: string }>();
    return new Map(rows.map((row) => [Number(row.partition), BigInt(row.offset)]));
  }
}
