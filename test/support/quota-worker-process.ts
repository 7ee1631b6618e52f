import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";

const MAIN = join(import.meta.dirname, "../../services/quota-worker/src/main.ts");

const running = new Set<ChildProcess>();

/** Kills every quota worker process a test started and did not stop. */
export async function killAllQuotaWorkers(): Promise<void> {
  await Promise.all(
    [...running].map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once("exit", () => resolve());
          child.kill("SIGKILL");
        }),
    ),
  );
}

/** The quota worker's main as a real process (so it can be SIGKILLed). */
export function spawnQuotaWorker(env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, ["--import", "tsx", MAIN], {
    env: { ...process.env, METRICS_PORT: "0", LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  running.add(child);
  child.once("exit", () => running.delete(child));
  child.stderr?.on("data", (chunk: Buffer) => {
    if (process.env.KEYMETER_TEST_VERBOSE) process.stderr.write(chunk);
  });
  return child;
}
