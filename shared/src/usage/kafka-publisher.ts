import type { Producer } from "kafkajs";
import { type EncodedEvent, inRequests, type PartitionCount, packEvents } from "./wire-format";

/** Sends events and resolves only once they are durable; rejects otherwise (the caller retries or spools). */
export interface UsageEventPublisher {
  publish(events: EncodedEvent[]): Promise<void>;
}

/**
 * The one way usage events reach Kafka: packed per partition (each event on the partition
 * its key id picks, in order), one message per partition per request (the broker's size
 * limit), acks from all in-sync replicas, and a deadline: no acknowledgement within
 * `timeoutMs` rejects, so no caller waits on a broker that is away.
 */
export class KafkaPublisher implements UsageEventPublisher {
  constructor(
    private readonly producer: Producer,
    private readonly topic: string,
    private readonly partitions: PartitionCount,
    private readonly timeoutMs: number,
  ) {}

  async publish(events: EncodedEvent[]): Promise<void> {
    if (events.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no acknowledgement within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    const send = async () => {
      for (const request of inRequests(packEvents(events, await this.partitions.get()))) {
        await this.producer.send({ topic: this.topic, acks: -1, messages: request });
      }
    };
    try {
      await Promise.race([send(), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }
}
