import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { AppError } from "../runtime/errors";
import type { Logger } from "../runtime/logger";
import {
  type ClickHouseClient,
  type ClickHouseConnection,
  compareVersions,
  createClickHouse,
  parseVersion,
  serverVersion,
  toDateTime,
} from "./clickhouse";

export interface Migration {
  version: number;
  name: string;
  checksum: string;
  statements: Statement[];
}

export interface Statement {
  sql: string;
  /** Run only on servers at or above this version (`-- @requires clickhouse >= X.Y`). */
  minVersion?: number[];
}

const FILE_NAME = /^(\d{4})_([a-z0-9_]+)\.sql$/;
const REQUIRES = /^--\s*@requires\s+clickhouse\s*>=\s*([\d.]+)\s*$/;

/** Splits a migration file into statements; a `-- @requires` line gates the next statement. */
export function parseMigration(fileName: string, text: string): Migration {
  const match = FILE_NAME.exec(fileName);
  if (!match?.[1] || !match[2]) {
    throw new AppError("migration_failed", `migration file ${fileName} is not named NNNN_name.sql`);
  }
  const statements: Statement[] = [];
  let pending: string[] = [];
  let minVersion: number[] | undefined;
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    const requires = REQUIRES.exec(trimmed);
    if (requires?.[1]) {
      minVersion = parseVersion(requires[1]);
      continue;
    }
    if (trimmed.startsWith("--") || (trimmed === "" && pending.length === 0)) continue;
    pending.push(line);
    if (trimmed.endsWith(";")) {
      const sql = pending.join("\n").trim().replace(/;$/, "");
      statements.push(minVersion ? { sql, minVersion } : { sql });
      pending = [];
      minVersion = undefined;
    }
  }
  if (pending.join("").trim() !== "") {
    throw new AppError("migration_failed", `migration ${fileName} ends with a statement that has no closing ';'`);
  }
  return {
    version: Number(match[1]),
    name: match[2],
    checksum: createHash("sha256").update(text).digest("hex"),
    statements,
  };
}

export async function loadMigrations(dir: string): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".sql")).sort();
  const migrations = await Promise.all(files.map(async (f) => parseMigration(f, await readFile(join(dir, f), "utf8"))));
  const seen = new Set<number>();
  for (const m of migrations) {
    if (seen.has(m.version)) throw new AppError("migration_failed", `two migrations share version ${m.version}`);
    seen.add(m.version);
  }
  return migrations;
}

export interface MigrationReport {
  applied: string[];
  alreadyApplied: string[];
  /** Statements skipped because the server is older than their `@requires`. */
  skippedStatements: number;
}

interface AppliedRow {
  version: number;
  name: string;
  checksum: string;
}

/**
 * Brings `connection.database` up to date: creates it if missing, applies every migration
 * not yet recorded in `schema_migrations`, in version order, and records each one. Safe to
 * run again. A migration whose file changed after it was applied is an error, not a re-run.
 * One runner at a time per database (start-up of one service, or the deploy step).
 */
export async function runMigrations(
  connection: ClickHouseConnection,
  options: {
    /** Where the `NNNN_name.sql` files are: the schema's `MIGRATIONS_DIR` (`@keymeter/clickhouse-schema`). */
    dir: string;
    logger?: Logger;
    /** Pretend the server is this version (tests of upgrade paths); the real one otherwise. */
    serverVersion?: number[];
  },
): Promise<MigrationReport> {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(connection.database)) {
    throw new AppError(
      "migration_failed",
      `database name ${JSON.stringify(connection.database)} is not a plain identifier`,
    );
  }
  const migrations = await loadMigrations(options.dir);
  const bootstrap = createClickHouse({ ...connection, database: "default" });
  try {
    await bootstrap.command({ query: `CREATE DATABASE IF NOT EXISTS ${connection.database}` });
  } finally {
    await bootstrap.close();
  }
  const client = createClickHouse(connection);
  try {
    return await applyPending(client, migrations, options.logger, options.serverVersion);
  } finally {
    await client.close();
  }
}

async function applyPending(
  client: ClickHouseClient,
  migrations: Migration[],
  logger?: Logger,
  versionOverride?: number[],
): Promise<MigrationReport> {
  await client.command({
    query: `CREATE TABLE IF NOT EXISTS schema_migrations
      (version UInt32, name String, checksum String, applied_at DateTime('UTC'))
      ENGINE = MergeTree() ORDER BY version`,
  });
  // Statements a migration skipped for an older server, and whether a later run applied them.
  await client.command({
    query: `CREATE TABLE IF NOT EXISTS schema_migration_gates
      (version UInt32, statement UInt32, state String, at DateTime('UTC'))
      ENGINE = MergeTree() ORDER BY (version, statement)`,
  });
  const applied = new Map(
    (await selectRows<AppliedRow>(client, "SELECT version, name, checksum FROM schema_migrations")).map((row) => [
      Number(row.version),
      row,
    ]),
  );
  const waiting = new Set(
    (
      await selectRows<{ version: number; statement: number }>(
        client,
        `SELECT version, statement FROM schema_migration_gates
         GROUP BY version, statement HAVING argMax(state, at) = 'skipped'`,
      )
    ).map((row) => `${row.version}:${row.statement}`),
  );
  const version = versionOverride ?? (await serverVersion(client));
  const report: MigrationReport = { applied: [], alreadyApplied: [], skippedStatements: 0 };
  const recordGate = (migration: Migration, statement: number, state: "skipped" | "applied") =>
    client.insert({
      table: "schema_migration_gates",
      values: [{ version: migration.version, statement, state, at: toDateTime(Date.now()) }],
      format: "JSONEachRow",
    });
  const run = async (label: string, statement: Statement) => {
    try {
      await client.command({ query: statement.sql });
    } catch (error) {
      const first = statement.sql.split("\n")[0];
      throw new AppError("migration_failed", `migration ${label} failed at "${first}": ${(error as Error).message}`, {
        cause: error,
      });
    }
  };
  const tooOld = (statement: Statement) => statement.minVersion && compareVersions(version, statement.minVersion) < 0;

  for (const migration of migrations) {
    const label = `${String(migration.version).padStart(4, "0")}_${migration.name}`;
    const previous = applied.get(migration.version);
    if (previous) {
      if (previous.checksum !== migration.checksum) {
        throw new AppError(
          "migration_failed",
          `migration ${label} was changed after it was applied; add a new migration instead of editing it`,
        );
      }
      // A statement skipped on an older server runs once the server is new enough.
      for (const [index, statement] of migration.statements.entries()) {
        if (!waiting.has(`${migration.version}:${index}`)) continue;
        if (tooOld(statement)) {
          report.skippedStatements++;
          continue;
        }
        await run(label, statement);
        await recordGate(migration, index, "applied");
        logger?.info({ migration: label, statement: index }, "gated statement applied after a server upgrade");
      }
      report.alreadyApplied.push(label);
      continue;
    }
    for (const [index, statement] of migration.statements.entries()) {
      if (tooOld(statement)) {
        report.skippedStatements++;
        await recordGate(migration, index, "skipped");
        continue;
      }
      await run(label, statement);
    }
    await client.insert({
      table: "schema_migrations",
      values: [
        {
          version: migration.version,
          name: migration.name,
          checksum: migration.checksum,
          applied_at: toDateTime(Date.now()),
        },
      ],
      format: "JSONEachRow",
    });
    logger?.info({ migration: label }, "migration applied");
    report.applied.push(label);
  }
  return report;
}

async function selectRows<T>(client: ClickHouseClient, query: string): Promise<T[]> {
  const result = await client.query({ query, format: "JSONEachRow" });
  return result.json<T>();
}
