import { readFileSync } from "node:fs";
import type { Server } from "node:http";
import { loadTiers } from "@keymeter/shared/billing";
import { AppError, createMetricsServer, type Logger, listen } from "@keymeter/shared/runtime";
import { createRedis, type Redis, redisKeys } from "@keymeter/shared/stores";
import type { UsageEventSink } from "@keymeter/shared/usage";
import type { GatewayConfig } from "./config";
import { Gateway } from "./gateway";
import { GatewayMetrics } from "./gateway-metrics";
import { KeyCache } from "./key-cache";
import { createGatewayProxy } from "./proxy";
import { RateLimiter } from "./rate-limiter";

export interface RunningGateway {
  server: Server;
  port: number;
  /** The metrics server's port, when GATEWAY_METRICS_PORT is set. */
  metricsPort: number | undefined;
  gateway: Gateway;
  cache: KeyCache;
  stop(): Promise<void>;
}

/**
 * Builds and starts the reference gateway from its config: two Redis connections (commands
 * and the invalidation subscription), the key cache, the limiter and the proxy. The event
 * sink is passed in, so tests and the Kafka emitter plug in the same way.
 */
export async function startGateway(
  config: GatewayConfig,
  sink: UsageEventSink,
  logger: Logger,
): Promise<RunningGateway> {
  const tiers = loadTiers(config.TIERS_FILE);
  const keys = redisKeys(config.REDIS_KEY_PREFIX);
  // Requests fail closed (503) while Redis is away; the log says why (rate-limited, with a count).
  const redis: Redis = createRedis(config.REDIS_URL, { logger, name: "redis" });
  const subscriber: Redis = createRedis(config.REDIS_URL, { logger, name: "redis-subscriber" });
  const cache = new KeyCache({ redis, subscriber, keys, logger, ttlMs: config.KEY_CACHE_TTL_MS });
  await cache.start();
  const metrics = new GatewayMetrics();
  const gateway = new Gateway({
    metrics,
    cache,
    limiter: new RateLimiter(redis, keys, { leaseMs: config.RATE_LIMIT_LEASE_MS, logger }),
    tiers,
    sink,
    logger,
    source: config.GATEWAY_ID,
    adminRoutePrefixes: config.ADMIN_ROUTE_PREFIXES,
    allowQueryKey: config.API_KEY_QUERY_PARAM,
    trustedProxies: config.TRUSTED_PROXIES,
  });
  const server = createGatewayProxy({
    gateway,
    upstream: new URL(config.UPSTREAM_URL),
    logger,
    timeoutMs: config.UPSTREAM_TIMEOUT_MS,
    ...(config.UPSTREAM_CA_FILE ? { ca: readCaFile(config.UPSTREAM_CA_FILE) } : {}),
  });
  const port = await listen(server, config.GATEWAY_HOST, config.GATEWAY_PORT, "GATEWAY_PORT");
  logger.info({ port, upstream: config.UPSTREAM_URL, source: config.GATEWAY_ID }, "gateway listening");
  const metricsServer =
    config.GATEWAY_METRICS_PORT === undefined
      ? undefined
      : createMetricsServer(metrics.registry, () => ({ redis: redis.status === "ready" }));
  let metricsPort: number | undefined;
  if (metricsServer) {
    metricsPort = await listen(
      metricsServer,
      config.GATEWAY_HOST,
      config.GATEWAY_METRICS_PORT ?? 0,
      "GATEWAY_METRICS_PORT",
    );
    logger.info({ port: metricsPort }, "gateway metrics listening");
  }
  return {
    server,
    port,
    metricsPort,
    gateway,
    cache,
    stop: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      metricsServer?.close();
      server.closeAllConnections();
      await sink.flush();
      await Promise.all([redis.quit(), subscriber.quit()]);
    },
  };
}

function readCaFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new AppError("config_invalid", `UPSTREAM_CA_FILE cannot be read: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (!text.includes("-----BEGIN CERTIFICATE-----")) {
    throw new AppError("config_invalid", "UPSTREAM_CA_FILE holds no PEM certificate");
  }
  return text;
}
