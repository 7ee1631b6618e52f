import { MIGRATIONS_DIR } from "@keymeter/clickhouse-schema";
import { ClickHouseKeyMirror, hashSecret, KeyRegistry } from "@keymeter/shared/api-keys";
import { type ClickHouseConnection, createClickHouse, runMigrations } from "@keymeter/shared/stores";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { KeyStack, TEST_TIERS } from "../support/key-stack";
import { services, uniqueName } from "../support/services";

const database = uniqueName("keys");
const connection = (db: string): ClickHouseConnection => ({
  url: services().clickhouseUrl,
  username: "default",
  password: "",
  database: db,
});
const clickhouse = createClickHouse(connection(database));
const mirror = new ClickHouseKeyMirror(clickhouse);

beforeAll(async () => {
  await runMigrations(connection(database), { dir: MIGRATIONS_DIR });
});
afterAll(async () => {
  await clickhouse.close();
  const admin = createClickHouse(connection("default"));
  await admin.command({ query: `DROP DATABASE IF EXISTS ${database}` });
  await admin.close();
});

const stacks: KeyStack[] = [];
function stack(withMirror = true): KeyStack {
  const created = new KeyStack(withMirror ? { mirror } : {});
  stacks.push(created);
  return created;
}
afterEach(async () => {
  for (const s of stacks.splice(0)) await s.close();
});

describe("key registry (real Redis and ClickHouse)", () => {
  it("creates a key: secret once, only its hash stored, metadata mirrored", async () => {
    const s = stack();
    const issued = await s.registry.create({
      customer_id: "cus_42",
      tier: "free",
      name: "ci",
      scope: "read-write",
      routes: ["/v1/reports/"],
      ip_allowlist: ["10.0.0.1", "2001:db8::/32"],
    });
    expect(issued.secret).toMatch(/^km_live_[0-9A-Za-z]{36}$/);
    expect(issued.mirrored).toBe(true);
    expect(issued.key).toMatchObject({
      id: expect.stringMatching(/^key_[A-Za-z0-9]{16}$/),
      customer_id: "cus_42",
      tier: "free",
      scope: "read-write",
      state: "active",
      routes: ["/v1/reports"],
      ip_allowlist: ["10.0.0.1/32", "2001:db8::/32"],
      hint: `km_live_…${issued.secret.slice(-4)}`,
      version: 1,
    });
    expect(issued.key).not.toHaveProperty("secret_hashes");
    const raw = (await s.redis.get(s.keys.keyRecord(issued.key.id))) ?? "";
    expect(raw).toContain(hashSecret(issued.secret));
    expect(raw).not.toContain(issued.secret.slice(8, 38));
    expect(await s.redis.get(s.keys.keyByHash(hashSecret(issued.secret)))).toBe(issued.key.id);
    expect(await s.registry.findByHash(hashSecret(issued.secret))).toMatchObject({ id: issued.key.id });

    const row = await mirror.get(issued.key.id);
    expect(row).toMatchObject({
      key_id: issued.key.id,
      customer_id: "cus_42",
      tier: "free",
      state: "active",
      version: "1",
    });
    expect(JSON.stringify(row)).not.toContain(hashSecret(issued.secret));
  });

  it("lists, shows, updates, rotates and revokes, mirroring each change", async () => {
    const s = stack();
    const a = await s.registry.create({ customer_id: "cus_a", tier: "free" });
    const b = await s.registry.create({ customer_id: "cus_b", tier: "pro" });
    const c = await s.registry.create({ customer_id: "cus_a", tier: "free", env: "test" });
    expect((await s.registry.list()).map((k) => k.id)).toEqual([c.key.id, b.key.id, a.key.id]);
    expect((await s.registry.list({ customerId: "cus_a" })).map((k) => k.id)).toEqual([c.key.id, a.key.id]);
    expect((await s.registry.list({ limit: 1, offset: 1 })).map((k) => k.id)).toEqual([b.key.id]);
    expect(c.secret.startsWith("km_test_")).toBe(true);

    const updated = await s.registry.update(a.key.id, { tier: "pro", scope: "admin" });
    expect(updated).toMatchObject({ tier: "pro", scope: "admin", version: 2 });
    const rotated = await s.registry.rotate(a.key.id, { graceMs: 60_000 });
    expect(rotated.key.rotated_at).not.toBeNull();
    expect(await s.redis.pttl(s.keys.keyByHash(hashSecret(a.secret)))).toBeGreaterThan(50_000);
    expect(await s.redis.pttl(s.keys.keyByHash(hashSecret(rotated.secret)))).toBe(-1);
    const record = await s.registry.get(a.key.id);
    expect(record?.secret_hashes.map((h) => h.valid_until === null)).toEqual([true, false]);

    const revoked = await s.registry.revoke(a.key.id);
    expect(revoked).toMatchObject({ state: "revoked", version: 4 });
    expect(await s.registry.revoke(a.key.id)).toMatchObject({ state: "revoked", version: 4 });
    await expect(s.registry.rotate(a.key.id)).rejects.toMatchObject({ code: "conflict" });
    await expect(s.registry.update(a.key.id, { tier: "free" })).rejects.toMatchObject({ code: "conflict" });
    expect(await mirror.get(a.key.id)).toMatchObject({ state: "revoked", tier: "pro", scope: "admin", version: "4" });
  });

  it("reports an expired key as expired", async () => {
    const s = stack(false);
    const soon = new Date(Date.now() + 60_000).toISOString();
    const issued = await s.registry.create({ customer_id: "c", tier: "free", expires_at: soon });
    const later = new KeyRegistry({
      redis: s.redis,
      keys: s.keys,
      tiers: TEST_TIERS,
      logger: s.logger,
      now: () => Date.now() + 120_000,
    });
    expect((await s.registry.show(issued.key.id)).state).toBe("active");
    expect((await later.show(issued.key.id)).state).toBe("expired");
  });

  it("rejects bad input with errors that name the field", async () => {
    const s = stack(false);
    const attempts: Array<[unknown, string]> = [
      [{ customer_id: "", tier: "free" }, "customer_id:"],
      [{ customer_id: "c", tier: "gold" }, 'tier: unknown tier "gold" (known: free, pro, slow, fast, leased)'],
      [{ customer_id: "c", tier: "free", scope: "root" }, "scope:"],
      [{ customer_id: "c", tier: "free", ip_allowlist: ["10.0.0.0/40"] }, "ip_allowlist.0:"],
      [{ customer_id: "c", tier: "free", routes: ["v1"] }, "routes.0:"],
      [{ customer_id: "c", tier: "free", expires_at: "2001-01-01T00:00:00Z" }, "expires_at: must be in the future"],
      [{ customer_id: "c", tier: "free", secret: "x" }, "Unrecognized key"],
    ];
    for (const [input, message] of attempts) {
      await expect(s.registry.create(input as never)).rejects.toMatchObject({
        code: "bad_request",
        message: expect.stringContaining(message),
      });
    }
    await expect(s.registry.show("key_doesnotexist")).rejects.toMatchObject({ code: "not_found" });
    await expect(s.registry.show("../../etc")).rejects.toMatchObject({
      code: "not_found",
      message: "no API key with that id",
    });
    const { key } = await s.registry.create({ customer_id: "c", tier: "free" });
    await expect(s.registry.update(key.id, {})).rejects.toMatchObject({
      message: expect.stringContaining("at least one field"),
    });
    await expect(s.registry.rotate(key.id, { graceMs: -1 })).rejects.toMatchObject({ code: "bad_request" });
  });

  it("keeps the Redis write when the mirror fails, logs it, and 'sync' repairs the mirror", async () => {
    const broken = createClickHouse(
      { url: "http://127.0.0.1:1", username: "default", password: "", database },
      { requestTimeoutMs: 2_000 },
    );
    const s = new KeyStack({ mirror: new ClickHouseKeyMirror(broken) });
    stacks.push(s);
    try {
      const issued = await s.registry.create({ customer_id: "cus_sync", tier: "free" });
      expect(issued.mirrored).toBe(false);
      expect((await s.registry.show(issued.key.id)).customer_id).toBe("cus_sync");
      expect(s.logs.text).toContain("keymeter keys sync");
      expect(s.logs.text).toContain(issued.key.id);
      expect(await mirror.get(issued.key.id)).toBeUndefined();

      const repaired = new KeyRegistry({ redis: s.redis, keys: s.keys, tiers: TEST_TIERS, logger: s.logger, mirror });
      expect(await repaired.sync()).toEqual({ mirrored: 1, failed: [] });
      expect(await mirror.get(issued.key.id)).toMatchObject({ customer_id: "cus_sync", version: "1" });
    } finally {
      await broken.close();
    }
  });

  it("serializes concurrent changes to one key (no lost update)", async () => {
    const s = stack(false);
    const { key } = await s.registry.create({ customer_id: "c", tier: "free" });
    await Promise.all([
      s.registry.update(key.id, { name: "one" }),
      s.registry.update(key.id, { scope: "read-write" }),
      s.registry.update(key.id, { tier: "pro" }),
    ]);
    expect(await s.registry.show(key.id)).toMatchObject({ name: "one", scope: "read-write", tier: "pro", version: 4 });
  });
});
