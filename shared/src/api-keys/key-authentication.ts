import { AppError } from "../runtime/errors";
import type { IpAllowlist } from "./ip-allowlist";
import { hashesEqual, hashSecret, parseSecret } from "./key-format";
import { type KeyRecord, keyState } from "./key-record";
import { type ScopeRequest, scopeViolation } from "./scopes";

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/** The credential of an `Authorization: Bearer <token>` header (the scheme is case-insensitive). */
export function bearerToken(authorization: string | undefined): string | undefined {
  if (authorization === undefined) return undefined;
  return BEARER.exec(authorization)?.[1];
}

/** Finds what is stored for a secret's SHA-256 hash (the gateway's cache, or the registry). */
export type KeyLookup<T extends { record: KeyRecord }> = (hash: string) => T | undefined | Promise<T | undefined>;

export type KeyAuthentication<T> = { ok: true; found: T } | { ok: false; error: AppError; found?: T };

/**
 * Who is calling: checks the secret's format and checksum (no store round trip for invented
 * keys), finds its hash, compares it in constant time, and refuses rotated-out secrets past
 * their grace period and keys that are revoked or expired. `found` is set whenever the key
 * was identified, also when it is refused, so refusals can be attributed to it.
 */
export async function authenticateKey<T extends { record: KeyRecord }>(
  secret: string | undefined,
  lookup: KeyLookup<T>,
  now: number,
): Promise<KeyAuthentication<T>> {
  if (secret === undefined || secret === "") {
    return refuse("missing API key: send it as 'Authorization: Bearer <key>' or in the X-API-Key header");
  }
  if (!parseSecret(secret)) return refuse("malformed API key");
  const hash = hashSecret(secret);
  const found = await lookup(hash);
  const entry = found?.record.secret_hashes.find((candidate) => hashesEqual(candidate.hash, hash));
  if (!found || !entry) return refuse("invalid API key");
  if (entry.valid_until !== null && Date.parse(entry.valid_until) <= now) {
    return refuse("this API key was rotated and its grace period has ended", found);
  }
  const state = keyState(found.record, now);
  if (state !== "active") return refuse(`API key ${state}`, found);
  return { ok: true, found };
}

/**
 * What an identified key may do here: the caller's address against the key's IP allowlist,
 * then the request against its scope and route prefixes. Undefined when allowed.
 */
export function authorizeKey(
  record: KeyRecord,
  allowlist: IpAllowlist,
  clientIp: string | undefined,
  request: ScopeRequest,
  adminRoutePrefixes: readonly string[],
): AppError | undefined {
  if (!allowlist.allows(clientIp)) {
    return new AppError("forbidden", "requests from this address are not allowed for this API key");
  }
  const violation = scopeViolation(record, request, adminRoutePrefixes);
  return violation ? new AppError("forbidden", violation) : undefined;
}

function refuse<T>(message: string, found?: T): KeyAuthentication<T> {
  const error = new AppError("unauthenticated", message);
  return found === undefined ? { ok: false, error } : { ok: false, error, found };
}
