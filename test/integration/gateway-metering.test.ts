/**
 * Rule 0: every request handed on (upstream, or to the app behind the middleware) produces
 * exactly one usage event, 499 when its client left first; a request whose client is gone
 * before the check finished is not handed on. Clients are raw sockets that half-close,
 * destroy or reset right after sending, or once the upstream has their request.
 */
import { EventEmitter, once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect } from "node:net";
import {
  Gateway,
  GatewayMetrics,
  gatewayContext,
  gatewayMiddleware,
  KeyCache,
  RateLimiter,
  registerGateway,
} from "@keymeter/gateway";
import { createRedis } from "@keymeter/shared/stores";
import Fastify from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { closeServer, KeyStack, listenOn, TEST_TIERS } from "../support/key-stack";
import { MemorySink } from "../support/memory-sink";
import { pollUntil } from "../support/poll";
import { services } from "../support/services";

const closers: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

type Leave = "half-close" | "destroy" | "reset";
type When = "at once" | "when served";
type Shape = "GET" | "POST without body" | "POST with body";

interface Arrival {
  tag: string;
  requestId: string;
}

/**
 * What stands behind the gateway: records each request it receives (tag and the gateway's
 * request id) and answers at once, or, for "when served" requests, never: those are handed on
 * and then abandoned by their client.
 */
class Backend {
  readonly arrivals: Arrival[] = [];
  readonly signals = new EventEmitter().setMaxListeners(0);
  open = 0;

  handle(req: IncomingMessage, res: ServerResponse, requestId: string): void {
    const tag = String(req.headers["x-test-tag"] ?? "");
    this.arrivals.push({ tag, requestId });
    this.open++;
    res.once("close", () => {
      this.open--;
    });
    req.resume();
    this.signals.emit(`arrived:${tag}`);
    // "when served": no answer at all, so the gateway can only see its client leave.
    if (req.headers["x-test-when"] !== "when served") res.end("served");
  }
}

function rawRequest(shape: Shape, secret: string, tag: string, when: When): string {
  const method = shape === "GET" ? "GET" : "POST";
  const body = shape === "POST with body" ? '{"a":1}' : "";
  const length =
    shape === "POST with body" ? `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n` : "";
  return (
    `${method} /v1/items/${tag} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${secret}\r\n` +
    `X-Test-Tag: ${tag}\r\nX-Test-When: ${when}\r\n${length}\r\n${body}`
  );
}

/** Sends one request on a raw socket and leaves as told; resolves when the socket closed. */
async function leaveEarly(port: number, request: string, leave: Leave, when: When, backend: Backend, tag: string) {
  const socket = connect({ host: "127.0.0.1", port });
  socket.on("error", () => {});
  await once(socket, "connect");
  const closed = once(socket, "close");
  socket.resume();
  const arrived = once(backend.signals, `arrived:${tag}`, { signal: AbortSignal.timeout(10_000) });
  socket.write(request);
  if (when === "when served") await arrived;
  else arrived.catch(() => "not every request sent 'at once' arrives");
  if (leave === "half-close") socket.end();
  else if (leave === "destroy") socket.destroy();
  else socket.resetAndDestroy();
  await closed;
}

/** A complete exchange on a raw socket (Connection: close): the control group. */
async function stay(port: number, request: string): Promise<string> {
  const socket = connect({ host: "127.0.0.1", port });
  await once(socket, "connect");
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  socket.write(request.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"));
  await once(socket, "close");
  return Buffer.concat(chunks).toString();
}

interface Target {
  port: number;
  backend: Backend;
  sink: MemorySink;
  /** Requests the gateway's server received, and decisions the gateway made. */
  requestsSeen: () => number;
  decisions: () => Promise<number>;
  connections: () => Promise<number>;
}

async function decisionsOf(metrics: GatewayMetrics): Promise<number> {
  const metric = await metrics.registry.getSingleMetric("keymeter_gateway_requests_total")?.get();
  return (metric?.values ?? []).reduce((sum, value) => sum + value.value, 0);
}

function connectionsOf(server: Server): Promise<number> {
  return new Promise((resolve, reject) =>
    server.getConnections((error, count) => (error ? reject(error) : resolve(count))),
  );
}

function portOf(server: Server): number {
  const address = server.address();
  return typeof address === "object" && address ? address.port : 0;
}

function counting(server: Server): () => number {
  let seen = 0;
  server.on("request", () => seen++);
  return () => seen;
}

async function core(s: KeyStack, metrics: GatewayMetrics, sink: MemorySink): Promise<Gateway> {
  const redis = createRedis(services().redisUrl);
  const subscriber = createRedis(services().redisUrl);
  closers.push(() => Promise.all([redis.quit(), subscriber.quit()]));
  const cache = new KeyCache({ redis, subscriber, keys: s.keys, logger: s.logger });
  await cache.start();
  return new Gateway({
    cache,
    limiter: new RateLimiter(redis, s.keys),
    tiers: TEST_TIERS,
    sink,
    logger: s.logger,
    source: "metering-test",
    metrics,
  });
}

const targets: Record<string, (s: KeyStack) => Promise<Target>> = {
  "reference proxy": async (s) => {
    const backend = new Backend();
    const upstream = createServer((req, res) => backend.handle(req, res, String(req.headers["x-request-id"])));
    const upstreamPort = await listenOn(upstream);
    closers.push(() => closeServer(upstream));
    const metrics = new GatewayMetrics();
    const gw = await s.gateway({ metrics }, {}, { upstream: `http://127.0.0.1:${upstreamPort}` });
    const port = Number(new URL(gw.url).port);
    return {
      port,
      backend,
      sink: gw.sink,
      requestsSeen: counting(gw.server),
      decisions: () => decisionsOf(metrics),
      connections: () => connectionsOf(gw.server),
    };
  },
  "connect middleware": async (s) => {
    const backend = new Backend();
    const metrics = new GatewayMetrics();
    const sink = new MemorySink();
    const middleware = gatewayMiddleware(await core(s, metrics, sink));
    const server = createServer((req, res) =>
      middleware(req, res, () => backend.handle(req, res, gatewayContext(req)?.requestId ?? "")),
    );
    const port = await listenOn(server);
    closers.push(() => closeServer(server));
    return {
      port,
      backend,
      sink,
      requestsSeen: counting(server),
      decisions: () => decisionsOf(metrics),
      connections: () => connectionsOf(server),
    };
  },
  "Fastify hooks": async (s) => {
    const backend = new Backend();
    const metrics = new GatewayMetrics();
    const sink = new MemorySink();
    const app = Fastify();
    registerGateway(app, await core(s, metrics, sink));
    app.all("/v1/items/:tag", (request, reply) => {
      reply.hijack();
      backend.handle(request.raw, reply.raw, gatewayContext(request.raw)?.requestId ?? "");
    });
    await app.listen({ port: 0, host: "127.0.0.1" });
    closers.push(() => app.close());
    return {
      port: portOf(app.server),
      backend,
      sink,
      requestsSeen: counting(app.server),
      decisions: () => decisionsOf(metrics),
      connections: () => connectionsOf(app.server),
    };
  },
};

describe.each(Object.keys(targets))("metering of clients that leave early (%s)", (name) => {
  it("emits exactly one event per request, units 1 exactly for those handed on, 499 for those whose client left", async () => {
    const s = new KeyStack();
    closers.push(() => s.close());
    const target = await (targets[name] as (s: KeyStack) => Promise<Target>)(s);
    const { key, secret } = await s.registry.create({ customer_id: "cus_m", tier: "fast", scope: "read-write" });
    const leaving: Array<{ tag: string; when: When }> = [];
    const runs: Array<Promise<unknown>> = [];
    let n = 0;
    for (let round = 0; round < 3; round++) {
      for (const leave of ["half-close", "destroy", "reset"] as const) {
        for (const when of ["at once", "when served"] as const) {
          for (const shape of ["GET", "POST without body", "POST with body"] as const) {
            const tag = `t${n++}`;
            leaving.push({ tag, when });
            runs.push(leaveEarly(target.port, rawRequest(shape, secret, tag, when), leave, when, target.backend, tag));
          }
        }
      }
    }
    const stayed = Array.from({ length: 6 }, (_, i) =>
      stay(target.port, rawRequest("GET", secret, `s${i}`, "at once")),
    );
    const answers = await Promise.all(stayed);
    await Promise.all(runs);
    expect(answers.every((text) => text.startsWith("HTTP/1.1 200") && text.endsWith("served"))).toBe(true);

    // Everything settled: no connection open, every request the server received was decided.
    await pollUntil(
      async () =>
        (await target.connections()) === 0 &&
        target.backend.open === 0 &&
        (await target.decisions()) === target.requestsSeen(),
      { timeoutMs: 10_000, what: "the gateway to settle" },
    );
    const events = target.sink.forKey(key.id);
    const served = target.backend.arrivals;
    const billed = events.filter((e) => e.data.units === 1);
    expect(target.sink.invalid).toEqual([]);
    // One event per request the gateway saw, and as many billed as the backend received.
    expect({ events: events.length, billed: billed.length }).toEqual({
      events: target.requestsSeen(),
      billed: served.length,
    });
    // The same requests, one by one: the event id is the request id the backend got.
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
    expect(billed.map((e) => e.id).sort()).toEqual(served.map((a) => a.requestId).sort());
    // Clients that left before their answer was written: 499; those that stayed: 200. A
    // request answered at once may have been answered in full before its client left.
    const tagOf = new Map(served.map((a) => [a.requestId, a.tag]));
    const whenOf = new Map(leaving.map((l) => [l.tag, l.when]));
    for (const event of events) {
      const tag = tagOf.get(event.id);
      const expected =
        tag === undefined
          ? [499]
          : tag.startsWith("s")
            ? [200]
            : whenOf.get(tag) === "when served"
              ? [499]
              : [200, 499];
      expect(expected, `status of ${tag ?? "a request not handed on"}`).toContain(event.data.status);
      if (tag === undefined) expect(event.data.units).toBe(0);
    }
    // Those the backend had before their client left were all handed on (and billed).
    const servedTags = new Set(served.map((a) => a.tag));
    for (const { tag, when } of leaving) if (when === "when served") expect(servedTags.has(tag)).toBe(true);
  });
});
