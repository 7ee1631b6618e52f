import { createIdempotentProducer } from "@keymeter/shared/stores";
import type { UsageEventInput } from "@keymeter/shared/usage";
import type { TestPipeline } from "./pipeline";
import { usageEvent } from "./pipeline";

/**
 * Produces up to `total` events in chunks with a pause between them, so a stream is still
 * flowing while a test breaks things; `until` ends it early. Returns the events Kafka
 * acknowledged, for the exactness check (expectExactly).
 */
export async function produceStream(
  pipeline: TestPipeline,
  options: { total: number; chunk: number; pauseMs: number; until?: () => boolean },
): Promise<UsageEventInput[]> {
  const producer = createIdempotentProducer(pipeline.kafka);
  await producer.connect();
  const sent: UsageEventInput[] = [];
  try {
    while (sent.length < options.total && !options.until?.()) {
      const n = Math.min(options.chunk, options.total - sent.length);
      const events = Array.from({ length: n }, () => usageEvent());
      const messages = events.map((event) => ({ key: event.subject, value: JSON.stringify(event) }));
      await producer.send({ topic: pipeline.topics.events, acks: -1, messages });
      sent.push(...events);
      await new Promise((r) => setTimeout(r, options.pauseMs));
    }
  } finally {
    await producer.disconnect();
  }
  return sent;
}
