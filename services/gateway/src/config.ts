import { routePrefixSchema } from "@keymeter/shared/api-keys";
import { env, storesConfigSchema } from "@keymeter/shared/runtime";
import { EVENT_SINK_KINDS } from "@keymeter/shared/usage";
import { z } from "zod";

/** The reference gateway's environment. */
export const gatewayConfigSchema = storesConfigSchema
  .pick({ REDIS_URL: true, LOG_LEVEL: true, KAFKA_BROKERS: true })
  .extend({
    /** The API the gateway fronts (http, or https verified against Node's CA store). */
    UPSTREAM_URL: env.url(["http", "https"]),
    /** PEM file of CA certificates also trusted for an https upstream (a private CA). */
    UPSTREAM_CA_FILE: z.string().min(1).optional(),
    GATEWAY_HOST: z.string().min(1).default("127.0.0.1"),
    GATEWAY_PORT: env.port().default(8080),
    /** The CloudEvents `source` of this instance's events. */
    GATEWAY_ID: z
      .string()
      .regex(/^[A-Za-z0-9._:-]{1,128}$/, "expected letters, digits or . _ : -")
      .default("gateway"),
    /** Path to a tiers JSON file; the shipped defaults (free, pro, enterprise) when unset. */
    TIERS_FILE: z.string().min(1).optional(),
    /** Namespace for every Redis key and channel (side-by-side deployments). */
    REDIS_KEY_PREFIX: z.string().default(""),
    KEY_CACHE_TTL_MS: env.positiveInt().default(30_000),
    /** Paths only admin keys may use, in the canonical form requests are checked in. */
    ADMIN_ROUTE_PREFIXES: env.list().pipe(z.array(routePrefixSchema)).default(["/admin"]),
    /** Accept `?api_key=` (off by default: keys in URLs leak into logs). */
    API_KEY_QUERY_PARAM: env.flag().default(false),
    /** CIDRs of proxies in front of the gateway whose X-Forwarded-For is believed. */
    TRUSTED_PROXIES: env.list().default([]),
    /**
     * Rate-limit token leases (ms): each instance takes up to rate × lease tokens per Redis
     * call, so a cache hit needs no round trip. 0: one Redis round trip per request.
     */
    RATE_LIMIT_LEASE_MS: z.coerce.number().int().min(0).max(1000).default(100),
    /** Prometheus metrics at http://GATEWAY_HOST:GATEWAY_METRICS_PORT/metrics; unset: no metrics server. */
    GATEWAY_METRICS_PORT: env.port().optional(),
    UPSTREAM_TIMEOUT_MS: env.positiveInt().default(30_000),
    /**
     * Where usage events go: `kafka` (the emitter: batched, spooled to disk while Kafka is
     * away), `stdout` (one JSON line per event) or `none`.
     */
    EVENT_SINK: z.enum(EVENT_SINK_KINDS).default("kafka"),
    /** Prefix of the Kafka topic names (`<prefix>usage.events`). */
    KAFKA_TOPIC_PREFIX: z.string().default(""),
    /** Where the emitter keeps events while Kafka is unreachable: one folder per instance. */
    EMITTER_SPOOL_DIR: z.string().min(1).default(".data/spool/gateway"),
    /** Disk the spool may use before events are dropped (and counted). */
    EMITTER_SPOOL_MAX_BYTES: env.positiveInt().default(1024 * 1024 * 1024),
  });
export type GatewayConfig = z.infer<typeof gatewayConfigSchema>;
