import type { KeyRecord } from "@keymeter/shared/api-keys";
import type { AppError } from "@keymeter/shared/runtime";

/** The outcome of checking one request; `error` is set when the gateway refuses it. */
export interface Decision {
  requestId: string;
  /** performance.now() when the request arrived. */
  startedAt: number;
  /** Epoch ms when the request arrived: the event time. */
  receivedAt: number;
  method: string;
  /** The canonical path (see request-path.ts): what scopes were checked against. */
  path: string;
  /** Path and query to forward upstream (normalized, without an `api_key` parameter). */
  forwardPath: string;
  route: string;
  /** Where the key came from, so a proxy can strip it before forwarding. */
  keySource?: "authorization" | "x-api-key" | "query";
  /** The identified key, also when the request is refused for its state, scope, IP or limits. */
  key?: KeyRecord;
  error?: AppError;
  /**
   * The request was handed on in full: to the upstream (the proxy) or to the next handler
   * (middleware). Only such requests bill units; a client gone before that is not forwarded.
   */
  forwarded?: boolean;
  /** Response headers: request id, RateLimit-*, Retry-After. */
  headers: Array<[string, string]>;
}
