import { z } from "zod";
import { env } from "../../runtime/config";
import type { Logger } from "../../runtime/logger";
import type { BillingProvider } from "./billing-provider";
import { DryRunBillingProvider } from "./dry-run-billing";
import { MeterEventLimiter } from "./meter-event-limiter";
import { createStripeClient, StripeBillingProvider } from "./stripe-billing";

/**
 * The Stripe settings every billing entry point reads (billing worker, admin API, CLI). No
 * STRIPE_API_KEY: the dry-run provider, which sends nothing and logs what it would send.
 */
export const stripeConfigSchema = z.object({
  STRIPE_API_KEY: z.preprocess(
    (value) => (value === "" ? undefined : value),
    z
      .string()
      .regex(/^(sk|rk)_(test|live)_\S+$/, "expected a secret or restricted key (sk_live_..., rk_test_...)")
      .optional(),
  ),
  /** Point the SDK elsewhere (stripe-mock, a test fake); Stripe's own API when unset. */
  STRIPE_API_HOST: z.string().min(1).optional(),
  STRIPE_API_PORT: env.port().optional(),
  STRIPE_API_PROTOCOL: z.enum(["http", "https"]).optional(),
  /** Meter event calls per second from this process (Stripe's live limit is 1,000 per account). */
  STRIPE_METER_EVENTS_PER_S: z.coerce.number().positive().max(100_000).default(1000),
});
export type StripeConfig = z.infer<typeof stripeConfigSchema>;

export interface ConfiguredProvider {
  provider: BillingProvider;
  /** False for the dry run: nothing reaches Stripe, and its made-up ids are never stored. */
  live: boolean;
}

/** The billing provider the config asks for: Stripe with a key, the dry run without. */
export function createBillingProvider(
  config: StripeConfig,
  options: { logger: Logger; now?: () => number },
): ConfiguredProvider {
  const now = options.now ?? Date.now;
  if (!config.STRIPE_API_KEY) {
    options.logger.warn("STRIPE_API_KEY is not set: dry run, meter events are logged and not sent");
    return { provider: new DryRunBillingProvider({ logger: options.logger, now }), live: false };
  }
  let apiBase: string | undefined;
  if (config.STRIPE_API_HOST) {
    const protocol = config.STRIPE_API_PROTOCOL ?? "https";
    const port = config.STRIPE_API_PORT ?? (protocol === "https" ? 443 : 80);
    apiBase = `${protocol}://${config.STRIPE_API_HOST}:${port}`;
  }
  const provider = new StripeBillingProvider({
    stripe: createStripeClient(config.STRIPE_API_KEY, apiBase),
    limiter: new MeterEventLimiter({ eventsPerSecond: config.STRIPE_METER_EVENTS_PER_S }),
    logger: options.logger,
    now,
  });
  return { provider, live: true };
}
