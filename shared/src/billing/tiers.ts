import { readFileSync } from "node:fs";
import { z } from "zod";
import { describeIssues } from "../runtime/describe-issues";
import { AppError } from "../runtime/errors";

/** The tiers shipped with the project: free, pro and enterprise. */
export const DEFAULT_TIERS_FILE = new URL("./tiers.default.json", import.meta.url);

export const tierSchema = z
  .object({
    name: z.string().regex(/^[a-z][a-z0-9_-]{0,63}$/, "expected a lower-case name like pro or team_2"),
    /** Sustained requests per second per key. */
    rate_limit_rps: z.number().positive().max(1_000_000),
    /** Requests a key may make at once above the sustained rate; defaults to one second's worth. */
    burst: z.number().int().positive().max(10_000_000).optional(),
    /** Requests per calendar month; null means unlimited. */
    monthly_quota: z.number().int().positive().nullable(),
    /** Over quota: `block` answers 429, `bill` lets requests through and bills the overage. */
    overage: z.enum(["block", "bill"]),
    /** A free tier is never synced to Stripe, even if it names a meter. */
    free: z.boolean().optional(),
    stripe: z
      .object({
        /** The tier's own Billing Meter (aggregation `last`: the sync sends month-to-date totals). */
        meter_event_name: z.string().min(1).max(100),
        /** An existing metered price on that meter; without it, setup finds or creates one by lookup key. */
        price_id: z.string().min(1).max(255).optional(),
        /** Finds the created price again; defaults to `keymeter_<tier name>`. */
        price_lookup_key: z.string().min(1).max(200).optional(),
        /** Price per request in the currency's minor unit, as a decimal (`"0.1"` = a tenth of a cent). */
        unit_amount_decimal: z
          .string()
          .regex(/^\d{1,12}(\.\d{1,12})?$/, "expected a decimal amount in minor units like 0.1")
          .optional(),
        /** ISO currency code, lower case; defaults to usd. */
        currency: z
          .string()
          .regex(/^[a-z]{3}$/, "expected a lower-case ISO currency code like usd")
          .optional(),
        /** How often the billing worker syncs this tier's month-to-date totals; BILLING_SYNC_EVERY_MS when unset. */
        sync_every_ms: z.number().int().min(1000).max(86_400_000).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export type Tier = z.infer<typeof tierSchema>;

export const tiersFileSchema = z
  .object({ tiers: z.array(tierSchema).min(1, "expected at least one tier") })
  .strict()
  .superRefine((file, context) => {
    const seen = new Set<string>();
    const meters = new Map<string, string>();
    file.tiers.forEach((tier, index) => {
      if (seen.has(tier.name)) {
        context.addIssue({ code: "custom", path: ["tiers", index, "name"], message: `duplicate tier ${tier.name}` });
      }
      seen.add(tier.name);
      if (tier.overage === "bill" && (!tier.stripe || (!tier.stripe.price_id && !tier.stripe.unit_amount_decimal))) {
        context.addIssue({
          code: "custom",
          path: ["tiers", index, "stripe"],
          message:
            "a tier whose overage is billed needs stripe.meter_event_name and stripe.price_id or stripe.unit_amount_decimal",
        });
      }
      // Each tier's meter holds that tier's month-to-date total per customer (`last`); two tiers
      // on one meter would overwrite each other's totals.
      const meter = tier.stripe?.meter_event_name;
      if (meter !== undefined) {
        if (meters.has(meter)) {
          context.addIssue({
            code: "custom",
            path: ["tiers", index, "stripe", "meter_event_name"],
            message: `meter ${meter} is already used by tier ${meters.get(meter)}; each tier needs its own meter`,
          });
        }
        meters.set(meter, tier.name);
      }
    });
  });

/** The configured tiers, by name. */
export class TierCatalog {
  private readonly byName: Map<string, Tier>;

  constructor(tiers: readonly Tier[]) {
    this.byName = new Map(tiers.map((tier) => [tier.name, tier]));
  }

  get(name: string): Tier | undefined {
    return this.byName.get(name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  list(): Tier[] {
    return [...this.byName.values()];
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  /** Tiers the billing worker syncs to Stripe: a `stripe` section and not marked free. */
  billed(): Array<Tier & { stripe: NonNullable<Tier["stripe"]> }> {
    return this.list().filter((tier): tier is Tier & { stripe: NonNullable<Tier["stripe"]> } =>
      Boolean(tier.stripe && !tier.free),
    );
  }
}

/** Validates parsed JSON as a tiers file; errors name the file and the field (`tiers.0.rate_limit_rps: ...`). */
export function parseTiers(json: unknown, source = "tiers"): TierCatalog {
  const result = tiersFileSchema.safeParse(json);
  if (!result.success) {
    throw new AppError("config_invalid", `invalid tiers in ${source}: ${describeIssues(result.error)}`);
  }
  return new TierCatalog(result.data.tiers);
}

/** Loads tiers from a JSON file (`TIERS_FILE`), or the defaults when no path is given. */
export function loadTiers(path?: string): TierCatalog {
  const file = path ?? DEFAULT_TIERS_FILE;
  const label = String(path ?? "the default tiers");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new AppError(
      "config_invalid",
      `cannot read tiers file ${label}: ${(error as NodeJS.ErrnoException).code ?? "error"}`,
      {
        cause: error,
      },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new AppError("config_invalid", `tiers file ${label} is not valid JSON (${(error as Error).message})`);
  }
  return parseTiers(json, label);
}
