import type { IncomingMessage, Server, ServerResponse } from "node:http";
import * as http from "node:http";
import * as https from "node:https";
import type { Duplex } from "node:stream";
import { rootCertificates } from "node:tls";
import { AppError, type Logger, plainRequestId, toErrorResponse } from "@keymeter/shared/runtime";
import type { Decision } from "./decision";
import type { Gateway } from "./gateway";
import { CountingResponse, checkMetered, type MeteredExchange } from "./metered-exchange";

export interface ProxyOptions {
  gateway: Gateway;
  /** The API behind the gateway (http or https); its path is prepended to every forwarded path. */
  upstream: URL;
  logger: Logger;
  /** Upstream idle timeout (no byte either way for this long); WebSocket tunnels have none. */
  timeoutMs?: number;
  /** Kept-alive connections to the upstream. */
  maxSockets?: number;
  /** PEM certificates trusted for an https upstream, besides Node's CA store (UPSTREAM_CA_FILE). */
  ca?: string | Buffer;
}

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
]);

/**
 * Client headers never forwarded, compared after folding `_` into `-` (WSGI and CGI upstreams
 * read `X_Request_Id` as `X-Request-Id`): ours, which the gateway sets itself, and those that
 * make an upstream act on another method or path than the one the key was checked for.
 */
const DROPPED = new Set([
  "x-api-key",
  "x-request-id",
  "x-client-request-id",
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
  "x-original-url",
  "x-rewrite-url",
  // Answered by this server already (100 Continue).
  "expect",
]);
/** Dropped when spelled with `_`: a twin of a header the gateway reads or sets. */
const NO_UNDERSCORE_TWIN = new Set([
  "authorization",
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-real-ip",
  "content-length",
]);

/**
 * The reference gateway: a node:http reverse proxy in front of an http or https upstream. It
 * checks each request with the gateway core and forwards admitted ones, streaming bodies both
 * ways, without the API key and with the key id, customer, tier and request id in
 * `X-Keymeter-*` and `X-Request-Id` headers. It forwards the canonical path the scopes were
 * checked against, so `/v1/../admin` cannot slip past a route restriction. WebSocket (any
 * `Upgrade`) requests are checked the same way and tunnelled, metered as one request (101).
 *
 * Metering is exact: every request forwarded upstream produces one usage event; a client gone
 * before forwarding is not forwarded (499, units 0); a request the upstream has in full is not
 * cancelled before it was all sent, so units 1 means the upstream received it all.
 */
export function createGatewayProxy(options: ProxyOptions): Server {
  const { gateway, logger, upstream } = options;
  if (upstream.protocol !== "http:" && upstream.protocol !== "https:") {
    throw new AppError("config_invalid", "UPSTREAM_URL must be an http or https URL");
  }
  const secure = upstream.protocol === "https:";
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 256, noDelay: true };
  // `ca` replaces the default roots in node: keep them and add the custom ones.
  const ca = options.ca === undefined ? undefined : [...rootCertificates, options.ca.toString()];
  const agent = secure ? new https.Agent({ ...agentOptions, ...(ca ? { ca } : {}) }) : new http.Agent(agentOptions);
  const send = secure ? https.request : http.request;
  // SNI and certificate checks use this name (node sets servername from `host` unless it is an IP).
  const host = upstream.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = upstream.port || (secure ? 443 : 80);
  const basePath = upstream.pathname.replace(/\/$/, "");
  const timeoutMs = options.timeoutMs ?? 30_000;

  // Headers go to node as flat [name, value, ...] lists, which it writes as they are, instead of
  // validating and storing them one by one: so it leaves `Host` to us.
  const hostHeader = upstream.host;
  const upstreamRequest = (req: IncomingMessage, decision: Decision, headers: string[]) =>
    send({ agent, host, port, method: req.method, path: basePath + decision.forwardPath, headers, timeout: timeoutMs });

  const forward = (req: IncomingMessage, res: ServerResponse, decision: Decision, exchange: MeteredExchange) => {
    const release = exchange.hold();
    const outgoing = upstreamRequest(req, decision, upstreamHeaders(req, decision, hostHeader));
    // Handed over in full: the upstream has the whole request (units 1 from here on).
    outgoing.once("finish", () => {
      decision.forwarded = true;
    });
    outgoing.once("close", release);
    outgoing.on("timeout", () => outgoing.destroy(new Error("upstream timed out")));
    outgoing.on("response", (incoming) => {
      res.writeHead(incoming.statusCode ?? 502, incoming.statusMessage, responseHeaders(incoming, decision));
      incoming.pipe(res);
    });
    res.once("close", () => {
      if (res.writableFinished) return;
      // The client left. A request it had not finished sending is cut off (the upstream cannot
      // serve it); one complete is first handed over in full, then its answer is abandoned.
      if (!req.complete || outgoing.writableFinished) outgoing.destroy();
      else outgoing.once("finish", () => outgoing.destroy());
    });
    outgoing.on("error", (error) => {
      if (exchange.clientGone) return;
      logger.warn({ request_id: decision.requestId, err: error.message }, "upstream request failed");
      decision.error = new AppError("service_unavailable", "the upstream API is unavailable", { retryable: true });
      if (!res.headersSent) gateway.refuse(res, decision);
      else res.destroy();
    });
    // Without a body there is nothing to stream: send the request now, not after req's 'end'.
    if (req.headers["content-length"] === undefined && req.headers["transfer-encoding"] === undefined) {
      outgoing.end();
      req.resume();
    } else {
      req.pipe(outgoing);
    }
  };

  const tunnel = (req: IncomingMessage, socket: Duplex, head: Buffer, decision: Decision) => {
    let recorded = false;
    const record = (status: number, bytes = 0) => {
      if (recorded) return;
      recorded = true;
      gateway.record(decision, status, 0, bytes);
    };
    const headers = upstreamHeaders(req, decision, hostHeader);
    headers.push("connection", "upgrade", "upgrade", req.headers.upgrade ?? "websocket");
    const outgoing = upstreamRequest(req, decision, headers);
    outgoing.once("finish", () => {
      decision.forwarded = true;
    });
    outgoing.on("timeout", () => outgoing.destroy(new Error("upstream timed out")));
    socket.once("close", () => {
      if (recorded) return;
      // The client left before the exchange was done: as for plain requests, a request is
      // handed over in full before it is abandoned, and metered once that settled.
      outgoing.once("close", () => record(499));
      if (outgoing.writableFinished) outgoing.destroy();
      else outgoing.once("finish", () => outgoing.destroy());
    });
    outgoing.on("upgrade", (incoming, upstreamSocket, upstreamHead) => {
      upstreamSocket.setTimeout(0);
      if (socket.destroyed) {
        upstreamSocket.destroy();
        return;
      }
      socket.write(rawHead(101, "Switching Protocols", [...decision.headers, ...rawHeaderPairs(incoming)]));
      if (upstreamHead.length > 0) socket.write(upstreamHead);
      if (head.length > 0) upstreamSocket.write(head);
      // Either side ending ends the tunnel (once what it sent is flushed): nobody half-closes a WebSocket.
      for (const [from, to] of [
        [upstreamSocket, socket],
        [socket, upstreamSocket],
      ] as const) {
        from.pipe(to, { end: false });
        from.once("end", () => to.end(() => to.destroy()));
        from.once("close", () => to.destroy());
      }
      upstreamSocket.on("error", () => socket.destroy());
      record(101);
    });
    // The upstream declined to switch: pass its answer on, then close.
    outgoing.on("response", (incoming) => {
      const pairs = rawHeaderPairs(incoming).filter(([name]) => !HOP_BY_HOP.has(name.toLowerCase()));
      socket.write(
        rawHead(incoming.statusCode ?? 502, incoming.statusMessage ?? "", [
          ...decision.headers,
          ...pairs,
          ["connection", "close"],
        ]),
      );
      let bytes = 0;
      incoming.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
      });
      incoming.pipe(socket);
      incoming.once("end", () => record(incoming.statusCode ?? 502, bytes));
    });
    outgoing.on("error", (error) => {
      if (socket.destroyed) return;
      logger.warn({ request_id: decision.requestId, err: error.message }, "upstream upgrade failed");
      decision.error = new AppError("service_unavailable", "the upstream API is unavailable", { retryable: true });
      record(writeRawError(socket, decision));
    });
    outgoing.end();
  };

  const server = http.createServer({ ServerResponse: CountingResponse }, (req, res) =>
    checkMetered(
      gateway,
      req,
      res,
      (decision, exchange) => forward(req, res, decision, exchange),
      (error) => {
        logger.error({ err: (error as Error).message }, "gateway check failed");
        res.destroy();
      },
    ),
  );
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Errors end in 'close', which is handled.
    socket.on("error", () => {});
    let gone = false;
    socket.once("close", () => {
      gone = true;
    });
    gateway.check(req).then(
      (decision) => {
        if (gone || socket.destroyed) {
          gateway.record(decision, 499, 0, 0);
          return;
        }
        if (decision.error) {
          gateway.record(decision, writeRawError(socket, decision), 0, 0);
          return;
        }
        tunnel(req, socket, head, decision);
      },
      (error: unknown) => {
        logger.error({ err: (error as Error).message }, "gateway check failed");
        socket.destroy();
      },
    );
  });
  return server;
}

/**
 * What the upstream gets, as a flat header list: the client's headers less the key, ours and
 * hop-by-hop ones, plus ours and `Host`.
 */
function upstreamHeaders(req: IncomingMessage, decision: Decision, hostHeader: string): string[] {
  const source = req.headers;
  const connectionNames = source.connection === undefined ? undefined : connectionTokens(source.connection);
  const out: string[] = ["host", hostHeader];
  for (const name in source) {
    const value = source[name];
    if (value === undefined) continue;
    // node lowercases names; `_` folds into `-` as WSGI/CGI upstreams do.
    const folded = name.includes("_") ? name.replaceAll("_", "-") : name;
    if (HOP_BY_HOP.has(folded) || connectionNames?.includes(name) || connectionNames?.includes(folded)) continue;
    if (DROPPED.has(folded) || folded.startsWith("x-keymeter-")) continue;
    if (folded !== name && NO_UNDERSCORE_TWIN.has(folded)) continue;
    // The upstream never sees the API key.
    if (name === "authorization" && decision.keySource === "authorization") continue;
    if (name === "x-forwarded-for") continue;
    pushHeader(out, name, value);
  }
  const key = decision.key;
  out.push("x-request-id", decision.requestId);
  const clientRequestId = plainRequestId(source["x-request-id"]);
  if (clientRequestId) out.push("x-client-request-id", clientRequestId);
  if (key)
    out.push("x-keymeter-key-id", key.id, "x-keymeter-customer-id", key.customer_id, "x-keymeter-tier", key.tier);
  const remote = req.socket.remoteAddress;
  const prior = source["x-forwarded-for"];
  if (remote) out.push("x-forwarded-for", prior ? `${String(prior)}, ${remote}` : remote);
  else if (prior) pushHeader(out, "x-forwarded-for", prior);
  return out;
}

/**
 * The answer's headers as a flat list: the gateway's (request id, RateLimit-*) unless the
 * upstream sent its own of that name, then the upstream's less hop-by-hop ones and any `X-Keymeter-*`.
 */
function responseHeaders(incoming: IncomingMessage, decision: Decision): string[] {
  const source = incoming.headers;
  const connectionNames = source.connection === undefined ? undefined : connectionTokens(source.connection);
  const out: string[] = [];
  for (const [name, value] of decision.headers) if (source[name] === undefined) out.push(name, value);
  for (const name in source) {
    const value = source[name];
    if (value === undefined || HOP_BY_HOP.has(name) || connectionNames?.includes(name)) continue;
    if (name.startsWith("x-keymeter-")) continue;
    pushHeader(out, name, value);
  }
  return out;
}

function pushHeader(out: string[], name: string, value: string | string[]): void {
  if (typeof value === "string") out.push(name, value);
  else for (const item of value) out.push(name, item);
}

/** The lower-cased tokens of a `Connection` header (`close, X-Foo`); undefined when it names no other header. */
function connectionTokens(value: string): string[] | undefined {
  // What nearly every client sends: hop-by-hop already, naming nothing else.
  if (value === "keep-alive" || value === "close") return undefined;
  return value
    .toLowerCase()
    .split(",")
    .map((token) => token.trim());
}

function rawHeaderPairs(incoming: IncomingMessage): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  const raw = incoming.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? "";
    if (name.toLowerCase().startsWith("x-keymeter-")) continue;
    pairs.push([name, raw[i + 1] ?? ""]);
  }
  return pairs;
}

function rawHead(status: number, message: string, headers: ReadonlyArray<readonly [string, string]>): string {
  const lines = headers.map(([name, value]) => `${name}: ${value.replace(/[\r\n]/g, "")}\r\n`).join("");
  return `HTTP/1.1 ${status} ${message.replace(/[\r\n]/g, "")}\r\n${lines}\r\n`;
}

/** The JSON error answer on a raw socket (refused upgrades); returns the status. */
function writeRawError(socket: Duplex, decision: Decision): number {
  const { status, body } = toErrorResponse(decision.error, decision.requestId);
  const text = JSON.stringify(body);
  socket.end(
    rawHead(status, http.STATUS_CODES[status] ?? "", [
      ...decision.headers,
      ["content-type", "application/json; charset=utf-8"],
      ["content-length", String(Buffer.byteLength(text))],
      ["cache-control", "no-store"],
      ["connection", "close"],
    ]) + text,
  );
  return status;
}
