import { toDateTime } from "@keymeter/shared/stores";
import type { UsageEvent } from "@keymeter/shared/usage";

export interface KafkaPosition {
  topic: string;
  partition: number;
  offset: string;
}

/** `DateTime('UTC')` text for an event time: a string slice for UTC times, a Date round trip otherwise. */
export function eventDateTime(time: string): string {
  return time.endsWith("Z") ? `${time.slice(0, 10)} ${time.slice(11, 19)}` : toDateTime(Date.parse(time));
}

/**
 * One `usage_events` row as a JSONEachRow line. Built as text: on the hot path this is
 * several times cheaper than JSON.stringify of a row object. Strings go through
 * JSON.stringify for escaping; numbers are validated numbers. Event time keeps whole
 * seconds (DateTime, not DateTime64, to run on ClickHouse 18.16).
 */
export function usageRowJson(event: UsageEvent, position: KafkaPosition, ingestedAt: string): string {
  const d = event.data;
  const s = JSON.stringify;
  return (
    `{"event_id":${s(event.id)},"source":${s(event.source)},"key_id":${s(event.subject)},` +
    `"customer_id":${s(d.customer_id)},"tier":${s(d.tier)},"event_time":"${eventDateTime(event.time)}",` +
    `"method":"${d.method}","route":${s(d.route)},"status":${d.status},"latency_ms":${d.latency_ms},` +
    `"request_bytes":${d.request_bytes},"response_bytes":${d.response_bytes},"units":${d.units},` +
    `"kafka_topic":${s(position.topic)},"kafka_partition":${position.partition},"kafka_offset":${position.offset},` +
    `"ingested_at":"${ingestedAt}"}`
  );
}
