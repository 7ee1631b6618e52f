import { hash, randomBytes, timingSafeEqual } from "node:crypto";
import { crc32 } from "node:zlib";

/**
 * API key secrets look like `km_live_<30 base62 random><6 base62 CRC32>`, after GitHub's
 * token format: the prefix and environment make a leaked key recognisable to secret
 * scanners, and the checksum lets anyone (scanner, gateway) reject a mistyped or made-up
 * key without a database look-up.
 */
export const KEY_ENVIRONMENTS = ["live", "test"] as const;
export type KeyEnvironment = (typeof KEY_ENVIRONMENTS)[number];

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const RANDOM_LENGTH = 30;
const CHECKSUM_LENGTH = 6;
/** Key prefixes: 2..10 lower-case letters, so the `_` separators stay unambiguous. */
export const KEY_PREFIX = /^[a-z]{2,10}$/;
const SECRET = /^([a-z]{2,10})_(live|test)_([0-9A-Za-z]{36})$/;
/** Key ids as the usage event schema's `subject` accepts them. */
export const KEY_ID = /^key_[A-Za-z0-9]{8,64}$/;

/** `length` characters of uniform base62 (rejection sampling: no modulo bias). */
export function randomBase62(length: number): string {
  let out = "";
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      // 248 = 4 * 62: bytes at or above it would favour the first characters.
      if (byte < 248) out += BASE62[byte % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

function base62Fixed(value: number, width: number): string {
  let n = value;
  let out = "";
  for (let i = 0; i < width; i++) {
    out = BASE62[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

/** The 6-character checksum of everything before it (`km_live_<random>`). */
export function keyChecksum(body: string): string {
  return base62Fixed(crc32(body) >>> 0, CHECKSUM_LENGTH);
}

/** A new secret. It is shown once; only {@link hashSecret} of it is stored. */
export function generateSecret(prefix: string, env: KeyEnvironment): string {
  if (!KEY_PREFIX.test(prefix)) throw new Error("key prefix must be 2..10 lower-case letters");
  const body = `${prefix}_${env}_${randomBase62(RANDOM_LENGTH)}`;
  return body + keyChecksum(body);
}

export interface ParsedSecret {
  prefix: string;
  env: KeyEnvironment;
}

/**
 * Checks shape and checksum. Returns undefined for anything that is not a well-formed
 * key; says nothing about whether the key exists.
 */
export function parseSecret(candidate: string): ParsedSecret | undefined {
  if (candidate.length > 64) return undefined;
  const match = SECRET.exec(candidate);
  if (!match?.[1] || !match[3]) return undefined;
  const body = candidate.slice(0, candidate.length - CHECKSUM_LENGTH);
  if (keyChecksum(body) !== candidate.slice(-CHECKSUM_LENGTH)) return undefined;
  return { prefix: match[1], env: match[2] === "live" ? "live" : "test" };
}

/** SHA-256 of the secret, hex: the only form in which a secret is stored. */
export function hashSecret(secret: string): string {
  // One-shot: no Hash object per call (the gateway hashes every request's key).
  return hash("sha256", secret, "hex");
}

/** Constant-time comparison of two hex SHA-256 hashes. */
export function hashesEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, "hex");
  const right = Buffer.from(b, "hex");
  return left.length === 32 && right.length === 32 && timingSafeEqual(left, right);
}

/** A new key id: `key_` and 16 base62 characters (~95 bits), independent of the secret. */
export function generateKeyId(): string {
  return `key_${randomBase62(16)}`;
}

/** The last 4 characters of a secret, to tell keys apart in listings (`km_live_…Ab3x`). */
export function secretHint(secret: string): string {
  const parsed = parseSecret(secret);
  return `${parsed ? `${parsed.prefix}_${parsed.env}_` : ""}…${secret.slice(-4)}`;
}

/** Another system's name for a key (a Kong consumer id or custom_id, another gateway's key id). */
export const KEY_ALIAS = /^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$/;
/** The start of a secret (`km_live_`): a mistyped or cut secret is still a secret. */
const SECRET_START = /^[a-z]{2,10}_(live|test)_/;

/**
 * True for a valid key alias: the alias shape, not `key_...` (reserved for key ids), not
 * starting like a secret and holding none.
 */
export function isKeyAlias(value: string): boolean {
  return KEY_ALIAS.test(value) && !value.startsWith("key_") && !SECRET_START.test(value) && !containsSecret(value);
}

const ENV_MARKERS = ["_live_", "_test_"] as const;
const MARKER_LENGTH = 6;
const SECRET_TAIL = RANDOM_LENGTH + CHECKSUM_LENGTH;

const isBase62 = (code: number) =>
  (code >= 48 && code <= 57) || (code >= 65 && code <= 90) || (code >= 97 && code <= 122);
const isLower = (code: number) => code >= 97 && code <= 122;

/** The secret whose environment marker (`_live_`) is at `at`, when prefix, tail and checksum fit. */
function secretAt(text: string, at: number): { start: number; end: number } | undefined {
  const end = at + MARKER_LENGTH + SECRET_TAIL;
  if (end > text.length) return undefined;
  for (let i = at + MARKER_LENGTH; i < end; i++) if (!isBase62(text.charCodeAt(i))) return undefined;
  // The prefix is 2..10 lower-case letters; only the right one makes the checksum fit.
  for (let length = 1; length <= 10 && at - length >= 0; length++) {
    if (!isLower(text.charCodeAt(at - length))) break;
    if (length >= 2 && parseSecret(text.slice(at - length, end))) return { start: at - length, end };
  }
  return undefined;
}

/**
 * Finds something shaped like one of our secrets (any prefix, `live`/`test`, 36 base62 with
 * a valid CRC32 checksum) anywhere in `text`. Cheap enough for the hot path: two `indexOf`
 * scans, and a checksum only where an environment marker appears.
 */
export function findSecret(text: string): { start: number; end: number } | undefined {
  for (const marker of ENV_MARKERS) {
    for (let at = text.indexOf(marker); at !== -1; at = text.indexOf(marker, at + 1)) {
      const found = secretAt(text, at);
      if (found) return found;
    }
  }
  return undefined;
}

/** True when `text` holds a well-formed secret (see {@link findSecret}). */
export function containsSecret(text: string): boolean {
  return findSecret(text) !== undefined;
}

/** `text` with every well-formed secret replaced by `replacement`. */
export function redactSecrets(text: string, replacement = "[redacted]"): string {
  let out = text;
  for (let found = findSecret(out); found; found = findSecret(out)) {
    out = out.slice(0, found.start) + replacement + out.slice(found.end);
  }
  return out;
}
