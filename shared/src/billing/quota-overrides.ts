import { z } from "zod";
import { describeIssues } from "../runtime/describe-issues";
import { AppError } from "../runtime/errors";
import { mgetMany, type Redis } from "../stores/redis";
import type { RedisKeys } from "../stores/redis-keys";

/** A per-key monthly quota that replaces the tier's (raised for a customer, or unlimited). */
export const quotaOverrideSchema = z.object({
  /** Units per period; null: unlimited. */
  monthly_quota: z.number().int().positive().max(1e15).nullable(),
  reason: z.string().max(256),
  updated_at: z.iso.datetime({ offset: true }),
});
export type QuotaOverride = z.infer<typeof quotaOverrideSchema>;

export const quotaOverrideInputSchema = z
  .object({
    monthly_quota: z.number().int().positive().max(1e15).nullable(),
    reason: z.string().max(256).default(""),
  })
  .strict();
export type QuotaOverrideInput = z.input<typeof quotaOverrideInputSchema>;

/**
 * Per-key quota overrides in Redis. Every change is published on `quota:override:changed`,
 * so the quota worker re-checks the key at once (a raised quota unflags it in well under a second).
 */
export class QuotaOverrides {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    private readonly now: () => number = Date.now,
  ) {}

  async get(keyId: string): Promise<QuotaOverride | undefined> {
    return parseOverride(await this.redis.get(this.keys.quotaOverride(keyId)));
  }

  async getMany(keyIds: readonly string[]): Promise<Map<string, QuotaOverride>> {
    const found = new Map<string, QuotaOverride>();
    const raw = await mgetMany(
      this.redis,
      keyIds.map((id) => this.keys.quotaOverride(id)),
    );
    raw.forEach((value, i) => {
      if (value === null) return;
      const override = parseOverride(value);
      const id = keyIds[i];
      if (override && id !== undefined) found.set(id, override);
    });
    return found;
  }

  async set(keyId: string, input: QuotaOverrideInput): Promise<QuotaOverride> {
    const parsed = quotaOverrideInputSchema.safeParse(input);
    if (!parsed.success) throw new AppError("bad_request", describeIssues(parsed.error));
    const override: QuotaOverride = { ...parsed.data, updated_at: new Date(this.now()).toISOString() };
    await this.redis
      .multi()
      .set(this.keys.quotaOverride(keyId), JSON.stringify(override))
      .publish(this.keys.quotaOverrideChannel, keyId)
      .exec();
    return override;
  }

  /** Removes the override: the tier's quota applies again. */
  async clear(keyId: string): Promise<boolean> {
    const replies = await this.redis
      .multi()
      .del(this.keys.quotaOverride(keyId))
      .publish(this.keys.quotaOverrideChannel, keyId)
      .exec();
    return Number(replies?.[0]?.[1] ?? 0) > 0;
  }
}

function parseOverride(value: string | null): QuotaOverride | undefined {
  if (value === null) return undefined;
  try {
    const parsed = quotaOverrideSchema.safeParse(JSON.parse(value));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
