import { type IncomingHttpHeaders, request } from "node:http";
import { GatewayMetrics } from "@keymeter/gateway";
import { generateSecret, hashSecret, keyChecksum } from "@keymeter/shared/api-keys";
import { afterEach, describe, expect, it } from "vitest";
import { call, KeyStack } from "../support/key-stack";
import { pollUntil } from "../support/poll";

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

async function errorOf(url: string, headers: Record<string, string>, method = "GET") {
  const response = await call(url, { method, headers });
  const body = response.body as { error?: { code?: string; message?: string } };
  return { status: response.status, code: body.error?.code, message: body.error?.message ?? "", text: response.text };
}

describe("gateway security: authentication", () => {
  it("refuses wrong, malformed and look-alike keys with 401 and emits nothing", async () => {
    const s = stack();
    const gw = await s.gateway();
    const { secret } = await s.registry.create({ customer_id: "cus_1", tier: "free" });
    // Well formed, right checksum, never issued.
    const unknown = generateSecret("km", "live");
    // The real key with one character changed: the checksum no longer matches.
    const typo = secret.slice(0, 10) + (secret.charAt(10) === "a" ? "b" : "a") + secret.slice(11);
    // A forged key with a recomputed checksum over a changed body: well formed, unknown.
    const body = `${secret.slice(0, 10)}${secret.charAt(10) === "a" ? "b" : "a"}${secret.slice(11, -6)}`;
    const forged = body + keyChecksum(body);
    const cases: Array<[Record<string, string>, string]> = [
      [bearer(unknown), "invalid API key"],
      [bearer(typo), "malformed API key"],
      [bearer(forged), "invalid API key"],
      [bearer("not-a-key"), "malformed API key"],
      [bearer("x".repeat(5000)), "malformed API key"],
      [{ "x-api-key": `${secret} ${secret}` }, "malformed API key"],
      [{ authorization: `Basic ${Buffer.from(`user:${secret}`).toString("base64")}` }, "missing API key"],
      [{ authorization: "Bearer" }, "missing API key"],
    ];
    for (const [headers, message] of cases) {
      const result = await errorOf(`${gw.url}/v1/x`, headers);
      expect({ status: result.status, code: result.code, message: result.message }).toEqual({
        status: 401,
        code: "unauthenticated",
        message: expect.stringContaining(message),
      });
    }
    expect(gw.sink.events).toEqual([]);
    expect(s.upstreamRequests).toEqual([]);
  });

  it("refuses a revoked key, and a second instance sees the revocation within one second", async () => {
    const s = stack();
    const first = await s.gateway();
    const second = await s.gateway();
    const { key, secret } = await s.registry.create({ customer_id: "cus_1", tier: "free" });
    // Both instances have the key cached.
    expect((await call(`${first.url}/v1/x`, { headers: bearer(secret) })).status).toBe(200);
    expect((await call(`${second.url}/v1/x`, { headers: bearer(secret) })).status).toBe(200);

    const revokedAt = Date.now();
    await s.registry.revoke(key.id);
    const seen = await pollUntil(
      async () => (await call(`${second.url}/v1/x`, { headers: bearer(secret) })).status === 401 && Date.now(),
      { timeoutMs: 1_000, intervalMs: 10, what: "the revocation to reach the second instance" },
    );
    expect(seen - revokedAt).toBeLessThan(1_000);
    const result = await errorOf(`${first.url}/v1/x`, bearer(secret));
    expect(result).toMatchObject({ status: 401, code: "unauthenticated", message: "API key revoked" });
    // Refusals of an identified key are recorded, not billed.
    const refused = second.sink.forKey(key.id).filter((e) => e.data.status === 401);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((e) => e.data.units === 0)).toBe(true);
  });

  it("refuses an expired key", async () => {
    const s = stack();
    const inAnHour = new Date(Date.now() + 3600_000).toISOString();
    const { key, secret } = await s.registry.create({ customer_id: "cus_1", tier: "free", expires_at: inAnHour });
    const now = await s.gateway();
    expect((await call(`${now.url}/v1/x`, { headers: bearer(secret) })).status).toBe(200);
    // A gateway whose clock is two hours ahead: the same key is past its expiry.
    const later = await s.gateway({ now: () => Date.now() + 2 * 3600_000 });
    expect(await errorOf(`${later.url}/v1/x`, bearer(secret))).toMatchObject({
      status: 401,
      message: "API key expired",
    });
    expect((await s.registry.show(key.id)).state).toBe("active");
  });

  it("keeps a rotated-out key working during its grace period and refuses it after", async () => {
    const s = stack();
    const first = await s.gateway();
    const second = await s.gateway();
    const { key, secret: old } = await s.registry.create({ customer_id: "cus_1", tier: "fast" });
    expect((await call(`${second.url}/v1/x`, { headers: bearer(old) })).status).toBe(200);

    const rotated = await s.registry.rotate(key.id, { graceMs: 1_500 });
    expect(rotated.secret).not.toBe(old);
    const graceEnds = Date.parse(rotated.key.rotated_at ?? "") + 1_500;
    for (const gw of [first, second]) {
      expect((await call(`${gw.url}/v1/x`, { headers: bearer(rotated.secret) })).status).toBe(200);
      expect((await call(`${gw.url}/v1/x`, { headers: bearer(old) })).status).toBe(200);
    }
    expect(Date.now()).toBeLessThan(graceEnds);
    const refused = await pollUntil(
      async () => {
        const result = await errorOf(`${second.url}/v1/x`, bearer(old));
        return result.status === 401 && result;
      },
      { timeoutMs: 5_000, intervalMs: 50, what: "the grace period to end" },
    );
    expect(Date.now()).toBeGreaterThanOrEqual(graceEnds);
    expect(refused.message).toContain("rotated");
    // The hash index entry of the old secret expired in Redis too: a fresh instance does not know it.
    await pollUntil(async () => (await s.redis.exists(s.keys.keyByHash(hashSecret(old)))) === 0, {
      timeoutMs: 2_000,
      what: "the old hash to expire",
    });
    const fresh = await s.gateway();
    expect(await errorOf(`${fresh.url}/v1/x`, bearer(old))).toMatchObject({ status: 401, message: "invalid API key" });
    expect((await call(`${fresh.url}/v1/x`, { headers: bearer(rotated.secret) })).status).toBe(200);
  });

  it("ends a rotated-out key at once with a zero grace period, on every instance", async () => {
    const s = stack();
    const other = await s.gateway();
    const { key, secret: old } = await s.registry.create({ customer_id: "cus_1", tier: "fast" });
    expect((await call(`${other.url}/v1/x`, { headers: bearer(old) })).status).toBe(200);
    const rotated = await s.registry.rotate(key.id, { graceMs: 0 });
    await pollUntil(async () => (await call(`${other.url}/v1/x`, { headers: bearer(old) })).status === 401, {
      timeoutMs: 1_000,
      what: "the rotation to reach the instance",
    });
    expect((await call(`${other.url}/v1/x`, { headers: bearer(rotated.secret) })).status).toBe(200);
  });
});

describe("gateway security: authorization", () => {
  it("enforces scopes: read-only, read-write, admin routes and route restrictions", async () => {
    const s = stack();
    const gw = await s.gateway();
    const readOnly = await s.registry.create({ customer_id: "c", tier: "fast", scope: "read-only" });
    const readWrite = await s.registry.create({ customer_id: "c", tier: "fast", scope: "read-write" });
    const admin = await s.registry.create({ customer_id: "c", tier: "fast", scope: "admin" });
    const reports = await s.registry.create({
      customer_id: "c",
      tier: "fast",
      scope: "read-write",
      routes: ["/v1/reports"],
    });
    const status = async (secret: string, method: string, path: string) =>
      (await call(`${gw.url}${path}`, { method, headers: bearer(secret) })).status;

    expect(await status(readOnly.secret, "GET", "/v1/things")).toBe(200);
    expect(await status(readOnly.secret, "HEAD", "/v1/things")).toBe(200);
    expect(await status(readOnly.secret, "POST", "/v1/things")).toBe(403);
    expect(await status(readOnly.secret, "DELETE", "/v1/things/1")).toBe(403);
    expect(await status(readWrite.secret, "DELETE", "/v1/things/1")).toBe(200);
    expect(await status(readWrite.secret, "GET", "/admin/users")).toBe(403);
    expect(await status(admin.secret, "DELETE", "/admin/users/1")).toBe(200);
    expect(await status(reports.secret, "POST", "/v1/reports/7")).toBe(200);
    expect(await status(reports.secret, "GET", "/v1/reportsX")).toBe(403);
    expect(await status(reports.secret, "GET", "/v1/users")).toBe(403);
    const denied = await errorOf(`${gw.url}/v1/things`, bearer(readOnly.secret), "POST");
    expect(denied).toMatchObject({ code: "forbidden", message: expect.stringContaining("read-only") });
  });

  it("checks scopes against the normalized path and forwards only that path", async () => {
    const s = stack();
    const gw = await s.gateway();
    const reports = await s.registry.create({
      customer_id: "c",
      tier: "fast",
      scope: "read-write",
      routes: ["/v1/reports"],
    });
    const readWrite = await s.registry.create({ customer_id: "c", tier: "fast", scope: "read-write" });
    // fetch would normalize these itself; send them raw.
    const raw = async (secret: string, path: string) => {
      const { request } = await import("node:http");
      const url = new URL(gw.url);
      return new Promise<number>((resolve, reject) => {
        const req = request({ host: url.hostname, port: url.port, path, headers: bearer(secret) }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end();
      });
    };
    expect(await raw(reports.secret, "/v1/reports/../users")).toBe(403);
    expect(await raw(reports.secret, "/v1/reports/%2e%2e/users")).toBe(403);
    expect(await raw(readWrite.secret, "/v1/x/../../admin/keys")).toBe(403);
    expect(await raw(readWrite.secret, "//admin/keys")).toBe(403);
    expect(await raw(readWrite.secret, "/%61dmin/keys")).toBe(403);
    expect(await raw(readWrite.secret, "/Admin/keys")).toBe(403);
    expect(await raw(readWrite.secret, "/admin%2fkeys")).toBe(400);
    expect(await raw(reports.secret, "/v1/reports/./7")).toBe(200);
    expect(s.upstreamRequests.at(-1)?.url).toBe("/v1/reports/7");
  });

  it("enforces the IP allowlist (IPv4, IPv6, trusted proxies)", async () => {
    const s = stack();
    const direct = await s.gateway();
    const behindProxy = await s.gateway({ trustedProxies: ["127.0.0.1/32"] });
    const elsewhere = await s.registry.create({
      customer_id: "c",
      tier: "fast",
      ip_allowlist: ["10.0.0.0/8", "2001:db8::/32"],
    });
    const local = await s.registry.create({ customer_id: "c", tier: "fast", ip_allowlist: ["127.0.0.0/8", "::1/128"] });

    const denied = await errorOf(`${direct.url}/v1/x`, bearer(elsewhere.secret));
    expect(denied).toMatchObject({ status: 403, code: "forbidden", message: expect.stringContaining("address") });
    expect((await call(`${direct.url}/v1/x`, { headers: bearer(local.secret) })).status).toBe(200);
    // X-Forwarded-For is ignored unless the socket peer is a trusted proxy.
    const spoofed = { ...bearer(elsewhere.secret), "x-forwarded-for": "10.1.2.3" };
    expect((await call(`${direct.url}/v1/x`, { headers: spoofed })).status).toBe(403);
    expect((await call(`${behindProxy.url}/v1/x`, { headers: spoofed })).status).toBe(200);
    const v6 = { ...bearer(elsewhere.secret), "x-forwarded-for": "2001:db8::7, 127.0.0.1" };
    expect((await call(`${behindProxy.url}/v1/x`, { headers: v6 })).status).toBe(200);
    const outside = { ...bearer(elsewhere.secret), "x-forwarded-for": "10.1.2.3, 192.0.2.1" };
    expect((await call(`${behindProxy.url}/v1/x`, { headers: outside })).status).toBe(403);
    expect(direct.sink.forKey(elsewhere.key.id).map((e) => [e.data.status, e.data.units])).toEqual([
      [403, 0],
      [403, 0],
    ]);
  });
});

describe("gateway security: shared limits and secrecy", () => {
  it("shares one rate limit between two gateway instances", async () => {
    const s = stack();
    const first = await s.gateway();
    const second = await s.gateway();
    const { secret } = await s.registry.create({ customer_id: "c", tier: "slow" });
    const responses = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        call(`${(i % 2 === 0 ? first : second).url}/v1/x`, { headers: bearer(secret) }),
      ),
    );
    const statuses = responses.map((r) => r.status);
    // The slow tier admits a burst of 4 and then one request per 10 s, whichever instance asks.
    expect(statuses.filter((code) => code === 200)).toHaveLength(4);
    expect(statuses.filter((code) => code === 429)).toHaveLength(6);

    // Sequentially: two requests on each instance use a fresh key's burst; then both refuse.
    const other = await s.registry.create({ customer_id: "c", tier: "slow" });
    const sequence: string[] = [];
    for (const gw of [first, first, second, second, first, second]) {
      sequence.push(String((await call(`${gw.url}/v1/x`, { headers: bearer(other.secret) })).status));
    }
    expect(sequence).toEqual(["200", "200", "200", "200", "429", "429"]);
  });

  it("with local token leases, two instances together never admit more than the shared bucket", async () => {
    const s = stack();
    const first = await s.gateway({}, { leaseMs: 100 });
    const second = await s.gateway({}, { leaseMs: 100 });
    const { secret } = await s.registry.create({ customer_id: "c", tier: "leased" });
    const started = Date.now();
    const responses = await Promise.all(
      Array.from({ length: 120 }, (_, i) =>
        call(`${(i % 2 === 0 ? first : second).url}/v1/x`, { headers: bearer(secret) }),
      ),
    );
    const elapsedS = (Date.now() - started) / 1000;
    const admitted = responses.filter((r) => r.status === 200).length;
    // The bucket holds 40 and refills at 50/s: leases never add to that ...
    expect(admitted).toBeLessThanOrEqual(40 + Math.ceil(50 * elapsedS));
    // ... and lose at most one unspent lease (5 tokens) per instance.
    expect(admitted).toBeGreaterThanOrEqual(40 - 2 * 5);
    expect(responses.filter((r) => r.status === 429).length).toBe(120 - admitted);
    const limited = responses.find((r) => r.status === 429);
    expect(limited?.headers.get("retry-after")).toMatch(/^\d+$/);
  });

  it("never writes a secret to a log line, an error body, an event, Redis or the upstream", async () => {
    const s = stack();
    const metrics = new GatewayMetrics();
    const gw = await s.gateway({ allowQueryKey: true, metrics });
    const issued = await s.registry.create({
      customer_id: "c",
      tier: "slow",
      scope: "read-only",
      ip_allowlist: ["127.0.0.1"],
    });
    const rotated = await s.registry.rotate(issued.key.id, { graceMs: 60_000 });
    const revokedKey = await s.registry.create({ customer_id: "c", tier: "free" });
    await s.registry.revoke(revokedKey.key.id);
    const secrets = [issued.secret, rotated.secret, revokedKey.secret, generateSecret("km", "live")];
    const bodies: string[] = [];
    for (const secret of secrets) {
      const headerSets: Array<Record<string, string>> = [bearer(secret), { "x-api-key": secret }, {}];
      for (const headers of headerSets) {
        for (const method of ["GET", "POST"]) {
          const path = Object.keys(headers).length === 0 ? `/v1/x?api_key=${secret}` : "/v1/x";
          bodies.push((await call(`${gw.url}${path}`, { method, headers })).text);
        }
      }
    }
    // The logger's redaction catches secrets handed to it by mistake.
    s.logger.info({ secret: issued.secret, headers: { authorization: `Bearer ${issued.secret}` } }, "oops");
    await pollUntil(() => gw.sink.events.length >= 12, { what: "events" });

    const stored: string[] = [];
    for (const k of await s.redis.keys(`${s.prefix}*`)) {
      const type = await s.redis.type(k);
      stored.push(
        k,
        type === "string" ? ((await s.redis.get(k)) ?? "") : JSON.stringify(await s.redis.zrange(k, 0, -1)),
      );
    }
    const places = {
      logs: s.logs.text,
      bodies: bodies.join("\n"),
      events: JSON.stringify(gw.sink.events),
      redis: stored.join("\n"),
      upstream: JSON.stringify(s.upstreamRequests),
      metrics: await metrics.registry.metrics(),
    };
    expect(places.metrics).toContain('keymeter_gateway_requests_total{outcome="unauthenticated",tier=""}');
    expect(places.metrics).toContain('keymeter_gateway_requests_total{outcome="forbidden",tier="slow"}');
    expect(s.logs.text).toContain("[redacted]");
    expect(places.logs).toContain(issued.key.id);
    for (const secret of secrets) {
      for (const [place, text] of Object.entries(places)) {
        expect(text.includes(secret), `a secret appears in ${place}`).toBe(false);
        // Not even the random part of it.
        expect(text.includes(secret.slice(8, 30)), `part of a secret appears in ${place}`).toBe(false);
      }
    }
  });
});

/** One request with exactly these raw path and headers (fetch would normalize both). */
function rawCall(
  base: string,
  path: string,
  headers: Record<string, string>,
  method = "GET",
): Promise<{ status: number; headers: IncomingHttpHeaders }> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path, method, headers }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("gateway security: what reaches the upstream", () => {
  it("strips client headers that fold (case, _ and -) into ours, method/URL overrides, and sets its own request id", async () => {
    const s = stack();
    const gw = await s.gateway();
    const { key, secret } = await s.registry.create({ customer_id: "cus_real", tier: "fast", scope: "read-only" });
    const response = await rawCall(gw.url, "/v1/things", {
      ...bearer(secret),
      X_Keymeter_Customer_Id: "cus_victim",
      "X-KEYMETER-TIER": "enterprise",
      x_keymeter_key_id: "key_victim",
      "X-HTTP-Method-Override": "DELETE",
      "X-HTTP-Method": "DELETE",
      "X-Method-Override": "DELETE",
      "X-Original-URL": "/admin/keys",
      X_Original_URL: "/admin/keys",
      "X-Rewrite-URL": "/admin/keys",
      "X-Request-Id": "client-chosen-1",
      X_Request_Id: "client-chosen-2",
      X_Forwarded_For: "10.9.9.9",
      X_Api_Key: "km_live_not_a_key",
      "X-Client-Request-Id": "forged",
      "X-Other": "kept",
    });
    expect(response.status).toBe(200);
    const seen = s.upstreamRequests.at(-1);
    expect(seen?.method).toBe("GET");
    const names = Object.keys(seen?.headers ?? {});
    const folded = (name: string) => name.toLowerCase().replaceAll("_", "-");
    const overrides = [
      "x-http-method-override",
      "x-http-method",
      "x-method-override",
      "x-original-url",
      "x-rewrite-url",
    ];
    expect(names.filter((name) => overrides.includes(folded(name)))).toEqual([]);
    // Exactly one header per name we set, after folding: the gateway's.
    for (const ours of [
      "x-keymeter-customer-id",
      "x-keymeter-tier",
      "x-keymeter-key-id",
      "x-request-id",
      "x-forwarded-for",
    ]) {
      expect(
        names.filter((name) => folded(name) === ours),
        ours,
      ).toEqual([ours]);
    }
    expect(names.filter((name) => folded(name) === "x-api-key")).toEqual([]);
    expect(seen?.headers["x-keymeter-customer-id"]).toBe("cus_real");
    expect(seen?.headers["x-keymeter-tier"]).toBe("fast");
    expect(seen?.headers["x-keymeter-key-id"]).toBe(key.id);
    expect(seen?.headers["x-forwarded-for"]).toBe("127.0.0.1");
    expect(seen?.headers["x-request-id"]).toBe(response.headers["x-request-id"]);
    expect(seen?.headers["x-request-id"]).not.toMatch(/client-chosen/);
    expect(seen?.headers["x-client-request-id"]).toBe("client-chosen-1");
    expect(seen?.headers["x-other"]).toBe("kept");
    const event = await pollUntil(() => gw.sink.forKey(key.id)[0], { what: "the event" });
    expect(event.id).toBe(response.headers["x-request-id"]);
  });

  it("refuses matrix parameters, trailing dots and spaces and double encoding before any scope check", async () => {
    const s = stack();
    const gw = await s.gateway();
    const readWrite = await s.registry.create({ customer_id: "c", tier: "fast", scope: "read-write" });
    const reports = await s.registry.create({
      customer_id: "c",
      tier: "fast",
      scope: "read-write",
      routes: ["/v1/reports"],
    });
    const cases: Array<[string, string]> = [
      [readWrite.secret, "/admin;x"],
      [readWrite.secret, "/admin;x/keys"],
      [readWrite.secret, "/v1/..;/admin"],
      [readWrite.secret, "/admin."],
      [readWrite.secret, "/admin./keys"],
      [readWrite.secret, "/admin%2e"],
      [readWrite.secret, "/admin%20"],
      [readWrite.secret, "/admin%20/keys"],
      [readWrite.secret, "/%2561dmin"],
      [readWrite.secret, "/%252561dmin"],
      [readWrite.secret, "/admin%09"],
      [reports.secret, "/v1/reports/..;/users"],
    ];
    const statuses: Record<string, number> = {};
    for (const [secret, path] of cases) statuses[path] = (await rawCall(gw.url, path, bearer(secret))).status;
    expect(statuses).toEqual(Object.fromEntries(cases.map(([, path]) => [path, 400])));
    expect(s.upstreamRequests).toEqual([]);
    // Ordinary dots and spaces inside segments still pass.
    expect((await rawCall(gw.url, "/v1/reports/q1.pdf", bearer(reports.secret))).status).toBe(200);
    expect((await rawCall(gw.url, "/v1/a%20b/c", bearer(readWrite.secret))).status).toBe(200);
  });

  it("stores route prefixes in canonical form, so an encoded prefix matches and a trick prefix is refused", async () => {
    const s = stack();
    const gw = await s.gateway();
    const { key, secret } = await s.registry.create({
      customer_id: "c",
      tier: "fast",
      scope: "read-write",
      routes: ["/v1/%72eports/", "//v2//exports"],
    });
    expect(key.routes).toEqual(["/v1/reports", "/v2/exports"]);
    expect((await s.registry.show(key.id)).routes).toEqual(["/v1/reports", "/v2/exports"]);
    expect((await rawCall(gw.url, "/v1/reports/7", bearer(secret))).status).toBe(200);
    expect((await rawCall(gw.url, "/v1/%72eports/7", bearer(secret))).status).toBe(200);
    expect((await rawCall(gw.url, "/v2/exports", bearer(secret))).status).toBe(200);
    expect((await rawCall(gw.url, "/v1/users", bearer(secret))).status).toBe(403);
    for (const prefix of ["/v1/reports;x", "/v1/%2561", "/v1/reports.", "/v1/reports%20", "/v1/%2e%2e/admin"]) {
      await expect(s.registry.create({ customer_id: "c", tier: "fast", routes: [prefix] }), prefix).rejects.toThrow(
        /path prefix/,
      );
    }
  });
});

describe("gateway security: refusals are not free", () => {
  it("counts refusals of a known key against its rate limit and records them under a fixed route", async () => {
    const s = stack();
    const gw = await s.gateway();
    // Burst 4, then one request per 10 s: exactly 4 refusals can be 403, the rest are 429.
    const { key, secret } = await s.registry.create({ customer_id: "c", tier: "slow", scope: "read-only" });
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      const path = `/v1/junk-${i}-${Math.random().toString(36).slice(2)}`;
      statuses.push((await rawCall(gw.url, path, bearer(secret), "POST")).status);
    }
    expect(statuses).toEqual([...Array(4).fill(403), ...Array(16).fill(429)]);
    // The budget is spent: an allowed request now waits too.
    expect((await rawCall(gw.url, "/v1/things", bearer(secret))).status).toBe(429);
    // A refused bad path of a known key counts as well.
    expect((await rawCall(gw.url, "/admin;x", bearer(secret))).status).toBe(429);
    const events = await pollUntil(() => gw.sink.forKey(key.id).length === 22 && gw.sink.forKey(key.id), {
      what: "22 events",
    });
    expect(new Set(events.map((e) => e.data.route))).toEqual(new Set(["/:refused"]));
    expect(events.every((e) => e.data.units === 0)).toBe(true);
    expect(s.upstreamRequests).toEqual([]);
  });
});
