import { CustomerRegistry, type TierCatalog } from "@keymeter/shared/billing";
import {
  BillingSetup,
  BillingState,
  BillingUsageReader,
  type ReconcileRequest,
  Reconciler,
} from "@keymeter/shared/billing/invoicing";
import { type BillingProvider, createBillingProvider, type StripeConfig } from "@keymeter/shared/billing/provider";
import type { Logger } from "@keymeter/shared/runtime";
import type { ClickHouseClient, Redis, RedisKeys } from "@keymeter/shared/stores";
import { z } from "zod";

/** Billing as the admin API and the CLI use it: setup, customer links, reconciliation. */
export interface AdminBilling {
  setup: BillingSetup;
  reconciler: Reconciler;
  /** False: dry run (no STRIPE_API_KEY), nothing reaches Stripe and no id is stored. */
  live: boolean;
}

export interface AdminBillingOptions {
  redis: Redis;
  clickhouse: ClickHouseClient;
  keys: RedisKeys;
  tiers: TierCatalog;
  logger: Logger;
  provider: BillingProvider;
  live: boolean;
  closeGraceMs: number;
  now?: () => number;
}

export function createAdminBilling(options: AdminBillingOptions): AdminBilling {
  const { redis, keys, logger, tiers, provider, live } = options;
  const now = options.now ?? Date.now;
  const customers = new CustomerRegistry({ redis, keys, logger, now });
  const setup = new BillingSetup({ provider, live, tiers, customers, logger, now });
  const reconciler = new Reconciler({
    usage: new BillingUsageReader(options.clickhouse),
    state: new BillingState(redis, keys),
    customers,
    tiers,
    provider,
    setup,
    closeGraceMs: options.closeGraceMs,
    now,
  });
  return { setup, reconciler, live };
}

/** The provider the Stripe settings ask for (Stripe with a key, the dry run without). */
export function adminBillingProvider(config: StripeConfig, logger: Logger) {
  return createBillingProvider(config, { logger });
}

const stripeId = (prefix: string) =>
  z.string().regex(new RegExp(`^${prefix}_[A-Za-z0-9]{1,250}$`), `expected a Stripe id like ${prefix}_123`);

/** `POST /v1/customers/:id/stripe-link` body and `keymeter customers link` options. */
export const linkInputSchema = z
  .object({ stripe_customer_id: stripeId("cus").optional(), stripe_subscription_id: stripeId("sub").optional() })
  .strict()
  .refine((input) => !input.stripe_subscription_id || input.stripe_customer_id, {
    message: "a subscription is adopted together with its customer (stripe_customer_id)",
  });

/** `POST /v1/billing/setup` body. */
export const setupInputSchema = z
  .object({
    customer_ids: z
      .array(z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/))
      .max(10_000)
      .optional(),
  })
  .strict();

/** `GET /v1/billing/reconciliation` query and `keymeter billing reconcile` options. */
export const reconcileQuerySchema = z
  .object({
    customer_id: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,128}$/, "expected a customer id")
      .optional(),
    period: z
      .string()
      .regex(/^\d{4}-(0[1-9]|1[0-2])$/, "expected a month like 2026-11")
      .optional(),
    stripe: z.enum(["true", "false"]).default("true"),
  })
  .strict();

export function reconcileRequest(query: z.infer<typeof reconcileQuerySchema>): ReconcileRequest {
  return {
    ...(query.customer_id ? { customerId: query.customer_id } : {}),
    ...(query.period ? { periodId: query.period } : {}),
    stripe: query.stripe === "true",
  };
}
