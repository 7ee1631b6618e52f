import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { Writable } from "node:stream";
import {
  createGatewayProxy,
  Gateway,
  type GatewayOptions,
  KeyCache,
  RateLimiter,
  type RateLimiterOptions,
} from "@keymeter/gateway";
import { type KeyMirror, KeyRegistry } from "@keymeter/shared/api-keys";
import { parseTiers, type TierCatalog } from "@keymeter/shared/billing";
import { createLogger, type Logger } from "@keymeter/shared/runtime";
import { createRedis, type Redis, type RedisKeys, redisKeys } from "@keymeter/shared/stores";
import type { UsageEventSink } from "@keymeter/shared/usage";
import { MemorySink } from "./memory-sink";
import { services, uniqueName } from "./services";

/** Tiers for tests: the shipped three plus a slow one and an unlimited-ish one. */
export const TEST_TIERS = parseTiers({
  tiers: [
    { name: "free", rate_limit_rps: 10, monthly_quota: 10_000, overage: "block" },
    {
      name: "pro",
      rate_limit_rps: 100,
      monthly_quota: 1_000_000,
      overage: "bill",
      stripe: { meter_event_name: "m", price_id: "p" },
    },
    // One request per 10 s with a burst of 4: a test sees exactly 4 admitted, however slow the machine.
    { name: "slow", rate_limit_rps: 0.1, burst: 4, monthly_quota: 100, overage: "block" },
    { name: "fast", rate_limit_rps: 1_000_000, monthly_quota: null, overage: "block" },
    // 50 per second, burst 40: with 100 ms leases an instance takes 5 tokens per Redis call.
    { name: "leased", rate_limit_rps: 50, burst: 40, monthly_quota: null, overage: "block" },
  ],
});

/** Everything a pino logger wrote, as text, for "no secret in the logs" assertions. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.lines.push(chunk.toString());
    callback();
  }

  get text(): string {
    return this.lines.join("");
  }
}

export interface UpstreamRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface GatewayInstance {
  url: string;
  gateway: Gateway;
  cache: KeyCache;
  sink: MemorySink;
  server: Server;
}

/**
 * A key registry and any number of gateway instances (reference proxies) in front of a
 * recording upstream, all on the real Redis under a unique key prefix. `close` removes
 * every Redis key the test wrote.
 */
export class KeyStack {
  readonly prefix = `${uniqueName("keys")}:`;
  readonly keys: RedisKeys = redisKeys(this.prefix);
  readonly redisUrl: string;
  readonly tiers: TierCatalog;
  readonly redis: Redis;
  readonly logs = new LogCapture();
  readonly logger: Logger;
  readonly registry: KeyRegistry;
  readonly upstreamRequests: UpstreamRequest[] = [];
  private readonly closers: Array<() => Promise<void>> = [];
  private upstreamUrl = "";

  /** `redisUrl`: a private Redis (tests that restart it); the shared one by default. */
  constructor(options: { tiers?: TierCatalog; mirror?: KeyMirror; redisUrl?: string } = {}) {
    this.tiers = options.tiers ?? TEST_TIERS;
    this.logger = createLogger("test", "debug", this.logs);
    this.redisUrl = options.redisUrl ?? services().redisUrl;
    // A test may stop Redis: connection errors go to the captured log, as a service's would.
    this.redis = createRedis(this.redisUrl, { logger: this.logger });
    this.registry = new KeyRegistry({
      redis: this.redis,
      keys: this.keys,
      tiers: this.tiers,
      logger: this.logger,
      ...(options.mirror ? { mirror: options.mirror } : {}),
    });
  }

  /** The upstream: answers 200 with the request it saw, as JSON. */
  async upstream(): Promise<string> {
    if (this.upstreamUrl) return this.upstreamUrl;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const seen = {
          method: req.method ?? "",
          url: req.url ?? "",
          headers: req.headers,
          body: Buffer.concat(chunks).toString(),
        };
        this.upstreamRequests.push(seen);
        const body = JSON.stringify({ ok: true, path: seen.url });
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
        res.end(body);
      });
    });
    this.upstreamUrl = `http://127.0.0.1:${await listenOn(server)}`;
    this.closers.push(() => closeServer(server));
    return this.upstreamUrl;
  }

  /**
   * A gateway instance with its own key cache, subscription and sink, in front of the stack's
   * upstream or `proxy.upstream` (trusting `proxy.ca` for an https one).
   */
  async gateway(
    options: Partial<Omit<GatewayOptions, "cache" | "limiter" | "sink">> & { forwardTo?: UsageEventSink } = {},
    limiter: RateLimiterOptions = {},
    proxy: { upstream?: string; ca?: string } = {},
  ): Promise<GatewayInstance> {
    const { forwardTo, ...gatewayOptions } = options;
    const upstream = proxy.upstream ?? (await this.upstream());
    const redis = createRedis(this.redisUrl, { logger: this.logger });
    const subscriber = createRedis(this.redisUrl, { logger: this.logger, name: "redis-subscriber" });
    const cache = new KeyCache({ redis, subscriber, keys: this.keys, logger: this.logger });
    await cache.start();
    const sink = new MemorySink(forwardTo);
    const gateway = new Gateway({
      cache,
      limiter: new RateLimiter(redis, this.keys, { logger: this.logger, ...limiter }),
      tiers: this.tiers,
      logger: this.logger,
      source: uniqueName("gw"),
      sink,
      ...gatewayOptions,
    });
    const server = createGatewayProxy({
      gateway,
      upstream: new URL(upstream),
      logger: this.logger,
      ...(proxy.ca ? { ca: proxy.ca } : {}),
    });
    const port = await listenOn(server);
    this.closers.push(async () => {
      await closeServer(server);
      await Promise.all([redis.quit(), subscriber.quit()]);
    });
    return { url: `http://127.0.0.1:${port}`, gateway, cache, sink, server };
  }

  /** Closes what the stack opened and deletes its Redis keys. */
  async close(): Promise<void> {
    for (const close of this.closers.splice(0).reverse()) await close();
    let cursor = "0";
    do {
      const [next, found] = await this.redis.scan(cursor, "MATCH", `${this.prefix}*`, "COUNT", 500);
      cursor = next;
      if (found.length > 0) await this.redis.del(...found);
    } while (cursor !== "0");
    await this.redis.quit();
  }
}

export function listenOn(server: Server, host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      resolve(typeof address === "object" && address ? address.port : 0);
    });
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Sends one request with fetch and returns status, headers and the parsed JSON body. */
export async function call(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: Headers; body: unknown; text: string }> {
  const response = await fetch(url, { ...init });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: the raw text is the body.
  }
  return { status: response.status, headers: response.headers, body, text };
}
