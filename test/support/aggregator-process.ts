import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import type { TestPipeline } from "./pipeline";

const MAIN = join(import.meta.dirname, "../../services/aggregator/src/main.ts");
const CRASHING = join(import.meta.dirname, "crashing-aggregator.ts");

const running = new Set<ChildProcess>();

/** Kills every aggregator process a test started and did not stop (a failed test must not leak one). */
export async function killAllAggregators(): Promise<void> {
  await Promise.all([...running].map(killHard));
}

/** What an aggregator process wrote, when asked to keep it. */
export interface ProcessOutput {
  stdout: string;
  stderr: string;
}

/**
 * The aggregator as a real process (so it can be SIGKILLed), configured for `pipeline`.
 * With `output`, its stdout (the JSON log) and stderr are collected there. `entry` replaces
 * main.ts (crashing-aggregator.ts).
 */
export function spawnAggregator(
  pipeline: TestPipeline,
  env: Record<string, string> = {},
  output?: ProcessOutput,
  entry = MAIN,
): ChildProcess {
  const child = spawn(process.execPath, ["--import", "tsx", entry], {
    env: {
      ...process.env,
      KAFKA_BROKERS: (pipeline.kafkaBrokers ?? []).join(","),
      CLICKHOUSE_URL: pipeline.connection.url,
      CLICKHOUSE_DATABASE: pipeline.connection.database,
      REDIS_URL: pipeline.redisUrl,
      KAFKA_TOPIC_PREFIX: `${pipeline.name}.`,
      AGGREGATOR_GROUP_ID: `${pipeline.name}-group`,
      DEDUP_KEY_PREFIX: pipeline.dedupKeyPrefix,
      METRICS_PORT: "0",
      // The minimum the broker allows: a killed instance's partitions move on after 6 s.
      AGGREGATOR_SESSION_TIMEOUT_MS: "6000",
      LOG_LEVEL: "warn",
      ...env,
    },
    stdio: ["ignore", output ? "pipe" : "ignore", "pipe"],
  });
  child.stdout?.on("data", (chunk: Buffer) => {
    if (output) output.stdout += chunk.toString();
  });
  running.add(child);
  child.once("exit", () => running.delete(child));
  child.stderr?.on("data", (chunk: Buffer) => {
    if (output) output.stderr += chunk.toString();
    if (process.env.KEYMETER_TEST_VERBOSE) process.stderr.write(chunk);
  });
  return child;
}

export function killHard(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGKILL");
  });
}

export function stopGracefully(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.once("exit", (code) => resolve(code));
    child.kill("SIGTERM");
  });
}

export type CrashMoment = "before-insert" | "after-insert" | "after-mark";

export interface CrashReport {
  at: CrashMoment;
  /** The partition of the batch it died on. */
  partition: number;
  /** `source\nid` (DedupWindow.member) of that batch's events. */
  members: string[];
  /** How the process ended: must be the SIGKILL it sent itself. */
  signal: NodeJS.Signals | null;
}

/**
 * An aggregator process that SIGKILLs itself at `at` on its `onBatch`-th batch with rows
 * (test/support/crashing-aggregator.ts). `crashed` resolves once it is dead, with its report:
 * the evidence that the moment was reached, rather than a kill that fell on an idle process.
 */
export function spawnCrashingAggregator(
  pipeline: TestPipeline,
  at: CrashMoment,
  options: { onBatch?: number; env?: Record<string, string> } = {},
): { child: ChildProcess; crashed: Promise<CrashReport> } {
  const child = spawnAggregator(
    pipeline,
    {
      KEYMETER_CRASH_AT: at,
      KEYMETER_CRASH_ON_BATCH: String(options.onBatch ?? 1),
      // One batch at a time, so each INSERT holds one partition's batch and the report names it.
      AGGREGATOR_CONCURRENCY: "1",
      ...options.env,
    },
    undefined,
    CRASHING,
  );
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const crashed = new Promise<CrashReport>((resolve, reject) => {
    child.once("exit", (code, signal) => {
      const line = /KEYMETER_CRASH (\{.*\})/.exec(stderr)?.[1];
      if (!line) return reject(new Error(`aggregator exited (code ${code}, ${signal}) without crashing: ${stderr}`));
      const report = JSON.parse(line) as Omit<CrashReport, "signal">;
      resolve({ ...report, signal });
    });
  });
  return { child, crashed };
}
