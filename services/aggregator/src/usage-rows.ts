import { toDateTime, type UsageEvent } from "@keymeter/shared";

/** One row of `usage_events`, as JSONEachRow. */
export interface UsageRow {
  event_id: string;
  source: string;
  key_id: string;
  customer_id: string;
  tier: string;
  event_time: string;
  method: string;
  route: string;
  status: number;
  latency_ms: number;
  request_bytes: number;
  response_bytes: number;
  units: number;
  kafka_topic: string;
  kafka_partition: number;
  kafka_offset: string;
  ingested_at: string;
}

export interface KafkaPosition {
  topic: string;
  partition: number;
  offset: string;
}

export function toUsageRow(event: UsageEvent, position: KafkaPosition, ingestedAt: string): UsageRow {
  const { data } = event;
  return {
    event_id: event.id,
    source: event.source,
    key_id: event.subject,
    customer_id: data.customer_id,
    tier: data.tier,
    // Event time decides the period; sub-second precision is not kept (DateTime, not DateTime64).
    event_time: toDateTime(Date.parse(event.time)),
    method: data.method,
    route: data.route,
    status: data.status,
    latency_ms: data.latency_ms,
    request_bytes: data.request_bytes,
    response_bytes: data.response_bytes,
    units: data.units,
    kafka_topic: position.topic,
    kafka_partition: position.partition,
    kafka_offset: position.offset,
    ingested_at: ingestedAt,
  };
}
