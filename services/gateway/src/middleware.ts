import type { IncomingMessage, ServerResponse } from "node:http";
import { toErrorResponse } from "@keymeter/shared/runtime";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Decision } from "./decision";
import type { Gateway } from "./gateway";

/** What the gateway decided about an admitted request, for the handlers behind it. */
const contexts = new WeakMap<IncomingMessage, Decision>();

/** The gateway's decision for a request it let through (key record, request id), if any. */
export function gatewayContext(req: IncomingMessage): Decision | undefined {
  return contexts.get(req);
}

export type NextFunction = (error?: unknown) => void;
export type ConnectMiddleware = (req: IncomingMessage, res: ServerResponse, next: NextFunction) => void;

/**
 * The gateway as `(req, res, next)` middleware: node:http, connect and Express. A refused
 * request is answered here (401/403/429 JSON) and `next` is not called; an admitted one gets
 * the RateLimit headers and goes on. The usage event is emitted when the response closes.
 */
export function gatewayMiddleware(gateway: Gateway): ConnectMiddleware {
  return (req, res, next) => {
    gateway.check(req).then(
      (decision) => {
        const counter = countResponseBytes(res);
        res.once("close", () => {
          // A client that went away before the response finished: 499, as nginx records it.
          const status = res.writableFinished ? res.statusCode : 499;
          gateway.record(decision, status, requestBytes(req), counter.bytes);
        });
        if (decision.error) {
          gateway.refuse(res, decision);
          return;
        }
        for (const [name, value] of decision.headers) res.setHeader(name, value);
        contexts.set(req, decision);
        next();
      },
      (error: unknown) => next(error),
    );
  };
}

/**
 * The gateway as Fastify hooks: `onRequest` checks (and answers refusals), `onResponse`
 * emits the usage event. Hooks are added to `app` itself, so they cover every route. Events
 * carry Fastify's route pattern (`/users/:id`) unless `useRoutePattern` is false, in which
 * case the gateway's route templater applies.
 */
export function registerGateway(
  app: FastifyInstance,
  gateway: Gateway,
  options: { useRoutePattern?: boolean } = {},
): void {
  const useRoutePattern = options.useRoutePattern ?? true;
  const decisions = new WeakMap<FastifyRequest, Decision>();
  app.addHook("onRequest", async (request, reply) => {
    const decision = await gateway.check(request.raw);
    const pattern = request.routeOptions.url;
    if (useRoutePattern && pattern?.startsWith("/")) decision.route = pattern.slice(0, 256);
    decisions.set(request, decision);
    for (const [name, value] of decision.headers) reply.header(name, value);
    if (decision.error) {
      const { status, body } = toErrorResponse(decision.error, decision.requestId);
      return reply.code(status).header("cache-control", "no-store").send(body);
    }
    contexts.set(request.raw, decision);
    return undefined;
  });
  app.addHook("onResponse", async (request, reply) => {
    const decision = decisions.get(request);
    if (!decision) return;
    const length = Number(reply.getHeader("content-length") ?? 0);
    gateway.record(decision, reply.statusCode, requestBytes(request.raw), Number.isFinite(length) ? length : 0);
  });
}

function requestBytes(req: IncomingMessage): number {
  const length = Number(req.headers["content-length"] ?? 0);
  return Number.isFinite(length) && length > 0 ? length : 0;
}

/** Counts body bytes written through `res.write`/`res.end`, whatever framework writes them. */
function countResponseBytes(res: ServerResponse): { bytes: number } {
  const counter = { bytes: 0 };
  const count = (chunk: unknown, encoding?: unknown) => {
    if (typeof chunk === "string") {
      counter.bytes += Buffer.byteLength(chunk, typeof encoding === "string" ? (encoding as BufferEncoding) : "utf8");
    } else if (chunk instanceof Uint8Array) {
      counter.bytes += chunk.byteLength;
    }
  };
  const write = res.write;
  const end = res.end;
  res.write = function (this: ServerResponse, ...args: Parameters<typeof write>) {
    count(args[0], args[1]);
    return write.apply(this, args);
  } as typeof write;
  res.end = function (this: ServerResponse, ...args: Parameters<typeof end>) {
    if (typeof args[0] !== "function") count(args[0], args[1]);
    return end.apply(this, args);
  } as typeof end;
  return counter;
}
