/**
 * Gateway overhead: the same requests sent to a bare upstream and through the reference
 * gateway in front of it, in one run, on loopback, against the real Redis. Upstream,
 * gateway and load generator are separate processes (as in production, they do not share
 * an event loop). Prints `name: value` lines:
 *
 *   bare_proxy_p50_ms / _p99_ms        the peer: a bare reverse proxy on the same HTTP stack (node:http,
 *                                      keep-alive agent, streamed bodies; no key check, limit or emit)
 *   gateway_added_p99_ms               gateway p99 minus bare proxy p99, same run: what keymeter adds
 *   bare_proxy_p99_noise_ms            p99 of the bare proxy's even samples vs its odd ones: how much a
 *                                      p99 moves on noise alone in this run (the resolution of the above)
 *   gateway_overhead_p50_ms / _p99_ms  latency the reference proxy adds over the bare upstream (its own
 *                                      HTTP hop included), sequential requests, rate-limit leases (100 ms)
 *   middleware_p50_ms / _p99_ms        time in Gateway.check on a cache hit (auth, scope, IP, quota flag,
 *                                      rate limit), measured inside the gateway process
 *   check_in_process_cpu_us_per_request  Gateway.check on a cache hit called in a loop: CPU time
 *                                      (process.cpuUsage), not wall-clock
 *   gateway_no_lease_*                 the same with leases off: one Redis round trip per request
 *   gateway_kafka_shipped_*            the gateway with the real Kafka emitter (a bench topic) and the
 *                                      shipped tiers (a key on `enterprise`, 1,000 requests/s: its
 *                                      throughput phase meets the rate limit, and the 429s are counted)
 *   upstream_rps / bare_proxy_rps / gateway_rps  throughput at BENCH_CONCURRENCY requests in flight
 *   *_cpu_us_per_request               CPU time (process.cpuUsage) of the proxy's process per answered
 *                                      request in the throughput phase: what it costs, whatever the noise
 *
 * The other gateway variants emit to a counting sink (no emit cost) and use a tier of
 * 1,000,000 requests/s (no Redis call on a lease hit): they isolate the check itself.
 *
 * Bounded: BENCH_LATENCY_REQUESTS (default 3000) sequential requests per target and
 * BENCH_THROUGHPUT_REQUESTS (default 8000) per target after 1,000 of warm-up at full concurrency,
 * in two alternating rounds, each round per target capped at 5 s.
 */
import { type ChildProcess, fork } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { Agent, createServer, IncomingMessage, request } from "node:http";
import { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { createGatewayProxy, type Decision, Gateway, GatewayMetrics, KeyCache, RateLimiter } from "@keymeter/gateway";
import { KeyRegistry } from "@keymeter/shared/api-keys";
import { loadTiers, parseTiers, type TierCatalog } from "@keymeter/shared/billing";
import { createLogger } from "@keymeter/shared/runtime";
import { createKafka, createRedis, ensureTopics, redisKeys, topicNames } from "@keymeter/shared/stores";
import { KafkaEmitter, type UsageEventInput, type UsageEventSink } from "@keymeter/shared/usage";

const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const KAFKA_BROKERS = (process.env.KAFKA_BROKERS ?? "127.0.0.1:9092").split(",");
const LATENCY_REQUESTS = Number(process.env.BENCH_LATENCY_REQUESTS ?? 3000);
const THROUGHPUT_REQUESTS = Number(process.env.BENCH_THROUGHPUT_REQUESTS ?? 8000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const THROUGHPUT_ROUNDS = 2;
const WARM_UP_REQUESTS = 1_000;
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

/** Answers "cpu" with this process's CPU time so far (µs, user + system). */
function answerCpuTime(): void {
  process.on("message", (message: string) => {
    if (message !== "cpu") return;
    const used = process.cpuUsage();
    process.send?.({ cpuUs: used.user + used.system });
  });
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

/** The peer: a reverse proxy on the same HTTP stack as the gateway's, doing nothing else. */
async function runBareProxy(upstream: string): Promise<void> {
  answerCpuTime();
  const target = new URL(upstream);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const server = createServer((req, res) => {
    const outgoing = request(
      { agent, host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    outgoing.on("error", () => res.writeHead(502).end());
    req.pipe(outgoing);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, "127.0.0.1", () => {
    const address = server.address();
    process.send?.({ port: typeof address === "object" && address ? address.port : 0 });
  });
}

async function runGateway(prefix: string, upstream: string, leaseMs: number, variant = "bench"): Promise<void> {
  answerCpuTime();
  const logger = createLogger("bench-gateway", "warn");
  // `shipped`: the real Kafka emitter and the project's default tiers, as a deployment runs.
  let sink: UsageEventSink = new CountingSink();
  let tiers: TierCatalog = TIERS;
  if (variant === "shipped") {
    const emitter = new KafkaEmitter({
      kafka: createKafka(KAFKA_BROKERS, "bench-gateway", logger),
      topic: topicNames(prefix.replace(/:$/, ".")).events,
      logger,
      spoolDir: mkdtempSync(join(tmpdir(), "bench-gateway-spool-")),
    });
    await emitter.start();
    sink = emitter;
    tiers = loadTiers();
  }
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
  // Metrics on, as startGateway builds it: their cost is part of every request.
  const gateway = new TimedGateway({
    metrics: new GatewayMetrics(),
    cache,
    limiter: new RateLimiter(redis, keys, { leaseMs, logger }),
    tiers,
    sink,
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

/** `requests` answers at CONCURRENCY in flight; `limited` counts 429s where a rate limit is expected. */
async function throughput(
  port: number,
  headers: Record<string, string>,
  allowRateLimited: boolean,
  requests: number,
): Promise<{ done: number; seconds: number; limited: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  let sent = 0;
  let done = 0;
  let limited = 0;
  const started = performance.now();
  const deadline = started + PHASE_CAP_MS;
  const worker = async () => {
    while (sent < requests && performance.now() < deadline) {
      sent++;
      const status = await get(agent, port, headers);
      if (status === 429 && allowRateLimited) limited++;
      else if (status !== 200) throw new Error(`unexpected status ${status}`);
      done++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  return { done, seconds, limited };
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
      metrics: new GatewayMetrics(),
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
    const cpu = process.cpuUsage();
    for (let i = 0; i < calls; i++) await gateway.check(request);
    const used = process.cpuUsage(cpu);
    return (used.user + used.system) / calls;
  } finally {
    await Promise.all([redis.quit(), subscriber.quit()]);
  }
}

async function main(): Promise<void> {
  const prefix = `bench_gateway_${Date.now().toString(36)}_${process.pid}:`;
  const redis = createRedis(REDIS_URL);
  const logger = createLogger("bench", "warn");
  const shippedTiers = loadTiers();
  const registry = new KeyRegistry({
    redis,
    keys: redisKeys(prefix),
    tiers: parseTiers({ tiers: [...TIERS.list(), ...shippedTiers.list()] }),
    logger,
  });
  const kafka = createKafka(KAFKA_BROKERS, "bench-gateway-main", logger);
  const admin = kafka.admin();
  await admin.connect();
  const topics = topicNames(prefix.replace(/:$/, "."));
  await ensureTopics(admin, topics, { partitions: 3 });
  const children: ChildProcess[] = [];
  try {
    const { secret } = await registry.create({ customer_id: "bench", tier: "bench" });
    const { secret: shippedSecret } = await registry.create({ customer_id: "bench", tier: "enterprise" });
    const upstream = await child("upstream");
    children.push(upstream.process);
    const upstreamUrl = `http://127.0.0.1:${upstream.port}`;
    const bareProxy = await child("bare-proxy", upstreamUrl);
    children.push(bareProxy.process);
    const gateway = await child("gateway", prefix, upstreamUrl, String(LEASE_MS));
    children.push(gateway.process);
    const direct = await child("gateway", prefix, upstreamUrl, "0");
    children.push(direct.process);
    const shipped = await child("gateway", prefix, upstreamUrl, String(LEASE_MS), "shipped");
    children.push(shipped.process);
    const headers = { authorization: `Bearer ${secret}` };
    const shippedHeaders = { authorization: `Bearer ${shippedSecret}` };
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });

    // Warm up every path (JIT, connections, the key cache), then measure in alternating rounds.
    for (const port of [upstream.port, bareProxy.port, gateway.port, direct.port]) {
      await latencies(agent, port, headers, 500);
    }
    await latencies(agent, shipped.port, shippedHeaders, 500);
    await ask(gateway.process, "reset");
    await ask(direct.process, "reset");
    // One request to each target in turn, so all see the same background noise. The shipped
    // variant's sequential rate stays far under its tier's 1,000 requests/s.
    const bare: number[] = [];
    const bareProxied: number[] = [];
    const leased: number[] = [];
    const perRequest: number[] = [];
    const shippedSamples: number[] = [];
    const targets: Array<[number, number[], Record<string, string>]> = [
      [upstream.port, bare, headers],
      [bareProxy.port, bareProxied, headers],
      [gateway.port, leased, headers],
      [direct.port, perRequest, headers],
      [shipped.port, shippedSamples, shippedHeaders],
    ];
    for (let i = 0; i < LATENCY_REQUESTS; i++) {
      for (const [port, samples, auth] of targets) samples.push(...(await latencies(agent, port, auth, 1)));
    }
    // The p99 of one half of the bare proxy's samples against the other's: how far a p99 moves
    // with noise alone in this run, the resolution of every *_p99_ms difference printed here.
    const halves = [bareProxied.filter((_, i) => i % 2 === 0), bareProxied.filter((_, i) => i % 2 === 1)];
    const [firstHalf = [], secondHalf = []] = halves.map((half) => half.sort((a, b) => a - b));
    const p99Noise = Math.abs(percentile(firstHalf, 99) - percentile(secondHalf, 99));
    for (const [, list] of targets) list.sort((a, b) => a - b);
    type Stats = { stats: { p50: number; p99: number; count: number } };
    const { stats } = await ask<Stats>(gateway.process, "stats");
    const { stats: directStats } = await ask<Stats>(direct.process, "stats");
    agent.destroy();

    const checkUs = await inProcessCheck(prefix, secret);
    // Warm every target up at full concurrency (its upstream connections too), then measure
    // in alternating rounds, so a burst of background noise does not land on one target only.
    const loads: Array<[number, Record<string, string>, boolean]> = [
      [upstream.port, headers, false],
      [bareProxy.port, headers, false],
      [gateway.port, headers, false],
      [direct.port, headers, false],
      [shipped.port, shippedHeaders, true],
    ];
    for (const [port, auth, limited] of loads) await throughput(port, auth, limited, WARM_UP_REQUESTS);
    // CPU time of the process serving each target (none for the upstream itself).
    const servers: Array<ChildProcess | undefined> = [
      undefined,
      bareProxy.process,
      gateway.process,
      direct.process,
      shipped.process,
    ];
    const cpuTime = async (proc: ChildProcess | undefined) =>
      proc ? (await ask<{ cpuUs: number }>(proc, "cpu")).cpuUs : 0;
    const runs = loads.map(() => ({ done: 0, seconds: 0, limited: 0, cpuUs: 0 }));
    for (let round = 0; round < THROUGHPUT_ROUNDS; round++) {
      for (const [i, [port, auth, limited]] of loads.entries()) {
        const cpuBefore = await cpuTime(servers[i]);
        const run = await throughput(port, auth, limited, Math.ceil(THROUGHPUT_REQUESTS / THROUGHPUT_ROUNDS));
        const cpuAfter = await cpuTime(servers[i]);
        const total = runs[i];
        if (!total) continue;
        total.done += run.done;
        total.seconds += run.seconds;
        total.limited += run.limited;
        total.cpuUs += cpuAfter - cpuBefore;
      }
    }
    const cpuPerRequest = (i: number) => ((runs[i]?.cpuUs ?? 0) / (runs[i]?.done ?? 1)).toFixed(1);
    const rps = (i: number) => (runs[i]?.done ?? 0) / (runs[i]?.seconds ?? 1);
    const [upstreamRps, bareProxyRps, gatewayRps, directRps] = [rps(0), rps(1), rps(2), rps(3)];
    const shippedRun = { rps: rps(4), limited: runs[4]?.limited ?? 0 };

    const ms = (value: number) => value.toFixed(3);
    const lines: Array<[string, string]> = [
      ["latency_requests_per_target", String(bare.length)],
      ["rate_limit_lease_ms", String(LEASE_MS)],
      ["upstream_p50_ms", ms(percentile(bare, 50))],
      ["upstream_p99_ms", ms(percentile(bare, 99))],
      ["bare_proxy_p50_ms", ms(percentile(bareProxied, 50))],
      ["bare_proxy_p99_ms", ms(percentile(bareProxied, 99))],
      ["gateway_p50_ms", ms(percentile(leased, 50))],
      ["gateway_p99_ms", ms(percentile(leased, 99))],
      ["gateway_added_p50_ms", ms(percentile(leased, 50) - percentile(bareProxied, 50))],
      ["gateway_added_p99_ms", ms(percentile(leased, 99) - percentile(bareProxied, 99))],
      ["bare_proxy_p99_noise_ms", ms(p99Noise)],
      ["gateway_overhead_p50_ms", ms(percentile(leased, 50) - percentile(bare, 50))],
      ["gateway_overhead_p99_ms", ms(percentile(leased, 99) - percentile(bare, 99))],
      ["gateway_kafka_shipped_p50_ms", ms(percentile(shippedSamples, 50))],
      ["gateway_kafka_shipped_p99_ms", ms(percentile(shippedSamples, 99))],
      ["gateway_kafka_shipped_added_p99_ms", ms(percentile(shippedSamples, 99) - percentile(bareProxied, 99))],
      ["middleware_p50_ms", ms(stats.p50)],
      ["middleware_p99_ms", ms(stats.p99)],
      ["check_in_process_cpu_us_per_request", checkUs.toFixed(1)],
      ["gateway_no_lease_overhead_p50_ms", ms(percentile(perRequest, 50) - percentile(bare, 50))],
      ["gateway_no_lease_overhead_p99_ms", ms(percentile(perRequest, 99) - percentile(bare, 99))],
      ["middleware_no_lease_p50_ms", ms(directStats.p50)],
      ["middleware_no_lease_p99_ms", ms(directStats.p99)],
      ["concurrency", String(CONCURRENCY)],
      ["upstream_rps", upstreamRps.toFixed(0)],
      ["bare_proxy_rps", bareProxyRps.toFixed(0)],
      ["gateway_rps", gatewayRps.toFixed(0)],
      ["gateway_rps_vs_bare_proxy", (gatewayRps / bareProxyRps).toFixed(2)],
      ["bare_proxy_cpu_us_per_request", cpuPerRequest(1)],
      ["gateway_cpu_us_per_request", cpuPerRequest(2)],
      ["gateway_added_cpu_us_per_request", (Number(cpuPerRequest(2)) - Number(cpuPerRequest(1))).toFixed(1)],
      ["gateway_no_lease_rps", directRps.toFixed(0)],
      ["gateway_kafka_shipped_rps", shippedRun.rps.toFixed(0)],
      ["gateway_kafka_shipped_cpu_us_per_request", cpuPerRequest(4)],
      ["gateway_kafka_shipped_rate_limited", String(shippedRun.limited)],
    ];
    for (const [name, value] of lines) process.stdout.write(`${name}: ${value}\n`);
  } finally {
    for (const proc of children) proc.kill();
    await admin.deleteTopics({ topics: [topics.events, topics.deadLetter] }).catch(() => undefined);
    await admin.disconnect();
    const found = await redis.keys(`${prefix}*`);
    if (found.length > 0) await redis.del(...found);
    await redis.quit();
  }
}

const [role, ...args] = process.argv.slice(2);
if (role === "upstream") void runUpstream();
else if (role === "bare-proxy") void runBareProxy(args[0] ?? "");
else if (role === "gateway") void runGateway(args[0] ?? "", args[1] ?? "", Number(args[2] ?? 0), args[3]);
else
  main().catch((error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
