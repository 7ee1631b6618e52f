/**
 * The closed set of error codes the project uses. Every error that crosses a boundary
 * (HTTP response, job failure, CLI exit) carries one of these.
 */
export const ERROR_CODES = [
  "config_invalid",
  "port_in_use",
  "service_unavailable",
  "bad_request",
  "payload_too_large",
  "unsupported_media_type",
  "invalid_event",
  "unauthenticated",
  "forbidden",
  "not_found",
  "conflict",
  "rate_limited",
  "quota_exceeded",
  "migration_failed",
  "billing_provider_error",
  "internal",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** HTTP status for each code: the one place that maps codes to statuses. */
export const HTTP_STATUS: Record<ErrorCode, number> = {
  config_invalid: 500,
  port_in_use: 500,
  service_unavailable: 503,
  bad_request: 400,
  payload_too_large: 413,
  unsupported_media_type: 415,
  invalid_event: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  rate_limited: 429,
  quota_exceeded: 429,
  migration_failed: 500,
  /** The billing provider (Stripe) refused a request for a reason other than a limit or an outage. */
  billing_provider_error: 502,
  internal: 500,
};

export interface AppErrorOptions {
  /** True when the same call may succeed later (a service down, a timeout). */
  retryable?: boolean;
  cause?: unknown;
}

/** Base error: a code from the closed set, a message safe to show, a retryable flag, a cause. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AppError";
    this.code = code;
    this.retryable = options.retryable ?? false;
  }

  get httpStatus(): number {
    return HTTP_STATUS[this.code];
  }
}

/** True for an AppError, whatever realm or copy of the module it came from. */
export function isAppError(error: unknown): error is AppError {
  return error instanceof AppError;
}
