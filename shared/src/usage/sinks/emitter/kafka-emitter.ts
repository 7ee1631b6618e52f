import type { Admin, Kafka, Producer } from "kafkajs";
import type { Logger } from "../../../runtime/logger";
import { createIdempotentProducer } from "../../../stores/kafka";
import { KafkaPublisher } from "../../kafka-publisher";
import type { UsageEventInput } from "../../usage-event";
import { type EncodedEvent, encodeEvent, PartitionCount } from "../../wire-format";
import type { UsageEventSink } from "../event-sink";
import { DiskSpool } from "./disk-spool";

export interface KafkaEmitterOptions {
  kafka: Kafka;
  topic: string;
  logger: Logger;
  /** Where events wait while Kafka is unreachable. One directory per emitter process. */
  spoolDir: string;
  /** Most events in one produce request. */
  maxBatchEvents?: number;
  /** How long an event may wait for others to fill its batch. */
  lingerMs?: number;
  /** Events held in memory; past this, new events are dropped and counted. */
  maxBufferedEvents?: number;
  /** Disk the spool may use; past this, events are dropped and counted. */
  maxSpoolBytes?: number;
  /** A produce request not acknowledged within this goes to the spool. */
  sendTimeoutMs?: number;
  /** How often a replay of the spool is tried while Kafka is away. */
  replayIntervalMs?: number;
}

export interface EmitterStats {
  /** Events acknowledged by Kafka (directly or replayed from the spool). */
  sent: number;
  /** Events written to the spool. */
  spooled: number;
  /** Events lost: buffer or spool full, or emitted after close. */
  dropped: number;
  buffered: number;
  spoolBytes: number;
}

/**
 * The gateways' usage-event emitter: an idempotent kafkajs producer, fed by a bounded
 * in-memory buffer that is sent in batches (size and time bound), each event on the
 * partition of its key id, packed several to a message (see packEvents). `emit` never
 * blocks and never throws. When Kafka does not acknowledge a batch, it and everything after
 * it go to a disk spool, replayed oldest-first once Kafka answers again, so events keep
 * their order per key and none is lost while the broker is down. A replay that is cut
 * short may send some events twice: the aggregator drops those by (source, id).
 */
export class KafkaEmitter implements UsageEventSink {
  private producer: Producer;
  private publisher: KafkaPublisher;
  private readonly admin: Admin;
  private readonly partitions: PartitionCount;
  private readonly settings: Required<Omit<KafkaEmitterOptions, "kafka" | "topic" | "logger" | "spoolDir">>;
  /** Encoded when sent, not when emitted: `emit` is on the request path of every gateway request. */
  private buffer: UsageEventInput[] = [];
  private spool: DiskSpool | undefined;
  private connected = false;
  private closed = false;
  private pumping: Promise<void> | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  private replayTimer: NodeJS.Timeout | undefined;
  private nextReplayAt = 0;
  private lastDropWarning = 0;
  private readonly counts = { sent: 0, spooled: 0, dropped: 0 };

  constructor(private readonly options: KafkaEmitterOptions) {
    this.settings = {
      maxBatchEvents: options.maxBatchEvents ?? 5_000,
      lingerMs: options.lingerMs ?? 20,
      maxBufferedEvents: options.maxBufferedEvents ?? 100_000,
      maxSpoolBytes: options.maxSpoolBytes ?? 1024 * 1024 * 1024,
      sendTimeoutMs: options.sendTimeoutMs ?? 5_000,
      replayIntervalMs: options.replayIntervalMs ?? 1_000,
    };
    this.admin = options.kafka.admin();
    this.partitions = new PartitionCount(this.admin, options.topic);
    this.producer = this.newProducer();
    this.publisher = new KafkaPublisher(this.producer, options.topic, this.partitions, this.settings.sendTimeoutMs);
  }

  private newProducer(): Producer {
    // Few retries inside kafkajs: past them the spool takes over, with its own replay loop.
    return createIdempotentProducer(this.options.kafka, { retry: { retries: 3, maxRetryTime: 1_000 } });
  }

  /** Opens the spool (replaying what a previous process left) and connects to Kafka if it can. */
  async start(): Promise<void> {
    this.spool = await DiskSpool.open({ dir: this.options.spoolDir, maxBytes: this.settings.maxSpoolBytes });
    await this.connect(false);
    if (!this.spool.isEmpty) this.schedule(0);
  }

  /** Buffers the event, which must not change afterwards (it is encoded when its batch is sent). */
  emit(event: UsageEventInput): void {
    if (this.closed || this.buffer.length >= this.settings.maxBufferedEvents) {
      this.drop(1, this.closed ? "emitter closed" : "buffer full");
      return;
    }
    this.buffer.push(event);
    this.schedule(this.buffer.length >= this.settings.maxBatchEvents ? 0 : this.settings.lingerMs);
  }

  /** Resolves when every event emitted so far is acknowledged by Kafka or safe in the spool. */
  async flush(): Promise<void> {
    while (this.buffer.length > 0 || this.pumping) {
      await (this.pumping ?? this.pump());
    }
  }

  /** Flushes, then disconnects. The spool stays on disk for the next start. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.lingerTimer);
    clearTimeout(this.replayTimer);
    await this.flush();
    await this.spool?.close();
    if (this.connected) await this.producer.disconnect();
    await this.admin.disconnect();
  }

  get stats(): EmitterStats {
    return { ...this.counts, buffered: this.buffer.length, spoolBytes: this.spool?.bytes ?? 0 };
  }

  private schedule(delayMs: number): void {
    if (delayMs === 0) {
      clearTimeout(this.lingerTimer);
      this.lingerTimer = undefined;
      void this.pump();
    } else {
      this.lingerTimer ??= setTimeout(() => {
        this.lingerTimer = undefined;
        void this.pump();
      }, delayMs);
    }
  }

  /** The single sender: one batch in flight at a time keeps the order per key. */
  private pump(): Promise<void> {
    this.pumping ??= this.drain()
      .catch((error: unknown) => this.options.logger.error({ err: error }, "emitter pump failed"))
      .finally(() => {
        this.pumping = undefined;
        if (this.buffer.length > 0 && !this.closed) this.schedule(0);
      });
    return this.pumping;
  }

  private async drain(): Promise<void> {
    const spool = this.spool;
    if (!spool) throw new Error("KafkaEmitter.start() was not called");
    while (this.buffer.length > 0) {
      if (!spool.isEmpty || !this.connected) {
        // Kafka is away (or older events wait on disk): everything goes behind them, in order.
        await this.toSpool(spool, this.buffer.splice(0).map(encodeEvent));
        break;
      }
      const batch = this.buffer.splice(0, this.settings.maxBatchEvents).map(encodeEvent);
      if (!(await this.send(batch))) await this.toSpool(spool, batch);
    }
    if (!spool.isEmpty) await this.replay(spool);
  }

  private async replay(spool: DiskSpool): Promise<void> {
    if (Date.now() < this.nextReplayAt) return this.scheduleReplay();
    if (!this.connected) await this.connect();
    while (this.connected && !spool.isEmpty && !this.closed) {
      // New events queue up behind the spooled ones (order per key), not in memory.
      if (this.buffer.length > 0) await this.toSpool(spool, this.buffer.splice(0).map(encodeEvent));
      const segment = await spool.oldest();
      if (!segment) break;
      for (let i = 0; i < segment.messages.length; i += this.settings.maxBatchEvents) {
        if (!(await this.send(segment.messages.slice(i, i + this.settings.maxBatchEvents)))) {
          // Retry the whole segment later; what was sent of it now will be deduplicated downstream.
          this.nextReplayAt = Date.now() + this.settings.replayIntervalMs;
          return this.scheduleReplay();
        }
      }
      await spool.remove(segment.seq);
      this.options.logger.info({ events: segment.messages.length }, "spooled events replayed to Kafka");
    }
    if (!spool.isEmpty) this.scheduleReplay();
  }

  private scheduleReplay(): void {
    if (this.replayTimer || this.closed) return;
    const delay = Math.max(0, this.nextReplayAt - Date.now()) || this.settings.replayIntervalMs;
    this.replayTimer = setTimeout(() => {
      this.replayTimer = undefined;
      void this.pump();
    }, delay);
  }

  private async send(messages: EncodedEvent[]): Promise<boolean> {
    try {
      await this.publisher.publish(messages);
      this.counts.sent += messages.length;
      return true;
    } catch (error) {
      if (this.connected)
        this.options.logger.warn(
          { err: (error as Error).message },
          "Kafka did not acknowledge a batch; spooling to disk",
        );
      this.connected = false;
      this.nextReplayAt = Date.now() + this.settings.replayIntervalMs;
      return false;
    }
  }

  private async toSpool(spool: DiskSpool, messages: EncodedEvent[]): Promise<void> {
    const dropped = await spool.append(messages);
    this.counts.spooled += messages.length - dropped;
    if (dropped > 0) this.drop(dropped, "spool full");
    this.scheduleReplay();
  }

  /** Connects; after a failure, with a fresh producer (a new idempotent session, no stale sequence state). */
  private async connect(afterFailure = true): Promise<void> {
    if (afterFailure) {
      const previous = this.producer;
      this.producer = this.newProducer();
      this.publisher = new KafkaPublisher(
        this.producer,
        this.options.topic,
        this.partitions,
        this.settings.sendTimeoutMs,
      );
      void previous.disconnect().catch(() => undefined);
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      // Bounded: the pump waits here, and meanwhile new events only fill the buffer.
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("no connection to Kafka")), this.settings.sendTimeoutMs);
      });
      await Promise.race([
        (async () => {
          await this.admin.connect();
          await this.producer.connect();
          await this.partitions.get();
        })(),
        timeout,
      ]);
      this.connected = true;
    } catch (error) {
      this.connected = false;
      this.nextReplayAt = Date.now() + this.settings.replayIntervalMs;
      this.options.logger.warn({ err: (error as Error).message }, "Kafka unreachable; events go to the disk spool");
    } finally {
      clearTimeout(timer);
    }
  }

  private drop(count: number, reason: string): void {
    this.counts.dropped += count;
    // One warning per second at most: a full spool under load must not flood the log.
    if (Date.now() - this.lastDropWarning > 1_000) {
      this.lastDropWarning = Date.now();
      this.options.logger.warn({ dropped: this.counts.dropped, reason }, "usage events dropped");
    }
  }
}
