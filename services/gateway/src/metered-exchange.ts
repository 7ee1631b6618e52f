import { type IncomingMessage, ServerResponse } from "node:http";
import type { Decision } from "./decision";
import type { Gateway } from "./gateway";

/**
 * The metering of one request/response exchange, watched from its first moment. The gateway's
 * check is asynchronous; a client that leaves during it must still be seen (and its request
 * not forwarded), so the response's `close` is watched before the check starts. The usage
 * event is recorded exactly once: when the decision is known, the client's response has
 * closed, and nothing holds it back (the proxy holds it until its upstream exchange settled,
 * so `forwarded` is final). Status 499 when the response did not finish, as nginx records it.
 */
export class MeteredExchange {
  private decision: Decision | undefined;
  private closed = false;
  private holds = 0;
  private recorded = false;
  private readonly counter: { readonly bytes: number };

  constructor(
    private readonly gateway: Gateway,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
  ) {
    this.counter = res instanceof CountingResponse ? res : countResponseBytes(res);
    res.once("close", () => {
      this.closed = true;
      this.settle();
    });
  }

  /**
   * True once the client cannot get an answer any more (closed, reset, or half-closed, which
   * node:http treats as gone): such a request is not forwarded.
   */
  get clientGone(): boolean {
    const socket = this.req.socket as { destroyed?: boolean; writableEnded?: boolean } | null;
    return this.closed || this.res.destroyed || socket?.destroyed === true || socket?.writableEnded === true;
  }

  /** The outcome of the gateway's check; the event is recorded once the response is done. */
  decided(decision: Decision): void {
    this.decision = decision;
    this.settle();
  }

  /** Holds the event back until the returned function is called (idempotent). */
  hold(): () => void {
    this.holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds--;
      this.settle();
    };
  }

  private settle(): void {
    if (this.recorded || !this.decision || !this.closed || this.holds > 0) return;
    this.recorded = true;
    const status = this.res.writableFinished ? this.res.statusCode : 499;
    this.gateway.record(this.decision, status, requestBytes(this.req), this.counter.bytes);
  }
}

export function requestBytes(req: IncomingMessage): number {
  const length = Number(req.headers["content-length"] ?? 0);
  return Number.isFinite(length) && length > 0 ? length : 0;
}

/**
 * A ServerResponse that counts the body bytes written through it, for servers the gateway
 * creates itself (`createServer({ ServerResponse: CountingResponse })`): no per-response
 * wrapping of `write`/`end`, which allocates closures and changes the object's shape.
 */
export class CountingResponse<Request extends IncomingMessage = IncomingMessage> extends ServerResponse<Request> {
  bytes = 0;

  override write(chunk: unknown, ...rest: unknown[]): boolean {
    this.bytes += bodyBytes(chunk, rest[0]);
    return (super.write as (...args: unknown[]) => boolean)(chunk, ...rest);
  }

  override end(...args: unknown[]): this {
    if (typeof args[0] !== "function") this.bytes += bodyBytes(args[0], args[1]);
    return (super.end as (...args: unknown[]) => this)(...args);
  }
}

function bodyBytes(chunk: unknown, encoding: unknown): number {
  if (typeof chunk === "string") {
    return Buffer.byteLength(chunk, typeof encoding === "string" ? (encoding as BufferEncoding) : "utf8");
  }
  return chunk instanceof Uint8Array ? chunk.byteLength : 0;
}

/** Counts body bytes written through `res.write`/`res.end`, whatever framework writes them. */
function countResponseBytes(res: ServerResponse): { bytes: number } {
  const counter = { bytes: 0 };
  const write = res.write;
  const end = res.end;
  res.write = function (this: ServerResponse, ...args: Parameters<typeof write>) {
    counter.bytes += bodyBytes(args[0], args[1]);
    return write.apply(this, args);
  } as typeof write;
  res.end = function (this: ServerResponse, ...args: Parameters<typeof end>) {
    if (typeof args[0] !== "function") counter.bytes += bodyBytes(args[0], args[1]);
    return end.apply(this, args);
  } as typeof end;
  return counter;
}

/**
 * Checks one request with its client watched from the start (a client that leaves during the
 * check is seen, metered and not handed on): a refusal is answered here; an admitted request
 * goes to `admitted`, which owes the client `decision.headers` (request id, RateLimit-*).
 * `failed` gets an error of the check itself.
 */
export function checkMetered(
  gateway: Gateway,
  req: IncomingMessage,
  res: ServerResponse,
  admitted: (decision: Decision, exchange: MeteredExchange) => void,
  failed: (error: unknown) => void,
): void {
  const exchange = new MeteredExchange(gateway, req, res);
  gateway.check(req).then((decision) => {
    exchange.decided(decision);
    if (exchange.clientGone) return;
    if (decision.error) {
      gateway.refuse(res, decision);
      return;
    }
    admitted(decision, exchange);
  }, failed);
}
