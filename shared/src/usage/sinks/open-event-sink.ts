import type { Kafka } from "kafkajs";
import type { Logger } from "../../runtime/logger";
import { DiscardEventSink } from "./discard-event-sink";
import { KafkaEmitter } from "./emitter/kafka-emitter";
import type { UsageEventSink } from "./event-sink";
import { StreamEventSink } from "./stream-event-sink";

/** Where a gateway's usage events go: Kafka (the emitter), one JSON line each on stdout, or nowhere. */
export const EVENT_SINK_KINDS = ["kafka", "stdout", "none"] as const;
export type EventSinkKind = (typeof EVENT_SINK_KINDS)[number];

export interface OpenEventSinkOptions {
  kind: EventSinkKind;
  /** For `kafka`: the client, topic and disk spool of the emitter. */
  kafka: () => Kafka;
  topic: string;
  spoolDir: string;
  maxSpoolBytes: number;
  logger: Logger;
}

/** Opens the configured sink; `close()` flushes what was emitted (to Kafka or the spool) and lets go. */
export async function openEventSink(
  options: OpenEventSinkOptions,
): Promise<{ sink: UsageEventSink; close(): Promise<void> }> {
  if (options.kind === "kafka") {
    const emitter = new KafkaEmitter({
      kafka: options.kafka(),
      topic: options.topic,
      logger: options.logger,
      spoolDir: options.spoolDir,
      maxSpoolBytes: options.maxSpoolBytes,
    });
    await emitter.start();
    return { sink: emitter, close: () => emitter.close() };
  }
  const sink = options.kind === "stdout" ? new StreamEventSink(process.stdout) : new DiscardEventSink();
  return { sink, close: () => sink.flush() };
}
