import { buildAdminApp } from "@keymeter/admin-api";
import { KeyRegistry } from "@keymeter/shared/api-keys";
import { createRedis } from "@keymeter/shared/stores";
import type { FastifyInstance } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { KeyStack, TEST_TIERS } from "../support/key-stack";
import { services } from "../support/services";

const BOOTSTRAP = "bootstrap-token-for-tests-0123456789abcdef";

const opened: Array<{ stack: KeyStack; app: FastifyInstance }> = [];
function admin(options: { bodyLimit?: number } = {}) {
  const stack = new KeyStack();
  const app = buildAdminApp({
    registry: stack.registry,
    tiers: TEST_TIERS,
    logger: stack.logger,
    bootstrapToken: BOOTSTRAP,
    ...options,
  });
  opened.push({ stack, app });
  return { stack, app };
}
afterEach(async () => {
  for (const { stack, app } of opened.splice(0)) {
    await app.close();
    await stack.close();
  }
});

const auth = (token: string) => ({ authorization: `Bearer ${token}` });

interface ErrorBody {
  error: { code: string; message: string; request_id: string };
}

describe("admin API (real Redis)", () => {
  it("bootstraps the first admin key, which then manages keys", async () => {
    const { app } = admin();
    const created = await app.inject({
      method: "POST",
      url: "/v1/keys",
      headers: auth(BOOTSTRAP),
      payload: { customer_id: "ops", tier: "pro", scope: "admin", name: "first admin" },
    });
    expect(created.statusCode).toBe(201);
    const { key, secret } = created.json<{ key: { id: string; scope: string }; secret: string }>();
    expect(key.scope).toBe("admin");

    const customer = await app.inject({
      method: "POST",
      url: "/v1/keys",
      headers: auth(secret),
      payload: { customer_id: "cus_9", tier: "free", ip_allowlist: ["10.0.0.0/8"] },
    });
    expect(customer.statusCode).toBe(201);
    const customerKey = customer.json<{ key: { id: string }; secret: string }>();

    const list = await app.inject({ method: "GET", url: "/v1/keys?customer_id=cus_9", headers: auth(secret) });
    expect(list.json<{ keys: Array<{ id: string }> }>().keys.map((k) => k.id)).toEqual([customerKey.key.id]);
    expect(list.body).not.toContain("secret_hashes");

    const shown = await app.inject({ method: "GET", url: `/v1/keys/${customerKey.key.id}`, headers: auth(secret) });
    expect(shown.json()).toMatchObject({ key: { id: customerKey.key.id, customer_id: "cus_9", state: "active" } });
    expect(shown.body).not.toContain(customerKey.secret);

    const patched = await app.inject({
      method: "PATCH",
      url: `/v1/keys/${customerKey.key.id}`,
      headers: auth(secret),
      payload: { tier: "pro" },
    });
    expect(patched.json()).toMatchObject({ key: { tier: "pro", version: 2 } });

    const rotated = await app.inject({
      method: "POST",
      url: `/v1/keys/${customerKey.key.id}/rotate`,
      headers: auth(secret),
      payload: { grace_period_seconds: 0 },
    });
    expect(rotated.statusCode).toBe(200);
    expect(rotated.json<{ secret: string }>().secret).not.toBe(customerKey.secret);

    const revoked = await app.inject({
      method: "POST",
      url: `/v1/keys/${customerKey.key.id}/revoke`,
      headers: auth(secret),
    });
    expect(revoked.json()).toMatchObject({ key: { state: "revoked" } });

    const tiers = await app.inject({ method: "GET", url: "/v1/tiers", headers: auth(secret) });
    expect(tiers.json<{ tiers: Array<{ name: string }> }>().tiers.map((t) => t.name)).toEqual(TEST_TIERS.names());
  });

  it("refuses missing, wrong, non-admin and revoked credentials", async () => {
    const { app, stack } = admin();
    const readWrite = await stack.registry.create({ customer_id: "c", tier: "free", scope: "read-write" });
    const revokedAdmin = await stack.registry.create({ customer_id: "c", tier: "free", scope: "admin" });
    await stack.registry.revoke(revokedAdmin.key.id);
    const farAdmin = await stack.registry.create({
      customer_id: "c",
      tier: "free",
      scope: "admin",
      ip_allowlist: ["192.0.2.0/24"],
    });
    const cases: Array<[Record<string, string>, number, string]> = [
      [{}, 401, "unauthenticated"],
      [auth("wrong"), 401, "unauthenticated"],
      [auth(`${BOOTSTRAP}x`), 401, "unauthenticated"],
      [auth(readWrite.secret), 403, "forbidden"],
      [auth(revokedAdmin.secret), 401, "unauthenticated"],
      [auth(farAdmin.secret), 403, "forbidden"],
    ];
    for (const [headers, status, code] of cases) {
      const response = await app.inject({ method: "GET", url: "/v1/keys", headers });
      expect(response.statusCode).toBe(status);
      expect(response.json<ErrorBody>().error.code).toBe(code);
    }
    expect(stack.logs.text).not.toContain(readWrite.secret);
    expect(stack.logs.text).not.toContain(BOOTSTRAP);
  });

  it("validates bodies, queries and parameters with errors naming the field", async () => {
    const { app } = admin();
    const post = (payload: unknown) =>
      app.inject({ method: "POST", url: "/v1/keys", headers: auth(BOOTSTRAP), payload: payload as object });
    const cases: Array<[Promise<{ statusCode: number; json: <T>() => T }>, string]> = [
      [post({ tier: "free" }), "invalid body: customer_id:"],
      [post({ customer_id: "c", tier: "gold" }), 'tier: unknown tier "gold"'],
      [post({ customer_id: "c", tier: "free", ip_allowlist: "10.0.0.0/8" }), "ip_allowlist:"],
      [post({ customer_id: "c", tier: "free", extra: true }), "Unrecognized key"],
      [app.inject({ method: "GET", url: "/v1/keys?limit=0", headers: auth(BOOTSTRAP) }), "invalid query: limit:"],
      [app.inject({ method: "GET", url: "/v1/keys?color=red", headers: auth(BOOTSTRAP) }), "invalid query:"],
      [app.inject({ method: "GET", url: "/v1/keys/not-a-key", headers: auth(BOOTSTRAP) }), "invalid path: id:"],
      [
        app.inject({
          method: "POST",
          url: "/v1/keys/key_abcdefgh12/rotate",
          headers: auth(BOOTSTRAP),
          payload: { grace_period_seconds: -5 },
        }),
        "grace_period_seconds:",
      ],
    ];
    for (const [pending, message] of cases) {
      const response = await pending;
      expect(response.statusCode).toBe(400);
      expect(response.json<ErrorBody>().error).toMatchObject({
        code: "bad_request",
        message: expect.stringContaining(message),
      });
    }
    const missing = await app.inject({ method: "GET", url: "/v1/keys/key_abcdefgh12", headers: auth(BOOTSTRAP) });
    expect(missing.statusCode).toBe(404);
    const noRoute = await app.inject({ method: "GET", url: "/v2/nothing" });
    expect(noRoute.json<ErrorBody>().error.code).toBe("not_found");
  });

  it("limits body size and explains bad JSON", async () => {
    const { app } = admin({ bodyLimit: 1024 });
    const big = await app.inject({
      method: "POST",
      url: "/v1/keys",
      headers: { ...auth(BOOTSTRAP), "content-type": "application/json" },
      payload: JSON.stringify({ customer_id: "c", tier: "free", name: "x".repeat(2000) }),
    });
    expect(big.statusCode).toBe(413);
    expect(big.json<ErrorBody>().error.code).toBe("payload_too_large");
    const broken = await app.inject({
      method: "POST",
      url: "/v1/keys",
      headers: { ...auth(BOOTSTRAP), "content-type": "application/json" },
      payload: "{not json",
    });
    expect(broken.statusCode).toBe(400);
    expect(broken.json<ErrorBody>().error).toMatchObject({
      code: "bad_request",
      message: "request body is not valid JSON",
    });
  });

  it("turns an unexpected failure into a generic 500 with the request id, details only in the log", async () => {
    const stack = new KeyStack();
    const deadRedis = createRedis(services().redisUrl);
    await deadRedis.quit();
    const registry = new KeyRegistry({ redis: deadRedis, keys: stack.keys, tiers: TEST_TIERS, logger: stack.logger });
    const app = buildAdminApp({ registry, tiers: TEST_TIERS, logger: stack.logger, bootstrapToken: BOOTSTRAP });
    opened.push({ stack, app });
    const response = await app.inject({
      method: "GET",
      url: "/v1/keys",
      headers: { ...auth(BOOTSTRAP), "x-request-id": "req-500" },
    });
    expect(response.statusCode).toBe(500);
    expect(response.json()).toEqual({
      error: { code: "internal", message: "internal error (request id req-500)", request_id: "req-500" },
    });
    expect(response.body).not.toMatch(/at .*\.ts|Connection is closed/);
    expect(stack.logs.text).toContain("req-500");
    expect(stack.logs.text).toContain("admin request failed");
  });

  it("sets key aliases on create and update: unique across keys, never secret-shaped", async () => {
    const { app, stack } = admin();
    const post = (payload: object) =>
      app.inject({ method: "POST", url: "/v1/keys", headers: auth(BOOTSTRAP), payload });
    const first = await post({ customer_id: "c", tier: "free", aliases: ["kong-acme", "gw2:key/42"] });
    expect(first.statusCode).toBe(201);
    const firstKey = first.json<{ key: { id: string; aliases: string[] } }>().key;
    expect(firstKey.aliases).toEqual(["kong-acme", "gw2:key/42"]);
    expect(await stack.redis.get(stack.keys.keyAlias("kong-acme"))).toBe(firstKey.id);

    const taken = await post({ customer_id: "c", tier: "free", aliases: ["kong-acme"] });
    expect(taken.statusCode).toBe(409);
    expect(taken.json<ErrorBody>().error.message).toContain(`"kong-acme" already belongs to key ${firstKey.id}`);
    for (const alias of ["km_live_abc", "key_abcdefgh12", "two words"]) {
      const refused = await post({ customer_id: "c", tier: "free", aliases: [alias] });
      expect(refused.statusCode, alias).toBe(400);
      expect(refused.json<ErrorBody>().error.message).toContain("aliases.0:");
    }

    const second = await post({ customer_id: "c", tier: "pro" });
    const secondId = second.json<{ key: { id: string } }>().key.id;
    const moved = await app.inject({
      method: "PATCH",
      url: `/v1/keys/${firstKey.id}`,
      headers: auth(BOOTSTRAP),
      payload: { aliases: ["gw2:key/42"] },
    });
    expect(moved.json()).toMatchObject({ key: { aliases: ["gw2:key/42"] } });
    expect(await stack.redis.get(stack.keys.keyAlias("kong-acme"))).toBeNull();
    const claimed = await app.inject({
      method: "PATCH",
      url: `/v1/keys/${secondId}`,
      headers: auth(BOOTSTRAP),
      payload: { aliases: ["kong-acme"] },
    });
    expect(claimed.statusCode).toBe(200);
    expect(await stack.redis.get(stack.keys.keyAlias("kong-acme"))).toBe(secondId);
  });
});
