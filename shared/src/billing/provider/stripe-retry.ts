import Stripe from "stripe";
import { AppError } from "../../runtime/errors";

export interface StripeRetryPolicy {
  /** Attempts in all, the first included. */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** In [0, 1); injected so tests are deterministic. */
  random: () => number;
  sleep: (ms: number) => Promise<void>;
}

export const DEFAULT_RETRY_POLICY: StripeRetryPolicy = {
  maxAttempts: 6,
  baseDelayMs: 250,
  maxDelayMs: 8_000,
  random: Math.random,
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/**
 * Calls `attempt` until it succeeds, Stripe says not to retry, or the attempts run out.
 * Retried: 429 (rate limit, lock), 409 (idempotency key in use), 5xx and connection errors,
 * and whatever carries `Stripe-Should-Retry: true`; never what carries `false`. The wait is
 * `Retry-After` when Stripe sends one, otherwise exponential back-off with full jitter.
 * Callers pass the same idempotency key to every attempt, so a retried create happens once.
 */
export async function withStripeRetry<T>(
  attempt: (attemptNumber: number) => Promise<T>,
  policy: StripeRetryPolicy = DEFAULT_RETRY_POLICY,
): Promise<T> {
  for (let number = 1; ; number += 1) {
    try {
      return await attempt(number);
    } catch (error) {
      if (number >= policy.maxAttempts || !isRetryable(error)) throw error;
      await policy.sleep(retryDelayMs(error, number, policy));
    }
  }
}

/** True when Stripe (or the network) says the same request may succeed later. */
export function isRetryable(error: unknown): boolean {
  if (!(error instanceof Stripe.errors.StripeError)) return false;
  const shouldRetry = error.headers?.["stripe-should-retry"];
  if (shouldRetry === "false") return false;
  if (shouldRetry === "true") return true;
  if (error instanceof Stripe.errors.StripeConnectionError) return true;
  const status = error.statusCode ?? 0;
  return status === 429 || status === 409 || status >= 500;
}

function retryDelayMs(error: unknown, attemptNumber: number, policy: StripeRetryPolicy): number {
  const retryAfter = error instanceof Stripe.errors.StripeError ? error.headers?.["retry-after"] : undefined;
  if (retryAfter !== undefined) {
    const seconds = Number(retryAfter);
    const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(retryAfter) - Date.now();
    if (Number.isFinite(ms)) return Math.min(Math.max(ms, 0), policy.maxDelayMs);
  }
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attemptNumber - 1));
  return Math.floor(policy.random() * ceiling);
}

/**
 * Maps a Stripe error onto the project's closed codes: limits to `rate_limited`, outages to
 * `service_unavailable` (both retryable), a refused key to `config_invalid`, a missing object
 * to `not_found`, idempotency clashes to `conflict`, any other refusal to `billing_provider_error`.
 */
export function toAppError(error: unknown, what: string): AppError {
  if (error instanceof AppError) return error;
  if (!(error instanceof Stripe.errors.StripeError)) {
    return new AppError("internal", `stripe ${what}: unexpected error`, { cause: error });
  }
  const message = `stripe ${what}: ${error.message}`;
  const options = { cause: error, retryable: isRetryable(error) };
  if (error instanceof Stripe.errors.StripeRateLimitError) return new AppError("rate_limited", message, options);
  if (error instanceof Stripe.errors.StripeConnectionError || (error.statusCode ?? 0) >= 500) {
    return new AppError("service_unavailable", message, { ...options, retryable: true });
  }
  if (
    error instanceof Stripe.errors.StripeAuthenticationError ||
    error instanceof Stripe.errors.StripePermissionError
  ) {
    return new AppError("config_invalid", message, options);
  }
  if (error instanceof Stripe.errors.StripeIdempotencyError || error.statusCode === 409) {
    return new AppError("conflict", message, options);
  }
  if (error.statusCode === 404) return new AppError("not_found", message, options);
  return new AppError("billing_provider_error", message, options);
}
