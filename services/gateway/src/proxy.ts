import { randomUUID } from "node:crypto";
import {
  Agent,
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type Server,
  type ServerResponse,
} from "node:http";
import { AppError, type Logger } from "@keymeter/shared/runtime";
import type { Gateway } from "./gateway";
import { gatewayContext, gatewayMiddleware } from "./middleware";

export interface ProxyOptions {
  gateway: Gateway;
  /** The API behind the gateway; its path is prepended to every forwarded path. */
  upstream: URL;
  logger: Logger;
  /** Upstream response timeout. */
  timeoutMs?: number;
  /** Kept-alive connections to the upstream. */
  maxSockets?: number;
}

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
]);

/**
 * The reference gateway: a node:http reverse proxy that runs {@link gatewayMiddleware} and
 * forwards admitted requests to the upstream, without the API key and with the key id,
 * customer, tier and request id in `X-Keymeter-*` headers. It forwards the normalized path
 * the scopes were checked against, so `/v1/../admin` cannot slip past a route restriction.
 */
export function createGatewayProxy(options: ProxyOptions): Server {
  if (options.upstream.protocol !== "http:") throw new AppError("config_invalid", "UPSTREAM_URL must be an http URL");
  const middleware = gatewayMiddleware(options.gateway);
  const agent = new Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 256, noDelay: true });
  const basePath = options.upstream.pathname.replace(/\/$/, "");
  const timeoutMs = options.timeoutMs ?? 30_000;

  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const decision = gatewayContext(req);
    if (!decision?.key) {
      options.gateway.refuse(res, decision ?? fallbackDecision(), new AppError("internal", "internal error"));
      return;
    }
    const headers = forwardHeaders(req.headers, decision.keySource);
    headers["x-request-id"] = decision.requestId;
    headers["x-keymeter-key-id"] = decision.key.id;
    headers["x-keymeter-customer-id"] = decision.key.customer_id;
    headers["x-keymeter-tier"] = decision.key.tier;
    const remote = req.socket.remoteAddress;
    if (remote) {
      const prior = req.headers["x-forwarded-for"];
      headers["x-forwarded-for"] = prior ? `${String(prior)}, ${remote}` : remote;
    }
    const upstreamRequest = request(
      {
        agent,
        host: options.upstream.hostname,
        port: options.upstream.port || 80,
        method: req.method,
        path: basePath + decision.forwardPath,
        headers,
        timeout: timeoutMs,
      },
      (upstreamResponse) => {
        const responseHeaders = forwardHeaders(upstreamResponse.headers, undefined);
        res.writeHead(upstreamResponse.statusCode ?? 502, responseHeaders);
        upstreamResponse.pipe(res);
      },
    );
    upstreamRequest.on("timeout", () => upstreamRequest.destroy(new Error("upstream timed out")));
    // A client that goes away takes its upstream request with it.
    res.once("close", () => {
      if (!res.writableFinished) upstreamRequest.destroy();
    });
    upstreamRequest.on("error", (error) => {
      options.logger.warn({ request_id: decision.requestId, err: error.message }, "upstream request failed");
      decision.error = new AppError("service_unavailable", "the upstream API is unavailable", { retryable: true });
      if (!res.headersSent) options.gateway.refuse(res, decision);
      else res.destroy();
    });
    // Without a body there is nothing to stream: send the request now, not after req's 'end'.
    if (req.headers["content-length"] === undefined && req.headers["transfer-encoding"] === undefined) {
      upstreamRequest.end();
      req.resume();
    } else {
      req.pipe(upstreamRequest);
    }
  };

  return createServer((req, res) => {
    middleware(req, res, (error) => {
      if (error) {
        options.logger.error({ err: (error as Error).message }, "gateway middleware failed");
        options.gateway.refuse(res, fallbackDecision(), new AppError("internal", "internal error"));
        return;
      }
      forward(req, res);
    });
  });
}

function forwardHeaders(
  source: IncomingHttpHeaders,
  keySource: "authorization" | "x-api-key" | "query" | undefined,
): Record<string, string | string[]> {
  const connectionTokens = String(source.connection ?? "")
    .toLowerCase()
    .split(",")
    .map((token) => token.trim());
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(source)) {
    if (value === undefined || HOP_BY_HOP.has(name) || connectionTokens.includes(name)) continue;
    // The upstream never sees the API key, nor X-Keymeter-* headers it did not get from the gateway.
    if (name === "x-api-key" || (name === "authorization" && keySource === "authorization")) continue;
    if (name.startsWith("x-keymeter-")) continue;
    out[name] = value;
  }
  return out;
}

function fallbackDecision() {
  return {
    requestId: randomUUID(),
    startedAt: 0,
    receivedAt: 0,
    method: "GET",
    path: "/",
    forwardPath: "/",
    route: "/",
    headers: [],
  };
}
