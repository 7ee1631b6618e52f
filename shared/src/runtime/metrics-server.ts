import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

/** Whether each dependency answers right now, by name (`{ redis: true, kafka: false }`). */
export type HealthProbe = () => Record<string, boolean> | Promise<Record<string, boolean>>;

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
      Promise.resolve(health?.() ?? {}).then(
        (dependencies) => {
          const down = Object.entries(dependencies)
            .filter(([, up]) => !up)
            .map(([name]) => name);
          const body = JSON.stringify({ ok: down.length === 0, dependencies, ...(down.length ? { down } : {}) });
          res.writeHead(down.length === 0 ? 200 : 503, { "content-type": "application/json" }).end(body);
        },
        () => res.writeHead(503, { "content-type": "application/json" }).end('{"ok":false}'),
      );
      return;
    }
    res.writeHead(404).end();
  });
}
