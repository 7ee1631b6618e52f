import type { Admin, Message } from "kafkajs";
import type { UsageEventInput } from "./usage-event";

/**
 * Kafka's default partitioner hash (murmur2, as the Java client computes it), in 32-bit
 * integer arithmetic. A key goes to `(murmur2(key) & 0x7fffffff) % partitions` on every
 * client, ours included.
 */
export function murmur2(key: string): number {
  const data = Buffer.from(key);
  const m = 0x5bd1e995;
  let h = 0x9747b28c ^ data.length;
  const length4 = data.length >> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = (data[i4] ?? 0) | ((data[i4 + 1] ?? 0) << 8) | ((data[i4 + 2] ?? 0) << 16) | ((data[i4 + 3] ?? 0) << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const tail = data.length & ~3;
  const rest = data.length % 4;
  if (rest >= 3) h ^= (data[tail + 2] ?? 0) << 16;
  if (rest >= 2) h ^= (data[tail + 1] ?? 0) << 8;
  if (rest >= 1) {
    h ^= data[tail] ?? 0;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/**
 * A usage event on its way to Kafka, serialized once: its partition key (the API key id)
 * and its JSON. The emitter's buffer and disk spool hold these; packEvents turns them into
 * Kafka messages.
 */
export interface EncodedEvent {
  key: string;
  value: string;
}

export function encodeEvent(event: UsageEventInput): EncodedEvent {
  return { key: event.subject, value: JSON.stringify(event) };
}

export function partitionFor(key: string, partitions: number): number {
  return (murmur2(key) & 0x7fffffff) % partitions;
}

/** Header naming how many events a message holds (absent: one). */
export const EVENT_COUNT_HEADER = "keymeter-events";

/**
 * Packs events into Kafka messages, one or more per partition: each message holds the
 * events of one partition as NDJSON lines (a one-line message is a plain structured
 * CloudEvent). Every event still lands on the partition its key id picks, in order, so
 * order per key is kept; what changes is the per-record cost, which in a JavaScript client
 * and consumer dominates. ClickHouse's Kafka engine reads such messages with JSONEachRow.
 */
export function packEvents(events: EncodedEvent[], partitions: number, maxMessageBytes = 512 * 1024): Message[] {
  const open = new Map<number, { lines: string[]; bytes: number }>();
  const messages: Message[] = [];
  const close = (partition: number, pack: { lines: string[] }) => {
    messages.push({
      partition,
      value: pack.lines.join("\n"),
      headers: { [EVENT_COUNT_HEADER]: String(pack.lines.length) },
    });
  };
  for (const event of events) {
    const partition = partitionFor(event.key, partitions);
    let pack = open.get(partition);
    if (pack && pack.bytes + event.value.length + 1 > maxMessageBytes) {
      close(partition, pack);
      pack = undefined;
    }
    if (!pack) {
      pack = { lines: [], bytes: 0 };
      open.set(partition, pack);
    }
    pack.lines.push(event.value);
    pack.bytes += event.value.length + 1;
  }
  for (const [partition, pack] of open) close(partition, pack);
  return messages;
}

/**
 * Orders packed messages into produce requests holding at most one message per partition:
 * kafkajs puts a request's messages for one partition into one record batch, which the
 * broker refuses over `message.max.bytes` (1 MB by default). Sent one after another, the
 * requests keep the order per partition.
 */
export function inRequests(messages: Message[]): Message[][] {
  const requests: Message[][] = [];
  const seen = new Map<number, number>();
  for (const message of messages) {
    const partition = message.partition ?? 0;
    const round = seen.get(partition) ?? 0;
    seen.set(partition, round + 1);
    const request = requests[round] ?? [];
    request.push(message);
    requests[round] = request;
  }
  return requests;
}

/** Splits a message value back into its events' JSON (the reverse of packEvents), decoding it once. */
export function unpackEvents(value: Buffer | null): Array<string | null> {
  if (value === null) return [null];
  return value.toString("utf8").split("\n");
}

/**
 * The partition count of a topic, cached and refreshed in the background, so that every
 * produce call can pack by partition without a metadata round trip.
 */
export class PartitionCount {
  private count: number | undefined;
  private fetchedAt = 0;

  constructor(
    private readonly admin: Admin,
    private readonly topic: string,
    private readonly refreshMs = 30_000,
  ) {}

  async get(): Promise<number> {
    if (this.count === undefined || Date.now() - this.fetchedAt > this.refreshMs) {
      const metadata = await this.admin.fetchTopicMetadata({ topics: [this.topic] });
      const partitions = metadata.topics[0]?.partitions.length ?? 0;
      if (partitions === 0) throw new Error(`topic ${this.topic} has no partitions`);
      this.count = partitions;
      this.fetchedAt = Date.now();
    }
    return this.count;
  }
}
