import { createHash } from "node:crypto";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MIGRATIONS_DIR } from "@keymeter/clickhouse-schema";
import {
  type ClickHouseConnection,
  createClickHouse,
  loadMigrations,
  runMigrations,
  toDateTime,
} from "@keymeter/shared/stores";
import { afterAll, describe, expect, it } from "vitest";
import { migrationsBefore0005, ORIGINAL_0004 } from "../support/migration-fixtures";
import { services, uniqueName } from "../support/services";

function connection(database: string): ClickHouseConnection {
  return { url: services().clickhouseUrl, username: "default", password: "", database };
}

const databases: string[] = [];
function freshDatabase(): string {
  const name = uniqueName("mig");
  databases.push(name);
  return name;
}

afterAll(async () => {
  const admin = createClickHouse(connection("default"));
  for (const db of databases) await admin.command({ query: `DROP DATABASE IF EXISTS ${db}` });
  await admin.close();
});

describe("ClickHouse migrations (real server)", () => {
  it("applies every migration once and is a no-op the second time", async () => {
    const db = freshDatabase();
    const all = (await loadMigrations(MIGRATIONS_DIR)).length;
    const first = await runMigrations(connection(db), { dir: MIGRATIONS_DIR });
    expect(first.applied).toHaveLength(all);
    const second = await runMigrations(connection(db), { dir: MIGRATIONS_DIR });
    expect(second.applied).toEqual([]);
    expect(second.alreadyApplied).toEqual(first.applied);

    const client = createClickHouse(connection(db));
    const recorded = await (
      await client.query({ query: "SELECT count() AS n FROM schema_migrations", format: "JSONEachRow" })
    ).json<{ n: string }>();
    expect(Number(recorded[0]?.n)).toBe(all);
    await client.close();
  });

  it("creates the raw table, rollups and the offset view that one INSERT feeds", async () => {
    const db = freshDatabase();
    await runMigrations(connection(db), { dir: MIGRATIONS_DIR });
    const client = createClickHouse(connection(db));
    const row = (offset: number, status: number, units: number) => ({
      event_id: `e${offset}`,
      source: "gw",
      key_id: "key_abcdefgh",
      customer_id: "cus_1",
      tier: "free",
      event_time: toDateTime(Date.parse("2026-11-30T23:30:00Z")),
      method: "GET",
      route: "/v1/things",
      status,
      latency_ms: 5,
      request_bytes: 1,
      response_bytes: 2,
      units,
      kafka_topic: "usage.events",
      kafka_partition: 2,
      kafka_offset: offset,
      ingested_at: toDateTime(Date.now()),
    });
    await client.insert({
      table: "usage_events",
      values: [row(10, 200, 1), row(11, 200, 3), row(12, 429, 0)],
      format: "JSONEachRow",
    });

    const query = async <T>(sql: string) => (await client.query({ query: sql, format: "JSONEachRow" })).json<T>();
    const offsets = await query<{ p: number; max: string }>(
      "SELECT kafka_partition AS p, maxMerge(max_offset) AS max FROM ingest_offsets GROUP BY kafka_partition",
    );
    expect(offsets).toEqual([{ p: 2, max: "12" }]);
    const monthly = await query<{ month: string; status_class: number; requests: string; units: string }>(
      "SELECT month, status_class, sum(requests) AS requests, sum(units) AS units FROM usage_monthly GROUP BY month, status_class ORDER BY status_class",
    );
    expect(monthly).toEqual([
      { month: "2026-11-01", status_class: 2, requests: "2", units: "4" },
      { month: "2026-11-01", status_class: 4, requests: "1", units: "0" },
    ]);
    // The dashboard views read the same numbers.
    expect(await query("SELECT day, customer_id, calls, billable_units, client_errors FROM v_customer_daily")).toEqual([
      { day: "2026-11-30", customer_id: "cus_1", calls: "3", billable_units: "4", client_errors: "1" },
    ]);
    expect(await query("SELECT key_id, calls, billable_units, key_name FROM v_key_monthly")).toEqual([
      { key_id: "key_abcdefgh", calls: "3", billable_units: "4", key_name: "" },
    ]);
    expect(await query("SELECT route, calls, mean_latency_ms FROM v_route_hourly")).toEqual([
      { route: "/v1/things", calls: "3", mean_latency_ms: 5 },
    ]);
    expect(await query("SELECT kafka_partition, last_offset, rows FROM v_ingest_progress")).toEqual([
      { kafka_partition: 2, last_offset: "12", rows: "3" },
    ]);
    await client.close();
  });

  it("refuses a migration that was edited after it was applied", async () => {
    const db = freshDatabase();
    const dir = await mkdtemp(join(tmpdir(), "migrations-"));
    await writeFile(join(dir, "0001_t.sql"), "CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = Memory;\n");
    await runMigrations(connection(db), { dir });
    await writeFile(join(dir, "0001_t.sql"), "CREATE TABLE IF NOT EXISTS t (x UInt16) ENGINE = Memory;\n");
    await expect(runMigrations(connection(db), { dir })).rejects.toThrow("0001_t was changed after it was applied");
  });

  it("accepts an applied text that the edited migration names, and nothing else", async () => {
    const db = freshDatabase();
    const dir = await mkdtemp(join(tmpdir(), "migrations-"));
    const first = "CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = Memory;\n";
    const sha = (text: string) => createHash("sha256").update(text).digest("hex");
    await writeFile(join(dir, "0001_t.sql"), first);
    await runMigrations(connection(db), { dir });

    const second = `-- @replaces-checksum ${sha(first)}\nCREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = Memory;\n`;
    await writeFile(join(dir, "0001_t.sql"), second);
    expect(await runMigrations(connection(db), { dir })).toMatchObject({ applied: [], alreadyApplied: ["0001_t"] });

    // Gates are kept by statement index, which the earlier text may number differently.
    const gatedDb = freshDatabase();
    const gated = "-- @requires clickhouse >= 999.0\nCREATE TABLE IF NOT EXISTS g (x UInt8) ENGINE = Memory;\n";
    await writeFile(join(dir, "0001_t.sql"), gated);
    expect((await runMigrations(connection(gatedDb), { dir })).skippedStatements).toBe(1);
    await writeFile(join(dir, "0001_t.sql"), `-- @replaces-checksum ${sha(gated)}\n${gated}`);
    await expect(runMigrations(connection(gatedDb), { dir })).rejects.toThrow(
      "0001_t was applied under an earlier text with statements still waiting for a newer server",
    );

    // A text that names some other earlier text is still an edit.
    await writeFile(join(dir, "0001_t.sql"), `-- @replaces-checksum ${sha(second)}\n${first}`);
    await expect(runMigrations(connection(db), { dir })).rejects.toThrow("0001_t was changed after it was applied");
  });

  it("keeps a database that applied the first 0004 valid and gives it 0005's v_key_monthly", async () => {
    // The fixture is the text 0004 says it replaces.
    const original = createHash("sha256")
      .update(await readFile(ORIGINAL_0004))
      .digest("hex");
    const current = await readFile(join(MIGRATIONS_DIR, "0004_dashboard_views.sql"), "utf8");
    expect(current).toContain(`-- @replaces-checksum ${original}\n`);

    const db = freshDatabase();
    const before = await runMigrations(connection(db), { dir: await migrationsBefore0005() });
    expect(before.applied).toContain("0004_dashboard_views");
    const upgrade = await runMigrations(connection(db), { dir: MIGRATIONS_DIR });
    expect(upgrade.applied).toEqual([
      "0005_key_monthly_view_aliases",
      "0006_key_aliases_unknown_keys",
      "0010_billing_sync_log",
    ]);
    expect(upgrade.alreadyApplied).toContain("0004_dashboard_views");

    const client = createClickHouse(connection(db));
    const definition = await (
      await client.query({ query: "SHOW CREATE TABLE v_key_monthly", format: "JSONEachRow" })
    ).json<{ statement: string }>();
    expect(definition[0]?.statement).toContain("AS keys_now");
    await client.insert({
      table: "api_keys",
      values: [{ key_id: "key_abcdefgh", name: "n", state: "active", version: 1 }],
      format: "JSONEachRow",
    });
    expect(
      await (await client.query({ query: "SELECT key_id, key_name FROM v_key_monthly", format: "JSONEachRow" })).json(),
    ).toEqual([]);
    await client.close();
  });

  it("skips statements gated on a newer server and names a failing statement", async () => {
    const db = freshDatabase();
    const dir = await mkdtemp(join(tmpdir(), "migrations-"));
    await writeFile(
      join(dir, "0001_gate.sql"),
      "CREATE TABLE IF NOT EXISTS g (x UInt8) ENGINE = Memory;\n-- @requires clickhouse >= 999.0\nTHIS IS NOT SQL;\n",
    );
    const report = await runMigrations(connection(db), { dir });
    expect(report.skippedStatements).toBe(1);

    await writeFile(join(dir, "0002_broken.sql"), "CREATE TABLE nonsense;\n");
    await expect(runMigrations(connection(db), { dir })).rejects.toThrow(
      'migration 0002_broken failed at "CREATE TABLE nonsense"',
    );
  });

  it("applies a statement skipped on an older server once the server is new enough", async () => {
    const db = freshDatabase();
    const dir = await mkdtemp(join(tmpdir(), "migrations-"));
    await writeFile(
      join(dir, "0001_gated.sql"),
      "CREATE TABLE IF NOT EXISTS g (x UInt8) ENGINE = Memory;\n-- @requires clickhouse >= 18.5\nCREATE TABLE IF NOT EXISTS later (x UInt8) ENGINE = Memory;\n",
    );
    const onOldServer = await runMigrations(connection(db), { dir, serverVersion: [18, 1] });
    expect(onOldServer.skippedStatements).toBe(1);
    const client = createClickHouse(connection(db));
    const tables = async () =>
      (await (await client.query({ query: "SHOW TABLES", format: "JSONEachRow" })).json<{ name: string }>()).map(
        (t) => t.name,
      );
    expect(await tables()).not.toContain("later");

    // The real server (18.16 or newer) is past the gate: the next run applies the statement, once.
    const afterUpgrade = await runMigrations(connection(db), { dir });
    expect(afterUpgrade).toMatchObject({ applied: [], skippedStatements: 0 });
    expect(await tables()).toContain("later");
    const again = await runMigrations(connection(db), { dir });
    expect(again).toMatchObject({ applied: [], alreadyApplied: ["0001_gated"], skippedStatements: 0 });
    await client.close();
  });
});
