import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const ROOT = join(import.meta.dirname, "../..");

/**
 * The deployables are the folders of services/. Three places must name each of them, and
 * this test fails when one is forgotten: the root npm scripts (`npm run <name>`), the local
 * pipeline runner (which starts each as a child process) and docker-compose.yml.
 */
describe("the list of services", () => {
  const deployables = readdirSync(join(ROOT, "services"), { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort();

  it("has an npm script that starts each service's main", () => {
    const scripts = (
      JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> }
    ).scripts;
    for (const name of deployables) expect(scripts[name], `npm run ${name}`).toBe(`tsx services/${name}/src/main.ts`);
  });

  it("is what the local pipeline starts", () => {
    const runner = readFileSync(join(ROOT, "infra/local/pipeline.ts"), "utf8");
    const started = [...runner.matchAll(/\bstart\("([a-z0-9-]+)"/g)].map((match) => match[1]).sort();
    expect(started).toEqual(deployables);
  });

  it("is in the compose topology", () => {
    const compose = parse(readFileSync(join(ROOT, "docker-compose.yml"), "utf8")) as { services: object };
    for (const name of deployables) expect(Object.keys(compose.services)).toContain(name);
  });
});
