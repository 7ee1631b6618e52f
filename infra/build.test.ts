import { execFile } from "node:child_process";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { buildServices, entryPoints, privateBuildDir } from "./build";

const run = promisify(execFile);
const out = privateBuildDir("build-test");
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe("npm run build", () => {
  it("bundles every service and the CLI into files plain node runs, with the files they read", async () => {
    const written = await buildServices(out);
    expect(written.map((file) => file.slice(out.length + 1)).sort()).toEqual(
      Object.keys(entryPoints())
        .map((name) => `${name}.mjs`)
        .sort(),
    );
    expect(existsSync(join(out, "migrations", "0001_usage_events.sql"))).toBe(true);
    expect(existsSync(join(out, "tiers.default.json"))).toBe(true);

    const help = await run(process.execPath, [join(out, "keymeter.mjs"), "--help"]);
    expect(help.stdout).toContain("Usage: keymeter");
    // A service starts without tsx: it reads its config (and the shipped tiers) and says what is wrong.
    const failed = await run(process.execPath, [join(out, "aggregator.mjs")], {
      env: { ...process.env, KAFKA_EVENT_PARTITIONS: "zero" },
    }).catch((error: { stderr: string; code: number }) => error);
    expect(failed).toMatchObject({ code: 1, stderr: expect.stringContaining("KAFKA_EVENT_PARTITIONS is invalid") });
  }, 60_000);
});
