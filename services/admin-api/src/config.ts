import { KEY_PREFIX } from "@keymeter/shared/api-keys";
import { stripeConfigSchema } from "@keymeter/shared/billing/provider";
import { env, redisClickHouseConfigSchema } from "@keymeter/shared/runtime";
import { z } from "zod";

/** The key registry's settings, shared by the admin API and the CLI. */
export const registryConfigSchema = redisClickHouseConfigSchema
  .extend({
    /** Path to a tiers JSON file; the shipped defaults (free, pro, enterprise) when unset. */
    TIERS_FILE: z.string().min(1).optional(),
    /** Namespace for every Redis key and channel; must match the gateways'. */
    REDIS_KEY_PREFIX: z.string().default(""),
    /** The `km` in `km_live_...`: what secret scanners look for. */
    KEY_SECRET_PREFIX: z.string().regex(KEY_PREFIX, "expected 2..10 lower-case letters").default("km"),
    /** How long a rotated-out secret keeps working unless a rotation says otherwise. */
    KEY_ROTATION_GRACE_SECONDS: z.coerce
      .number()
      .int()
      .min(0)
      .max(90 * 86_400)
      .default(86_400),
    /** Must match the billing worker's: reconciliation reports a period not closed by then. */
    BILLING_CLOSE_GRACE_MS: z.coerce.number().int().min(60_000).max(86_400_000).default(3_600_000),
  })
  .extend(stripeConfigSchema.shape);
export type RegistryConfig = z.infer<typeof registryConfigSchema>;

/** The admin API's environment. */
export const adminConfigSchema = registryConfigSchema.extend({
  ADMIN_HOST: z.string().min(1).default("127.0.0.1"),
  ADMIN_PORT: env.port().default(8081),
  /**
   * A bootstrap credential accepted as an admin key, to create the first real admin key
   * over HTTP. Unset it once an admin key exists (or use `keymeter keys create --scope admin`).
   */
  ADMIN_BOOTSTRAP_TOKEN: z.preprocess(
    (value) => (value === "" ? undefined : value),
    z.string().min(32, "must be at least 32 characters").optional(),
  ),
  /** Apply ClickHouse migrations (the api_keys table) at start-up. */
  MIGRATE_ON_START: env.flag().default(true),
});
export type AdminConfig = z.infer<typeof adminConfigSchema>;
