import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { bearerToken, type KeyAttributor } from "@keymeter/shared/api-keys";
import {
  AppError,
  checkHealth,
  describeIssues,
  type HealthProbe,
  type Logger,
  RateLimitedLog,
  toErrorResponse,
} from "@keymeter/shared/runtime";
import {
  attributeEvents,
  encodeEvent,
  parseUsageEvent,
  USAGE_EVENT_TYPE,
  type UsageEvent,
  type UsageEventPublisher,
} from "@keymeter/shared/usage";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import { kongLogSchema, kongLogToEvent } from "./kong-log";

export interface IngestAppOptions {
  /** Where accepted events go (KafkaPublisher); a 202 waits for it. */
  publisher: UsageEventPublisher;
  tokens: string[];
  logger: Logger;
  maxBodyBytes: number;
  maxBatchEvents: number;
  kongSource: string;
  /**
   * Resolves key aliases to key ids and fills in customer and tier at receive time. Without
   * it (or while Redis is down) events go on as sent, and the aggregator attributes them.
   */
  attribution?: KeyAttributor;
  /** Further dependencies for `/healthz` (Kafka is judged by the last publish). */
  health?: HealthProbe;
}

/** How much of an oversized body is read and discarded before the 413, so the client can read it. */
const MAX_DRAIN_BYTES = 64 * 1024 * 1024;
const DRAIN_TIMEOUT_MS = 10_000;

interface Rejection {
  index: number;
  error: string;
}

const STRUCTURED = "application/cloudevents+json";
const BATCH = "application/cloudevents-batch+json";

/**
 * The HTTP ingest API:
 *   POST /v1/events  CloudEvents structured (one event), batch (an array) or binary (ce-* headers)
 *   POST /v1/kong    Kong http-log payloads (one entry, or an array with max_batch_size > 1)
 * Answers 202 with per-event errors once Kafka acknowledged the valid events; 400 when none
 * is valid; 503 (retry with the same ids) when Kafka is unavailable.
 */
export function buildIngestApp(options: IngestAppOptions): FastifyInstance {
  const app = Fastify({
    bodyLimit: options.maxBodyBytes,
    genReqId: () => randomUUID(),
    logger: false,
  });
  const tokenDigests = options.tokens.map(digest);
  const warnings = new RateLimitedLog(options.logger);
  /** False after a publish Kafka did not acknowledge, until the next acknowledged one. */
  let kafkaUp = true;

  app.addContentTypeParser([STRUCTURED, BATCH], { parseAs: "string" }, (_req, body, done) => {
    try {
      done(null, JSON.parse(String(body)));
    } catch {
      done(new AppError("bad_request", "body is not valid JSON"), undefined);
    }
  });

  app.addHook("onRequest", async (request) => {
    if (request.url === "/healthz") return;
    const token = bearerToken(request.headers.authorization) ?? "";
    const presented = digest(token);
    // Compare digests in constant time against every configured token.
    const valid = tokenDigests.reduce((ok, expected) => timingSafeEqual(presented, expected) || ok, false);
    if (!token || !valid)
      throw new AppError("unauthenticated", "missing or wrong ingest token (Authorization: Bearer <token>)");
  });

  app.setErrorHandler(async (error, request, reply) => {
    const mapped = mapFrameworkError(error);
    const { status, body } = toErrorResponse(mapped, String(request.id));
    if (status >= 500 && !(mapped instanceof AppError && mapped.retryable)) {
      options.logger.error({ err: error, requestId: request.id }, "ingest request failed");
    }
    if (status === 503) reply.header("retry-after", "1");
    // The client may still be sending an oversized body: answering now would close the socket
    // under it (a broken pipe instead of the 413). Read the rest first, within bounds.
    if (status === 413) await discardBody(request.raw, MAX_DRAIN_BYTES, DRAIN_TIMEOUT_MS);
    return reply.status(status).send(body);
  });

  app.post("/v1/events", async (request, reply) => {
    const [status, body] = await accept(limitBatch(eventsFromRequest(request)).map(parseUsageEvent), request.id);
    return reply.status(status).send(body);
  });

  app.post("/v1/kong", async (request, reply) => {
    const entries = limitBatch(Array.isArray(request.body) ? request.body : [request.body]);
    const parsed = entries.map((raw) => {
      const entry = kongLogSchema.safeParse(raw);
      if (!entry.success) return { ok: false as const, error: describeIssues(entry.error) };
      return parseUsageEvent(kongLogToEvent(entry.data, raw, options.kongSource));
    });
    const [status, body] = await accept(parsed, request.id);
    return reply.status(status).send(body);
  });

  app.get("/healthz", async (_request, reply) => {
    const { status, report } = await checkHealth(async () => ({ kafka: kafkaUp, ...(await options.health?.()) }));
    return reply.status(status).send(report);
  });

  function eventsFromRequest(request: FastifyRequest): unknown[] {
    // Media types are case-insensitive (RFC 9110); parameters such as charset are allowed.
    const contentType = (request.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
    if (contentType === BATCH) {
      if (!Array.isArray(request.body))
        throw new AppError("bad_request", "a batch body must be a JSON array of events");
      return request.body;
    }
    if (contentType === STRUCTURED) return [request.body];
    if (request.headers["ce-specversion"] !== undefined) return [binaryModeEvent(request)];
    throw new AppError(
      "unsupported_media_type",
      `send ${STRUCTURED}, ${BATCH}, or binary mode with ce-* headers (got ${contentType || "no content type"})`,
    );
  }

  /** Counted before any event is validated: a body of many tiny items must not cost a validation each. */
  function limitBatch(items: unknown[]): unknown[] {
    if (items.length > options.maxBatchEvents) {
      throw new AppError(
        "payload_too_large",
        `at most ${options.maxBatchEvents} events per request, got ${items.length}`,
      );
    }
    return items;
  }

  async function accept(results: ReturnType<typeof parseUsageEvent>[], requestId: string): Promise<[number, unknown]> {
    let accepted: UsageEvent[] = [];
    const rejected: Rejection[] = [];
    results.forEach((result, index) => {
      if (result.ok) accepted.push(result.event);
      else rejected.push({ index, error: result.error });
    });
    if (rejected.length > 0) {
      // Senders such as Kong ignore a 2xx body: the log is where refused usage shows up.
      options.logger.warn({ rejected: rejected.length, first: rejected[0]?.error }, "ingest refused invalid events");
    }
    if (accepted.length === 0) {
      const { body } = toErrorResponse(new AppError("invalid_event", "no valid event in the request"), requestId);
      return [400, { ...body, accepted: 0, rejected }];
    }
    let unknownSubjects: string[] = [];
    if (options.attribution) {
      try {
        const attributed = await attributeEvents(accepted, options.attribution);
        accepted = attributed.events;
        unknownSubjects = [...attributed.unknownSubjects];
      } catch (error) {
        // The aggregator attributes what arrives without customer and tier: publish as sent.
        warnings.log(
          "warn",
          "attribution",
          { err: (error as Error).message },
          "could not attribute events (key registry unavailable); the aggregator will",
        );
      }
    }
    if (unknownSubjects.length > 0) {
      options.logger.warn({ subjects: unknownSubjects.slice(0, 10) }, "events for keys the registry does not know");
    }
    try {
      await options.publisher.publish(accepted.map(encodeEvent));
      kafkaUp = true;
    } catch (error) {
      kafkaUp = false;
      throw new AppError("service_unavailable", "Kafka did not acknowledge the events; retry with the same event ids", {
        retryable: true,
        cause: error,
      });
    }
    // Unknown subjects are accepted and stored (reported in ClickHouse's v_unknown_keys), never dropped.
    return [
      202,
      {
        accepted: accepted.length,
        rejected,
        ...(unknownSubjects.length > 0 ? { unknown_subjects: unknownSubjects } : {}),
      },
    ];
  }

  return app;
}

/** Binary content mode: attributes in ce-* headers, the body is the event's data. */
function binaryModeEvent(request: FastifyRequest): unknown {
  const header = (name: string) => {
    const value = request.headers[`ce-${name}`];
    return Array.isArray(value) ? value[0] : value;
  };
  return {
    specversion: header("specversion"),
    id: header("id"),
    source: header("source"),
    type: header("type") ?? USAGE_EVENT_TYPE,
    subject: header("subject"),
    time: header("time"),
    data: request.body,
  };
}

/**
 * Reads and discards what is left of a request body, up to `maxBytes` or `timeoutMs`.
 * Node closes the connection after answering a request whose body was not read to the end;
 * a client still writing then gets a broken pipe (EPIPE/ECONNRESET) instead of the answer.
 * Past either bound the answer goes out anyway and the connection is cut.
 */
function discardBody(raw: IncomingMessage, maxBytes: number, timeoutMs: number): Promise<void> {
  if (raw.complete || raw.readableEnded || raw.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    let bytes = 0;
    const done = () => {
      clearTimeout(timer);
      raw.off("data", onData);
      raw.off("end", done);
      raw.off("error", done);
      raw.off("close", done);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      bytes += chunk.length;
      if (bytes > maxBytes) done();
    };
    const timer = setTimeout(done, timeoutMs);
    raw.on("data", onData);
    raw.once("end", done);
    raw.once("error", done);
    raw.once("close", done);
  });
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

/** Fastify's own errors (body too large, bad JSON, unknown media type) as AppErrors. */
function mapFrameworkError(error: unknown): unknown {
  if (error instanceof AppError) return error;
  const code = (error as { code?: string }).code;
  if (code === "FST_ERR_CTP_BODY_TOO_LARGE")
    return new AppError("payload_too_large", "request body is over the size limit");
  if (code === "FST_ERR_CTP_INVALID_MEDIA_TYPE")
    return new AppError("unsupported_media_type", "unsupported content type");
  if (code === "FST_ERR_CTP_INVALID_JSON_BODY" || code === "FST_ERR_CTP_EMPTY_JSON_BODY") {
    return new AppError("bad_request", "body is not valid JSON");
  }
  const status = (error as { statusCode?: number }).statusCode;
  if (status !== undefined && status >= 400 && status < 500)
    return new AppError("bad_request", (error as Error).message);
  return error;
}
