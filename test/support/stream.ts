import { createIdempotentProducer } from "@keymeter/shared/stores";
import type { TestPipeline } from "./pipeline";
import { usageEvent } from "./pipeline";

/**
 * Produces up to `total` events in chunks with a pause between them, so a stream is still
 * flowing while a test breaks things; `until` ends it early. Returns how many were sent.
 */
export async function produceStream(
  pipeline: TestPipeline,
  options: { total: number; chunk: number; pauseMs: number; until?: () => boolean },
): Promise<number> {
  const producer = createIdempotentProducer(pipeline.kafka);
  await producer.connect();
  let sent = 0;
  try {
    while (sent < options.total && !options.until?.()) {
      const n = Math.min(options.chunk, options.total - sent);
      const messages = Array.from({ length: n }, () => {
        const event = usageEvent();
        return { key: event.subject, value: JSON.stringify(event) };
      });
      await producer.send({ topic: pipeline.topics.events, acks: -1, messages });
      sent += n;
      await new Promise((r) => setTimeout(r, options.pauseMs));
    }
  } finally {
    await producer.disconnect();
  }
  return sent;
}
