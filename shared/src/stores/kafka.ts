import {
  Kafka,
  logLevel as KafkaLogLevel,
  type LogEntry,
  Partitioners,
  type Producer,
  type ProducerConfig,
} from "kafkajs";
import type { Logger } from "../runtime/logger";
import { RateLimitedLog } from "../runtime/rate-limited-log";

const LEVELS: Record<number, "error" | "warn" | "info" | "debug"> = {
  [KafkaLogLevel.ERROR]: "error",
  [KafkaLogLevel.WARN]: "warn",
  [KafkaLogLevel.INFO]: "info",
  [KafkaLogLevel.DEBUG]: "debug",
};

/**
 * A kafkajs client whose own log lines go through the service's structured logger. kafkajs
 * reports connection problems only through its log, once per retry: warnings and errors are
 * rate-limited per message (one line per 10 s, with a count), so a broker that is away does
 * not flood the log.
 */
export function createKafka(brokers: string[], clientId: string, logger: Logger): Kafka {
  const limited = new RateLimitedLog(logger);
  return new Kafka({
    clientId,
    brokers,
    // kafkajs logs at INFO on every rebalance; warnings and errors are what an operator needs.
    logLevel: KafkaLogLevel.WARN,
    logCreator:
      () =>
      ({ namespace, level, log }: LogEntry) => {
        const { message, ...rest } = log;
        const severity = LEVELS[level] ?? "info";
        if (severity === "error" || severity === "warn") {
          limited.log(severity, `${namespace}:${message}`, { client: clientId, kafka: rest }, message);
        } else {
          logger[severity]({ client: clientId, kafka: rest }, message);
        }
      },
    retry: { initialRetryTime: 200, retries: 8 },
  });
}

/**
 * An idempotent producer: the broker drops a batch it already has when kafkajs retries,
 * so a retry never writes an event twice. Java-compatible murmur2 partitioning keeps a key
 * on the same partition as any other client would put it.
 */
export function createIdempotentProducer(kafka: Kafka, options: Omit<ProducerConfig, "idempotent"> = {}): Producer {
  return kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    maxInFlightRequests: 5,
    ...options,
    idempotent: true,
    // kafkajs warns that a bounded retry count "may invalidate EoS"; callers that must not
    // block forever (the emitter) bound the time instead, with their own spool.
    retry: { retries: Number.MAX_SAFE_INTEGER, maxRetryTime: 5_000, ...options.retry },
  });
}
