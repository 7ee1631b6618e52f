/**
 * Calls `check` until it returns a value other than undefined/false, or throws once
 * `timeoutMs` has passed: the replacement for fixed sleeps. With `retryErrors`, a check
 * that throws (a service still coming back) counts as "not yet"; the last error is reported.
 */
export async function pollUntil<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: { timeoutMs?: number; intervalMs?: number; what?: string; retryErrors?: boolean } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 5_000);
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      if (!options.retryErrors) throw error;
      lastError = error;
    }
    if (Date.now() > deadline) {
      const cause = lastError ? ` (last error: ${String(lastError)})` : "";
      throw new Error(
        `timed out after ${options.timeoutMs ?? 5_000} ms waiting for ${options.what ?? "a condition"}${cause}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 20));
  }
}

/** Waits until `check` is true, tolerating errors meanwhile (services under test come and go). */
export async function waitFor(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 30_000,
): Promise<void> {
  await pollUntil(async () => (await check()) || undefined, { what, timeoutMs, intervalMs: 100, retryErrors: true });
}
