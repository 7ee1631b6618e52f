import { type KeyAttributor, redactSecrets } from "@keymeter/shared/api-keys";
import { type Logger, RateLimitedLog } from "@keymeter/shared/runtime";
import { type ClickHouseClient, createIdempotentProducer, type Redis, type Topics } from "@keymeter/shared/stores";
import { attributeEvents, parseUsageEventBytes, type UsageEvent, unpackEvents } from "@keymeter/shared/usage";
import type { Consumer, EachBatchPayload, Kafka, Producer } from "kafkajs";
import { DedupWindow, dedupWindowKeyPrefix } from "./dedup-window";
import { FingerprintList, FingerprintSet } from "./fingerprints";
import { InsertCombiner, InsertFailed } from "./insert-combiner";
import { AggregatorMetrics } from "./metrics";
import { OffsetStore } from "./offset-store";
import { UsageRows } from "./usage-rows";
import { ClickHouseUsageStore, type UsageStore } from "./usage-store";

export interface AggregatorOptions {
  kafka: Kafka;
  clickhouse: ClickHouseClient;
  redis: Redis;
  topics: Topics;
  groupId: string;
  logger: Logger;
  dedupWindowSeconds: number;
  dedupKeyPrefix: string;
  concurrency?: number;
  fetchBytesPerPartition?: number;
  sessionTimeoutMs?: number;
  /** Replaces the ClickHouse store (tests of back-pressure use a store that fails on demand). */
  store?: UsageStore;
  metrics?: AggregatorMetrics;
  /** Longest wait between insert retries while ClickHouse is down. */
  maxRetryDelayMs?: number;
  /** Rows from which the batches handled at the same time are inserted without waiting for more (see InsertCombiner). */
  maxInsertRows?: number;
  /** Longest wait for other partitions' batches to join an INSERT. */
  insertLingerMs?: number;
  /**
   * Called once per stored batch with the events that batch added to ClickHouse (after the
   * insert and the dedup marking, before the Kafka commit). Month-to-date counters and quota
   * checks hang here. A failure is logged and the batch goes on, because ClickHouse, not the
   * hook, is the truth (the quota sweep repairs what a hook missed).
   */
  afterInsert?: AfterInsertHook;
  /**
   * Attributes events that arrive without customer or tier, or with a key alias as subject,
   * from the key registry (every path into ClickHouse passes here). Events of keys the
   * registry does not know are stored as they came (empty customer and tier) and counted in
   * `aggregator_unknown_key_events_total`. Without it, events are stored as they came.
   */
  attribution?: KeyAttributor;
  /** Called when the consumer stopped for good (kafkajs will not restart it): exit and let the supervisor restart. */
  onFatal?: (error: Error) => void;
}

/** What one stored batch added to ClickHouse. */
export interface StoredBatch {
  topic: string;
  partition: number;
  events: readonly UsageEvent[];
}

export type AfterInsertHook = (batch: StoredBatch) => Promise<void> | void;

/** An event that failed validation, and where it came from. */
interface InvalidEvent {
  offset: string;
  /** Its line within a multi-event message (0 for a single event). */
  line: number;
  value: string | null;
  key: Buffer | null;
  reason: string;
}

/** A batch's events after validation and dedup, in order, with what each needs for its row. */
interface ReadBatch {
  accepted: UsageEvent[];
  /** Event time in milliseconds, per accepted event. */
  times: number[];
  /** Kafka offset of its message, per accepted event. */
  offsets: number[];
  /** Fingerprints of the accepted events, to mark once stored. */
  prints: FingerprintList;
  /** Fingerprints of events found already stored, to mark again. */
  storedPrints: FingerprintList;
  invalid: InvalidEvent[];
  skippedMessages: number;
  duplicates: number;
  /** Bytes of the fetched message values. */
  bytes: number;
}

/** A batch abandoned because the consumer is stopping: the partition's next owner takes it up. */
class PartitionRevoked extends Error {}

/**
 * Consumes usage events into ClickHouse exactly once (DESIGN.md, correctness rules 1-2):
 *
 * 1. On each (re)assignment, the last stored offset per partition is read from ClickHouse;
 *    messages at or below it are skipped, so a batch is never stored twice.
 * 2. Each batch is validated (bad events go to the DLQ with the reason), deduplicated on
 *    (source, id) within a window, and inserted with its partition and offsets in one INSERT
 *    (shared with the other partitions' batches in hand: see InsertCombiner).
 * 3. Only then are ids marked in the dedup window and the Kafka offset committed.
 *
 * While ClickHouse is unavailable the partition is paused and the insert retried with
 * back-off; nothing is buffered beyond the batch in hand.
 */
export class Aggregator {
  readonly metrics: AggregatorMetrics;
  private readonly consumer: Consumer;
  private readonly deadLetter: Producer;
  private readonly store: UsageStore;
  private readonly offsets: OffsetStore;
  private readonly dedup: DedupWindow;
  private readonly inserts: InsertCombiner;
  /** Batches inside handleBatch right now (at most `concurrency`). */
  private batchesInHand = 0;
  /** Last offset stored in ClickHouse, per partition; emptied by every rebalance. */
  private readonly stored = new Map<number, number>();
  private readonly warnings: RateLimitedLog;
  /** When the consumer last heard from Kafka (a fetch, a heartbeat, a join). */
  private lastKafkaContact = Date.now();
  private crashed = false;

  constructor(private readonly options: AggregatorOptions) {
    this.metrics = options.metrics ?? new AggregatorMetrics();
    const fetchBytes = options.fetchBytesPerPartition ?? 4 * 1024 * 1024;
    this.consumer = options.kafka.consumer({
      groupId: options.groupId,
      // Memory stays bounded under any backlog: one fetch of at most this much per batch in hand.
      maxBytesPerPartition: fetchBytes,
      maxBytes: fetchBytes * (options.concurrency ?? 3),
      maxWaitTimeInMs: 100,
      sessionTimeout: options.sessionTimeoutMs ?? 10_000,
      heartbeatInterval: Math.min(3_000, Math.floor((options.sessionTimeoutMs ?? 10_000) / 3)),
    });
    this.deadLetter = createIdempotentProducer(options.kafka);
    this.store = options.store ?? new ClickHouseUsageStore(options.clickhouse);
    this.offsets = new OffsetStore(options.clickhouse);
    this.inserts = new InsertCombiner(this.store, {
      maxRows: options.maxInsertRows ?? 100_000,
      lingerMs: options.insertLingerMs ?? 50,
      batchesInHand: () => this.batchesInHand,
      insertSeconds: this.metrics.insertSeconds,
    });
    this.dedup = new DedupWindow(options.redis, {
      windowSeconds: options.dedupWindowSeconds,
      keyPrefix: dedupWindowKeyPrefix(options.dedupKeyPrefix, options.topics.events),
    });
    // A new assignment may include partitions another instance wrote to since we last looked.
    this.consumer.on(this.consumer.events.GROUP_JOIN, (event) => {
      this.stored.clear();
      this.dedup.forgetAll();
      options.logger.info({ assignment: event.payload.memberAssignment }, "partitions assigned");
    });
    this.warnings = new RateLimitedLog(options.logger);
    const contact = () => {
      this.lastKafkaContact = Date.now();
      this.crashed = false;
    };
    this.consumer.on(this.consumer.events.FETCH_START, contact);
    this.consumer.on(this.consumer.events.HEARTBEAT, contact);
    this.consumer.on(this.consumer.events.GROUP_JOIN, contact);
    this.consumer.on(this.consumer.events.CRASH, (event) => {
      this.crashed = true;
      options.logger.error({ err: event.payload.error, restart: event.payload.restart }, "consumer crashed");
      if (!event.payload.restart) options.onFatal?.(event.payload.error);
    });
  }

  async start(): Promise<void> {
    await this.deadLetter.connect();
    await this.consumer.connect();
    await this.consumer.subscribe({ topic: this.options.topics.events, fromBeginning: true });
    await this.consumer.run({
      eachBatchAutoResolve: false,
      autoCommit: true,
      partitionsConsumedConcurrently: this.options.concurrency ?? 3,
      eachBatch: (payload) => this.handleBatch(payload),
    });
  }

  /** True while the consumer hears from Kafka (fetches or heartbeats within the session timeout). */
  kafkaHealthy(now = Date.now()): boolean {
    return !this.crashed && now - this.lastKafkaContact < Math.max(this.options.sessionTimeoutMs ?? 10_000, 10_000);
  }

  /** Stops after the batches in hand are stored and committed. */
  async stop(): Promise<void> {
    await this.consumer.disconnect();
    await this.deadLetter.disconnect();
  }

  /** The last offset of `partition` stored in ClickHouse; `reload` asks ClickHouse again. */
  private async lastStored(partition: number, reload = false): Promise<number> {
    if (reload || !this.stored.has(partition)) {
      const offsets = await this.offsets.lastStoredOffsets(this.options.topics.events);
      this.stored.set(partition, Number(offsets.get(partition) ?? -1n));
    }
    return this.stored.get(partition) ?? -1;
  }

  private async handleBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, heartbeat, commitOffsetsIfNecessary } = payload;
    const last = batch.messages.at(-1);
    if (!last) return;
    this.metrics.consumed.inc(batch.messages.length);
    this.batchesInHand++;
    try {
      await this.storeBatch(payload);
    } finally {
      this.batchesInHand--;
      // Batches waiting to be combined need not wait for this one any more.
      this.inserts.flushIfReady();
    }
    resolveOffset(last.offset);
    await commitOffsetsIfNecessary();
    this.metrics.lag.set({ partition: String(batch.partition) }, Number(batch.offsetLag()));
    await heartbeat();
  }

  private async storeBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    const { topic, partition } = batch;

    const alreadyStored = await this.withRetry(payload, "read stored offsets", () => this.lastStored(partition));
    await this.withRetry(payload, "load the dedup window", () => this.dedup.load(partition));
    const read = this.readBatch(batch, alreadyStored);
    const { times, offsets, prints, storedPrints, invalid } = read;
    let accepted = read.accepted;
    this.metrics.skipped.inc(read.skippedMessages);
    this.metrics.duplicates.inc(read.duplicates);

    if (invalid.length > 0) await this.sendToDeadLetter(topic, partition, invalid);

    const attribution = this.options.attribution;
    if (attribution && accepted.length > 0) {
      const result = await this.withRetry(payload, "attribute events to their keys", () =>
        attributeEvents(accepted, attribution),
      );
      accepted = result.events;
      if (result.unknownSubjects.size > 0) this.reportUnknown(partition, accepted, result.unknownSubjects);
    }
    const ingestedAt = Math.floor(Date.now() / 1000);
    // RowBinary rows are about half the size of the events' JSON.
    const rows = new UsageRows(read.bytes);
    const position = { topic, partition, offset: 0 };
    for (let i = 0; i < accepted.length; i++) {
      position.offset = offsets[i] ?? 0;
      rows.append(accepted[i] as UsageEvent, times[i] ?? 0, position, ingestedAt);
    }

    let pending = rows;
    let attempt = 0;
    let failedQuery: string | undefined;
    const queryId = `${topic}-${partition}-${batch.firstOffset()}-${batch.lastOffset()}`;
    await this.withRetry(payload, "insert into ClickHouse", async () => {
      if (attempt++ > 0) {
        // A failed insert may still be running or have been applied (a timeout, a server that
        // finished after the client gave up): wait until it ended, ask ClickHouse what it
        // holds, and send only the rest.
        if (failedQuery) await this.store.settle?.(failedQuery);
        pending = rows.after(await this.lastStored(partition, true));
      }
      try {
        // The first attempt goes with the other partitions' batches in hand; a retry goes alone.
        await this.inserts.insert(pending, queryId, attempt === 1);
      } catch (error) {
        failedQuery = error instanceof InsertFailed ? error.queryId : queryId;
        throw error;
      }
    });
    this.metrics.inserted.inc(pending.count);
    const lastInserted = pending.lastOffset;
    if (lastInserted !== undefined) this.stored.set(partition, lastInserted);

    await this.withRetry(payload, "mark ids in the dedup window", async () => {
      await this.dedup.mark(partition, storedPrints);
      await this.dedup.mark(partition, prints);
    });
    if (this.options.afterInsert && pending.count > 0) {
      // What this batch added: after a partly applied insert, only the rows sent last.
      const from = pending.count === rows.count ? 0 : accepted.length - pending.count;
      await this.runAfterInsert({ topic, partition, events: from === 0 ? accepted : accepted.slice(from) });
    }
  }

  /**
   * Parses and validates a batch's events and drops duplicates (a later copy in the batch, or
   * a retry of an event stored within the window). Messages at or below `alreadyStored` are
   * in ClickHouse already: their events are not stored again, only re-marked (a crash may
   * have come between their INSERT and their marking).
   */
  private readBatch(batch: EachBatchPayload["batch"], alreadyStored: number): ReadBatch {
    // Sized from the fetched bytes (events are ~300 bytes of JSON), so nothing grows on the way.
    let bytes = 0;
    for (const message of batch.messages) bytes += message.value?.length ?? 0;
    const expected = Math.ceil(bytes / 256);
    const read: ReadBatch = {
      accepted: [],
      times: [],
      offsets: [],
      prints: new FingerprintList(expected),
      storedPrints: new FingerprintList(1),
      invalid: [],
      skippedMessages: 0,
      duplicates: 0,
      bytes,
    };
    const inBatch = new FingerprintSet(expected);
    for (const message of batch.messages) {
      // Kafka offsets stay far below 2^53: plain numbers are exact.
      const offset = Number(message.offset);
      const isStored = offset <= alreadyStored;
      if (isStored) read.skippedMessages++;
      // A message holds one event, or several of one partition as NDJSON lines (packEvents).
      const lines = unpackEvents(message.value);
      for (let line = 0; line < lines.length; line++) {
        const value = lines[line] ?? null;
        const parsed = parseUsageEventBytes(value);
        if (!parsed.ok) {
          if (!isStored) {
            read.invalid.push({ offset: message.offset, line, value, key: message.key, reason: parsed.error });
          }
          continue;
        }
        const member = DedupWindow.member(parsed.event.source, parsed.event.id);
        if (isStored) {
          inBatch.add(read.storedPrints, read.storedPrints.push(member));
          continue;
        }
        const index = read.prints.push(member);
        if (!inBatch.add(read.prints, index) || this.dedup.seen(batch.partition, read.prints, index)) {
          read.prints.pop();
          read.duplicates++;
          continue;
        }
        read.accepted.push(parsed.event);
        read.times.push(parsed.timeMs);
        read.offsets.push(offset);
      }
    }
    return read;
  }

  /** Events of keys the registry does not know: stored as they came, counted and logged (not per event). */
  private reportUnknown(partition: number, events: readonly UsageEvent[], subjects: ReadonlySet<string>): void {
    const count = events.filter((event) => subjects.has(event.subject)).length;
    this.metrics.unknownKeyEvents.inc(count);
    this.warnings.log(
      "warn",
      "unknown-keys",
      { partition, events: count, subjects: [...subjects].slice(0, 10) },
      "events for keys the registry does not know: stored without customer and tier (see v_unknown_keys)",
    );
  }

  private async runAfterInsert(batch: StoredBatch): Promise<void> {
    try {
      await this.options.afterInsert?.(batch);
    } catch (error) {
      this.metrics.hookFailures.inc();
      this.options.logger.error(
        { partition: batch.partition, events: batch.events.length, err: (error as Error).message },
        "after-insert hook failed; the batch is stored and the quota sweep repairs what the hook missed",
      );
    }
  }

  private async sendToDeadLetter(topic: string, partition: number, invalid: InvalidEvent[]): Promise<void> {
    // At least once: a crash before the INSERT re-sends these; the headers identify duplicates.
    // Sent in requests under a megabyte, the broker's default limit.
    // A producer that put a secret in an event must not get it copied on: redacted here too.
    const messages = invalid.map((m) => ({
      key: m.key === null ? null : redactSecrets(m.key.toString("utf8")),
      value: m.value === null ? null : redactSecrets(m.value),
      headers: {
        "x-error": m.reason,
        "x-source-topic": topic,
        "x-source-partition": String(partition),
        "x-source-offset": m.offset,
        "x-source-line": String(m.line),
      },
    }));
    const send = (chunk: typeof messages) =>
      this.deadLetter.send({ topic: this.options.topics.deadLetter, acks: -1, messages: chunk });
    let chunk: typeof messages = [];
    let bytes = 0;
    for (const message of messages) {
      const size = (message.value?.length ?? 0) + 256;
      if (chunk.length > 0 && bytes + size > 900_000) {
        await send(chunk);
        chunk = [];
        bytes = 0;
      }
      chunk.push(message);
      bytes += size;
    }
    if (chunk.length > 0) await send(chunk);
    this.metrics.deadLettered.inc(invalid.length);
    this.options.logger.warn(
      { partition, count: invalid.length, first: invalid[0]?.reason },
      "invalid events sent to the DLQ",
    );
  }

  /**
   * Runs `action` until it succeeds. Between attempts the partition is paused (no new
   * fetches for it) and the consumer keeps heart-beating; a rebalance abandons the batch,
   * uncommitted, for the partition's next owner.
   */
  private async withRetry<T>(payload: EachBatchPayload, what: string, action: () => Promise<T>): Promise<T> {
    let delay = 100;
    let resume: (() => void) | undefined;
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          return await action();
        } catch (error) {
          if (error instanceof PartitionRevoked) throw error;
          if (!payload.isRunning() || payload.isStale()) throw new PartitionRevoked("consumer stopping");
          this.metrics.insertFailures.inc();
          if (!resume) {
            resume = payload.pause();
            this.metrics.paused.inc();
          }
          this.options.logger.warn(
            { partition: payload.batch.partition, attempt, err: (error as Error).message },
            `could not ${what}; partition paused, retrying`,
          );
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(delay * 2, this.options.maxRetryDelayMs ?? 5_000);
          await payload.heartbeat();
        }
      }
    } finally {
      if (resume) {
        resume();
        this.metrics.paused.dec();
      }
    }
  }
}
