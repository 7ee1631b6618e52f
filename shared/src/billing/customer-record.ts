import { z } from "zod";
import { customerIdSchema } from "../api-keys/key-record";
import { timeZoneSchema } from "./time-zone";

const timestamp = z.iso.datetime({ offset: true });

export const WEBHOOK_ID = /^wh_[A-Za-z0-9]{16}$/;
/** Customers get at most this many endpoints: each threshold is one delivery job per endpoint. */
export const MAX_WEBHOOKS = 10;

const webhookUrlSchema = z
  .string()
  .max(2048)
  .refine(
    (value) => URL.canParse(value) && ["http:", "https:"].includes(new URL(value).protocol),
    "expected an http or https URL",
  );

/**
 * A webhook endpoint as stored. The signing secret has to be stored (the worker signs with
 * it); it is returned once, at creation, and never logged or shown in a view.
 */
export const webhookEndpointSchema = z.object({
  id: z.string().regex(WEBHOOK_ID),
  url: webhookUrlSchema,
  secret: z.string().min(16),
  created_at: timestamp,
});
export type WebhookEndpoint = z.infer<typeof webhookEndpointSchema>;

/** A customer record (`customer:record:<id>` in Redis). */
export const customerRecordSchema = z.object({
  id: customerIdSchema,
  name: z.string().max(256),
  /** IANA zone of the customer's billing periods (calendar months there). */
  time_zone: z.string(),
  webhooks: z.array(webhookEndpointSchema).max(MAX_WEBHOOKS),
  /** Filled in by the billing worker (Stripe customer `cus_...`). */
  stripe_customer_id: z.string().nullable(),
  /** Filled in by the billing worker (Stripe subscription `sub_...`). */
  stripe_subscription_id: z.string().nullable(),
  created_at: timestamp,
  updated_at: timestamp,
  /** Bumped on every change: compare-and-set in Redis. */
  version: z.number().int().positive(),
});
export type CustomerRecord = z.infer<typeof customerRecordSchema>;

/** What the admin API and the CLI show of a webhook endpoint: no secret, only its last characters. */
export interface WebhookEndpointView {
  id: string;
  url: string;
  secret_hint: string;
  created_at: string;
}

export type CustomerView = Omit<CustomerRecord, "webhooks"> & { webhooks: WebhookEndpointView[] };

export function customerView(record: CustomerRecord): CustomerView {
  return {
    ...record,
    webhooks: record.webhooks.map((endpoint) => ({
      id: endpoint.id,
      url: endpoint.url,
      secret_hint: endpoint.secret.slice(-4),
      created_at: endpoint.created_at,
    })),
  };
}

/** The time zone of a key whose customer has no record (and the default for new customers). */
export const DEFAULT_TIME_ZONE = "UTC";

const stripeId = (prefix: string) =>
  z
    .string()
    .regex(new RegExp(`^${prefix}_[A-Za-z0-9]{1,250}$`), `expected a Stripe id like ${prefix}_123`)
    .nullable();

export const webhookInputSchema = z.object({ url: webhookUrlSchema }).strict();
export type WebhookInput = z.input<typeof webhookInputSchema>;

/** Input to create a customer (admin API body, CLI options). */
export const createCustomerInputSchema = z
  .object({
    id: customerIdSchema,
    name: z.string().max(256).default(""),
    time_zone: timeZoneSchema.default(DEFAULT_TIME_ZONE),
    webhooks: z.array(webhookInputSchema).max(MAX_WEBHOOKS).default([]),
    stripe_customer_id: stripeId("cus").default(null),
    stripe_subscription_id: stripeId("sub").default(null),
  })
  .strict();
export type CreateCustomerInput = z.input<typeof createCustomerInputSchema>;

/** Fields of a customer that change in place; webhooks are added and removed one at a time. */
export const updateCustomerInputSchema = z
  .object({
    name: z.string().max(256),
    time_zone: timeZoneSchema,
    stripe_customer_id: stripeId("cus"),
    stripe_subscription_id: stripeId("sub"),
  })
  .partial()
  .strict()
  .refine((patch) => Object.keys(patch).length > 0, "expected at least one field to change");
export type UpdateCustomerInput = z.input<typeof updateCustomerInputSchema>;
