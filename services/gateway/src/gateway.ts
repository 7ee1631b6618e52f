import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { performance } from "node:perf_hooks";
import { authenticateKey, authorizeKey, bearerToken, IpAllowlist, normalizeIp } from "@keymeter/shared/api-keys";
import type { TierCatalog } from "@keymeter/shared/billing";
import { AppError, type Logger, writeErrorResponse } from "@keymeter/shared/runtime";
import { defaultRouteTemplate, type RouteTemplater, type UsageEventSink } from "@keymeter/shared/usage";
import type { Decision } from "./decision";
import type { GatewayMetrics } from "./gateway-metrics";
import type { CachedKey, KeyCache } from "./key-cache";
import type { RateLimiter } from "./rate-limiter";
import { parseRequestTarget } from "./request-path";

/**
 * The route of every request the gateway refuses: a refusal is never routed, and the
 * client's raw path would let it choose the route column's cardinality.
 */
export const REFUSED_ROUTE = "/:refused";

export interface GatewayOptions {
  cache: KeyCache;
  limiter: RateLimiter;
  tiers: TierCatalog;
  sink: UsageEventSink;
  logger: Logger;
  /** This gateway's id: the CloudEvents `source` of its events. */
  source: string;
  routeTemplate?: RouteTemplater;
  /** Paths only admin keys may use. */
  adminRoutePrefixes?: readonly string[];
  /** Accept `?api_key=`; keys in URLs end up in access logs and browser history. */
  allowQueryKey?: boolean;
  /** Decision counts and check latency for Prometheus. */
  metrics?: GatewayMetrics;
  /** Proxies whose `X-Forwarded-For` is believed (CIDRs); empty: the socket address is the client. */
  trustedProxies?: readonly string[];
  now?: () => number;
}

/**
 * The gateway core, framework-free: {@link check} authenticates and limits one request,
 * {@link record} emits its usage event once the response is done. Adapters for node:http,
 * connect/Express and Fastify live in middleware.ts.
 */
export class Gateway {
  private readonly cache: KeyCache;
  private readonly limiter: RateLimiter;
  private readonly tiers: TierCatalog;
  private readonly sink: UsageEventSink;
  private readonly logger: Logger;
  private readonly source: string;
  private readonly routeTemplate: RouteTemplater;
  private readonly adminRoutePrefixes: readonly string[];
  private readonly allowQueryKey: boolean;
  private readonly trustedProxies: IpAllowlist | undefined;
  private readonly now: () => number;
  private readonly metrics: GatewayMetrics | undefined;

  constructor(options: GatewayOptions) {
    this.metrics = options.metrics;
    this.cache = options.cache;
    this.limiter = options.limiter;
    this.tiers = options.tiers;
    this.sink = options.sink;
    this.logger = options.logger;
    this.source = options.source;
    this.routeTemplate = options.routeTemplate ?? defaultRouteTemplate;
    this.adminRoutePrefixes = options.adminRoutePrefixes ?? ["/admin"];
    this.allowQueryKey = options.allowQueryKey ?? false;
    this.trustedProxies =
      options.trustedProxies && options.trustedProxies.length > 0 ? new IpAllowlist(options.trustedProxies) : undefined;
    this.now = options.now ?? Date.now;
    if (this.allowQueryKey) {
      this.logger.warn(
        "API keys are accepted in the api_key query parameter: URLs end up in access logs, proxies and browser history; prefer the Authorization header",
      );
    }
  }

  /**
   * Authenticates, authorizes and rate-limits one request. Never rejects. Every request of an
   * identified key takes a rate-limit token, refused ones too, so refusals cannot be sent
   * faster than the key's rate; a refused request's route is {@link REFUSED_ROUTE}, never the
   * client's path.
   */
  async check(req: IncomingMessage): Promise<Decision> {
    const startedAt = performance.now();
    // Ours, never the client's: upstream logs and usage events join on it.
    const requestId = randomUUID();
    const method = req.method ?? "GET";
    const parsed = parseRequestTarget(req.url ?? "/");
    const target = parsed.ok ? parsed.target : undefined;
    const query = target?.mayHoldApiKey ? target.searchParams : undefined;
    const found = this.extractKey(req, query);
    let search = target?.search ?? "";
    if (query?.has("api_key")) {
      query.delete("api_key");
      const rest = query.toString();
      search = rest === "" ? "" : `?${rest}`;
    }
    const path = target?.path ?? "/";
    const decision: Decision = {
      requestId,
      startedAt,
      receivedAt: this.now(),
      method,
      path,
      forwardPath: path + search,
      route: target ? this.routeTemplate(path, method) : REFUSED_ROUTE,
      headers: [["x-request-id", requestId]],
    };
    if (found) decision.keySource = found.source;
    const pathError = parsed.ok
      ? undefined
      : new AppError("bad_request", `the request path is not acceptable: ${parsed.reason}`);
    try {
      decision.error = await this.authorize(req, decision, found?.secret, pathError);
    } catch (error) {
      // Redis unreachable or a bug: refuse (fail closed) with a message that reveals nothing.
      this.logger.error({ request_id: requestId, err: (error as Error).message }, "gateway check failed");
      decision.error = new AppError("service_unavailable", "the gateway cannot check API keys right now; try again", {
        retryable: true,
      });
    }
    if (decision.error) decision.route = REFUSED_ROUTE;
    this.metrics?.observe(decision, (performance.now() - startedAt) / 1000);
    return decision;
  }

  private async authorize(
    req: IncomingMessage,
    decision: Decision,
    secret: string | undefined,
    pathError: AppError | undefined,
  ): Promise<AppError | undefined> {
    const now = this.now();
    const identity = await authenticateKey<CachedKey>(secret, (hash) => this.cache.lookup(hash), now);
    const authError = identity.ok ? undefined : identity.error;
    const cached = identity.found;
    if (!cached) return pathError ?? authError ?? new AppError("unauthenticated", "invalid API key");
    const record = cached.record;
    decision.key = record;
    const tier = this.tiers.get(record.tier);
    if (!tier) {
      this.logger.error({ key_id: record.id, tier: record.tier }, "api key has a tier that is not configured");
      return new AppError("forbidden", "this API key's tier is not available");
    }
    // Before any other refusal: a key's refusals count against its rate limit too.
    const limit = await this.limiter.take(record.id, tier);
    decision.headers.push(
      ["ratelimit-limit", String(limit.limit)],
      ["ratelimit-remaining", String(limit.remaining)],
      ["ratelimit-reset", String(Math.ceil(limit.resetMs / 1000))],
    );
    if (!limit.allowed) {
      decision.headers.push(["retry-after", String(Math.max(1, Math.ceil(limit.retryAfterMs / 1000)))]);
      return new AppError("rate_limited", `rate limit of ${limit.limit} requests per second exceeded`, {
        retryable: true,
      });
    }
    if (pathError) return pathError;
    if (authError) return authError;
    const refused = authorizeKey(record, cached.allowlist, this.clientIp(req), decision, this.adminRoutePrefixes);
    if (refused) return refused;
    return this.quotaError(cached, tier.overage, now, decision);
  }

  private quotaError(cached: CachedKey, overage: "block" | "bill", now: number, decision: Decision) {
    if (overage !== "block" || cached.quotaFlaggedUntil <= now) return undefined;
    if (Number.isFinite(cached.quotaFlaggedUntil)) {
      decision.headers.push(["retry-after", String(Math.ceil((cached.quotaFlaggedUntil - now) / 1000))]);
    }
    return new AppError("quota_exceeded", "monthly quota exceeded for this API key");
  }

  /** Writes the JSON error answer for a refused request. */
  refuse(res: ServerResponse, decision: Decision, error: unknown = decision.error): void {
    writeErrorResponse(res, error, decision.requestId, decision.headers);
  }

  /**
   * Emits the usage event of a finished request; its id is the request id. Requests without
   * an identified key emit nothing (there is no key id to bill). Units are 1 only for a
   * request handed on in full (`decision.forwarded`) and not refused; 0 otherwise.
   */
  record(decision: Decision, status: number, requestBytes: number, responseBytes: number): void {
    const key = decision.key;
    if (!key) return;
    this.sink.emit({
      specversion: "1.0",
      id: decision.requestId,
      source: this.source,
      type: "api.request",
      subject: key.id,
      time: new Date(decision.receivedAt).toISOString(),
      datacontenttype: "application/json",
      data: {
        method: decision.method,
        route: decision.route,
        status,
        latency_ms: Math.round((performance.now() - decision.startedAt) * 1000) / 1000,
        request_bytes: requestBytes,
        response_bytes: responseBytes,
        units: decision.forwarded && !decision.error ? 1 : 0,
        customer_id: key.customer_id,
        tier: key.tier,
      },
    });
  }

  private extractKey(
    req: IncomingMessage,
    query: URLSearchParams | undefined,
  ): { secret: string; source: Decision["keySource"] } | undefined {
    // A non-Bearer Authorization header may belong to the upstream API; fall through.
    const bearer = bearerToken(req.headers.authorization);
    if (bearer) return { secret: bearer, source: "authorization" };
    const header = req.headers["x-api-key"];
    if (typeof header === "string" && header !== "") return { secret: header.trim(), source: "x-api-key" };
    if (this.allowQueryKey && query) {
      const value = query.get("api_key");
      if (value) return { secret: value, source: "query" };
    }
    return undefined;
  }

  /** The socket address, or the first untrusted hop of X-Forwarded-For behind trusted proxies. */
  clientIp(req: IncomingMessage): string | undefined {
    const remote = req.socket.remoteAddress;
    if (!remote || !this.trustedProxies?.allows(remote)) return remote === undefined ? undefined : normalizeIp(remote);
    const forwarded = req.headers["x-forwarded-for"];
    const hops = (Array.isArray(forwarded) ? forwarded.join(",") : (forwarded ?? "")).split(",").map((h) => h.trim());
    for (let i = hops.length - 1; i >= 0; i--) {
      const hop = hops[i];
      if (hop && !this.trustedProxies.allows(hop)) return normalizeIp(hop);
    }
    return normalizeIp(remote);
  }
}
