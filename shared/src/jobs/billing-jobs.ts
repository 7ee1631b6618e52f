import { z } from "zod";

const reason = z.enum(["scheduled", "startup", "manual"]).default("scheduled");

/** `billing-sync` job data: sync one tier. */
export const billingSyncJobSchema = z
  .object({
    tier: z.string().regex(/^[a-z][a-z0-9_-]{0,63}$/, "expected a tier name"),
    reason,
  })
  .strict();
export type BillingSyncJob = z.infer<typeof billingSyncJobSchema>;

/** `billing-close` and `billing-reconcile` job data. */
export const billingPassJobSchema = z.object({ reason }).strict();
export type BillingPassJob = z.infer<typeof billingPassJobSchema>;
