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
  SERVER_VERSION_QUERY,
  toDateTime,
} from "./clickhouse";

export interface Migration {
  version: number;
  name: string;
  checksum: string;
  /**
   * Checksums of earlier texts of this file that a database may have applied
   * (`-- @replaces-checksum <sha256>`): accepted as applied, because a later migration
   * brings such databases to the same schema. Every other change is still an error.
   */
  replacesChecksums: string[];
  statements: Statement[];
}

export interface Statement {
  sql: string;
  /** Run only on servers at or above this version (`-- @requires clickhouse >= X.Y`). */
  minVersion?: number[];
}

const FILE_NAME = /^(\d{4})_([a-z0-9_]+)\.sql$/;
const REQUIRES = /^--\s*@requires\s+clickhouse\s*>=\s*([\d.]+)\s*$/;
const REPLACES = /^--\s*@replaces-checksum\s+([0-9a-f]{64})\s*$/;

/**
 * Splits a migration file into statements; a `-- @requires` line gates the next statement,
 * a `-- @replaces-checksum` line names an earlier text of the file that stays accepted.
 */
export function parseMigration(fileName: string, text: string): Migration {
  const match = FILE_NAME.exec(fileName);
  if (!match?.[1] || !match[2]) {
    throw new AppError("migration_failed", `migration file ${fileName} is not named NNNN_name.sql`);
  }
  const statements: Statement[] = [];
  let pending: string[] = [];
  let minVersion: number[] | undefined;
  const replacesChecksums: string[] = [];
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    const replaces = REPLACES.exec(trimmed);
    if (replaces?.[1]) {
      replacesChecksums.push(replaces[1]);
      continue;
    }
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
    replacesChecksums,
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
  const createDatabase = createDatabaseSql(connection.database);
  const migrations = await loadMigrations(options.dir);
  const bootstrap = createClickHouse({ ...connection, database: "default" });
  try {
    await bootstrap.command({ query: createDatabase });
  } finally {
    await bootstrap.close();
  }
  const client = createClickHouse(connection);
  try {
    return await applyMigrations(clientTarget(client), migrations, options);
  } finally {
    await client.close();
  }
}

/** `CREATE DATABASE IF NOT EXISTS name`, for a name that needs no quoting. */
export function createDatabaseSql(database: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(database)) {
    throw new AppError("migration_failed", `database name ${JSON.stringify(database)} is not a plain identifier`);
  }
  return `CREATE DATABASE IF NOT EXISTS ${database}`;
}

/**
 * What the runner needs from a database: the HTTP client in production, an in-process
 * engine in tests of other ClickHouse releases. All SQL the runner sends goes through it.
 */
export interface MigrationTarget {
  /** Runs a statement that returns no rows. */
  command(sql: string): Promise<void>;
  /** Runs a SELECT and returns its rows (JSONEachRow). */
  select<T>(sql: string): Promise<T[]>;
  /** Inserts rows with `INSERT INTO table FORMAT JSONEachRow`. */
  insert(table: string, rows: readonly Record<string, unknown>[]): Promise<void>;
}

function clientTarget(client: ClickHouseClient): MigrationTarget {
  return {
    command: async (sql) => {
      await client.command({ query: sql });
    },
    select: async <T>(sql: string) => (await client.query({ query: sql, format: "JSONEachRow" })).json<T>(),
    insert: async (table, rows) => {
      await client.insert({ table, values: [...rows], format: "JSONEachRow" });
    },
  };
}

/** The runner's own bookkeeping tables. */
export const MIGRATION_BOOKKEEPING_DDL = [
  `CREATE TABLE IF NOT EXISTS schema_migrations
      (version UInt32, name String, checksum String, applied_at DateTime('UTC'))
      ENGINE = MergeTree() ORDER BY version`,
  // Statements a migration skipped for an older server, and whether a later run applied them.
  `CREATE TABLE IF NOT EXISTS schema_migration_gates
      (version UInt32, statement UInt32, state String, at DateTime('UTC'))
      ENGINE = MergeTree() ORDER BY (version, statement)`,
] as const;

/**
 * Applies the migrations not yet recorded in `target`'s database (which must exist), in
 * order: the body of {@link runMigrations}, for any {@link MigrationTarget}.
 */
export async function applyMigrations(
  target: MigrationTarget,
  migrations: Migration[],
  options: { logger?: Logger; serverVersion?: number[] } = {},
): Promise<MigrationReport> {
  const logger = options.logger;
  for (const ddl of MIGRATION_BOOKKEEPING_DDL) await target.command(ddl);
  const applied = new Map(
    (await target.select<AppliedRow>("SELECT version, name, checksum FROM schema_migrations")).map((row) => [
      Number(row.version),
      row,
    ]),
  );
  const waiting = new Set(
    (
      await target.select<{ version: number; statement: number }>(
        `SELECT version, statement FROM schema_migration_gates
         GROUP BY version, statement HAVING argMax(state, at) = 'skipped'`,
      )
    ).map((row) => `${row.version}:${row.statement}`),
  );
  const version = options.serverVersion ?? (await targetVersion(target));
  const report: MigrationReport = { applied: [], alreadyApplied: [], skippedStatements: 0 };
  const recordGate = (migration: Migration, statement: number, state: "skipped" | "applied") =>
    target.insert("schema_migration_gates", [
      { version: migration.version, statement, state, at: toDateTime(Date.now()) },
    ]);
  const run = async (label: string, statement: Statement) => {
    try {
      await target.command(statement.sql);
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
        if (!migration.replacesChecksums.includes(previous.checksum)) {
          throw new AppError(
            "migration_failed",
            `migration ${label} was changed after it was applied; add a new migration instead of editing it`,
          );
        }
        // Gates are recorded by statement index, which an earlier text may number differently.
        if (migration.statements.some((_, index) => waiting.has(`${migration.version}:${index}`))) {
          throw new AppError(
            "migration_failed",
            `migration ${label} was applied under an earlier text with statements still waiting for a newer server`,
          );
        }
        logger?.info({ migration: label }, "migration applied under an earlier text it replaces");
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
    await target.insert("schema_migrations", [
      {
        version: migration.version,
        name: migration.name,
        checksum: migration.checksum,
        applied_at: toDateTime(Date.now()),
      },
    ]);
    logger?.info({ migration: label }, "migration applied");
    report.applied.push(label);
  }
  return report;
}

async function targetVersion(target: MigrationTarget): Promise<number[]> {
  const [row] = await target.select<{ version: string }>(SERVER_VERSION_QUERY);
  if (!row) throw new AppError("migration_failed", "SELECT version() returned no row");
  return parseVersion(row.version);
}
