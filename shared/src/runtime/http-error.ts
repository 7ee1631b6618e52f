import { AppError, type ErrorCode, HTTP_STATUS } from "./errors";

/** The JSON body of every error answer: `{ "error": { "code", "message", "request_id" } }`. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; request_id: string };
}

/**
 * Turns any thrown value into a status and a body safe to send: an AppError keeps its code
 * and message; anything else becomes a generic 500 naming only the request id (the details
 * go to the log, never to the client).
 */
export function toErrorResponse(error: unknown, requestId: string): { status: number; body: ErrorBody } {
  const known = error instanceof AppError ? error : undefined;
  const code: ErrorCode = known?.code ?? "internal";
  const message = known?.message ?? `internal error; quote request id ${requestId} when reporting it`;
  return { status: HTTP_STATUS[code], body: { error: { code, message, request_id: requestId } } };
}
