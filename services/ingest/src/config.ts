import { env, storesConfigSchema } from "@keymeter/shared/runtime";
import { z } from "zod";

export const ingestConfigSchema = storesConfigSchema.extend({
  INGEST_HOST: z.string().default("127.0.0.1"),
  INGEST_PORT: env.port().default(8088),
  /** Bearer tokens gateways present, comma-separated (two at once while rotating). No default. */
  INGEST_TOKENS: z
    .string()
    .min(1)
    .transform((value) => value.split(",").map((token) => token.trim()))
    .pipe(z.array(z.string().min(24, "each token needs at least 24 characters")).min(1)),
  INGEST_MAX_BODY_BYTES: env.positiveInt().default(1024 * 1024),
  INGEST_MAX_BATCH_EVENTS: env.positiveInt().default(5_000),
  KAFKA_TOPIC_PREFIX: z.string().default(""),
  /** Partitions of usage.events when this service creates it; the aggregator's setting too. */
  KAFKA_EVENT_PARTITIONS: env.positiveInt().default(6),
  /** Namespace of the key registry in Redis (its REDIS_KEY_PREFIX): aliases and attribution come from it. */
  REDIS_KEY_PREFIX: z.string().default(""),
  /** `source` of events built from Kong http-log payloads. */
  KONG_SOURCE: z.string().min(1).default("kong"),
});

export type IngestConfig = z.infer<typeof ingestConfigSchema>;
