import type { ServerResponse } from "node:http";
import { AppError, type ErrorCode, HTTP_STATUS } from "./errors";

/** The JSON body of every error answer: `{ "error": { "code", "message", "request_id" } }`. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; request_id: string };
}

/** The one error body, for an AppError whose message is safe to show. */
export function errorBody(error: AppError, requestId: string): ErrorBody {
  return { error: { code: error.code, message: error.message, request_id: requestId } };
}

/**
 * Turns any thrown value into a status and a body safe to send: an AppError keeps its code
 * and message; anything else becomes a generic 500 naming only the request id (the details
 * go to the log, never to the client).
 */
export function toErrorResponse(error: unknown, requestId: string): { status: number; body: ErrorBody } {
  const known =
    error instanceof AppError
      ? error
      : new AppError("internal", `internal error; quote request id ${requestId} when reporting it`);
  return { status: HTTP_STATUS[known.code], body: errorBody(known, requestId) };
}

/** Writes the error answer on a plain node:http response (the gateway's own answers). */
export function writeErrorResponse(
  res: ServerResponse,
  error: unknown,
  requestId: string,
  headers: ReadonlyArray<readonly [string, string]> = [],
): void {
  const { status, body } = toErrorResponse(error, requestId);
  const text = JSON.stringify(body);
  for (const [name, value] of headers) res.setHeader(name, value);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
  });
  res.end(text);
}
