import type { IncomingMessage, ServerResponse } from "node:http";
import { toErrorResponse } from "@keymeter/shared/runtime";
import type { FastifyInstance } from "fastify";
import type { Decision } from "./decision";
import type { Gateway } from "./gateway";
import { checkMetered, MeteredExchange } from "./metered-exchange";

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
 * the RateLimit headers and goes on, unless its client left during the check (then it is not
 * handed on). Exactly one usage event per request with an identified key, when the response
 * closes (499 if the client left first).
 */
export function gatewayMiddleware(gateway: Gateway): ConnectMiddleware {
  return (req, res, next) =>
    checkMetered(
      gateway,
      req,
      res,
      (decision) => {
        for (const [name, value] of decision.headers) res.setHeader(name, value);
        contexts.set(req, decision);
        decision.forwarded = true;
        next();
      },
      (error) => next(error),
    );
}

/**
 * The gateway as Fastify hooks: `onRequest` checks (and answers refusals); the usage event is
 * emitted when the raw response closes, so a client that leaves is metered too (499), and a
 * request whose client left during the check never reaches its handler. Hooks are added to
 * `app` itself, so they cover every route. Events of admitted requests carry Fastify's route
 * pattern (`/users/:id`) unless `useRoutePattern` is false, in which case the gateway's route
 * templater applies.
 */
export function registerGateway(
  app: FastifyInstance,
  gateway: Gateway,
  options: { useRoutePattern?: boolean } = {},
): void {
  const useRoutePattern = options.useRoutePattern ?? true;
  app.addHook("onRequest", async (request, reply) => {
    const exchange = new MeteredExchange(gateway, request.raw, reply.raw);
    const decision = await gateway.check(request.raw);
    const pattern = request.routeOptions.url;
    if (useRoutePattern && !decision.error && pattern?.startsWith("/")) decision.route = pattern.slice(0, 256);
    exchange.decided(decision);
    if (exchange.clientGone) {
      // Nobody to answer: stop here, the handler never runs.
      reply.hijack();
      reply.raw.destroy();
      return reply;
    }
    for (const [name, value] of decision.headers) reply.header(name, value);
    if (decision.error) {
      const { status, body } = toErrorResponse(decision.error, decision.requestId);
      return reply.code(status).header("cache-control", "no-store").send(body);
    }
    contexts.set(request.raw, decision);
    decision.forwarded = true;
    return undefined;
  });
}
