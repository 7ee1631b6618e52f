import { createServer } from "node:http";
import {
  Gateway,
  gatewayConfigSchema,
  gatewayContext,
  gatewayMiddleware,
  KeyCache,
  RateLimiter,
  registerGateway,
  startGateway,
} from "@keymeter/gateway";
import { clearQuotaFlag, setQuotaFlag } from "@keymeter/shared/billing";
import { parseConfig } from "@keymeter/shared/runtime";
import { createRedis } from "@keymeter/shared/stores";
import Fastify from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { call, closeServer, KeyStack, listenOn, TEST_TIERS } from "../support/key-stack";
import { MemorySink } from "../support/memory-sink";
import { pollUntil } from "../support/poll";
import { services } from "../support/services";

const stacks: KeyStack[] = [];
function stack(): KeyStack {
  const created = new KeyStack();
  stacks.push(created);
  return created;
}
afterEach(async () => {
  for (const s of stacks.splice(0)) await s.close();
});

const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` });
const nextMonth = () => new Date(Date.now() + 30 * 24 * 3600_000).toISOString();

describe("gateway (reference proxy, real Redis)", () => {
  it("forwards an admitted request without the key and emits its usage event", async () => {
    const s = stack();
    const gw = await s.gateway();
    const { key, secret } = await s.registry.create({ customer_id: "cus_1", tier: "free", scope: "read-write" });

    const response = await call(`${gw.url}/v1/users/42/orders?limit=5`, {
      method: "POST",
      headers: {
        ...bearer(secret),
        "content-type": "application/json",
        "x-request-id": "req-123",
        // A client cannot pose as another customer or tier to the upstream.
        "x-keymeter-customer-id": "cus_other",
        "x-keymeter-scope": "admin",
      },
      body: JSON.stringify({ hello: "world" }),
    });
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ ok: true, path: "/v1/users/42/orders?limit=5" });
    // The request id is the gateway's own; the client's goes on as X-Client-Request-Id.
    const requestId = response.headers.get("x-request-id");
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(response.headers.get("ratelimit-limit")).toBe("10");
    expect(Number(response.headers.get("ratelimit-remaining"))).toBe(9);
    expect(response.headers.get("ratelimit-reset")).toMatch(/^\d+$/);

    const seen = s.upstreamRequests.at(-1);
    expect(seen?.headers.authorization).toBeUndefined();
    expect(seen?.headers["x-keymeter-key-id"]).toBe(key.id);
    expect(seen?.headers["x-keymeter-customer-id"]).toBe("cus_1");
    expect(seen?.headers["x-keymeter-tier"]).toBe("free");
    expect(seen?.headers["x-keymeter-scope"]).toBeUndefined();
    expect(seen?.headers["x-request-id"]).toBe(requestId);
    expect(seen?.headers["x-client-request-id"]).toBe("req-123");
    expect(seen?.body).toBe('{"hello":"world"}');

    const event = await pollUntil(() => gw.sink.forKey(key.id)[0], { what: "the usage event" });
    expect(gw.sink.invalid).toEqual([]);
    expect(event).toMatchObject({
      id: requestId,
      subject: key.id,
      type: "api.request",
      source: expect.stringMatching(/^t_gw_/),
      data: {
        method: "POST",
        route: "/v1/users/:id/orders",
        status: 200,
        units: 1,
        customer_id: "cus_1",
        tier: "free",
        request_bytes: 17,
        response_bytes: response.text.length,
      },
    });
    expect(event.data.latency_ms).toBeGreaterThan(0);
  });

  it("takes the key from X-API-Key, and from ?api_key= only when enabled (with one warning)", async () => {
    const s = stack();
    const { key, secret } = await s.registry.create({ customer_id: "cus_1", tier: "free" });
    const plain = await s.gateway();
    expect((await call(`${plain.url}/v1/x`, { headers: { "x-api-key": secret } })).status).toBe(200);
    expect((await call(`${plain.url}/v1/x?api_key=${secret}`)).status).toBe(401);

    const withQuery = await s.gateway({ allowQueryKey: true });
    const warnings = () => s.logs.lines.filter((line) => line.includes("api_key query parameter")).length;
    expect(warnings()).toBe(1);
    const response = await call(`${withQuery.url}/v1/x?a=1&api_key=${secret}`);
    expect(response.status).toBe(200);
    // The key is stripped from what the upstream sees.
    expect(s.upstreamRequests.at(-1)?.url).toBe("/v1/x?a=1");
    await call(`${withQuery.url}/v1/x?api_key=${secret}`);
    expect(warnings()).toBe(1);
    await pollUntil(() => withQuery.sink.forKey(key.id).length === 2, { what: "two events" });
  });

  it("answers 401 with the JSON error body and emits nothing without a key", async () => {
    const s = stack();
    const gw = await s.gateway();
    const response = await call(`${gw.url}/v1/x`, { headers: { "x-request-id": "abc" } });
    expect(response.status).toBe(401);
    expect(response.headers.get("content-type")).toContain("application/json");
    expect(response.body).toEqual({
      error: {
        code: "unauthenticated",
        message: expect.stringContaining("missing API key"),
        request_id: response.headers.get("x-request-id"),
      },
    });
    expect(response.text).not.toContain("abc");
    expect(gw.sink.events).toEqual([]);
    expect(s.upstreamRequests).toEqual([]);
  });

  it("rate-limits per key with 429, Retry-After and RateLimit headers, recording refusals with units 0", async () => {
    const s = stack();
    const gw = await s.gateway();
    const { key, secret } = await s.registry.create({ customer_id: "cus_1", tier: "slow" });
    const statuses: number[] = [];
    let refused: Awaited<ReturnType<typeof call>> | undefined;
    for (let i = 0; i < 6; i++) {
      const response = await call(`${gw.url}/v1/x`, { headers: bearer(secret) });
      statuses.push(response.status);
      if (response.status === 429) refused = response;
    }
    expect(statuses).toEqual([200, 200, 200, 200, 429, 429]);
    expect(refused?.body).toMatchObject({ error: { code: "rate_limited" } });
    expect(Number(refused?.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(Number(refused?.headers.get("retry-after"))).toBeLessThanOrEqual(10);
    expect(refused?.headers.get("ratelimit-limit")).toBe("0.1");
    expect(refused?.headers.get("ratelimit-remaining")).toBe("0");
    expect(Number(refused?.headers.get("ratelimit-reset"))).toBeGreaterThan(0);

    const events = await pollUntil(() => gw.sink.forKey(key.id).length === 6 && gw.sink.forKey(key.id), {
      what: "six events",
    });
    expect(events.map((e) => [e.data.status, e.data.units])).toEqual([
      [200, 1],
      [200, 1],
      [200, 1],
      [200, 1],
      [429, 0],
      [429, 0],
    ]);
  });

  it("refuses a key flagged over quota at once, and admits it again when the flag is cleared", async () => {
    const s = stack();
    const gw = await s.gateway();
    const { key, secret } = await s.registry.create({ customer_id: "cus_1", tier: "free" });
    expect((await call(`${gw.url}/v1/x`, { headers: bearer(secret) })).status).toBe(200);

    await setQuotaFlag(s.redis, s.keys, key.id, { used: 10_001, quota: 10_000, period_end: nextMonth() });
    expect(await s.redis.pttl(s.keys.quotaFlag(key.id))).toBeGreaterThan(29 * 24 * 3600_000);
    const refused = await pollUntil(
      async () => {
        const response = await call(`${gw.url}/v1/x`, { headers: bearer(secret) });
        return response.status === 429 && response;
      },
      { timeoutMs: 1_000, what: "the quota flag to reach the gateway" },
    );
    expect(refused.body).toMatchObject({ error: { code: "quota_exceeded" } });
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(29 * 24 * 3600);

    await clearQuotaFlag(s.redis, s.keys, key.id);
    await pollUntil(async () => (await call(`${gw.url}/v1/x`, { headers: bearer(secret) })).status === 200, {
      timeoutMs: 1_000,
      what: "the cleared flag to reach the gateway",
    });
    expect(gw.sink.forKey(key.id).some((e) => e.data.status === 429 && e.data.units === 0)).toBe(true);
  });

  it("lets a flagged key of a tier that bills overage through", async () => {
    const s = stack();
    const gw = await s.gateway();
    const { key, secret } = await s.registry.create({ customer_id: "cus_1", tier: "pro" });
    await setQuotaFlag(s.redis, s.keys, key.id, { used: 2_000_000, quota: 1_000_000, period_end: nextMonth() });
    expect((await call(`${gw.url}/v1/x`, { headers: bearer(secret) })).status).toBe(200);
  });

  it("applies a tier change on every instance within a second", async () => {
    const s = stack();
    const gw = await s.gateway();
    const { key, secret } = await s.registry.create({ customer_id: "cus_1", tier: "free" });
    const first = await call(`${gw.url}/v1/x`, { headers: bearer(secret) });
    expect(first.headers.get("ratelimit-limit")).toBe("10");
    await s.registry.update(key.id, { tier: "pro" });
    await pollUntil(
      async () => (await call(`${gw.url}/v1/x`, { headers: bearer(secret) })).headers.get("ratelimit-limit") === "100",
      { timeoutMs: 1_000, what: "the tier change" },
    );
    const events = gw.sink.forKey(key.id);
    expect(events.at(-1)?.data.tier).toBe("pro");
  });
});

describe("gateway service (startGateway, as main runs it)", () => {
  it("proxies with leases on, emits to the given sink and serves Prometheus metrics", async () => {
    const s = stack();
    const upstream = await s.upstream();
    const sink = new MemorySink();
    const config = parseConfig(gatewayConfigSchema, {
      UPSTREAM_URL: upstream,
      GATEWAY_PORT: "0",
      GATEWAY_METRICS_PORT: "0",
      REDIS_URL: services().redisUrl,
      REDIS_KEY_PREFIX: s.prefix,
      GATEWAY_ID: "gw-service-test",
    });
    const running = await startGateway(config, sink, s.logger);
    try {
      const { key, secret } = await s.registry.create({ customer_id: "cus_svc", tier: "pro" });
      const url = `http://127.0.0.1:${running.port}`;
      for (let i = 0; i < 3; i++)
        expect((await call(`${url}/v1/things/${i}`, { headers: bearer(secret) })).status).toBe(200);
      expect((await call(`${url}/v1/things`)).status).toBe(401);
      const events = await pollUntil(() => sink.forKey(key.id).length === 3 && sink.forKey(key.id));
      expect(events.every((e) => e.source === "gw-service-test" && e.data.route === "/v1/things/:id")).toBe(true);
      const metrics = await call(`http://127.0.0.1:${running.metricsPort}/metrics`);
      expect(metrics.text).toContain('keymeter_gateway_requests_total{outcome="admitted",tier="pro"} 3');
      expect(metrics.text).toContain('keymeter_gateway_requests_total{outcome="unauthenticated",tier=""} 1');
    } finally {
      await running.stop();
    }
  });
});

describe("gateway adapters", () => {
  async function core(s: KeyStack) {
    const redis = createRedis(services().redisUrl);
    const subscriber = createRedis(services().redisUrl);
    const cache = new KeyCache({ redis, subscriber, keys: s.keys, logger: s.logger });
    await cache.start();
    const sink = new MemorySink();
    const gateway = new Gateway({
      cache,
      limiter: new RateLimiter(redis, s.keys),
      tiers: TEST_TIERS,
      sink,
      logger: s.logger,
      source: "adapter-test",
      routeTemplate: (path) => (path.startsWith("/things/") ? "/things/{name}" : path),
    });
    return { gateway, sink, close: () => Promise.all([redis.quit(), subscriber.quit()]) };
  }

  it("works as connect-style (req, res, next) middleware on a node:http server", async () => {
    const s = stack();
    const { gateway, sink, close } = await core(s);
    const middleware = gatewayMiddleware(gateway);
    const server = createServer((req, res) =>
      middleware(req, res, (error) => {
        if (error) {
          res.statusCode = 500;
          res.end();
          return;
        }
        res.setHeader("content-type", "text/plain");
        res.write("hello ");
        res.end(`${gatewayContext(req)?.key?.customer_id}`);
      }),
    );
    const url = `http://127.0.0.1:${await listenOn(server)}`;
    try {
      const { key, secret } = await s.registry.create({ customer_id: "cus_conn", tier: "free" });
      const ok = await call(`${url}/things/widget`, { headers: bearer(secret) });
      expect(ok.status).toBe(200);
      expect(ok.text).toBe("hello cus_conn");
      expect(ok.headers.get("ratelimit-limit")).toBe("10");
      const denied = await call(`${url}/things/widget`, { method: "DELETE", headers: bearer(secret) });
      expect(denied.status).toBe(403);
      const events = await pollUntil(() => sink.forKey(key.id).length === 2 && sink.forKey(key.id));
      expect(events.map((e) => [e.data.route, e.data.status, e.data.units, e.data.response_bytes])).toEqual([
        ["/things/{name}", 200, 1, 14],
        // A refusal's route is a placeholder, never the client's path.
        ["/:refused", 403, 0, denied.text.length],
      ]);
    } finally {
      await closeServer(server);
      await close();
    }
  });

  it("fails closed with 503 when Redis cannot be reached, revealing nothing", async () => {
    const s = stack();
    const { secret } = await s.registry.create({ customer_id: "c", tier: "free" });
    const redis = createRedis(services().redisUrl);
    const subscriber = createRedis(services().redisUrl);
    const cache = new KeyCache({ redis, subscriber, keys: s.keys, logger: s.logger });
    await cache.start();
    await redis.quit();
    const gateway = new Gateway({
      cache,
      limiter: new RateLimiter(redis, s.keys),
      tiers: TEST_TIERS,
      sink: new MemorySink(),
      logger: s.logger,
      source: "no-redis",
    });
    const app = Fastify();
    registerGateway(app, gateway);
    app.get("/v1/x", async () => ({ ok: true }));
    try {
      const response = await app.inject({ method: "GET", url: "/v1/x", headers: bearer(secret) });
      expect(response.statusCode).toBe(503);
      expect(response.json()).toMatchObject({
        error: { code: "service_unavailable", message: "the gateway cannot check API keys right now; try again" },
      });
      expect(response.body).not.toContain("Connection is closed");
      expect(s.logs.text).toContain("gateway check failed");
    } finally {
      await app.close();
      await subscriber.quit();
    }
  });

  it("works as Fastify hooks", async () => {
    const s = stack();
    const { gateway, sink, close } = await core(s);
    const app = Fastify();
    registerGateway(app, gateway);
    app.get("/things/:name", async (request) => ({ customer: gatewayContext(request.raw)?.key?.customer_id }));
    try {
      const { key, secret } = await s.registry.create({ customer_id: "cus_fastify", tier: "slow" });
      const ok = await app.inject({ method: "GET", url: "/things/a", headers: bearer(secret) });
      expect(ok.statusCode).toBe(200);
      expect(ok.json()).toEqual({ customer: "cus_fastify" });
      expect(ok.headers["ratelimit-limit"]).toBe("0.1");
      const missing = await app.inject({ method: "GET", url: "/things/a" });
      expect(missing.statusCode).toBe(401);
      expect(missing.json()).toMatchObject({ error: { code: "unauthenticated", request_id: expect.any(String) } });
      for (let i = 0; i < 3; i++) await app.inject({ method: "GET", url: "/things/a", headers: bearer(secret) });
      const limited = await app.inject({ method: "GET", url: "/things/a", headers: bearer(secret) });
      expect(limited.statusCode).toBe(429);
      expect(limited.headers["retry-after"]).toMatch(/^\d+$/);
      expect(limited.json()).toMatchObject({ error: { code: "rate_limited" } });
      const events = await pollUntil(() => sink.forKey(key.id).length === 5 && sink.forKey(key.id));
      expect(events.map((e) => e.data.units)).toEqual([1, 1, 1, 1, 0]);
      expect(events.map((e) => e.data.route)).toEqual([...Array(4).fill("/things/:name"), "/:refused"]);
      expect(sink.invalid).toEqual([]);
    } finally {
      await app.close();
      await close();
    }
  });
});
