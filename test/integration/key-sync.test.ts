import { Writable } from "node:stream";
import { buildAdminApp, runCli } from "@keymeter/admin-api";
import { MIGRATIONS_DIR } from "@keymeter/clickhouse-schema";
import { ClickHouseKeyMirror } from "@keymeter/shared/api-keys";
import { type ClickHouseConnection, createClickHouse, runMigrations } from "@keymeter/shared/stores";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyStack, TEST_TIERS } from "../support/key-stack";
import { services, uniqueName } from "../support/services";

const BOOTSTRAP = "bootstrap-token-for-tests-0123456789abcdef";
const auth = { authorization: `Bearer ${BOOTSTRAP}`, "content-type": "application/json" };

class Capture extends Writable {
  text = "";
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

/** One malformed key record must not break the repair of all the others (issue 12, item 9). */
describe("malformed Unicode and the key mirror (real Redis and ClickHouse)", () => {
  const database = uniqueName("keysync");
  const connection: ClickHouseConnection = {
    url: services().clickhouseUrl,
    username: "default",
    password: "",
    database,
  };
  const clickhouse = createClickHouse(connection);
  let stack: KeyStack;
  beforeAll(async () => {
    await runMigrations(connection, { dir: MIGRATIONS_DIR });
    stack = new KeyStack({ mirror: new ClickHouseKeyMirror(clickhouse) });
  });
  afterAll(async () => {
    await stack.close();
    await clickhouse.command({ query: `DROP DATABASE IF EXISTS ${database}` });
    await clickhouse.close();
  });

  it("refuses a lone surrogate in any string field; a sync reports the record it cannot write and writes the rest", async () => {
    const app = buildAdminApp({
      registry: stack.registry,
      tiers: TEST_TIERS,
      logger: stack.logger,
      bootstrapToken: BOOTSTRAP,
    });
    try {
      const created = await app.inject({
        method: "POST",
        url: "/v1/keys",
        headers: auth,
        payload: JSON.stringify({ customer_id: "cus_u", tier: "free", name: "x \ud800" }),
      });
      expect(created.statusCode).toBe(400);
      expect(created.json()).toMatchObject({
        error: { code: "bad_request", message: expect.stringContaining("name:") },
      });
      const routes = await app.inject({
        method: "POST",
        url: "/v1/keys",
        headers: auth,
        payload: '{"customer_id":"cus_u","tier":"free","routes":["/v1/\\udc00"]}',
      });
      expect(routes.json()).toMatchObject({ error: { message: expect.stringContaining("routes.0:") } });

      const good = await stack.registry.create({ customer_id: "cus_u", tier: "free", name: "good" });
      const patched = await app.inject({
        method: "PATCH",
        url: `/v1/keys/${good.key.id}`,
        headers: auth,
        payload: JSON.stringify({ name: "\udbff" }),
      });
      expect(patched.statusCode).toBe(400);

      // A record written before the API refused such names (or by hand): Redis holds it escaped.
      const bad = await stack.registry.create({ customer_id: "cus_u", tier: "free", name: "bad" });
      const recordKey = stack.keys.keyRecord(bad.key.id);
      const record = JSON.parse((await stack.redis.get(recordKey)) ?? "{}");
      await stack.redis.set(recordKey, JSON.stringify({ ...record, name: "x \ud800" }));
      const other = await stack.registry.create({ customer_id: "cus_u", tier: "pro", name: "other" });

      const synced = await app.inject({
        method: "POST",
        url: "/v1/keys/sync",
        headers: { authorization: auth.authorization },
      });
      expect(synced.statusCode).toBe(200);
      expect(synced.json()).toEqual({
        mirrored: 2,
        failed: [{ key_id: bad.key.id, error: expect.stringContaining("surrogate") }],
      });

      const out = new Capture();
      const err = new Capture();
      const code = await runCli(
        ["node", "keymeter", "keys", "sync"],
        () => ({ registry: stack.registry, tiers: TEST_TIERS, close: async () => {} }),
        { out, err },
      );
      expect(code).toBe(1);
      expect(JSON.parse(out.text)).toMatchObject({ mirrored: 2, failed: [{ key_id: bad.key.id }] });
      expect(err.text).toContain("1 key(s) could not be mirrored");

      const mirrored = await clickhouse.query({
        query: `SELECT key_id FROM api_keys FINAL WHERE key_id IN ('${good.key.id}', '${other.key.id}')`,
        format: "JSONEachRow",
      });
      expect((await mirrored.json<{ key_id: string }>()).map((r) => r.key_id).sort()).toEqual(
        [good.key.id, other.key.id].sort(),
      );
    } finally {
      await app.close();
    }
  });
});
