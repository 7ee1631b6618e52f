/**
 * Gateway overhead: the same requests sent to a bare upstream and through the reference
 * gateway in front of it, in one run, on loopback, against the real Redis. Upstream,
 * gateway and load generator are separate processes (as in production, they do not share
 * an event loop). Prints `name: value` lines:
 *
 *   gateway_overhead_p50_ms / _p99_ms  latency the reference proxy adds (its own HTTP hop included),
 *                                      sequential requests, with rate-limit leases (RATE_LIMIT_LEASE_MS, 100)
 *   middleware_p50_ms / _p99_ms        time in Gateway.check on a cache hit (auth, scope, IP, quota flag,
 *                                      rate limit), measured inside the gateway process
 *   check_in_process_us_per_request    Gateway.check on a cache hit called in a loop: the logic's CPU cost
 *   gateway_no_lease_*                 the same with leases off: one Redis round trip per request
 *   upstream_rps / gateway_rps         throughput at BENCH_CONCURRENCY requests in flight
 *
 * Bounded: BENCH_LATENCY_REQUESTS (default 3000) sequential requests per target and
 * BENCH_THROUGHPUT_REQUESTS (default 8000) per target, each throughput phase capped at 5 s.
 */
import { type ChildProcess, fork } from "node:child_process";
import { Agent, createServer, IncomingMessage, request } from "node:http";
import { Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { createGatewayProxy, type Decision, Gateway, KeyCache, RateLimiter } from "@keymeter/gateway";
import { KeyRegistry } from "@keymeter/shared/api-keys";
import { parseTiers } from "@keymeter/shared/billing";
import { createLogger } from "@keymeter/shared/runtime";
import { createRedis, redisKeys } from "@keymeter/shared/stores";
import type { UsageEventInput, UsageEventSink } from "@keymeter/shared/usage";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const LATENCY_REQUESTS = Number(process.env.BENCH_LATENCY_REQUESTS ?? 3000);
const THROUGHPUT_REQUESTS = Number(process.env.BENCH_THROUGHPUT_REQUESTS ?? 8000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const PHASE_CAP_MS = 5_000;
const LEASE_MS = Number(process.env.RATE_LIMIT_LEASE_MS ?? 100);
const BODY = JSON.stringify({ ok: true, items: [1, 2, 3] });
const TIERS = parseTiers({
  tiers: [{ name: "bench", rate_limit_rps: 1_000_000, monthly_quota: null, overage: "block" }],
});

type Message = { port: number } | { stats: { p50: number; p99: number; count: number } };

/** Counts events; the Kafka emitter's cost is its own bench. */
class CountingSink implements UsageEventSink {
  count = 0;
  emit(_event: UsageEventInput): void {
    this.count++;
  }
  async flush(): Promise<void> {}
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function runUpstream(): Promise<void> {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(BODY) });
      res.end(BODY);
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, "127.0.0.1", () => {
    const address = server.address();
    process.send?.({ port: typeof address === "object" && address ? address.port : 0 });
  });
}

async function runGateway(prefix: string, upstream: string, leaseMs: number): Promise<void> {
  const logger = createLogger("bench-gateway", "warn");
  const keys = redisKeys(prefix);
  const redis = createRedis(REDIS_URL);
  const subscriber = createRedis(REDIS_URL);
  const cache = new KeyCache({ redis, subscriber, keys, logger });
  await cache.start();
  let samples: number[] = [];
  /** Times `check`: authentication, scope, IP, quota flag and rate limit of one request. */
  class TimedGateway extends Gateway {
    override async check(req: IncomingMessage): Promise<Decision> {
      const started = performance.now();
      const decision = await super.check(req);
      samples.push(performance.now() - started);
      return decision;
    }
  }
  const gateway = new TimedGateway({
    cache,
    limiter: new RateLimiter(redis, keys, { leaseMs, logger }),
    tiers: TIERS,
    sink: new CountingSink(),
    logger,
    source: "bench",
  });
  const server = createGatewayProxy({ gateway, upstream: new URL(upstream), logger });
  server.keepAliveTimeout = 60_000;
  process.on("message", (message: string) => {
    if (message === "reset") {
      samples = [];
      process.send?.({ reset: true });
    }
    if (message === "stats") {
      const sorted = [...samples].sort((a, b) => a - b);
      process.send?.({ stats: { p50: percentile(sorted, 50), p99: percentile(sorted, 99), count: sorted.length } });
    }
  });
  server.listen(0, "127.0.0.1", () => {
    const address = server.address();
    process.send?.({ port: typeof address === "object" && address ? address.port : 0 });
  });
}

function child(role: string, ...args: string[]): Promise<{ process: ChildProcess; port: number }> {
  const proc = fork(fileURLToPath(import.meta.url), [role, ...args], { execArgv: process.execArgv });
  return new Promise((resolve, reject) => {
    proc.once("error", reject);
    proc.once("exit", (code) => reject(new Error(`${role} exited with ${code}`)));
    proc.once("message", (message: Message) => {
      if ("port" in message) resolve({ process: proc, port: message.port });
    });
  });
}

function ask<T>(proc: ChildProcess, message: string): Promise<T> {
  return new Promise((resolve) => {
    proc.once("message", (reply: T) => resolve(reply));
    proc.send(message);
  });
}

function get(agent: Agent, port: number, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ agent, host: "127.0.0.1", port, path: "/v1/items/42?expand=1", headers }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

async function latencies(
  agent: Agent,
  port: number,
  headers: Record<string, string>,
  count: number,
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const started = performance.now();
    const status = await get(agent, port, headers);
    out.push(performance.now() - started);
    if (status !== 200) throw new Error(`unexpected status ${status}`);
  }
  return out.sort((a, b) => a - b);
}

async function throughput(port: number, headers: Record<string, string>): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  let sent = 0;
  let done = 0;
  const started = performance.now();
  const deadline = started + PHASE_CAP_MS;
  const worker = async () => {
    while (sent < THROUGHPUT_REQUESTS && performance.now() < deadline) {
      sent++;
      const status = await get(agent, port, headers);
      if (status !== 200) throw new Error(`unexpected status ${status}`);
      done++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  return done / seconds;
}

/**
 * Gateway.check on a cache hit with leases, called in a loop in this process: the CPU cost of
 * the gateway's own logic, without HTTP or scheduling noise.
 */
async function inProcessCheck(prefix: string, secret: string): Promise<number> {
  const logger = createLogger("bench-check", "warn");
  const keys = redisKeys(prefix);
  const redis = createRedis(REDIS_URL);
  const subscriber = createRedis(REDIS_URL);
  try {
    const cache = new KeyCache({ redis, subscriber, keys, logger });
    await cache.start();
    const gateway = new Gateway({
      cache,
      limiter: new RateLimiter(redis, keys, { leaseMs: LEASE_MS }),
      tiers: TIERS,
      sink: new CountingSink(),
      logger,
      source: "bench",
    });
    const request = Object.assign(new IncomingMessage(new Socket()), {
      method: "GET",
      url: "/v1/items/42?expand=1",
      headers: { authorization: `Bearer ${secret}` },
    });
    const calls = 20_000;
    for (let i = 0; i < 2_000; i++) await gateway.check(request);
    const started = performance.now();
    for (let i = 0; i < calls; i++) await gateway.check(request);
    return ((performance.now() - started) / calls) * 1000;
  } finally {
    await Promise.all([redis.quit(), subscriber.quit()]);
  }
}

async function main(): Promise<void> {
  const prefix = `bench_gateway_${Date.now().toString(36)}_${process.pid}:`;
  const redis = createRedis(REDIS_URL);
  const logger = createLogger("bench", "warn");
  const registry = new KeyRegistry({ redis, keys: redisKeys(prefix), tiers: TIERS, logger });
  const children: ChildProcess[] = [];
  try {
    const { secret } = await registry.create({ customer_id: "bench", tier: "bench" });
    const upstream = await child("upstream");
    children.push(upstream.process);
    const gateway = await child("gateway", prefix, `http://127.0.0.1:${upstream.port}`, String(LEASE_MS));
    children.push(gateway.process);
    const direct = await child("gateway", prefix, `http://127.0.0.1:${upstream.port}`, "0");
    children.push(direct.process);
    const headers = { authorization: `Bearer ${secret}` };
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });

    // Warm up every path (JIT, connections, the key cache), then measure in alternating rounds.
    for (const port of [upstream.port, gateway.port, direct.port]) await latencies(agent, port, headers, 500);
    await ask(gateway.process, "reset");
    await ask(direct.process, "reset");
    // One request to each target in turn, so all three see the same background noise.
    const bare: number[] = [];
    const leased: number[] = [];
    const perRequest: number[] = [];
    const targets: Array<[number, number[]]> = [
      [upstream.port, bare],
      [gateway.port, leased],
      [direct.port, perRequest],
    ];
    for (let i = 0; i < LATENCY_REQUESTS; i++) {
      for (const [port, samples] of targets) samples.push(...(await latencies(agent, port, headers, 1)));
    }
    for (const list of [bare, leased, perRequest]) list.sort((a, b) => a - b);
    type Stats = { stats: { p50: number; p99: number; count: number } };
    const { stats } = await ask<Stats>(gateway.process, "stats");
    const { stats: directStats } = await ask<Stats>(direct.process, "stats");
    agent.destroy();

    const checkUs = await inProcessCheck(prefix, secret);
    const upstreamRps = await throughput(upstream.port, headers);
    const gatewayRps = await throughput(gateway.port, headers);
    const directRps = await throughput(direct.port, headers);

    const ms = (value: number) => value.toFixed(3);
    const lines: Array<[string, string]> = [
      ["latency_requests_per_target", String(bare.length)],
      ["rate_limit_lease_ms", String(LEASE_MS)],
      ["upstream_p50_ms", ms(percentile(bare, 50))],
      ["upstream_p99_ms", ms(percentile(bare, 99))],
      ["gateway_p50_ms", ms(percentile(leased, 50))],
      ["gateway_p99_ms", ms(percentile(leased, 99))],
      ["gateway_overhead_p50_ms", ms(percentile(leased, 50) - percentile(bare, 50))],
      ["gateway_overhead_p99_ms", ms(percentile(leased, 99) - percentile(bare, 99))],
      ["middleware_p50_ms", ms(stats.p50)],
      ["middleware_p99_ms", ms(stats.p99)],
      ["check_in_process_us_per_request", checkUs.toFixed(1)],
      ["gateway_no_lease_overhead_p50_ms", ms(percentile(perRequest, 50) - percentile(bare, 50))],
      ["gateway_no_lease_overhead_p99_ms", ms(percentile(perRequest, 99) - percentile(bare, 99))],
      ["middleware_no_lease_p50_ms", ms(directStats.p50)],
      ["middleware_no_lease_p99_ms", ms(directStats.p99)],
      ["concurrency", String(CONCURRENCY)],
      ["upstream_rps", upstreamRps.toFixed(0)],
      ["gateway_rps", gatewayRps.toFixed(0)],
      ["gateway_no_lease_rps", directRps.toFixed(0)],
    ];
    for (const [name, value] of lines) process.stdout.write(`${name}: ${value}\n`);
  } finally {
    for (const proc of children) proc.kill();
    const found = await redis.keys(`${prefix}*`);
    if (found.length > 0) await redis.del(...found);
    await redis.quit();
  }
}

const [role, ...args] = process.argv.slice(2);
if (role === "upstream") void runUpstream();
else if (role === "gateway") void runGateway(args[0] ?? "", args[1] ?? "", Number(args[2] ?? 0));
else
  main().catch((error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
