import { type ChildProcessWithoutNullStreams, execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import type { MigrationTarget } from "@keymeter/shared/stores";

const ROOT = join(import.meta.dirname, "../..");
const HERE = join(import.meta.dirname, "chdb");
const REQUIREMENTS = join(HERE, "requirements.txt");
const RUNNER = join(HERE, "runner.py");
const run = promisify(execFile);
/*
 * Without chdb-core's declared pandas and pyarrow: the runner asks for text formats only, and
 * they make the first install several times slower and the venv hundreds of MB larger.
 */
const PIP_INSTALL = ["install", "--disable-pip-version-check", "--no-input", "--quiet", "--no-deps", "-r"];

/** Where the chdb-core virtual environment lives: under the git-ignored data folder. */
export function chdbVenvDir(): string {
  return join(process.env.KEYMETER_DATA_DIR ?? join(ROOT, ".data"), "chdb-venv");
}

/**
 * Makes sure `.data/chdb-venv` holds the pinned chdb-core (test/support/chdb/requirements.txt)
 * and returns its python. Fast when it does: a marker file holds the hash of the requirements
 * and the install arguments, so a changed pin or an interrupted install starts over. Throws an error that says what to do
 * when the environment cannot be made (no python3, no venv module, no PyPI).
 */
export async function ensureChdbVenv(): Promise<string> {
  const venv = chdbVenvDir();
  const python = join(venv, "bin", "python");
  const marker = join(venv, "keymeter-requirements.sha256");
  const wanted = createHash("sha256")
    .update(await readFile(REQUIREMENTS))
    .update(PIP_INSTALL.join(" "))
    .digest("hex");
  if (existsSync(python) && existsSync(marker) && (await readFile(marker, "utf8")).trim() === wanted) return python;

  await rm(venv, { recursive: true, force: true });
  const system = process.env.KEYMETER_PYTHON ?? "python3";
  const step = async (what: string, file: string, args: string[]) => {
    try {
      await run(file, args, { maxBuffer: 16 * 1024 * 1024, timeout: 280_000 });
    } catch (error) {
      const detail = (error as { stderr?: string }).stderr?.trim().split("\n").slice(-5).join("\n") ?? "";
      throw new Error(
        `chdb-core (current ClickHouse in process) could not be installed: ${what} failed (${(error as Error).message.split("\n")[0]}).\n` +
          `${detail}\nNeeds python3 with the venv module (KEYMETER_PYTHON names another interpreter) and PyPI; ` +
          `by hand: ${system} -m venv ${venv} && ${python} -m pip ${PIP_INSTALL.join(" ")} ${REQUIREMENTS}`,
      );
    }
  };
  await step(`'${system} -m venv'`, system, ["-m", "venv", venv]);
  await step("'pip install -r test/support/chdb/requirements.txt'", python, [
    "-m",
    "pip",
    ...PIP_INSTALL,
    REQUIREMENTS,
  ]);
  await writeFile(marker, `${wanted}\n`);
  return python;
}

interface Reply {
  ok: boolean;
  data?: string;
  error?: string;
  version?: string;
}

/**
 * A current ClickHouse engine in a child process (chdb-core, test/support/chdb/runner.py):
 * one session, so databases, tables and views live until {@link close}. Usable as the
 * migration runner's target.
 */
export class ChdbEngine implements MigrationTarget {
  private readonly waiting: Array<{ resolve: (reply: Reply) => void; reject: (error: Error) => void }> = [];
  private stderr = "";

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    /** `SELECT version()` of the engine, e.g. "26.9.2.1". */
    readonly version: Promise<string>,
  ) {}

  static start(python: string): ChdbEngine {
    const child = spawn(python, [RUNNER], { stdio: ["pipe", "pipe", "pipe"] });
    let ready: (reply: Reply) => void = () => {};
    let failed: (error: Error) => void = () => {};
    const version = new Promise<Reply>((resolve, reject) => {
      ready = resolve;
      failed = reject;
    }).then((reply) => reply.version ?? "");
    const engine = new ChdbEngine(child, version);
    engine.waiting.push({ resolve: ready, reject: failed });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      engine.stderr = (engine.stderr + chunk).slice(-4000);
    });
    createInterface({ input: child.stdout }).on("line", (line) => {
      engine.waiting.shift()?.resolve(JSON.parse(line) as Reply);
    });
    const fail = (why: string) => {
      for (const pending of engine.waiting.splice(0)) {
        pending.reject(new Error(`chdb runner ${why}: ${engine.stderr.trim() || "no output on stderr"}`));
      }
    };
    child.on("exit", (code, signal) => fail(`exited (${signal ?? code})`));
    child.on("error", (error) => fail(`could not start (${error.message})`));
    return engine;
  }

  /** Runs one statement; the output text in `format` (rows), or "" for statements without rows. */
  async query(sql: string, format?: string): Promise<string> {
    const reply = await new Promise<Reply>((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.child.stdin.write(`${JSON.stringify({ sql, format })}\n`);
    });
    if (!reply.ok) throw new Error(reply.error ?? "chdb runner answered an error without a message");
    return reply.data ?? "";
  }

  async command(sql: string): Promise<void> {
    await this.query(sql);
  }

  async select<T>(sql: string): Promise<T[]> {
    const text = await this.query(sql, "JSONEachRow");
    return text
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line) as T);
  }

  /** `INSERT INTO table FORMAT JSONEachRow` with the rows as the client sends them: JSON per line. */
  async insert(table: string, rows: readonly Record<string, unknown>[]): Promise<void> {
    await this.insertLines(
      `INSERT INTO ${table} FORMAT JSONEachRow`,
      rows.map((row) => JSON.stringify(row)),
    );
  }

  /** An INSERT statement followed by its JSONEachRow lines, as one request body carries them. */
  async insertLines(statement: string, lines: readonly string[]): Promise<void> {
    await this.query(`${statement}\n${lines.join("\n")}`);
  }

  /**
   * Rows in RowBinary, as the aggregator sends them after `INSERT ... FORMAT RowBinary`: read
   * from a file (the runner's requests are text), with the columns and types the rows follow.
   */
  async insertRowBinary(table: string, columns: ReadonlyArray<readonly [string, string]>, rows: Buffer): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), "chdb-rows-"));
    const file = join(dir, "rows.bin");
    try {
      await writeFile(file, rows);
      const names = columns.map(([name]) => name).join(", ");
      const structure = columns.map(([name, type]) => `${name} ${type}`).join(", ");
      await this.query(
        `INSERT INTO ${table} (${names}) SELECT * FROM file('${file}', 'RowBinary', '${structure.replaceAll("'", "\\'")}')`,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.stdin.end();
    await exited;
  }
}
