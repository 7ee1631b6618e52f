import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "../..");
const README = readFileSync(join(ROOT, "README.md"), "utf8");

/** The text of the README section `## <title>`, up to the next `## `. */
function section(title: string): string {
  const start = README.indexOf(`\n## ${title}\n`);
  if (start < 0) throw new Error(`README has no section "## ${title}"`);
  const end = README.indexOf("\n## ", start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}

interface Row {
  promise: string;
  file: string;
  test: string;
}

/** Rows of every `| promise | test file | test |` table in `text`. */
function promiseRows(text: string): Row[] {
  const rows: Row[] = [];
  let inTable = false;
  for (const line of text.split("\n")) {
    const cells = line.trim().startsWith("|")
      ? line
          .trim()
          .slice(1, -1)
          .split("|")
          .map((c) => c.trim())
      : undefined;
    if (!cells) {
      inTable = false;
      continue;
    }
    if (cells.join("|") === "promise|test file|test") {
      inTable = true;
      continue;
    }
    if (!inTable || cells.every((c) => /^-+$/.test(c))) continue;
    const [promise = "", file = "", test = ""] = cells;
    rows.push({ promise, file: file.replace(/`/g, ""), test });
  }
  return rows;
}

/** Whether `source` declares a test (it/test) with exactly this name. */
function declaresTest(source: string, name: string): boolean {
  const literal = JSON.stringify(name)
    .slice(1, -1)
    .replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return new RegExp(`\\b(it|test)(\\.\\w+)?\\(\\s*["'\`]${literal}["'\`]`).test(source);
}

describe("README promises are each named by a test that exists", () => {
  for (const title of ["Ingest path", "The gateway"]) {
    it(`every row of the promise table in "${title}" names an existing test`, () => {
      const rows = promiseRows(section(title));
      expect(rows.length, `no promise table in "${title}"`).toBeGreaterThanOrEqual(10);
      const problems: string[] = [];
      for (const row of rows) {
        if (!row.promise || !row.file || !row.test) {
          problems.push(`incomplete row: ${JSON.stringify(row)}`);
          continue;
        }
        const path = join(ROOT, row.file);
        if (!existsSync(path)) problems.push(`${row.file}: no such file (for "${row.promise}")`);
        else if (!declaresTest(readFileSync(path, "utf8"), row.test))
          problems.push(`${row.file}: no test named "${row.test}" (for "${row.promise}")`);
      }
      expect(problems).toEqual([]);
    });
  }

  it("finds a test by its exact name only", () => {
    const source = 'it("does a thing", () => {});\n  it(\n    "wraps a long name",\n';
    expect(declaresTest(source, "does a thing")).toBe(true);
    expect(declaresTest(source, "wraps a long name")).toBe(true);
    expect(declaresTest(source, "does a")).toBe(false);
    expect(declaresTest(source, "does a thing that is gone")).toBe(false);
  });
});
