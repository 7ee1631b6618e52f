import { createHash } from "node:crypto";
import { defaultRouteTemplate, type UsageEventInput } from "@keymeter/shared/usage";
import { z } from "zod";

/** The fields of Kong's http-log payload that a usage event needs (Kong 2.x/3.x). */
export const kongLogSchema = z.object({
  request: z.object({
    method: z.string(),
    uri: z.string(),
    size: z.coerce.number().int().nonnegative().default(0),
    id: z.string().optional(),
  }),
  response: z.object({
    status: z.number().int(),
    size: z.coerce.number().int().nonnegative().default(0),
    headers: z.record(z.string(), z.unknown()).optional(),
  }),
  /** `proxy` is -1 when no upstream answered: Kong refused the request itself (auth, rate limit). */
  latencies: z.object({ request: z.number().nonnegative(), proxy: z.number(), kong: z.number() }).partial().default({}),
  /** Upstream attempts (Kong 1.x+); absent or empty when the request never reached an upstream. */
  tries: z.array(z.unknown()).optional(),
  /** Milliseconds since the epoch (Kong's own clock). */
  started_at: z.number().int().positive().max(8.64e15),
  /**
   * The subject is the consumer's custom_id, else its id: either a keymeter key id or an
   * alias of a key (`keymeter keys update <id> --alias <consumer id>`).
   */
  consumer: z
    .object({ id: z.string().optional(), custom_id: z.string().optional(), username: z.string().optional() })
    .optional(),
  route: z.object({ name: z.string().optional(), paths: z.array(z.string()).optional() }).optional(),
});

export type KongLog = z.infer<typeof kongLogSchema>;

/**
 * True when an upstream served the request. Kong answers some requests itself (key-auth 401,
 * rate-limiting 429): then `latencies.proxy` is -1, or `tries` is there and empty. Such a
 * request is recorded with units 0, like the gateway's own refusals: never billed.
 */
export function servedUpstream(entry: KongLog): boolean {
  if (entry.latencies.proxy !== undefined && entry.latencies.proxy < 0) return false;
  return entry.tries === undefined || entry.tries.length > 0;
}

/**
 * Maps one Kong http-log entry to a usage event. The event id is Kong's request id, or a
 * hash of the entry so that a re-sent log entry gets the same id (and is deduplicated).
 */
export function kongLogToEvent(entry: KongLog, raw: unknown, source: string): UsageEventInput {
  const requestId =
    entry.request.id ??
    (typeof entry.response.headers?.["x-kong-request-id"] === "string"
      ? entry.response.headers["x-kong-request-id"]
      : undefined) ??
    createHash("sha256").update(JSON.stringify(raw)).digest("hex").slice(0, 32);
  return {
    specversion: "1.0",
    id: requestId,
    source,
    type: "api.request",
    subject: entry.consumer?.custom_id ?? entry.consumer?.id ?? "",
    time: new Date(entry.started_at).toISOString(),
    data: {
      method: entry.request.method.toUpperCase(),
      // The same rule as the gateway's: one path, one rollup row, however it arrived.
      route: defaultRouteTemplate(entry.request.uri.split("?")[0] || "/", entry.request.method),
      status: entry.response.status,
      latency_ms: entry.latencies.request ?? 0,
      request_bytes: entry.request.size,
      response_bytes: entry.response.size,
      units: servedUpstream(entry) ? 1 : 0,
    },
  };
}
