import { AppError } from "@keymeter/shared/runtime";
import { inRequests, type PartitionCount, packEvents, type UsageEvent } from "@keymeter/shared/usage";
import type { Producer } from "kafkajs";

/** Where accepted events go; resolves only once they are durable. */
export interface EventPublisher {
  publish(events: UsageEvent[]): Promise<void>;
}

/** Publishes to Kafka and resolves after every in-sync replica acknowledged (acks=all). */
export class KafkaEventPublisher implements EventPublisher {
  constructor(
    private readonly producer: Producer,
    private readonly topic: string,
    private readonly partitions: PartitionCount,
    private readonly timeoutMs = 10_000,
  ) {}

  async publish(events: UsageEvent[]): Promise<void> {
    if (events.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no acknowledgement within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    try {
      const send = async () => {
        const keyed = events.map((event) => ({ key: event.subject, value: JSON.stringify(event) }));
        for (const request of inRequests(packEvents(keyed, await this.partitions.get()))) {
          await this.producer.send({ topic: this.topic, acks: -1, messages: request });
        }
      };
      await Promise.race([send(), timeout]);
    } catch (error) {
      throw new AppError("service_unavailable", "Kafka did not acknowledge the events; retry with the same event ids", {
        retryable: true,
        cause: error,
      });
    } finally {
      clearTimeout(timer);
    }
  }
}
