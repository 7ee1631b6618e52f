import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

/** Whether each dependency answers right now, by name (`{ redis: true, kafka: false }`). */
export type HealthProbe = () => Record<string, boolean> | Promise<Record<string, boolean>>;

/** The `/healthz` answer: `{ ok, dependencies, down? }`. */
export interface HealthReport {
  ok: boolean;
  dependencies: Record<string, boolean>;
  down?: string[];
}

/** A probe that does not answer within this long counts as every dependency down. */
const PROBE_TIMEOUT_MS = 2_000;

/**
 * Runs a health probe: 200 when every dependency is up, 503 naming the ones that are down
 * (or `{ ok: false }` when the probe itself failed or hung). Every service's `/healthz` is this.
 */
export async function checkHealth(health?: HealthProbe): Promise<{ status: 200 | 503; report: HealthReport }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const dependencies = await Promise.race([
      Promise.resolve(health?.() ?? {}),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("health probe timed out")), PROBE_TIMEOUT_MS);
      }),
    ]);
    const down = Object.entries(dependencies)
      .filter(([, up]) => !up)
      .map(([name]) => name);
    const report: HealthReport = { ok: down.length === 0, dependencies, ...(down.length ? { down } : {}) };
    return { status: down.length === 0 ? 200 : 503, report };
  } catch {
    return { status: 503, report: { ok: false, dependencies: {} } };
  } finally {
    clearTimeout(timer);
  }
}

/** A dependency check that counts as down when it fails or takes longer than `timeoutMs`. */
export async function answersWithin(timeoutMs: number, check: () => Promise<boolean>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([check().catch(() => false), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A small HTTP server for operators: Prometheus text at `/metrics` and `/healthz`, which
 * answers 200 `{"ok":true,...}` or 503 naming the dependency that is down. Listen on it with
 * `listen()`.
 */
export function createMetricsServer(registry: Registry, health?: HealthProbe): Server {
  return createServer((req, res) => {
    const path = req.url?.split("?")[0];
    if (path === "/metrics") {
      registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
      return;
    }
    if (path === "/healthz") {
      void checkHealth(health).then(({ status, report }) =>
        res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(report)),
      );
      return;
    }
    res.writeHead(404).end();
  });
}
