import { MIGRATIONS_DIR } from "@keymeter/clickhouse-schema";
import { describe, expect, it } from "vitest";
import { loadMigrations, parseMigration } from "./clickhouse-migrations";

describe("parseMigration", () => {
  it("splits statements and gates the one after @requires", () => {
    const text = [
      "-- a comment",
      "CREATE TABLE a (x UInt8)",
      "ENGINE = Memory;",
      "",
      "-- @requires clickhouse >= 20.1",
      "ALTER TABLE a ADD INDEX i x TYPE minmax GRANULARITY 1;",
      "CREATE TABLE b (x UInt8) ENGINE = Memory;",
    ].join("\n");
    const migration = parseMigration("0007_things.sql", text);
    expect(migration.version).toBe(7);
    expect(migration.name).toBe("things");
    expect(migration.statements).toEqual([
      { sql: "CREATE TABLE a (x UInt8)\nENGINE = Memory" },
      { sql: "ALTER TABLE a ADD INDEX i x TYPE minmax GRANULARITY 1", minVersion: [20, 1] },
      { sql: "CREATE TABLE b (x UInt8) ENGINE = Memory" },
    ]);
  });

  it("reads the earlier texts a migration replaces", () => {
    const old = "a".repeat(64);
    const migration = parseMigration("0002_x.sql", `-- @replaces-checksum ${old}\nSELECT 1;\n`);
    expect(migration.replacesChecksums).toEqual([old]);
    expect(migration.statements).toEqual([{ sql: "SELECT 1" }]);
    expect(parseMigration("0002_x.sql", "SELECT 1;\n").replacesChecksums).toEqual([]);
  });

  it("refuses a badly named file and an unterminated statement", () => {
    expect(() => parseMigration("init.sql", "SELECT 1;")).toThrow("not named NNNN_name.sql");
    expect(() => parseMigration("0001_x.sql", "SELECT 1")).toThrow("no closing ';'");
  });

  it("loads the project's migrations in order", async () => {
    const migrations = await loadMigrations(MIGRATIONS_DIR);
    const versions = migrations.map((m) => m.version);
    expect(versions.length).toBeGreaterThan(0);
    expect(versions).toEqual([...versions].sort((a, b) => a - b));
    for (const m of migrations) expect(m.statements.length).toBeGreaterThan(0);
  });
});
