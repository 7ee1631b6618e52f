import { fileURLToPath } from "node:url";

/** The schema's migrations, `migrations/NNNN_name.sql`, applied in order by the shared runner. */
export const MIGRATIONS_DIR = fileURLToPath(new URL("./migrations", import.meta.url));
