/**
 * The reference proxy's transport: an https upstream (CA store, custom CA, SNI), WebSocket
 * upgrades tunnelled and metered as one request, and bodies streamed both ways.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, request, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { gatewayConfigSchema, startGateway } from "@keymeter/gateway";
import { parseConfig } from "@keymeter/shared/runtime";
import { afterEach, describe, expect, it } from "vitest";
import { call, closeServer, KeyStack, listenOn } from "../support/key-stack";
import { MemorySink } from "../support/memory-sink";
import { pollUntil } from "../support/poll";
import { services } from "../support/services";

const closers: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function stack(): KeyStack {
  const s = new KeyStack();
  closers.push(() => s.close());
  return s;
}

async function serve(server: Server): Promise<number> {
  const port = await listenOn(server);
  closers.push(() => closeServer(server));
  return port;
}

const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` });

/** A self-signed certificate for localhost and 127.0.0.1, made by openssl for this test. */
function selfSignedCertificate(): { key: string; cert: string; certFile: string } {
  const dir = mkdtempSync(join(tmpdir(), "keymeter-tls-"));
  closers.push(() => rmSync(dir, { recursive: true, force: true }));
  const keyFile = join(dir, "key.pem");
  const certFile = join(dir, "cert.pem");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      keyFile,
      "-out",
      certFile,
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ],
    { stdio: "ignore" },
  );
  return { key: readFileSync(keyFile, "utf8"), cert: readFileSync(certFile, "utf8"), certFile };
}

describe("reference proxy: https upstream", () => {
  it("verifies the upstream against a custom CA, sends SNI, and refuses an untrusted certificate", async () => {
    const s = stack();
    const tls = selfSignedCertificate();
    const seen: Array<{ servername: string | false | null; path: string; customer: string }> = [];
    const upstream = createHttpsServer({ key: tls.key, cert: tls.cert }, (req, res) => {
      seen.push({
        servername: (req.socket as TLSSocket).servername,
        path: req.url ?? "",
        customer: String(req.headers["x-keymeter-customer-id"]),
      });
      res.end("over tls");
    });
    const port = await serve(upstream as unknown as Server);
    const { key, secret } = await s.registry.create({ customer_id: "cus_tls", tier: "fast" });

    const trusted = await s.gateway({}, {}, { upstream: `https://localhost:${port}/base`, ca: tls.cert });
    const ok = await call(`${trusted.url}/v1/things/1`, { headers: bearer(secret) });
    expect({ status: ok.status, text: ok.text }).toEqual({ status: 200, text: "over tls" });
    expect(seen).toEqual([{ servername: "localhost", path: "/base/v1/things/1", customer: "cus_tls" }]);
    const event = await pollUntil(() => trusted.sink.forKey(key.id)[0], { what: "the event" });
    expect(event.data).toMatchObject({ status: 200, units: 1 });

    // Without the CA the certificate is not trusted: nothing is sent, 503, units 0.
    const untrusted = await s.gateway({}, {}, { upstream: `https://localhost:${port}` });
    const refused = await call(`${untrusted.url}/v1/things/1`, { headers: bearer(secret) });
    expect(refused.status).toBe(503);
    expect(seen).toHaveLength(1);
    expect(s.logs.text).toMatch(/self[- ]signed/);
  });

  it("takes the CA from UPSTREAM_CA_FILE in the service", async () => {
    const s = stack();
    const tls = selfSignedCertificate();
    const upstream = createHttpsServer({ key: tls.key, cert: tls.cert }, (_req, res) => res.end("service tls"));
    const port = await serve(upstream as unknown as Server);
    const config = parseConfig(gatewayConfigSchema, {
      UPSTREAM_URL: `https://localhost:${port}`,
      UPSTREAM_CA_FILE: tls.certFile,
      GATEWAY_PORT: "0",
      REDIS_URL: services().redisUrl,
      REDIS_KEY_PREFIX: s.prefix,
    });
    const running = await startGateway(config, new MemorySink(), s.logger);
    closers.push(() => running.stop());
    const { secret } = await s.registry.create({ customer_id: "cus_tls", tier: "pro" });
    const response = await call(`http://127.0.0.1:${running.port}/v1/x`, { headers: bearer(secret) });
    expect({ status: response.status, text: response.text }).toEqual({ status: 200, text: "service tls" });

    const missing = join(tmpdir(), "keymeter-no-such-ca.pem");
    await expect(startGateway({ ...config, UPSTREAM_CA_FILE: missing }, new MemorySink(), s.logger)).rejects.toThrow(
      "UPSTREAM_CA_FILE cannot be read",
    );
  });
});

/** Reads from a raw socket until `done(text)` holds; fails after 5 s instead of hanging. */
function readUntil(socket: Socket, done: (text: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const timer = setTimeout(() => reject(new Error(`no complete answer; got ${JSON.stringify(text)}`)), 5_000);
    const onData = (chunk: Buffer) => {
      text += chunk.toString("latin1");
      if (done(text)) {
        clearTimeout(timer);
        socket.off("data", onData);
        resolve(text);
      }
    };
    socket.on("data", onData);
  });
}

describe("reference proxy: WebSocket upgrade", () => {
  it("checks the key, tunnels the upgraded connection both ways and meters it once as 101", async () => {
    const s = stack();
    const upgrades: IncomingMessage[] = [];
    const upstream = createServer((_req, res) => res.end("plain"));
    upstream.on("upgrade", (req: IncomingMessage, socket: Socket) => {
      upgrades.push(req);
      const accept = createHash("sha1")
        .update(`${req.headers["sec-websocket-key"]}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
        .digest("base64");
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
      );
      // Echoes what arrives, upper-cased, so the test sees bytes went through both ways.
      socket.on("data", (chunk: Buffer) => socket.write(chunk.toString().toUpperCase()));
      socket.on("end", () => socket.end());
    });
    const upstreamPort = await serve(upstream);
    const gw = await s.gateway({}, {}, { upstream: `http://127.0.0.1:${upstreamPort}` });
    const { key, secret } = await s.registry.create({ customer_id: "cus_ws", tier: "fast" });
    const port = Number(new URL(gw.url).port);
    const handshake = (authorization: string) =>
      `GET /v1/stream/42 HTTP/1.1\r\nHost: gw\r\n${authorization}Upgrade: websocket\r\nConnection: Upgrade\r\n` +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    const socket = connect({ host: "127.0.0.1", port });
    closers.push(() => socket.destroy());
    await once(socket, "connect");
    socket.write(handshake(`Authorization: Bearer ${secret}\r\n`));
    const head = await readUntil(socket, (text) => text.includes("\r\n\r\n"));
    expect(head).toMatch(/^HTTP\/1\.1 101 /);
    expect(head).toContain("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    expect(head.toLowerCase()).toContain("x-request-id: ");
    socket.write("ping");
    expect(await readUntil(socket, (text) => text.includes("PING"))).toBe("PING");
    socket.write("again");
    expect(await readUntil(socket, (text) => text.includes("AGAIN"))).toBe("AGAIN");

    expect(upgrades).toHaveLength(1);
    expect(upgrades[0]?.headers.authorization).toBeUndefined();
    expect(upgrades[0]?.headers["x-keymeter-customer-id"]).toBe("cus_ws");
    expect(upgrades[0]?.headers["sec-websocket-key"]).toBe("dGhlIHNhbXBsZSBub25jZQ==");
    const event = await pollUntil(() => gw.sink.forKey(key.id)[0], { what: "the upgrade's event" });
    expect(event.data).toMatchObject({ status: 101, units: 1, route: "/v1/stream/:id", method: "GET" });
    socket.destroy();
    await pollUntil(async () => (await new Promise<number>((r) => gw.server.getConnections((_e, n) => r(n)))) === 0, {
      what: "the tunnel to close",
    });
    expect(gw.sink.forKey(key.id)).toHaveLength(1);

    // Without a key: refused with the JSON error, nothing reaches the upstream.
    const anonymous = connect({ host: "127.0.0.1", port });
    closers.push(() => anonymous.destroy());
    await once(anonymous, "connect");
    anonymous.write(handshake(""));
    const refused = await readUntil(anonymous, (text) => text.includes('"request_id"'));
    expect(refused).toMatch(/^HTTP\/1\.1 401 /);
    expect(refused).toContain('"code":"unauthenticated"');
    expect(upgrades).toHaveLength(1);
  });

  it("passes on an upstream's refusal to upgrade", async () => {
    const s = stack();
    const upstream = createServer((_req, res) => {
      res.writeHead(426, { "content-type": "text/plain" });
      res.end("no websockets here");
    });
    upstream.on("upgrade", (_req: IncomingMessage, socket: Socket) => {
      socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope");
    });
    const upstreamPort = await serve(upstream);
    const gw = await s.gateway({}, {}, { upstream: `http://127.0.0.1:${upstreamPort}` });
    const { key, secret } = await s.registry.create({ customer_id: "cus_ws", tier: "fast" });
    const socket = connect({ host: "127.0.0.1", port: Number(new URL(gw.url).port) });
    closers.push(() => socket.destroy());
    await once(socket, "connect");
    socket.write(
      `GET /v1/ws HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${secret}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`,
    );
    const answer = await readUntil(socket, (text) => text.endsWith("nope"));
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    const event = await pollUntil(() => gw.sink.forKey(key.id)[0], { what: "the event" });
    expect(event.data).toMatchObject({ status: 403, units: 1, response_bytes: 4 });
  });
});

describe("reference proxy: streamed bodies", () => {
  it("streams the response: the client reads the first chunk before the upstream has finished", async () => {
    const s = stack();
    let finish: () => void = () => {};
    const upstream = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("first;");
      finish = () => res.end("last");
    });
    const upstreamPort = await serve(upstream);
    const gw = await s.gateway({}, {}, { upstream: `http://127.0.0.1:${upstreamPort}` });
    const { key, secret } = await s.registry.create({ customer_id: "cus_stream", tier: "fast" });
    const url = new URL(gw.url);
    const body = await new Promise<string>((resolve, reject) => {
      const req = request({ host: url.hostname, port: url.port, path: "/v1/feed", headers: bearer(secret) }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          text += chunk;
          // Only now does the upstream finish: a buffering proxy would never get here.
          if (text === "first;") finish();
        });
        res.on("end", () => resolve(text));
      });
      req.setTimeout(5_000, () => req.destroy(new Error("the first chunk never arrived")));
      req.on("error", reject);
      req.end();
    });
    expect(body).toBe("first;last");
    const event = await pollUntil(() => gw.sink.forKey(key.id)[0], { what: "the event" });
    expect(event.data).toMatchObject({ status: 200, units: 1, response_bytes: 10 });
  });

  it("streams the request: the upstream reads the first chunk before the client has sent the rest", async () => {
    const s = stack();
    let firstArrived: () => void = () => {};
    const arrived = new Promise<void>((resolve) => {
      firstArrived = resolve;
    });
    const upstream = createServer((req, res) => {
      let text = "";
      req.setEncoding("utf8");
      req.on("data", (chunk: string) => {
        text += chunk;
        if (text === "part1;") firstArrived();
      });
      req.on("end", () => res.end(`got ${text}`));
    });
    const upstreamPort = await serve(upstream);
    const gw = await s.gateway({}, {}, { upstream: `http://127.0.0.1:${upstreamPort}` });
    const { secret } = await s.registry.create({ customer_id: "cus_stream", tier: "fast", scope: "read-write" });
    const url = new URL(gw.url);
    const answer = new Promise<string>((resolve, reject) => {
      const req = request(
        { host: url.hostname, port: url.port, path: "/v1/upload", method: "POST", headers: bearer(secret) },
        (res) => {
          let text = "";
          res.on("data", (chunk: Buffer) => {
            text += chunk.toString();
          });
          res.on("end", () => resolve(text));
        },
      );
      req.on("error", reject);
      req.write("part1;");
      // The rest only after the upstream has the first part: a buffering proxy would wait forever.
      const timer = setTimeout(() => req.destroy(new Error("the first part never reached the upstream")), 5_000);
      void arrived.then(() => {
        clearTimeout(timer);
        req.end("part2");
      });
    });
    expect(await answer).toBe("got part1;part2");
  });
});
