import type { Admin } from "kafkajs";

/** Kafka topic names. A prefix gives tests (and side-by-side deployments) their own topics. */
export interface Topics {
  /** Usage events, partition key = key id. */
  events: string;
  /** Events the aggregator could not accept, with the reason in a header. */
  deadLetter: string;
}

export function topicNames(prefix = ""): Topics {
  return { events: `${prefix}usage.events`, deadLetter: `${prefix}usage.events.dlq` };
}

export interface TopicOptions {
  /** Partitions of the events topic: the most aggregator instances that can share the work. */
  partitions: number;
  replicationFactor?: number;
}

/**
 * Creates the events and dead-letter topics if missing (idempotent). An existing events
 * topic with fewer partitions than asked is grown; Kafka cannot shrink one.
 */
export async function ensureTopics(admin: Admin, topics: Topics, options: TopicOptions): Promise<void> {
  const replicationFactor = options.replicationFactor ?? 1;
  const existing = new Set(await admin.listTopics());
  const missing = [
    { topic: topics.events, numPartitions: options.partitions },
    { topic: topics.deadLetter, numPartitions: 1 },
  ].filter((t) => !existing.has(t.topic));
  if (missing.length > 0) {
    await admin.createTopics({
      waitForLeaders: true,
      topics: missing.map((t) => ({ ...t, replicationFactor })),
    });
  }
  if (existing.has(topics.events)) {
    const [metadata] = (await admin.fetchTopicMetadata({ topics: [topics.events] })).topics;
    const current = metadata?.partitions.length ?? 0;
    if (current < options.partitions) {
      await admin.createPartitions({ topicPartitions: [{ topic: topics.events, count: options.partitions }] });
    }
  }
}
