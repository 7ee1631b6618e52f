import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const SCRIPT = join(import.meta.dirname, "../../infra/local/services.sh");

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/**
 * A private copy of some services, on free ports with their own data folder, for tests that
 * stop and restart them (the shared services stay untouched for the other tests).
 */
export class IsolatedServices {
  private constructor(readonly env: Record<string, string>) {}

  static async create(): Promise<IsolatedServices> {
    return new IsolatedServices({
      KEYMETER_DATA_DIR: mkdtempSync(join(tmpdir(), "keymeter-isolated-")),
      KAFKA_PORT: String(await freePort()),
      KAFKA_CONTROLLER_PORT: String(await freePort()),
      CLICKHOUSE_HTTP_PORT: String(await freePort()),
      CLICKHOUSE_TCP_PORT: String(await freePort()),
      REDIS_PORT: String(await freePort()),
    });
  }

  get kafkaBrokers(): string[] {
    return [`127.0.0.1:${this.env.KAFKA_PORT}`];
  }

  get clickhouseUrl(): string {
    return `http://127.0.0.1:${this.env.CLICKHOUSE_HTTP_PORT}`;
  }

  up(...names: string[]): void {
    this.run("up", names);
  }

  down(...names: string[]): void {
    this.run("down", names);
  }

  get redisUrl(): string {
    return `redis://127.0.0.1:${this.env.REDIS_PORT}`;
  }

  /**
   * Freezes a running service with SIGSTOP (its whole process group): connections stay open
   * and nothing is answered, as with a hung broker, unlike a stop that refuses connections.
   */
  freeze(name: string): void {
    process.kill(-this.pid(name), "SIGSTOP");
  }

  /** Lets a frozen service run again (SIGCONT). */
  thaw(name: string): void {
    process.kill(-this.pid(name), "SIGCONT");
  }

  private pid(name: string): number {
    return Number(readFileSync(join(this.env.KEYMETER_DATA_DIR ?? "", name, "pid"), "utf8"));
  }

  /** Stops everything and deletes the data folder. */
  destroy(): void {
    this.run("down", []);
    rmSync(this.env.KEYMETER_DATA_DIR ?? "", { recursive: true, force: true });
  }

  private run(command: string, names: string[]): void {
    const result = spawnSync("bash", [SCRIPT, command, ...names], {
      env: { ...process.env, ...this.env },
      encoding: "utf8",
      timeout: 120_000,
    });
    if (result.status !== 0) throw new Error(`services.sh ${command} ${names.join(" ")} failed: ${result.stderr}`);
  }
}
