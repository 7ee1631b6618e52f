import { ClickHouseUsageStore, lastStoredOffsetsQuery, USAGE_EVENT_COLUMNS, UsageRows } from "@keymeter/aggregator";
import { MIGRATIONS_DIR } from "@keymeter/clickhouse-schema";
import {
  ClickHouseKeyMirror,
  KEY_MIRROR_TABLE,
  type KeyView,
  keyMirrorRow,
  mirroredKeyQuery,
} from "@keymeter/shared/api-keys";
import { periodById } from "@keymeter/shared/billing";
import {
  auditRowJson,
  BILLING_AUDIT_TABLE,
  BillingAuditLog,
  type BillingAuditRow,
  billingTotalsQueries,
  customersWithUsageQuery,
} from "@keymeter/shared/billing/invoicing";
import {
  applyMigrations,
  type ClickHouseClient,
  type ClickHouseConnection,
  createClickHouse,
  createDatabaseSql,
  loadMigrations,
  type MigrationTarget,
  parseVersion,
  runMigrations,
} from "@keymeter/shared/stores";
import { parseUsageEvent, type UsageEvent } from "@keymeter/shared/usage";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { smokeRoutesQuery } from "../../infra/local/smoke-query";
import { ChdbEngine, chdbVenvDir, ensureChdbVenv } from "../support/chdb-engine";
import { migrationsBefore0005 } from "../support/migration-fixtures";
import { services, uniqueName } from "../support/services";

/*
 * The same SQL on a current ClickHouse. Production runs current releases; the suite's server
 * is Debian's 18.16. chdb-core (pinned in test/support/chdb/requirements.txt, installed into
 * .data/chdb-venv on first use) runs a current engine in process: every migration goes
 * through the real runner (same statement splitting, same `@requires` gating), the same rows
 * go into both engines with the statements the code sends, and every query the code sends
 * and every dashboard view must answer the same on both.
 */

let engine: ChdbEngine;
const databases: string[] = [];

beforeAll(async () => {
  // First run: a venv and a ~100 MB wheel from PyPI; later runs find it in place.
  const python = await ensureChdbVenv().catch((error: Error) => {
    throw new Error(`the current-ClickHouse tests need chdb-core in ${chdbVenvDir()}: ${error.message}`);
  });
  engine = ChdbEngine.start(python);
  await engine.version;
}, 300_000);

afterAll(async () => {
  await engine?.close();
  const admin = createClickHouse(connection18("default"));
  for (const db of databases) await admin.command({ query: `DROP DATABASE IF EXISTS ${db}` });
  await admin.close();
});

function connection18(database: string): ClickHouseConnection {
  return { url: services().clickhouseUrl, username: "default", password: "", database };
}

/** A new database in the chdb session, made current (unqualified names resolve to it). */
async function freshChdbDatabase(): Promise<MigrationTarget> {
  const name = uniqueName("cur");
  await engine.command(createDatabaseSql(name));
  await engine.command(`USE ${name}`);
  return engine;
}

describe("the same SQL on a current ClickHouse (chdb-core in process)", () => {
  it("is a current engine", async () => {
    const [major] = parseVersion(await engine.version);
    expect(major, `chdb engine version ${await engine.version}`).toBeGreaterThanOrEqual(26);
  });

  it("applies every migration through the runner, once, with nothing gated out", async () => {
    const target = await freshChdbDatabase();
    const migrations = await loadMigrations(MIGRATIONS_DIR);
    const first = await applyMigrations(target, migrations);
    expect(first.applied).toHaveLength(migrations.length);
    expect(first.skippedStatements).toBe(0);
    const again = await applyMigrations(target, migrations);
    expect(again).toEqual({ applied: [], alreadyApplied: first.applied, skippedStatements: 0 });
  });

  it("finishes a database where the original 0004 stopped (docker compose on a current release)", async () => {
    const target = await freshChdbDatabase();
    await expect(applyMigrations(target, await loadMigrations(await migrationsBefore0005()))).rejects.toThrow(
      'migration 0004_dashboard_views failed at "CREATE VIEW IF NOT EXISTS v_key_monthly AS"',
    );
    const report = await applyMigrations(target, await loadMigrations(MIGRATIONS_DIR));
    expect(report.applied).toEqual([
      "0004_dashboard_views",
      "0005_key_monthly_view_aliases",
      "0006_key_aliases_unknown_keys",
      "0010_billing_sync_log",
    ]);
    expect(await target.select("SELECT * FROM v_key_monthly")).toEqual([]);
  });

  it("answers every query and dashboard view the code sends as 18.16 does, for the same rows", async () => {
    const target = await freshChdbDatabase();
    await applyMigrations(target, await loadMigrations(MIGRATIONS_DIR));
    const db18 = uniqueName("cur18");
    databases.push(db18);
    await runMigrations(connection18(db18), { dir: MIGRATIONS_DIR });
    const client = createClickHouse(connection18(db18));
    try {
      // The same rows into both, with the statements the aggregator and the key mirror send.
      const store = new ClickHouseUsageStore(client);
      for (const [index, batch] of BATCHES.entries()) {
        await store.insert(batch, `${db18}-batch-${index}`);
        await engine.insertRowBinary("usage_events", USAGE_EVENT_COLUMNS, batch.bytes());
      }
      await new ClickHouseKeyMirror(client).upsert(KEYS);
      await engine.insert(KEY_MIRROR_TABLE, KEYS.map(keyMirrorRow));
      await new BillingAuditLog(client).write(AUDIT_ROWS);
      await engine.insert(BILLING_AUDIT_TABLE, AUDIT_ROWS.map(auditRowJson));

      const views =
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine = 'View' ORDER BY name";
      const viewNames = (await select18<{ name: string }>(client, views)).map((row) => row.name);
      expect((await engine.select<{ name: string }>(views)).map((row) => row.name)).toEqual(viewNames);
      expect(viewNames).toEqual([
        "v_customer_daily",
        "v_ingest_progress",
        "v_key_monthly",
        "v_route_hourly",
        "v_unknown_keys",
      ]);

      const queries: Array<[what: string, sql: string]> = [
        ["aggregator: OffsetStore.lastStoredOffsets", lastStoredOffsetsQuery(TOPIC)],
        ["key mirror: get (two versions)", mirroredKeyQuery(KEY_A)],
        ["key mirror: get", mirroredKeyQuery(KEY_B)],
        ["infra/local/pipeline.ts: smoke read-back", smokeRoutesQuery(KEY_A)],
        // README.md, "API keys": the analysts' example join of usage with key names.
        [
          "README: usage by key name",
          "SELECT k.name, k.state, sum(units) AS units FROM usage_monthly ANY LEFT JOIN (SELECT key_id, name, state FROM api_keys FINAL) k USING key_id GROUP BY k.name, k.state",
        ],
        ["migration runner: its record", "SELECT version, name, checksum FROM schema_migrations"],
        [
          "billing: customers with usage",
          customersWithUsageQuery(
            ["free", "pro"],
            Date.parse("2026-10-31T00:00:00Z"),
            Date.parse("2026-12-01T00:00:00Z"),
          ),
        ],
        // A UTC month and one that starts inside an hour (whole hours from the rollup, the rest raw).
        ...billingTotalsQueries(
          ["free", "pro"],
          [
            periodById("2026-11", "UTC"),
            { id: "2026-11", start: Date.parse("2026-11-01T00:05:00Z"), end: Date.parse("2026-12-01T00:00:00Z") },
          ],
        ).queries.map((sql, i): [string, string] => [`billing: totals query ${i}`, sql]),
        [
          "billing: README audit example",
          "SELECT customer_id, tier, argMax(value, event_time) FROM billing_sync_log WHERE period_id = '2026-11' AND outcome IN ('accepted', 'duplicate') GROUP BY customer_id, tier",
        ],
        ["raw rows", "SELECT * FROM usage_events"],
        ...(["hour", "day", "month"] as const).map((period): [string, string] => [
          `rollup by ${period}`,
          `SELECT ${period}, key_id, customer_id, tier, route, status_class, sum(requests) AS requests,
             sum(units) AS units, sum(request_bytes) AS request_bytes, sum(response_bytes) AS response_bytes,
             sum(latency_ms_sum) AS latency_ms_sum
           FROM usage_${period === "day" ? "daily" : `${period}ly`}
           GROUP BY ${period}, key_id, customer_id, tier, route, status_class`,
        ]),
        ...viewNames.map((view): [string, string] => [`dashboard view ${view}`, `SELECT * FROM ${view}`]),
      ];
      for (const [what, sql] of queries) {
        const on18 = canonical(await select18(client, sql));
        const onCurrent = canonical(await engine.select(sql).catch(failedOnCurrent(what)));
        expect(on18.length, `${what}: no rows on 18.16, nothing compared`).toBeGreaterThan(0);
        expect(onCurrent, `${what}: current ClickHouse answers differently from 18.16`).toEqual(on18);
      }

      // Both engines right, not only alike.
      expect(canonical(await engine.select(lastStoredOffsetsQuery(TOPIC)))).toEqual(
        canonical([
          { partition: 0, offset: "5" },
          { partition: 1, offset: "2" },
        ]),
      );
      expect(
        canonical(await engine.select(`SELECT month, key_id, calls, key_name, key_state FROM v_key_monthly`)),
      ).toEqual(
        canonical([
          { month: "2026-10-01", key_id: KEY_A, calls: 1, key_name: "renamed", key_state: "revoked" },
          { month: "2026-11-01", key_id: KEY_A, calls: 4, key_name: "renamed", key_state: "revoked" },
          { month: "2026-11-01", key_id: KEY_B, calls: 2, key_name: "second", key_state: "active" },
          { month: "2026-11-01", key_id: KEY_C, calls: 2, key_name: "", key_state: "" },
        ]),
      );
      // The README's audit query: the close's total is the last accepted one.
      expect(
        canonical(
          await engine.select(
            "SELECT customer_id, tier, argMax(value, event_time) AS last FROM billing_sync_log WHERE period_id = '2026-11' GROUP BY customer_id, tier",
          ),
        ),
      ).toEqual(canonical([{ customer_id: "cus_1", tier: "pro", last: 102 }]));
      expect(canonical(await engine.select("SELECT * FROM v_unknown_keys"))).toEqual(
        canonical([{ subject: KEY_C, first_day: "2026-11-03", last_day: "2026-11-03", calls: 2, units: 1 }]),
      );
    } finally {
      await client.close();
    }
  });
});

async function select18<T>(client: ClickHouseClient, sql: string): Promise<T[]> {
  return (await client.query({ query: sql, format: "JSONEachRow" })).json<T>();
}

function failedOnCurrent(what: string) {
  return (error: Error): never => {
    throw new Error(`${what} fails on current ClickHouse: ${error.message}`);
  };
}

/**
 * Rows in a form both engines agree on when their answers are the same: sorted (no query here
 * promises an order, and the code does not rely on one), and whole numbers as text, because
 * 18.16 quotes 64-bit integers in JSON and current releases do not by default.
 */
function canonical(rows: unknown[]): string[] {
  const normal = (value: unknown): unknown => {
    if (typeof value === "number" && Number.isInteger(value)) return String(value);
    if (Array.isArray(value)) return value.map(normal);
    if (value !== null && typeof value === "object") {
      return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, normal(inner)]));
    }
    return value;
  };
  return rows.map((row) => JSON.stringify(normal(row))).sort();
}

const TOPIC = "usage.events";
const KEY_A = "key_AAAAAAAAAAAAAAAA"; // mirrored twice: renamed, then revoked
const KEY_B = "key_BBBBBBBBBBBBBBBB"; // mirrored once
const KEY_C = "key_CCCCCCCCCCCCCCCC"; // never mirrored: usage of an unknown key

function key(id: string, version: number, changes: Partial<KeyView> = {}): KeyView {
  return {
    id,
    customer_id: "cus_1",
    tier: "free",
    name: "first",
    env: "live",
    scope: "read-write",
    routes: ["/v1/things"],
    ip_allowlist: ["10.0.0.0/8"],
    state: "active",
    expires_at: null,
    created_at: "2026-10-01T00:00:00.000Z",
    updated_at: "2026-10-01T00:00:00.000Z",
    rotated_at: null,
    revoked_at: null,
    hint: "wxyz",
    version,
    aliases: [],
    ...changes,
  };
}

const KEYS: KeyView[] = [
  key(KEY_A, 1),
  key(KEY_A, 2, { name: "renamed", state: "revoked", revoked_at: "2026-11-20T10:00:00.000Z" }),
  key(KEY_B, 1, { name: "second", tier: "pro", expires_at: "2027-01-01T00:00:00.000Z" }),
];

let sequence = 0;
function event(subject: string, time: string, status: number, latency: number, units = 1): UsageEvent {
  sequence++;
  const parsed = parseUsageEvent({
    specversion: "1.0",
    id: `evt-${sequence}`,
    source: "gw-1",
    type: "api.request",
    subject,
    time,
    data: {
      method: status === 201 ? "POST" : "GET",
      route: status === 201 ? "/v1/things" : "/v1/things/:id",
      status,
      latency_ms: latency,
      request_bytes: 100 * sequence,
      response_bytes: 1000 + sequence,
      units,
      customer_id: subject === KEY_C ? "" : "cus_1",
      tier: subject === KEY_B ? "pro" : "free",
    },
  });
  if (!parsed.ok) throw new Error(`test event is invalid: ${parsed.error}`);
  return parsed.event;
}

const INGESTED_AT = Date.parse("2026-11-29T00:00:00Z") / 1000;
type Row = [event: UsageEvent, partition: number, offset: number];
const row = (e: UsageEvent, partition: number, offset: number): Row => [e, partition, offset];
const rowBinary = (rows: Row[]) => {
  const out = new UsageRows();
  for (const [e, partition, offset] of rows) {
    out.append(e, Date.parse(e.time), { topic: TOPIC, partition, offset }, INGESTED_AT);
  }
  return out;
};

/** Two batches, as the aggregator inserts them: across a month end, two partitions, 2xx/4xx/5xx. */
/** Two readings of one customer's pro total (the later wins) and a close. */
const AUDIT_ROWS: BillingAuditRow[] = [10, 20, 30].map((minute, i) => ({
  at: Date.parse(`2026-11-30T10:${minute}:00Z`),
  run_id: `run_${i}`,
  kind: i === 2 ? "close" : "sync",
  customer_id: "cus_1",
  tier: "pro",
  period_id: "2026-11",
  period_start: Date.parse("2026-11-01T00:00:00Z"),
  period_end: Date.parse("2026-12-01T00:00:00Z"),
  stripe_customer_id: "cus_stripe1",
  meter_event_name: "keymeter_pro_requests",
  value: 100 + i,
  identifier: `kmt_${i}`,
  event_time: i === 2 ? Date.parse("2026-11-30T23:59:59Z") : Date.parse(`2026-11-30T10:${minute}:00Z`),
  outcome: "accepted",
  error: "",
}));

const BATCHES: UsageRows[] = [
  rowBinary([
    row(event(KEY_A, "2026-10-31T23:30:00Z", 200, 5), 0, 0),
    row(event(KEY_A, "2026-11-01T00:10:00Z", 201, 12.5, 3), 0, 1),
    row(event(KEY_A, "2026-11-01T00:20:00Z", 429, 0.25, 0), 0, 2),
    row(event(KEY_B, "2026-11-02T13:45:00Z", 200, 7), 0, 3),
  ]),
  rowBinary([
    row(event(KEY_B, "2026-11-02T13:50:00Z", 500, 30), 1, 0),
    row(event(KEY_C, "2026-11-03T08:00:00Z", 404, 1.5, 0), 1, 1),
    row(event(KEY_C, "2026-11-03T08:00:30Z", 200, 2), 1, 2),
    row(event(KEY_A, "2026-11-28T23:59:59Z", 503, 4), 0, 4),
    row(event(KEY_A, "2026-11-28T23:59:59Z", 200, 4), 0, 5),
  ]),
];
