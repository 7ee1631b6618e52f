import { copyFile, mkdtemp, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MIGRATIONS_DIR } from "@keymeter/clickhouse-schema";

/** 0004 as first shipped (ANY LEFT JOIN of unaliased subqueries): what 18.16 databases applied. */
export const ORIGINAL_0004 = join(import.meta.dirname, "../fixtures/migrations/0004_dashboard_views.original.sql");

/**
 * A migrations folder as the tree had it before 0005: the project's 0001..0003 and the
 * original 0004. Running it and then the real folder is the upgrade a deployed database sees.
 */
export async function migrationsBefore0005(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "migrations-0004-"));
  for (const file of await readdir(MIGRATIONS_DIR)) {
    const version = Number(file.slice(0, 4));
    if (file.endsWith(".sql") && version < 4) await copyFile(join(MIGRATIONS_DIR, file), join(dir, file));
  }
  await copyFile(ORIGINAL_0004, join(dir, "0004_dashboard_views.sql"));
  return dir;
}
