/**
 * `npm run build`: each service as one JavaScript file, `dist/<service>.mjs` (and the CLI,
 * `dist/keymeter.mjs`), run with plain `node`. The project's own TypeScript (shared/, the
 * service, the schema package) is bundled in; npm packages stay imports of node_modules.
 *
 * Why not run the sources through tsx in production: tsx compiles at every start, keeps a
 * loader thread (about 40 MiB more resident memory per process) and names every closure it
 * creates at run time, which costs CPU on hot paths.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";

const ROOT = join(import.meta.dirname, "..");
export const DIST_DIR = join(ROOT, "dist");

/** Files the code reads beside itself (`new URL("./x", import.meta.url)`), copied next to the bundles. */
const ASSETS = [
  [join(ROOT, "infra/clickhouse/migrations"), "migrations"],
  [join(ROOT, "shared/src/billing/tiers.default.json"), "tiers.default.json"],
] as const;

/** The folders of services/: one deployable each. */
const services = () =>
  readdirSync(join(ROOT, "services"), { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name);

/** npm dependencies of every workspace: left as imports, not bundled. */
function npmDependencies(): string[] {
  const manifests = ["package.json", "shared/package.json", "infra/clickhouse/package.json"];
  for (const service of services()) manifests.push(`services/${service}/package.json`);
  const names = new Set<string>();
  for (const manifest of manifests) {
    const json = JSON.parse(readFileSync(join(ROOT, manifest), "utf8")) as Record<string, Record<string, string>>;
    for (const field of ["dependencies", "devDependencies"]) {
      for (const name of Object.keys(json[field] ?? {})) if (!name.startsWith("@keymeter/")) names.add(name);
    }
  }
  return [...names];
}

/** The entry points: every service's main, and the CLI. */
export function entryPoints(): Record<string, string> {
  const entries: Record<string, string> = { keymeter: join(ROOT, "services/admin-api/src/keymeter.ts") };
  for (const service of services()) entries[service] = join(ROOT, "services", service, "src/main.ts");
  return entries;
}

/**
 * A fresh folder for a build of its own (the pipeline runner, tests, benches): inside the
 * repository, because the bundles import npm packages from its node_modules.
 */
export function privateBuildDir(label: string): string {
  const parent = join(ROOT, "node_modules", ".cache", "keymeter-builds");
  mkdirSync(parent, { recursive: true });
  return mkdtempSync(join(parent, `${label}-`));
}

/** Bundles every service into `outDir` (dist/ by default; inside the repository); returns the paths written. */
export async function buildServices(outDir = DIST_DIR): Promise<string[]> {
  const entries = entryPoints();
  await build({
    entryPoints: entries,
    outdir: outDir,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    external: npmDependencies(),
    sourcemap: "linked",
    logLevel: "warning",
  });
  for (const [from, to] of ASSETS) cpSync(from, join(outDir, to), { recursive: true });
  return Object.keys(entries).map((name) => join(outDir, `${name}.mjs`));
}

if (process.argv[1] === import.meta.filename) {
  const written = await buildServices();
  process.stdout.write(`built ${written.length} bundles in ${DIST_DIR}\n`);
}
