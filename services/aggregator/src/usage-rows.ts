import type { UsageEvent } from "@keymeter/shared/usage";

export interface KafkaPosition {
  topic: string;
  partition: number;
  offset: number;
}

/**
 * The `usage_events` columns the aggregator writes, in the order of each RowBinary row, with
 * their ClickHouse types (infra/clickhouse/migrations/0001_usage_events.sql). The INSERT names
 * them, so a column added to the table later takes its default.
 */
export const USAGE_EVENT_COLUMNS = [
  ["event_id", "String"],
  ["source", "String"],
  ["key_id", "String"],
  ["customer_id", "String"],
  ["tier", "String"],
  ["event_time", "DateTime('UTC')"],
  ["method", "String"],
  ["route", "String"],
  ["status", "UInt16"],
  ["latency_ms", "Float32"],
  ["request_bytes", "UInt64"],
  ["response_bytes", "UInt64"],
  ["units", "UInt64"],
  ["kafka_topic", "String"],
  ["kafka_partition", "UInt32"],
  ["kafka_offset", "UInt64"],
  ["ingested_at", "DateTime('UTC')"],
] as const;

/** The statement each batch is sent with; the rows follow as RowBinary. */
export const INSERT_USAGE_EVENTS = `INSERT INTO usage_events (${USAGE_EVENT_COLUMNS.map(([name]) => name).join(", ")}) FORMAT RowBinary`;

/**
 * `usage_events` rows in ClickHouse's RowBinary format, written straight into one growing
 * buffer: no row objects, no JSON text, nothing for the GC per event, and for ClickHouse the
 * cheapest format to read. Row boundaries are kept so that a retry can send only the rows
 * ClickHouse does not hold yet.
 */
export class UsageRows {
  private buffer: Buffer;
  private length = 0;
  /** Where each row starts, and the Kafka offset it came from. */
  private readonly starts: number[] = [];
  private readonly offsets: number[] = [];

  /** `capacity`: the bytes to start with (a batch's rows take fewer bytes than its events' JSON). */
  constructor(capacity = 64 * 1024) {
    this.buffer = Buffer.allocUnsafe(Math.max(1024, capacity));
  }

  get count(): number {
    return this.starts.length;
  }

  /** The Kafka offset of the last row, or undefined when there are none. */
  get lastOffset(): number | undefined {
    return this.offsets.at(-1);
  }

  /** The rows as one RowBinary body (a view of the buffer, valid until the next append). */
  bytes(): Buffer {
    return this.buffer.subarray(0, this.length);
  }

  /**
   * Appends the row of `event`, read at `position`, whose time is `timeMs` (as parsed, see
   * ParseResult). DateTime columns keep whole seconds, to run on ClickHouse 18.16.
   */
  append(event: UsageEvent, timeMs: number, position: KafkaPosition, ingestedAtSeconds: number): void {
    const d = event.data;
    this.starts.push(this.length);
    this.offsets.push(position.offset);
    this.string(event.id);
    this.string(event.source);
    this.string(event.subject);
    this.string(d.customer_id);
    this.string(d.tier);
    this.uint32(Math.floor(timeMs / 1000));
    this.string(d.method);
    this.string(d.route);
    this.reserve(2 + 4);
    this.buffer.writeUInt16LE(d.status, this.length);
    this.buffer.writeFloatLE(d.latency_ms, this.length + 2);
    this.length += 6;
    this.uint64(d.request_bytes);
    this.uint64(d.response_bytes);
    this.uint64(d.units);
    this.string(position.topic);
    this.uint32(position.partition);
    this.uint64(position.offset);
    this.uint32(ingestedAtSeconds);
  }

  /** The rows of several batches, one after another (their offsets are of different partitions). */
  static concat(parts: readonly UsageRows[]): UsageRows {
    const all = new UsageRows(parts.reduce((bytes, part) => bytes + part.length, 0));
    for (const part of parts) {
      for (let i = 0; i < part.count; i++) {
        all.starts.push(all.length + (part.starts[i] ?? 0));
        all.offsets.push(part.offsets[i] ?? -1);
      }
      part.buffer.copy(all.buffer, all.length, 0, part.length);
      all.length += part.length;
    }
    return all;
  }

  /** The rows whose Kafka offset is above `offset` (a retry after a partly applied insert). */
  after(offset: number): UsageRows {
    const rest = new UsageRows(this.length);
    for (let i = 0; i < this.count; i++) {
      if ((this.offsets[i] ?? -1) <= offset) continue;
      const start = this.starts[i] ?? 0;
      const end = this.starts[i + 1] ?? this.length;
      rest.reserve(end - start);
      rest.starts.push(rest.length);
      rest.offsets.push(this.offsets[i] ?? -1);
      this.buffer.copy(rest.buffer, rest.length, start, end);
      rest.length += end - start;
    }
    return rest;
  }

  private reserve(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + bytes));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }

  /** A String: its UTF-8 length as a LEB128 varint, then the bytes. */
  private string(value: string): void {
    const n = value.length;
    // Short ASCII text (nearly every field) is copied by hand: cheaper than a call into
    // Buffer.write for a few dozen bytes. Anything else is measured and written by Buffer.
    if (n < 128) {
      this.reserve(1 + n);
      const buffer = this.buffer;
      let at = this.length + 1;
      for (let i = 0; i < n; i++) {
        const code = value.charCodeAt(i);
        if (code >= 0x80) {
          at = -1;
          break;
        }
        buffer[at++] = code;
      }
      if (at !== -1) {
        buffer[this.length] = n;
        this.length = at;
        return;
      }
    }
    const bytes = Buffer.byteLength(value, "utf8");
    this.reserve(5 + bytes);
    for (let rest = bytes; ; ) {
      const low = rest & 0x7f;
      rest >>>= 7;
      this.buffer[this.length++] = rest === 0 ? low : low | 0x80;
      if (rest === 0) break;
    }
    this.length += this.buffer.write(value, this.length, "utf8");
  }

  private uint32(value: number): void {
    this.reserve(4);
    this.buffer.writeUInt32LE(value, this.length);
    this.length += 4;
  }

  /** A UInt64 from a safe integer (below 2^53): low and high 32-bit words, little-endian. */
  private uint64(value: number): void {
    this.reserve(8);
    this.buffer.writeUInt32LE(value >>> 0, this.length);
    this.buffer.writeUInt32LE(Math.floor(value / 0x1_0000_0000), this.length + 4);
    this.length += 8;
  }
}

/** A `usage_events` row as read back from RowBinary: strings, numbers, DateTimes as seconds. */
export type UsageRowValues = Record<(typeof USAGE_EVENT_COLUMNS)[number][0], string | number>;

/** Reads RowBinary written by {@link UsageRows} back into rows: for tests and for inspecting a batch. */
export function readUsageRows(bytes: Buffer): UsageRowValues[] {
  const rows: UsageRowValues[] = [];
  let at = 0;
  while (at < bytes.length) {
    const row: Record<string, string | number> = {};
    for (const [name, type] of USAGE_EVENT_COLUMNS) {
      if (type === "String") {
        let length = 0;
        for (let shift = 0; ; shift += 7) {
          const byte = bytes[at++] ?? 0;
          length |= (byte & 0x7f) << shift;
          if (byte < 0x80) break;
        }
        row[name] = bytes.toString("utf8", at, at + length);
        at += length;
      } else if (type === "UInt16") {
        row[name] = bytes.readUInt16LE(at);
        at += 2;
      } else if (type === "Float32") {
        row[name] = bytes.readFloatLE(at);
        at += 4;
      } else if (type === "UInt64") {
        row[name] = bytes.readUInt32LE(at) + bytes.readUInt32LE(at + 4) * 0x1_0000_0000;
        at += 8;
      } else {
        row[name] = bytes.readUInt32LE(at); // UInt32, DateTime
        at += 4;
      }
    }
    rows.push(row as UsageRowValues);
  }
  return rows;
}
