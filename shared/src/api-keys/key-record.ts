import { z } from "zod";
import { describeIssues } from "../runtime/describe-issues";
import { cidrSchema } from "./ip-allowlist";
import { isKeyAlias, KEY_ENVIRONMENTS, KEY_ID } from "./key-format";
import { routePrefixSchema, scopeSchema } from "./scopes";

const timestamp = z.iso.datetime({ offset: true });

/** A stored secret hash; `valid_until` is set on a rotated-out secret (the end of its grace period). */
export const secretHashSchema = z.object({
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  valid_until: timestamp.nullable(),
});

/** A key record as stored in Redis (`apikey:record:<id>`). Holds SHA-256 hashes, never a secret. */
export const keyRecordSchema = z.object({
  id: z.string().regex(KEY_ID),
  customer_id: z.string(),
  tier: z.string(),
  name: z.string(),
  env: z.enum(KEY_ENVIRONMENTS),
  scope: scopeSchema,
  routes: z.array(z.string()),
  ip_allowlist: z.array(z.string()),
  state: z.enum(["active", "revoked"]),
  expires_at: timestamp.nullable(),
  created_at: timestamp,
  updated_at: timestamp,
  rotated_at: timestamp.nullable(),
  revoked_at: timestamp.nullable(),
  /** The last characters of the current secret, to tell keys apart in listings. */
  hint: z.string(),
  /** Bumped on every change: optimistic concurrency in Redis, ReplacingMergeTree version in ClickHouse. */
  version: z.number().int().positive(),
  secret_hashes: z.array(secretHashSchema).min(1),
  /** Other systems' names for this key (Kong consumer id, another gateway's key id); unique across keys. */
  aliases: z.array(z.string()).default([]),
});
export type KeyRecord = z.infer<typeof keyRecordSchema>;

/**
 * Reads a key record as stored in Redis. A value this code cannot read (not JSON, or not a
 * record) is a bug or a foreign write: the caller refuses the key rather than guess, and logs
 * `problem`.
 */
export function parseKeyRecord(text: string): { record: KeyRecord } | { problem: string } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { problem: "not valid JSON" };
  }
  const parsed = keyRecordSchema.safeParse(json);
  return parsed.success ? { record: parsed.data } : { problem: describeIssues(parsed.error) };
}

export type KeyState = "active" | "revoked" | "expired";

/** What the admin API, the CLI and the ClickHouse mirror show: the record without its hashes. */
export type KeyView = Omit<KeyRecord, "secret_hashes" | "state"> & { state: KeyState };

/** Revoked wins over expired; expiry is a property of time, not a write. */
export function keyState(record: Pick<KeyRecord, "state" | "expires_at">, now: number = Date.now()): KeyState {
  if (record.state === "revoked") return "revoked";
  if (record.expires_at !== null && Date.parse(record.expires_at) <= now) return "expired";
  return "active";
}

export function keyView(record: KeyRecord, now: number = Date.now()): KeyView {
  const { secret_hashes: _hashes, ...rest } = record;
  return { ...rest, state: keyState(record, now) };
}

const customerId = z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, "expected 1..128 letters, digits or _ . : -");
/** A key alias: what the ingest and aggregator resolve to this key's id. */
export const keyAliasSchema = z
  .string()
  .refine(isKeyAlias, "expected 1..128 letters, digits or . _ : @ / + = - (not key_..., never a secret)");
const aliasList = z
  .array(keyAliasSchema)
  .max(16)
  .refine((aliases) => new Set(aliases).size === aliases.length, "aliases must not repeat");

const futureTimestamp = timestamp.refine((value) => Date.parse(value) > Date.now(), "must be in the future");

/** Input to create a key (admin API body, CLI options). The tier is checked against the catalog. */
export const createKeyInputSchema = z
  .object({
    customer_id: customerId,
    tier: z.string().min(1).max(64),
    name: z.string().max(128).default(""),
    env: z.enum(KEY_ENVIRONMENTS).default("live"),
    scope: scopeSchema.default("read-only"),
    routes: z.array(routePrefixSchema).max(64).default([]),
    ip_allowlist: z.array(cidrSchema).max(256).default([]),
    expires_at: futureTimestamp.nullable().default(null),
    aliases: aliasList.default([]),
  })
  .strict();
export type CreateKeyInput = z.input<typeof createKeyInputSchema>;

/** Fields of a key that can change in place; the secret changes only by rotation. */
export const updateKeyInputSchema = z
  .object({
    tier: z.string().min(1).max(64),
    name: z.string().max(128),
    scope: scopeSchema,
    routes: z.array(routePrefixSchema).max(64),
    ip_allowlist: z.array(cidrSchema).max(256),
    expires_at: futureTimestamp.nullable(),
    /** Replaces the key's aliases. */
    aliases: aliasList,
  })
  .partial()
  .strict()
  .refine((patch) => Object.keys(patch).length > 0, "expected at least one field to change");
export type UpdateKeyInput = z.input<typeof updateKeyInputSchema>;
